// Encryption at rest for everything secret the store keeps (access and refresh tokens):
// AES-256-GCM with a random 96-bit nonce per write, and the record's key (the account email)
// as additional authenticated data so a sealed blob cannot be moved to another account's row.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from '../config/errors.js';
import { assertPrivateCredential } from './credential-file.js';

const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export class Sealer {
  private constructor(private readonly key: Buffer) {}

  /**
   * Key from XOAUTH2_RELAY_KEY (64 hex digits or base64 of 32 bytes); else from `keyFile`,
   * generated on first use with mode 0600 so only the relay's user can read it; an existing file
   * another user owns or can read is refused (assertPrivateCredential).
   */
  static fromEnvOrFile(env: NodeJS.ProcessEnv, keyFile: string): Sealer {
    const fromEnv = env.XOAUTH2_RELAY_KEY;
    if (fromEnv !== undefined) return new Sealer(parseKey(fromEnv, 'XOAUTH2_RELAY_KEY'));
    if (existsSync(keyFile)) {
      assertPrivateCredential(keyFile, 'the store\'s encryption key', 'XOAUTH2_RELAY_KEY');
      return new Sealer(parseKey(readFileSync(keyFile, 'utf8').trim(), keyFile));
    }
    mkdirSync(dirname(keyFile), { recursive: true });
    const key = randomBytes(32);
    writeFileSync(keyFile, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
    return new Sealer(key);
  }

  /**
   * Key from XOAUTH2_RELAY_KEY only: a store shared by several instances needs the same key on
   * every one of them, which a key file generated on one host cannot give.
   */
  static fromSharedEnv(env: NodeJS.ProcessEnv): Sealer {
    const fromEnv = env.XOAUTH2_RELAY_KEY;
    if (fromEnv === undefined) {
      throw new ConfigError('a shared store (store.url) needs XOAUTH2_RELAY_KEY, the same on every instance', 'XOAUTH2_RELAY_KEY');
    }
    return new Sealer(parseKey(fromEnv, 'XOAUTH2_RELAY_KEY'));
  }

  static fromKey(key: Buffer): Sealer {
    if (key.length !== 32) throw new Error('key must be 32 bytes');
    return new Sealer(key);
  }

  seal(plaintext: string, aad: string): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
    cipher.setAAD(Buffer.from(aad));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return Buffer.concat([Buffer.from([VERSION]), nonce, cipher.getAuthTag(), body]);
  }

  /** Null when the blob was sealed with another key or tampered with: the caller starts afresh. */
  open(blob: Buffer, aad: string): string | null {
    if (blob.length < 1 + NONCE_BYTES + TAG_BYTES || blob[0] !== VERSION) return null;
    try {
      const nonce = blob.subarray(1, 1 + NONCE_BYTES);
      const tag = blob.subarray(1 + NONCE_BYTES, 1 + NONCE_BYTES + TAG_BYTES);
      const decipher = createDecipheriv('aes-256-gcm', this.key, nonce);
      decipher.setAAD(Buffer.from(aad));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(blob.subarray(1 + NONCE_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      return null;
    }
  }
}

function parseKey(text: string, where: string): Buffer {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  const b = Buffer.from(text, 'base64');
  if (b.length === 32) return b;
  throw new ConfigError('the encryption key must be 64 hex digits or base64 of 32 bytes', where);
}
