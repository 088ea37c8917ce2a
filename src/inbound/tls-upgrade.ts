// STARTTLS on the inbound side (RFC 3207 §4.2): the session's socket becomes a TLS server socket
// over the same connection. Whatever the client pipelined behind STARTTLS arrived in clear: the
// session discards it and never runs it inside the TLS session (CVE-2011-0411 and kin), and forgets
// EHLO and AUTH (the client must say EHLO again).
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';

/** `raw` must have no listeners of the session left on it; `onSecure` runs once the handshake is done. */
export function upgradeToTls(raw: Socket, context: SecureContext, onSecure: () => void): TLSSocket {
  // A socket the session had paused: the TLS socket reads the connection from here on.
  if (raw.isPaused()) raw.resume();
  const secure = new TLSSocket(raw, { isServer: true, secureContext: context });
  secure.once('secure', onSecure);
  return secure;
}
