// Every reply code and enhanced status code the relay writes, named once with where the RFC
// defines it, so that a reply reads as what it means (C503BadSequence, SeProto5BadCmdOrSeq1)
// rather than as digits to look up. The naming follows mox's smtp/codes.go.
//
// Reply codes: RFC 5321 §4.2.2 (by number) and §4.2.3 (by command); AUTH's: RFC 4954 §4 and §6.
// Enhanced codes: RFC 3463 §3 (subject and detail, the registry of RFC 5248); the class digit is
// the reply's own (2, 4 or 5), so the constants hold "subject.detail" and coded() (./reply.ts)
// prefixes the class: the name says subject (Addr1, Sys3, Net4, Proto5, Msg6, Pol7) and ends in
// the detail number.

export const C214Help = 214; // RFC 5321 §4.2.2
export const C220ServiceReady = 220; // RFC 5321 §4.2.2; STARTTLS's go-ahead too, RFC 3207 §4
export const C221Closing = 221; // RFC 5321 §4.2.2
export const C235AuthSuccess = 235; // RFC 4954 §6
export const C250Completed = 250; // RFC 5321 §4.2.2
export const C334ContinueAuth = 334; // RFC 4954 §4
export const C354StartMailInput = 354; // RFC 5321 §4.2.2
export const C421ServiceUnavailable = 421; // RFC 5321 §4.2.2, §3.8: the server closes the channel
export const C451LocalError = 451; // RFC 5321 §4.2.2
export const C452InsufficientStorage = 452; // RFC 5321 §4.2.2; "too many recipients", §4.5.3.1.10
export const C454TempAuthFailure = 454; // RFC 4954 §6
export const C500SyntaxError = 500; // RFC 5321 §4.2.2: command unrecognized
export const C501ParamSyntaxError = 501; // RFC 5321 §4.2.2
export const C502NotImplemented = 502; // RFC 5321 §4.2.2
export const C503BadSequence = 503; // RFC 5321 §4.2.2
export const C504ParamNotImplemented = 504; // RFC 5321 §4.2.2; unknown AUTH mechanism, RFC 4954 §4
export const C530AuthRequired = 530; // RFC 4954 §6
export const C535AuthCredentialsInvalid = 535; // RFC 4954 §6
export const C538EncryptionRequired = 538; // RFC 4954 §6
export const C550MailboxUnavailable = 550; // RFC 5321 §4.2.2: also "policy reasons", §3.6.2
export const C552StorageExceeded = 552; // RFC 5321 §4.2.2; message too big, §4.5.3.1.10
export const C554TransactionFailed = 554; // RFC 5321 §4.2.2; "no valid recipients", §3.3
export const C555ParamsNotRecognized = 555; // RFC 5321 §4.2.2: MAIL/RCPT parameter

export const SeOther0 = '0.0'; // RFC 3463 §3.1: other undefined status
export const SeAddr1Other0 = '1.0'; // RFC 3463 §3.2
export const SeAddr1BadDestMailboxSyntax3 = '1.3'; // RFC 3463 §3.2
export const SeAddr1DestValid5 = '1.5'; // RFC 3463 §3.2
export const SeAddr1BadSenderSyntax7 = '1.7'; // RFC 3463 §3.2
export const SeSys3Other0 = '3.0'; // RFC 3463 §3.4
export const SeSys3NotAccepting2 = '3.2'; // RFC 3463 §3.4: system not accepting network messages
export const SeSys3NotCapable3 = '3.3'; // RFC 3463 §3.4: system not capable of selected features
export const SeSys3MsgTooBig4 = '3.4'; // RFC 3463 §3.4: message too big for system
export const SeNet4Other0 = '4.0'; // RFC 3463 §3.5
export const SeNet4NoAnswer1 = '4.1'; // RFC 3463 §3.5: no answer from host
export const SeNet4BadConnection2 = '4.2'; // RFC 3463 §3.5
export const SeNet4Congestion5 = '4.5'; // RFC 3463 §3.5: mail system congestion
export const SeProto5Other0 = '5.0'; // RFC 3463 §3.6
export const SeProto5BadCmdOrSeq1 = '5.1'; // RFC 3463 §3.6: invalid command
export const SeProto5Syntax2 = '5.2'; // RFC 3463 §3.6: syntax error
export const SeProto5TooManyRcpts3 = '5.3'; // RFC 3463 §3.6
export const SeProto5BadParams4 = '5.4'; // RFC 3463 §3.6: invalid command arguments
export const SeMsg6Other0 = '6.0'; // RFC 3463 §3.7
export const SeMsg6ConversionRequired3 = '6.3'; // RFC 3463 §3.7: conversion required but not supported
export const SeMsg6NonASCIIAddrNotPermitted7 = '6.7'; // RFC 6531 §3.7.1
export const SePol7Other0 = '7.0'; // RFC 3463 §3.8; also AUTH's "authentication required", RFC 4954 §6
export const SePol7DeliveryUnauthorized1 = '7.1'; // RFC 3463 §3.8: delivery not authorized, message refused
export const SePol7CryptoFailure5 = '7.5'; // RFC 3463 §3.8: cryptographic failure
export const SePol7AuthCredentialsInvalid8 = '7.8'; // RFC 4954 §6
export const SePol7EncryptionRequired11 = '7.11'; // RFC 4954 §6
