// What a token endpoint may answer (issue 10 item 5): a body of bounded size, finished within
// the request timeout, with tokens of bounded length. A real HTTP server on 127.0.0.1 plays the
// hostile endpoint: a huge token, a huge declared body, a body dripped forever.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BODY_BYTES, MAX_TOKEN_CHARS, requestToken } from '../../src/tokens/grants/token-request.js';
import { TokenGrantError } from '../../src/tokens/grant.js';
import { rejection } from '../helpers/thrown.js';

type Behaviour = (res: ServerResponse) => void;

const refused = (p: Promise<unknown>) => rejection(p, TokenGrantError);

describe('requestToken against a hostile endpoint', () => {
  let server: Server;
  let url: string;
  let behaviour: Behaviour = () => undefined;
  const open = new Set<ServerResponse>();

  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      open.add(res);
      res.on('close', () => open.delete(res));
      behaviour(res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const ask = (timeoutMs = 1_000) => requestToken(url, new URLSearchParams({ grant_type: 'refresh_token' }), timeoutMs);

  it('takes an ordinary answer', async () => {
    behaviour = (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: 'at-1', expires_in: 3600, refresh_token: 'rt-2' }));
    expect(await ask()).toMatchObject({ accessToken: 'at-1', refreshToken: 'rt-2' });
  });

  it('refuses a body larger than the bound (streamed, no length given) without reading it all', async () => {
    let written = 0;
    behaviour = (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"expires_in":3600,"access_token":"');
      const chunk = 'A'.repeat(64 * 1024);
      const more = () => {
        // Up to 50 MB, if the client keeps reading.
        while (written < 50 * 1024 * 1024 && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        if (!res.destroyed) res.end('"}');
      };
      more();
    };
    const err = await refused(ask(10_000));
    expect(err).toBeInstanceOf(TokenGrantError);
    expect(err.kind).toBe('bad_response');
    expect((err as Error).message).toMatch(new RegExp(`body over ${MAX_BODY_BYTES} bytes`));
    expect(written).toBeLessThan(20 * 1024 * 1024);
  });

  it('refuses a declared length over the bound at once', async () => {
    behaviour = (res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(400 * 1024 * 1024) });
      res.write('{"access_token":"');
    };
    const started = Date.now();
    const err = await refused(ask(5_000));
    expect((err as Error).message).toMatch(/body of 419430400 bytes/);
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it('refuses an access or refresh token longer than the bound', async () => {
    for (const key of ['access_token', 'refresh_token']) {
      behaviour = (res) =>
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: 'at', refresh_token: 'rt', expires_in: 3600, [key]: 'T'.repeat(MAX_TOKEN_CHARS + 1) }));
      const err = await refused(ask());
      expect(err.kind).toBe('bad_response');
      expect((err as Error).message).toContain(`a ${key} of ${MAX_TOKEN_CHARS + 1} characters`);
    }
  });

  it('gives up on a body dripped forever at the request timeout, and closes the connection', async () => {
    let timer: NodeJS.Timeout | undefined;
    behaviour = (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"access_token":"');
      timer = setInterval(() => res.write('A'), 50);
      res.on('close', () => clearInterval(timer));
    };
    const started = Date.now();
    const err = await refused(ask(1_000));
    const took = Date.now() - started;
    expect(err.kind).toBe('timeout');
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(5_000);
    for (let i = 0; open.size && i < 100; i++) await new Promise((r) => setTimeout(r, 20));
    expect(open.size).toBe(0);
  });
});
