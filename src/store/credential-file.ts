// A credential file (relay.key, admin.token) is adopted only if no other local user could have
// read it or put it there: one they could read may have been copied, one they own may be theirs
// (a token file committed to a checkout, a key planted beside a store). Tightening the mode after
// the fact does not make a copied secret secret again, so the relay refuses to start and says
// how the operator makes the file private, rather than fixing it silently.
import { statSync } from 'node:fs';
import { ConfigError } from '../config/errors.js';

/**
 * Throws a ConfigError (exit 2) when `file` is owned by another user or readable or writable by
 * group or others. `what` names the credential; `key` the setting that replaces the file.
 */
export function assertPrivateCredential(file: string, what: string, key: string): void {
  const st = statSync(file);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new ConfigError(
      `${file} (${what}) is owned by uid ${st.uid}, not by the relay's user (uid ${uid}); the relay does not adopt a credential another user controls: ` +
        `if the file is yours, chown ${uid} ${file} && chmod 600 ${file}; if not, remove it and a new one is made`,
      key,
    );
  }
  const mode = st.mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(
      `${file} (${what}) has mode 0${mode.toString(8)}: other users can read it, so it may have been copied; the relay does not adopt it: ` +
        `chmod 600 ${file} if you know no one read it, else remove it (and, for a key, restore one from a backup)`,
      key,
    );
  }
}
