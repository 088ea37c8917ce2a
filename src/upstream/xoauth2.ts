// The SASL XOAUTH2 initial response (Google: developers.google.com/gmail/imap/xoauth2-protocol,
// Microsoft: learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth):
//
//   base64("user=" + user + "\x01auth=Bearer " + accessToken + "\x01\x01")
//
// The result is a credential: it must never be logged, stored on an object or put in an error.

// A \x01 in either field would let it add or end SASL fields; CR/LF would end the AUTH line.
const CONTROL = /[\x00-\x1f\x7f]/;

export function xoauth2String(user: string, accessToken: string): string {
  // The messages name the field, never its value: the token is a secret.
  if (!user || CONTROL.test(user)) throw new TypeError('xoauth2String: user is empty or contains a control character');
  if (!accessToken || CONTROL.test(accessToken)) {
    throw new TypeError('xoauth2String: access token is empty or contains a control character');
  }
  return Buffer.from(`user=${user}\x01auth=Bearer ${accessToken}\x01\x01`, 'utf8').toString('base64');
}
