// A real Postfix in front of the relay, for the MTA integration test: an instance of its own
// (config_directory, queue_directory and data_directory in a temporary directory, no SMTP
// listener), relaying everything to the relay with SASL, started with `postfix -c DIR start`
// and stopped in the test's finally. scripts/test-deps.sh installs Postfix from Debian.
//
// The settings are exactly the ones docs/operations.md documents (`RELAY_SETTINGS`).
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { sleep, until } from './wait.js';

const POSTFIX = '/usr/sbin/postfix';
const POSTCONF = '/usr/sbin/postconf';
const SENDMAIL = '/usr/sbin/sendmail';
const MASTER_CF = '/usr/share/postfix/master.cf.dist';

/** main.cf lines that point Postfix at the relay; docs/operations.md quotes these. */
export function relaySettings(relayPort: number, user: string, password: string): string[] {
  return [
    `relayhost = [127.0.0.1]:${relayPort}`,
    'smtp_sasl_auth_enable = yes',
    `smtp_sasl_password_maps = static:${user}:${password}`,
    // Postfix refuses plaintext mechanisms by default; the relay is on loopback.
    'smtp_sasl_security_options = noanonymous',
    'smtp_sasl_mechanism_filter = plain, login',
    'smtp_tls_security_level = may',
  ];
}

export class PostfixInstance {
  private constructor(readonly dir: string) {}

  get configDir(): string {
    return join(this.dir, 'etc');
  }

  /** Starts an instance relaying to 127.0.0.1:`relayPort`, authenticating as `user`. */
  static async start(relayPort: number, user: string, password: string): Promise<PostfixInstance> {
    if (!existsSync(POSTFIX) || !existsSync(MASTER_CF)) {
      throw new Error(`${POSTFIX} not found: this test drives a real Postfix. Install it with scripts/test-deps.sh (apt-get install postfix libsasl2-modules).`);
    }
    if (userInfo().uid !== 0) throw new Error('Postfix test: starting a Postfix instance needs root (CI runs as root)');
    const dir = mkdtempSync(join(tmpdir(), 'relay-postfix-'));
    // Postfix's daemons run as the postfix user and must reach their directories.
    chmodSync(dir, 0o755);
    const instance = new PostfixInstance(dir);
    try {
      instance.configure(relayPort, user, password);
      instance.run(POSTFIX, ['-c', instance.configDir, 'start']);
      await instance.until(() => instance.maillog().includes('daemon started'), 15_000, 'postfix master to start');
    } catch (e) {
      await instance.stop();
      throw e;
    }
    return instance;
  }

  /** Submits a message as a local program would: `sendmail -C DIR -oi -f FROM -- TO...`. */
  submit(from: string, to: readonly string[], message: string): void {
    this.run(SENDMAIL, ['-C', this.configDir, '-oi', '-f', from, '--', ...to], message);
  }

  maillog(): string {
    const file = join(this.dir, 'maillog');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /** Resolves once `cond` holds; rejects after `ms` with the mail log, which says why not. */
  async until(cond: () => boolean, ms: number, what: string): Promise<void> {
    await until(cond, ms, what).catch((e: Error) => {
      throw new Error(`${e.message}. Postfix log:\n${this.maillog()}`);
    });
  }

  /** Stops the instance (bounded wait for its master to exit) and removes its directory. */
  async stop(): Promise<void> {
    const pidFile = join(this.dir, 'spool', 'pid', 'master.pid');
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      spawnSync(POSTFIX, ['-c', this.configDir, 'stop'], { encoding: 'utf8', timeout: 20_000 });
      const end = Date.now() + 10_000;
      while (pid > 0 && alive(pid) && Date.now() < end) await sleep(50);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private configure(relayPort: number, user: string, password: string): void {
    const etc = this.configDir;
    const data = join(this.dir, 'data');
    mkdirSync(etc);
    mkdirSync(join(this.dir, 'spool'));
    mkdirSync(data);
    const postfixUser = spawnSync('id', ['-u', 'postfix'], { encoding: 'utf8' });
    const postfixGroup = spawnSync('id', ['-g', 'postfix'], { encoding: 'utf8' });
    chownSync(data, Number(postfixUser.stdout.trim()), Number(postfixGroup.stdout.trim()));
    copyFileSync(MASTER_CF, join(etc, 'master.cf'));
    writeFileSync(
      join(etc, 'main.cf'),
      [
        'compatibility_level = 3.6',
        `queue_directory = ${join(this.dir, 'spool')}`,
        `data_directory = ${data}`,
        `maillog_file = ${join(this.dir, 'maillog')}`,
        `maillog_file_prefixes = ${this.dir}`,
        'myhostname = mta.postfix.test',
        'mydomain = postfix.test',
        'myorigin = $mydomain',
        // Nothing is delivered locally: every message goes to the relay.
        'mydestination =',
        'local_transport = error:local delivery is disabled',
        'inet_interfaces = loopback-only',
        'inet_protocols = ipv4',
        ...relaySettings(relayPort, user, password),
      ].join('\n') + '\n',
    );
    // No chroot (the instance's directories are not set up for it), and no SMTP listener: mail
    // enters through sendmail only, so the instance cannot collide with anything on port 25.
    this.run(POSTCONF, ['-c', etc, '-F', '*/*/chroot = n']);
    this.run(POSTCONF, ['-c', etc, '-M#', 'smtp/inet']);
  }

  private run(command: string, args: string[], input?: string): void {
    const r = spawnSync(command, args, { encoding: 'utf8', timeout: 30_000, ...(input === undefined ? {} : { input }) });
    if (r.status !== 0) {
      throw new Error(`${command} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}${r.error?.message ?? ''}\nPostfix log:\n${this.maillog()}`);
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
