// Issue 18 item 1: the relay adopts a credential file (relay.key, admin.token) only when no other
// local user owns it or can read it; otherwise it refuses to start (ConfigError, exit 2) and
// says how to make the file private. The suite runs as root in CI, so the owner case is real:
// a file chowned to nobody.
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN_FILE, adminTokenPath, ensureAdminToken } from '../../src/admin/admin-token.js';
import { ConfigError } from '../../src/config/errors.js';
import { Sealer } from '../../src/store/sealer.js';
import { thrown } from '../helpers/thrown.js';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-credential-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const config = () => ({ store: { path: join(dir, 'relay.db') }, source: null, http: { bearer_token: null } }) as unknown as Parameters<typeof ensureAdminToken>[0];
const KEY = 'b'.repeat(64);
const TOKEN = 'committed-admin-token-0123456789abcdef';

/** Each credential file: how the relay adopts it. */
const cases = [
  { name: 'relay.key', content: KEY, adopt: (file: string) => Sealer.fromEnvOrFile({}, file), what: "the store's encryption key", key: 'XOAUTH2_RELAY_KEY' },
  { name: ADMIN_TOKEN_FILE, content: TOKEN, adopt: () => ensureAdminToken(config()), what: 'the HTTP API credential', key: 'http.bearer_token' },
];

describe('credential files', () => {
  for (const c of cases) {
    it(`${c.name} with mode 0600 owned by the relay's user is adopted`, () => {
      const file = join(dir, c.name);
      writeFileSync(file, c.content + '\n', { mode: 0o600 });
      expect(() => c.adopt(file)).not.toThrow();
      if (c.name === ADMIN_TOKEN_FILE) expect(ensureAdminToken(config())).toBe(TOKEN);
    });

    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      it(`${c.name} with mode 0${mode.toString(8)} is refused: why, and chmod 600`, () => {
        const file = join(dir, c.name);
        writeFileSync(file, c.content + '\n');
        chmodSync(file, mode);
        const e = thrown(() => c.adopt(file), ConfigError);
        expect(e.path).toBe(c.key);
        expect(e.message).toContain(`${file} (${c.what}) has mode 0${mode.toString(8)}: other users can read it`);
        expect(e.message).toContain(`chmod 600 ${file}`);
        // The credential itself is never in the error.
        expect(e.message).not.toContain(c.content);
      });
    }

    it(`${c.name} owned by another user is refused: why, and chown`, () => {
      const file = join(dir, c.name);
      writeFileSync(file, c.content + '\n', { mode: 0o600 });
      if (isRoot) {
        chownSync(file, NOBODY, NOBODY);
        const e = thrown(() => c.adopt(file), ConfigError);
        expect(e.message).toContain(`${file} (${c.what}) is owned by uid ${NOBODY}, not by the relay's user (uid 0)`);
        expect(e.message).toMatch(/chown 0 .* && chmod 600 /);
        expect(e.message).not.toContain(c.content);
      } else {
        // Not root: no file of another user can be made here; the relay's own file is adopted.
        expect(() => c.adopt(file)).not.toThrow();
      }
    });
  }

  it('admin.token with a Redis store and no relay.yaml goes to ./data/, never loose in the current directory', () => {
    const path = adminTokenPath({ store: { url: 'redis://127.0.0.1:6379', key_prefix: 'x:' }, source: null } as Parameters<typeof adminTokenPath>[0]);
    expect(path).toBe(join(process.cwd(), 'data', ADMIN_TOKEN_FILE));
    const beside = adminTokenPath({ store: { url: 'redis://127.0.0.1:6379', key_prefix: 'x:' }, source: join(dir, 'relay.yaml') } as Parameters<typeof adminTokenPath>[0]);
    expect(beside).toBe(join(dir, ADMIN_TOKEN_FILE));
  });
});
