// What ships in packaging/ and how the command is installed, checked as an operator uses them:
// the alert rules by promtool, the dashboard against what Grafana needs, every metric either
// names against a running relay's /metrics, the install script into a temporary prefix, run
// from another folder, and its --system mode into a temporary root, run as systemd would.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildDist, freePort, ROOT } from '../helpers/cli.js';
import { startStack, type Stack } from '../helpers/stack.js';

const RULES = join(ROOT, 'packaging', 'prometheus-alerts.yml');
const DASHBOARD = join(ROOT, 'packaging', 'grafana-dashboard.json');

const metricNames = (text: string) =>
  new Set([...text.matchAll(/\bxoauth2_relay_[a-z0-9_]+/g)].map(([m]) => m.replace(/_(bucket|sum|count)$/, '')));

// What Grafana needs to import a dashboard and draw every panel: a title and uid, panels with a
// type, a title, a place on the grid, a datasource and at least one query, and the datasource
// input the import dialog asks for.
const datasource = z.object({ type: z.literal('prometheus'), uid: z.string().min(1) });
const dashboardSchema = z.object({
  uid: z.string().min(1),
  title: z.string().min(1),
  schemaVersion: z.number().int().min(30),
  __inputs: z.array(z.object({ name: z.string(), type: z.literal('datasource'), pluginId: z.literal('prometheus') })).min(1),
  templating: z.object({ list: z.array(z.object({ name: z.string().min(1), type: z.string().min(1) })) }),
  time: z.object({ from: z.string(), to: z.string() }),
  panels: z
    .array(
      z.object({
        id: z.number().int(),
        type: z.enum(['timeseries', 'stat', 'gauge', 'table', 'bargauge', 'text']),
        title: z.string().min(1),
        datasource,
        gridPos: z.object({ h: z.number().int().positive(), w: z.number().int().min(1).max(24), x: z.number().int().min(0).max(23), y: z.number().int().min(0) }),
        targets: z.array(z.object({ refId: z.string().min(1), expr: z.string().min(1), datasource })).min(1),
      }),
    )
    .min(1),
});

describe('packaging/prometheus-alerts.yml and packaging/grafana-dashboard.json', () => {
  let stack: Stack;
  let exported: Set<string>;

  beforeAll(async () => {
    stack = await startStack({ accounts: [{ email: 'metrics@gmail.test', kind: 'google', senders: ['metrics@gmail.test'] }], overrides: { http: { host: '127.0.0.1', port: 0 } } });
    const res = await fetch(`http://127.0.0.1:${stack.app.adminPort}/metrics`);
    exported = new Set([...(await res.text()).matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!));
  });
  afterAll(() => stack?.stop());

  it('promtool accepts the rules', () => {
    const r = spawnSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(r.error, 'promtool missing: scripts/test-deps.sh installs Debian prometheus').toBeUndefined();
    expect(r.stdout + r.stderr).toMatch(/SUCCESS: \d+ rules found/);
    expect(r.status).toBe(0);
  });

  it('the rules cover unhealthy accounts, deferrals, token refresh, the store and limits', () => {
    const text = readFileSync(RULES, 'utf8');
    for (const used of ['xoauth2_relay_account_healthy', 'xoauth2_relay_refusals_total', 'xoauth2_relay_messages_total', 'xoauth2_relay_token_refreshes_total', 'xoauth2_relay_store_failing']) {
      expect(text).toContain(used);
    }
    expect(text).toContain('reason="limit"');
  });

  it('the dashboard has what Grafana needs to import and draw it', () => {
    const parsed = dashboardSchema.safeParse(JSON.parse(readFileSync(DASHBOARD, 'utf8')));
    expect(parsed.error?.issues ?? []).toEqual([]);
    const ids = parsed.data!.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('every metric the rules and the dashboard use is one the relay exports', () => {
    expect(exported.has('xoauth2_relay_messages_total')).toBe(true);
    const used = new Set([...metricNames(readFileSync(RULES, 'utf8')), ...metricNames(readFileSync(DASHBOARD, 'utf8'))]);
    expect(used.size).toBeGreaterThan(8);
    expect([...used].filter((m) => !exported.has(m))).toEqual([]);
  });
});

// One build for both installs below (each packs dist/ as it is).
beforeAll(() => buildDist(), 180_000);

describe('scripts/install.sh', () => {
  let prefix: string;
  let elsewhere: string;

  beforeAll(() => {
    prefix = mkdtempSync(join(tmpdir(), 'xoauth2-relay-prefix-'));
    elsewhere = mkdtempSync(join(tmpdir(), 'xoauth2-relay-elsewhere-'));
  });
  afterAll(() => {
    rmSync(prefix, { recursive: true, force: true });
    rmSync(elsewhere, { recursive: true, force: true });
  });

  it('installs PREFIX/bin/xoauth2-relay from an npm pack tarball; it runs from another folder', () => {
    // Measured at about 20 s on a loaded two-core machine (npm's cache warm from npm ci).
    const install = spawnSync('bash', [join(ROOT, 'scripts', 'install.sh')], { cwd: elsewhere, env: { ...process.env, PREFIX: prefix, SKIP_BUILD: '1' }, encoding: 'utf8', timeout: 150_000 });
    expect(install.stderr + install.stdout).toContain(`installed: ${prefix}/bin/xoauth2-relay`);
    expect(install.status).toBe(0);
    const bin = join(prefix, 'bin', 'xoauth2-relay');
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const v = spawnSync(bin, ['--version'], { cwd: elsewhere, encoding: 'utf8' });
    expect(v.stdout.trim()).toBe(version);
    writeFileSync(join(elsewhere, 'relay.yaml'), 'listen: { host: 127.0.0.1, port: 2525 }\n');
    const check = spawnSync(bin, ['check-config'], { cwd: elsewhere, encoding: 'utf8' });
    expect(check.status).toBe(0);
    expect(check.stdout).toContain(`# ${join(elsewhere, 'relay.yaml')}: OK`);
    // The installed copy is its own: nothing points back into the checkout.
    expect(readFileSync(join(prefix, 'lib', 'node_modules', 'xoauth2-relay', 'package.json'), 'utf8')).toContain('"name": "xoauth2-relay"');
  }, 160_000);

  it('the installed command runs `demo` from another folder, with only what the package ships', () => {
    const bin = join(prefix, 'bin', 'xoauth2-relay');
    // The checkout's test/ must not be what makes it work: the package carries no test/ folder.
    expect(existsSync(join(prefix, 'lib', 'node_modules', 'xoauth2-relay', 'test'))).toBe(false);
    const demo = spawnSync(bin, ['demo'], { cwd: elsewhere, encoding: 'utf8', timeout: 60_000 });
    expect(demo.stderr).toBe('');
    expect(demo.stdout).toContain('demo OK');
    expect(demo.status).toBe(0);
    // The recipients column says what its numbers are: accepted of those sent, then the refused.
    expect(demo.stdout).toContain('| RCPT accepted/sent (refused) |');
    expect(demo.stdout).toMatch(/\| 3 \| AUTH alice \| alice@gmail\.example \| 1\/2 \(nobody@example\.net\) \|/);
  }, 70_000);

  it('the installed command runs `sandbox` from another folder and stops on SIGTERM', async () => {
    const child = spawn(join(prefix, 'bin', 'xoauth2-relay'), ['sandbox', '--dir', join(elsewhere, 'sbx'), '--listen-port', '0', '--http-port', '0'], { cwd: elsewhere, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const deadline = Date.now() + 30_000;
    while (!out.includes('Ctrl-C stops it') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(out).toContain(`relay config written to ${join(elsewhere, 'sbx', 'relay.yaml')}`);
    // The sandbox's CA is made at run time (no key ships in the package) and trusted by the config it wrote.
    const caFile = /ca_file: (\S+)/.exec(readFileSync(join(elsewhere, 'sbx', 'relay.yaml'), 'utf8'))?.[1] ?? '';
    expect(readFileSync(caFile, 'utf8')).toMatch(/^-----BEGIN CERTIFICATE-----/);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 40_000);
});

const USER = 'xoauth2-relay';
const UNIT = 'etc/systemd/system/xoauth2-relay.service';

// `scripts/install.sh --system` as docs/operations.md tells an operator to run it, into a
// temporary root (ROOT=...) so the machine's /etc is left alone: the service user, the folders
// and files with their owners and modes, and the unit. Then the unit's own ExecStart line runs as
// the service user (setpriv, as systemd's User= would) in a mount namespace where the temporary
// root's /etc, /var/lib and /usr/local stand in for the real ones, so every path is the unit's;
// and `systemd-analyze verify` checks the unit as installed, in the same namespace.
describe('scripts/install.sh --system', () => {
  const root = mkdtempSync(join(tmpdir(), 'xoauth2-relay-root-'));
  let uid: number;
  let gid: number;

  const install = () =>
    spawnSync('bash', [join(ROOT, 'scripts', 'install.sh'), '--system'], { cwd: tmpdir(), env: { ...process.env, ROOT: root, SKIP_BUILD: '1' }, encoding: 'utf8', timeout: 280_000 });

  /** A shell line run in a mount namespace where the temporary root's folders are the system's. */
  const inRoot = (line: string) => [
    'unshare',
    '-m',
    'sh',
    '-c',
    `mount -t overlay overlay -o lowerdir=${root}/etc:/etc /etc && mount --bind ${root}/var/lib /var/lib && mount --bind ${root}/usr/local /usr/local && ${line}`,
  ];
  const run = ([cmd, ...args]: string[]) => spawnSync(cmd!, args, { encoding: 'utf8', timeout: 60_000 });
  /** ExecStart as systemd runs it: WorkingDirectory, UMask, User/Group with their groups, NoNewPrivileges. */
  const asService = (execStart: string) => inRoot(`cd /var/lib/xoauth2-relay && umask 0077 && exec setpriv --reuid=${USER} --regid=${USER} --init-groups --no-new-privs ${execStart}`);

  beforeAll(() => {
    // The target system's account files, which useradd --prefix edits in place of the machine's.
    mkdirSync(join(root, 'etc'));
    for (const f of ['passwd', 'group', 'shadow', 'gshadow', 'login.defs']) if (existsSync(`/etc/${f}`)) copyFileSync(`/etc/${f}`, join(root, 'etc', f));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('creates the user, the folders and files with owners and modes the service can use, and the unit', () => {
    const r = install();
    expect(r.stdout + r.stderr).toContain(`created user ${USER}`);
    expect(r.status).toBe(0);
    const entry = readFileSync(join(root, 'etc', 'passwd'), 'utf8').split('\n').find((l) => l.startsWith(`${USER}:`))!;
    expect(entry).toMatch(/:\/var\/lib\/xoauth2-relay:\/usr\/sbin\/nologin$/);
    [uid, gid] = entry.split(':').slice(2, 4).map(Number) as [number, number];
    expect(readFileSync('/etc/passwd', 'utf8')).not.toContain(`\n${USER}:x:${uid}:`);

    const mode = (p: string) => {
      const s = statSync(join(root, p));
      return { uid: s.uid, gid: s.gid, mode: (s.mode & 0o777).toString(8) };
    };
    expect(mode('etc/xoauth2-relay')).toEqual({ uid: 0, gid, mode: '750' });
    expect(mode('etc/xoauth2-relay/relay.yaml')).toEqual({ uid: 0, gid, mode: '640' });
    expect(mode('etc/xoauth2-relay/env')).toEqual({ uid: 0, gid, mode: '640' });
    expect(mode('var/lib/xoauth2-relay')).toEqual({ uid, gid, mode: '700' });
    expect(mode(UNIT).mode).toBe('644');
    // About 15 s idle; minutes on a machine loaded with other builds (npm install of the tarball).
  }, 300_000);

  it("the unit's ExecStart, run as the service user, reads its config and writes its store", async () => {
    const execStart = /^ExecStart=(.+)$/m.exec(readFileSync(join(root, UNIT), 'utf8'))![1]!;
    expect(execStart).toBe('/usr/local/bin/xoauth2-relay serve --config /etc/xoauth2-relay/relay.yaml');
    // Free ports in place of the starter's 2525 and 9090, which another test may hold; the file keeps its owner and mode.
    const config = join(root, 'etc', 'xoauth2-relay', 'relay.yaml');
    const [smtp, http] = [await freePort(), await freePort()];
    writeFileSync(config, readFileSync(config, 'utf8').replace('port: 2525', `port: ${smtp}`).replace('port: 9090', `port: ${http}`));

    const [cmd, ...args] = asService(execStart);
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const deadline = Date.now() + 30_000;
    while (!out.includes('"event":"listening"') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(out).toContain(`"event":"listening","host":"127.0.0.1","port":${smtp}`);
    expect((await fetch(`http://127.0.0.1:${http}/healthz`)).status).toBe(200);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    // The store is the service user's, private to it (UMask=0077).
    const db = statSync(join(root, 'var', 'lib', 'xoauth2-relay', 'relay.db'));
    expect([db.uid, db.gid, (db.mode & 0o777).toString(8)]).toEqual([uid, gid, '600']);
  }, 60_000);

  it('a config folder the service user cannot enter is "permission denied as user xoauth2-relay", and install.sh --system repairs it', () => {
    // What the old directions left: root:root 0750.
    const etc = join(root, 'etc', 'xoauth2-relay');
    chownSync(etc, 0, 0);
    chmodSync(etc, 0o750);
    const checkConfig = asService('/usr/local/bin/xoauth2-relay check-config --config /etc/xoauth2-relay/relay.yaml');
    const r = run(checkConfig);
    expect(r.stderr).toContain('cannot read /etc/xoauth2-relay/relay.yaml (permission denied) as user xoauth2-relay');
    expect(r.stderr).not.toContain('does not exist');
    expect(r.status).toBe(2);

    expect(install().status).toBe(0);
    expect(statSync(etc).gid).toBe(gid);
    const again = run(checkConfig);
    expect(again.stdout).toContain('# /etc/xoauth2-relay/relay.yaml: OK');
    expect(again.status).toBe(0);
  }, 300_000);

  it('systemd-analyze verify accepts the unit as installed', () => {
    const r = run(inRoot(`systemd-analyze verify /${UNIT}`));
    expect(r.error, 'systemd-analyze missing: scripts/test-deps.sh installs Debian systemd').toBeUndefined();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  }, 70_000);
});
