// The token lifecycle seen from outside: revoked tokens, a token endpoint that is down,
// Microsoft's scope and rotation, and restarts that reuse the encrypted store.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { sendOnce } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, type Stack } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

/** Sends one message from a trusted client; returns the final reply (or the first refusal). */
async function send(stack: Stack, from: string, tag: string): Promise<{ reply: string; raw: string }> {
  const raw = rawMessage(from, ['to@example.net'], tag);
  return { reply: await sendOnce(stack.port, from, ['to@example.net'], raw), raw };
}

const fastRetry = { tokens: { retry_min_ms: 100, retry_max_ms: 400 } };

describe('token lifecycle end to end', () => {
  it('a revoked cached token (upstream 535) is refreshed once and the message still goes through', async () => {
    const stack = await startStack({ accounts: [{ email: 'g@gmail.test', kind: 'google', senders: ['g@gmail.test'] }] });
    try {
      const tokens = stack.sandbox.tokens.requests();
      // The provider forgets the token and drops the pooled connection authenticated with it.
      stack.sandbox.state.revokeAccessTokens('g@gmail.test');
      stack.sandbox.smtp.dropAllConnections();
      const { reply, raw } = await send(stack, 'g@gmail.test', 'after-revoke');
      expect(reply).toMatch(/^250 /);
      expect(stack.sandbox.messages.filter((m) => m.sha256 === sha256(raw))).toHaveLength(1);
      expect(stack.sandbox.tokens.requests() - tokens).toBe(1);
      const auths = stack.sandbox.smtp.authAttempts().map((a) => a.outcome);
      expect(auths).toContain('unknown-token');
      expect(auths.at(-1)).toBe('ok');
    } finally {
      await stack.stop();
    }
  });

  it('a token endpoint that is down gives 454 4.7.0; the message resent after recovery arrives once', async () => {
    const stack = await startStack({ accounts: [{ email: 'm@outlook.test', kind: 'microsoft', senders: ['m@outlook.test'] }], overrides: fastRetry });
    try {
      stack.sandbox.tokens.injectFault({ status: 500 });
      stack.sandbox.state.revokeAccessTokens('m@outlook.test');
      stack.sandbox.smtp.dropAllConnections();
      const first = await send(stack, 'm@outlook.test', 'endpoint-down');
      expect(first.reply).toMatch(/^454 4\.7\.0 /);
      expect(stack.sandbox.messages.filter((m) => m.sha256 === sha256(first.raw))).toHaveLength(0);

      stack.sandbox.tokens.clearFaults();
      await until(() => stack.app.relay.tokens.statusOf('m@outlook.test')?.health === 'healthy');
      const again = await send(stack, 'm@outlook.test', 'endpoint-down'); // same bytes, as an MTA retries
      expect(again.reply).toMatch(/^250 /);
      expect(stack.sandbox.messages.filter((m) => m.sha256 === sha256(first.raw))).toHaveLength(1);
    } finally {
      await stack.stop();
    }
  });

  it('a failing account gets 454 while another account on the same relay keeps sending', async () => {
    const stack = await startStack({
      accounts: [
        { email: 'bad@gmail.test', kind: 'google', senders: ['bad@gmail.test'] },
        { email: 'good@gmail.test', kind: 'google', senders: ['good@gmail.test'] },
      ],
      overrides: fastRetry,
    });
    try {
      stack.sandbox.tokens.injectFault({ error: 'invalid_grant' }, { email: 'bad@gmail.test' });
      stack.sandbox.state.revokeAccessTokens('bad@gmail.test');
      stack.sandbox.smtp.dropAllConnections();
      expect((await send(stack, 'bad@gmail.test', 'bad-1')).reply).toMatch(/^454 4\.7\.0 /);
      expect((await send(stack, 'good@gmail.test', 'good-1')).reply).toMatch(/^250 /);
      expect(stack.app.relay.tokens.statusOf('bad@gmail.test')?.health).toBe('needs_consent');
    } finally {
      await stack.stop();
    }
  });

  it('the Microsoft grant sends its scope; a rotated refresh token is stored and used after a restart', async () => {
    // Tokens living 10 minutes are inside the 15-minute refresh lead, so the restart must fetch again.
    const sandbox = await SandboxProvider.start({ tokenLifetimeSec: 600 });
    const accounts = [{ email: 'rot@outlook.test', kind: 'microsoft' as const, senders: ['rot@outlook.test'] }];
    const first = await startStack({ accounts, provider: sandbox });
    try {
      const [grant] = sandbox.tokens.log('rot@outlook.test');
      expect(grant?.scope).toBe('https://outlook.office.com/SMTP.Send offline_access');
      await first.stopRelay();
      // The config still names the original refresh token, which rotation has made invalid.
      const configured = first.accounts.get('rot@outlook.test')!.refreshToken;
      expect(sandbox.state.credentials('rot@outlook.test').refreshToken).not.toBe(configured);

      const second = await startStack({ accounts: [{ ...accounts[0]!, extra: { refresh_token: configured } }], provider: sandbox, dir: first.dir });
      try {
        const log = sandbox.tokens.log('rot@outlook.test');
        expect(log).toHaveLength(2);
        expect(log[1]!.status).toBe(200); // the stored rotated token worked; the configured one would be invalid_grant
        expect((await send(second, 'rot@outlook.test', 'after-rotation')).reply).toMatch(/^250 /);
      } finally {
        await second.stopRelay();
      }
    } finally {
      await sandbox.stop();
    }
  });

  it('a restart reuses the stored token without a token request, and the store holds no secret in clear', async () => {
    const sandbox = await SandboxProvider.start();
    const accounts = [{ email: 'keep@gmail.test', kind: 'google' as const, senders: ['keep@gmail.test'], password: 'pw-in-clear-never-1' }];
    const first = await startStack({ accounts, provider: sandbox });
    try {
      expect(sandbox.tokens.requests()).toBe(1);
      await first.stopRelay();
      const second = await startStack({ accounts, provider: sandbox, dir: first.dir });
      let accessToken = '';
      try {
        expect(sandbox.tokens.requests()).toBe(1);
        accessToken = second.app.relay.tokens.current('keep@gmail.test')!.value;
        expect((await send(second, 'keep@gmail.test', 'after-restart')).reply).toMatch(/^250 /);
      } finally {
        await second.stopRelay();
      }
      const creds = sandbox.state.credentials('keep@gmail.test');
      const secrets = [creds.refreshToken, creds.clientSecret!, accessToken, 'pw-in-clear-never-1'];
      expect(secrets.every((s) => s.length > 8)).toBe(true);
      // relay.yaml is the operator's file (the test wrote the secrets into it); every other file is the relay's.
      const written = readdirSync(first.dir).filter((f) => f !== 'relay.yaml');
      expect(written.length).toBeGreaterThan(0);
      for (const file of written) {
        const bytes = readFileSync(join(first.dir, file));
        for (const s of secrets) expect(bytes.includes(s), `${file} contains a secret`).toBe(false);
      }
    } finally {
      await sandbox.stop();
    }
  });
});
