// A real Exim 4 in front of the relay, for the interoperability test. Debian allows one MTA
// package installed at a time and the suite installs Postfix, so Exim runs from its packages
// unpacked by scripts/test-deps.sh (`apt-get download` + `dpkg-deb -x` into EXIM_ROOT), with a
// config of its own (`-C`), its own spool and log directory in a temporary directory, and no
// daemon: each message is submitted on stdin and delivered in the foreground (`-odi`), so every
// message is one SMTP connection to the relay that ends the way Exim ends them.
//
// The recipe Exim insists on: it looks up its compiled-in user (Debian-exim) before reading any
// config (test-deps.sh creates it), it must run as root to keep the setuid binary's privilege
// with an arbitrary `-C` file, its spool must belong to that user, and deliveries that re-exec
// the binary need `exim_path` pointing at the unpacked copy rather than /usr/sbin/exim4.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export const EXIM_ROOT = process.env.XOAUTH2_RELAY_EXIM_ROOT ?? '/var/cache/xoauth2-relay-test/exim4';
const EXIM = join(EXIM_ROOT, 'usr/sbin/exim4');
const EXIM_USER = 'Debian-exim';

export interface EximRun {
  status: number | null;
  stderr: string;
}

export class EximInstance {
  private constructor(readonly dir: string) {}

  private get config(): string {
    return join(this.dir, 'exim.conf');
  }

  /**
   * An instance routing every domain to 127.0.0.1:`relayPort` with the smtp transport's defaults
   * (STARTTLS tried, PIPELINING used), authenticating with PLAIN as `user`.
   */
  static create(relayPort: number, user: string, password: string): EximInstance {
    if (!existsSync(EXIM)) {
      throw new Error(`${EXIM} not found: this test runs Exim unpacked from its Debian packages. Run scripts/test-deps.sh (as root).`);
    }
    if (userInfo().uid !== 0) throw new Error('Exim test: running Exim with its own config and spool needs root (CI runs as root)');
    const uid = idOf('-u');
    const gid = idOf('-g');
    const dir = mkdtempSync(join(tmpdir(), 'relay-exim-'));
    // Exim works as its own user once it has read the config: it must reach the spool and log.
    chmodSync(dir, 0o755);
    const spool = join(dir, 'spool');
    const log = join(dir, 'log');
    mkdirSync(spool);
    mkdirSync(log);
    chownSync(spool, uid, gid);
    chownSync(log, uid, gid);
    const plainAuth = `^${user}^${password}`.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
    writeFileSync(
      join(dir, 'exim.conf'),
      [
        `exim_path = ${EXIM}`,
        `exim_user = ${EXIM_USER}`,
        `exim_group = ${EXIM_USER}`,
        `spool_directory = ${spool}`,
        `log_file_path = ${log}/%slog`,
        'primary_hostname = mta.exim.test',
        'qualify_domain = exim.test',
        // No DNS: the relay is given by address.
        'host_lookup =',
        'keep_environment =',
        'begin routers',
        'smarthost:',
        '  driver = manualroute',
        '  transport = remote_smtp',
        `  route_list = * 127.0.0.1::${relayPort}`,
        '  self = send',
        '  no_more',
        'begin transports',
        // The smtp transport as Exim ships it; only AUTH is asked for, as a smarthost needs it.
        'remote_smtp:',
        '  driver = smtp',
        '  hosts_require_auth = *',
        'begin retry',
        '* * F,1h,1m',
        'begin authenticators',
        'plain:',
        '  driver = plaintext',
        '  public_name = PLAIN',
        `  client_send = "${plainAuth}"`,
        '',
      ].join('\n'),
    );
    return new EximInstance(dir);
  }

  /** Submits `message` (LF line ends, as a local program writes) and delivers it at once (`-odi`). */
  deliver(from: string, to: readonly string[], message: string): Promise<EximRun> {
    return this.exim(['-odi', '-i', '-f', from, '--', ...to], message);
  }

  /** A forced queue run (`-qff`): what Exim's next queue runner would retry. */
  runQueue(): Promise<EximRun> {
    return this.exim(['-qff']);
  }

  /** Messages still in the spool (deferred or frozen). */
  queued(): number {
    const input = join(this.dir, 'spool', 'input');
    if (!existsSync(input)) return 0;
    return readdirSync(input, { recursive: true }).filter((f) => String(f).endsWith('-H')).length;
  }

  mainlog(): string {
    const file = join(this.dir, 'log', 'mainlog');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /**
   * Lines of the panic log but the one this recipe always writes: having received a message as
   * root, Exim re-execs itself as its own user to deliver, and with a `-C` file not listed in
   * /etc/exim4/trusted_configs (which a test should not write) that delivery runs unprivileged,
   * which an smtp transport does not need.
   */
  panics(): string[] {
    const file = join(this.dir, 'log', 'paniclog');
    const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n') : [];
    return lines.filter((l) => l !== '' && !l.endsWith('exim user lost privilege for using -C option'));
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private exim(args: string[], input?: string): Promise<EximRun> {
    return new Promise((resolve, reject) => {
      const child = spawn(EXIM, ['-C', this.config, ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (status) => {
        clearTimeout(timer);
        resolve({ status, stderr });
      });
      child.stdin.end(input ?? '');
    });
  }
}

function idOf(flag: '-u' | '-g'): number {
  const r = spawnSync('id', [flag, EXIM_USER], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`user ${EXIM_USER} missing: scripts/test-deps.sh creates it (Exim looks it up before reading its config)`);
  return Number(r.stdout.trim());
}
