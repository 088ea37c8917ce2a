// A Google service account key file, as the Cloud console downloads it. Read when the config is
// loaded (a wrong file is a config error naming the key) and again at each token grant (a key
// rotated on disk is picked up without a restart). The private key is a secret: no message here
// quotes the file's content.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface ServiceAccountKey {
  /** The JWT issuer: `name@project.iam.gserviceaccount.com`. */
  clientEmail: string;
  /** The JWT `kid`, so Google checks the signature against the right one of the account's keys. */
  privateKeyId: string | null;
  privateKey: KeyObject;
  /** Where the assertion is sent, and its audience. */
  tokenUri: string;
}

export class ServiceAccountKeyError extends Error {
  override name = 'ServiceAccountKeyError';
}

export function readServiceAccountKey(path: string, defaultTokenUri: string): ServiceAccountKey {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ServiceAccountKeyError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new ServiceAccountKeyError(`${path} is not JSON (expected a service account key file downloaded from the Google Cloud console)`);
  }
  if (!doc || typeof doc !== 'object' || doc.type !== 'service_account') {
    throw new ServiceAccountKeyError(`${path} is not a service account key ("type" must be "service_account")`);
  }
  const clientEmail = doc.client_email;
  if (typeof clientEmail !== 'string' || !clientEmail.includes('@')) throw new ServiceAccountKeyError(`${path} lacks "client_email"`);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: String(doc.private_key ?? ''), format: 'pem' });
  } catch {
    throw new ServiceAccountKeyError(`${path}: "private_key" is not a PEM private key`);
  }
  if (privateKey.asymmetricKeyType !== 'rsa') throw new ServiceAccountKeyError(`${path}: "private_key" is not an RSA key (RS256 needs one)`);
  const tokenUri = doc.token_uri ?? defaultTokenUri;
  if (typeof tokenUri !== 'string' || !URL.canParse(tokenUri)) throw new ServiceAccountKeyError(`${path}: "token_uri" is not a URL`);
  return {
    clientEmail,
    privateKeyId: typeof doc.private_key_id === 'string' && doc.private_key_id ? doc.private_key_id : null,
    privateKey,
    tokenUri,
  };
}
