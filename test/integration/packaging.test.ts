// What ships in packaging/ and how the command is installed, checked as an operator uses them:
// the alert rules by promtool, the dashboard against what Grafana needs, every metric either
// names against a running relay's /metrics, and the install script into a temporary prefix,
// run from another folder.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildDist, ROOT } from '../helpers/cli.js';
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

describe('scripts/install.sh', () => {
  let prefix: string;
  let elsewhere: string;

  beforeAll(() => {
    prefix = mkdtempSync(join(tmpdir(), 'xoauth2-relay-prefix-'));
    elsewhere = mkdtempSync(join(tmpdir(), 'xoauth2-relay-elsewhere-'));
    buildDist();
  }, 180_000);
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
  }, 70_000);
});
