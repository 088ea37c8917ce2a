// `xoauth2-relay sandbox` as a user runs it: the sandbox provider in the foreground writing a
// relay.yaml, then `serve` against that file in another process, a message through the relay
// from an MTA's pipelined group, `accounts list` and the status page; both stop on SIGTERM.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SANDBOX_PASSWORD } from '../../src/cli/sandbox.js';
import { freePort, runCliAsync, spawnCli, startServe, type CliProcess, type ServeProcess } from '../helpers/cli.js';
import { RawSmtp, line } from '../helpers/smtp-client.js';
import { rawMessage } from '../helpers/stack.js';

describe('xoauth2-relay sandbox', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-sandbox-cmd-'));
  let sandbox: CliProcess | null = null;
  let relay: ServeProcess | null = null;

  afterAll(async () => {
    relay?.child.kill('SIGKILL');
    sandbox?.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes a relay.yaml that serve runs on; a message goes through to the sandbox; both stop cleanly', async () => {
    const [listenPort, httpPort] = [await freePort(), await freePort()];
    sandbox = spawnCli(['sandbox', '--dir', dir, '--listen-port', String(listenPort), '--http-port', String(httpPort)]);
    await sandbox.waitFor(/Ctrl-C stops it/);
    const file = join(dir, 'relay.yaml');
    expect(sandbox.stdout()).toContain(`relay config written to ${file}`);
    const doc = parse(readFileSync(file, 'utf8')) as { listen: { port: number }; accounts: Array<{ email: string; upstream?: string }> };
    expect(doc.listen.port).toBe(listenPort);
    expect(doc.accounts.map((a) => a.email)).toEqual(['alice@gmail.example', 'bob@contoso.example', 'dan@fabrikam.example', 'eve@gmail.example']);

    relay = await startServe(['--config', file], { cwd: dir });
    expect(relay.port).toBe(listenPort);

    // An MTA with AUTH, pipelining MAIL, RCPT and DATA (RFC 2920).
    const { client } = await RawSmtp.connect(relay.port);
    await client.cmd('EHLO mta.test');
    expect((await client.authPlain('alice@gmail.example', SANDBOX_PASSWORD)).code).toBe(235);
    client.write('MAIL FROM:<alice@gmail.example>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n');
    expect([(await client.read()).code, (await client.read()).code, (await client.read()).code]).toEqual([250, 250, 354]);
    client.write(rawMessage('alice@gmail.example', ['carol@example.net'], 'sandbox-command') + '.\r\n');
    expect(line(await client.read(15_000))).toMatch(/^250 /);
    client.close();
    // The shared mailbox through its delegate, from the trusted network without AUTH.
    const { client: trusted } = await RawSmtp.connect(relay.port);
    await trusted.cmd('EHLO mta.test');
    trusted.write('MAIL FROM:<info@contoso.example>\r\nRCPT TO:<dave@example.net>\r\nDATA\r\n');
    expect([(await trusted.read()).code, (await trusted.read()).code, (await trusted.read()).code]).toEqual([250, 250, 354]);
    trusted.write(rawMessage('info@contoso.example', ['dave@example.net'], 'sandbox-shared') + '.\r\n');
    expect(line(await trusted.read(15_000))).toMatch(/^250 /);
    trusted.close();
    await sandbox.waitFor(/received via SMTP: as alice@gmail\.example from <alice@gmail\.example> to <carol@example\.net>/);
    await sandbox.waitFor(/received via SMTP: as bob@contoso\.example from <info@contoso\.example> to <dave@example\.net>/);

    const list = await runCliAsync(['accounts', 'list', '--config', file], { cwd: dir });
    expect(list.status, list.stderr).toBe(0);
    expect(list.stderr).toMatch(/4 account\(s\), from the running relay/);
    const page = await fetch(`http://127.0.0.1:${httpPort}/`);
    expect(page.status).toBe(200);

    relay.child.kill('SIGTERM');
    expect(await relay.exited).toBe(0);
    sandbox.child.kill('SIGTERM');
    expect(await sandbox.exited).toBe(0);
    expect(sandbox.stdout()).toContain('sandbox stopped');
  }, 90_000);

  it('never overwrites a relay.yaml it did not write', async () => {
    const own = mkdtempSync(join(tmpdir(), 'xoauth2-relay-sandbox-own-'));
    try {
      writeFileSync(join(own, 'relay.yaml'), 'listen: { port: 25 }\n');
      const r = await runCliAsync(['sandbox', '--dir', own]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('was not written by `sandbox`');
      expect(readFileSync(join(own, 'relay.yaml'), 'utf8')).toBe('listen: { port: 25 }\n');
      expect(existsSync(join(own, 'relay.db'))).toBe(false);
    } finally {
      rmSync(own, { recursive: true, force: true });
    }
  });
});
