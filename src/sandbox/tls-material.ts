// The sandbox provider's TLS material, made at run time: a throwaway CA and a localhost server
// certificate it signs, written into a private temporary folder for this process and removed at
// exit. Nothing with a private key is committed or shipped; each run has its own CA, trusted
// only by the relay the sandbox writes a config for (`providers.*.ca_file`). Made with the
// `selfsigned` library: Node 20 has no X.509 generator of its own, and this is no product code.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from 'selfsigned';

export interface SandboxTlsFiles {
  ca: string;
  cert: string;
  key: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

export async function makeSandboxTls(): Promise<SandboxTlsFiles> {
  const notBeforeDate = new Date(Date.now() - DAY_MS);
  const notAfterDate = new Date(Date.now() + 365 * DAY_MS);
  const ca = await generate([{ name: 'commonName', value: 'xoauth2-relay sandbox CA (throwaway)' }], {
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  const server = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] },
    ],
  });
  const dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-sandbox-tls-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const files = { ca: join(dir, 'ca.crt'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
  writeFileSync(files.ca, ca.cert);
  writeFileSync(files.cert, server.cert);
  writeFileSync(files.key, server.private, { mode: 0o600 });
  return files;
}
