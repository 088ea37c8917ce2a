// The provider's own id for an accepted message, read from its 250 reply to the end of DATA, so
// the `transaction` line can be matched with the provider's message trace (Google's Email Log
// Search, Exchange's message trace) or its bounce. No standard says where it is; these are the
// forms the providers write (the raw reply is logged beside it, so an unknown form loses nothing):
//   Gmail:     250 2.0.0 OK  1700000000 d2-20020a05600c0c4100b0040b4b9c8a5asm123456wmq.1 - gsmtp
//   Exchange:  250 2.0.0 OK <AM0PR01MB1234...@AM0PR01MB1234.eurprd01.prod.outlook.com> [Hostname=...]
//   Postfix:   250 2.0.0 Ok: queued as 4Bc1Yz3abc
const FORMS: RegExp[] = [/^(?:\d\.\d{1,3}\.\d{1,3} )?OK\s+\d+ (\S+) - gsmtp/i, /^(?:\d\.\d{1,3}\.\d{1,3} )?OK <([^<>\s]+)>/i, /queued as ([A-Za-z0-9._-]+)/i];

/** The queue id in a reply's text (its last line), or undefined when the provider wrote none we know. */
export function queueIdOf(text: string): string | undefined {
  for (const form of FORMS) {
    const m = form.exec(text);
    if (m) return m[1];
  }
  return undefined;
}
