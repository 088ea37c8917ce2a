// The envelope of a mail transaction (RFC 5321 §2.3.1): what both engines carry between MAIL
// and the end of DATA, apart from the message itself.

/** ESMTP parameters of MAIL FROM as the inbound parser gave them (upper-case keys). */
export type MailParams = Record<string, string | boolean | undefined>;

export interface Envelope {
  mailFrom: string;
  rcptTo: string[];
}
