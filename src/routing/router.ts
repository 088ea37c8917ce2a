// Which account sends a transaction (SPEC "Routing"):
//  1. an authenticated session sends through its own account; with `senders` set, MAIL FROM
//     must match one of them;
//  2. an unauthenticated session from a trusted network is routed by MAIL FROM, an exact
//     address winning over a *@domain pattern; every account that lists the winning entry is a
//     candidate (an account pool), in config order, and the relay picks among them;
//  3. anyone else must authenticate: the relay is never open.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { BlockList } from 'node:net';
import { domainToASCII } from 'node:url';
import { addressIn, networkList } from '../config/networks.js';
import { RelayError } from '../errors/registry.js';
import type { Account } from './account.js';

export interface SessionIdentity {
  /** The account the session authenticated as, if it did. */
  account: Account | null;
  remoteAddress: string;
}

/**
 * An address with its domain in one form: lower case, A-labels (node:url's domainToASCII), so
 * `info@xn--mnchen-3ya.example` and `info@münchen.example` are the same sender. Only for
 * matching: the address itself goes upstream as the client wrote it.
 */
export function canonicalAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at === -1) return address.toLowerCase();
  return address.slice(0, at).toLowerCase() + '@' + canonicalDomain(address.slice(at + 1));
}

function canonicalDomain(domain: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(domain) && !/xn--/i.test(domain)) return domain.toLowerCase();
  return domainToASCII(domain.toLowerCase()) || domain.toLowerCase();
}

const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1);

/** `*@domain` matches any address at that domain; anything else matches itself. */
export function matchesSender(pattern: string, address: string): boolean {
  const a = canonicalAddress(address);
  return pattern.startsWith('*@') ? domainOf(a) === canonicalDomain(pattern.slice(2)) : canonicalAddress(pattern) === a;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Client addresses whose trust, and senders whose pool, are remembered (each cache starts over beyond it). */
const TRUST_CACHE_MAX = 4096;

export class Router {
  private readonly byEmail = new Map<string, Account>();
  private readonly exact = new Map<string, Account[]>();
  private readonly byDomain = new Map<string, Account[]>();
  private readonly trusted: BlockList;
  private readonly trustCache = new Map<string, boolean>();
  private readonly poolCache = new Map<string, readonly Account[]>();

  constructor(accounts: readonly Account[], trustedNetworks: readonly string[]) {
    // Accounts that claim the same sender form a pool, kept in config order (the tie-break).
    for (const a of accounts) {
      this.byEmail.set(a.email, a);
      for (const s of new Set(a.senders)) {
        const map = s.startsWith('*@') ? this.byDomain : this.exact;
        const key = s.startsWith('*@') ? canonicalDomain(s.slice(2)) : canonicalAddress(s);
        const pool = map.get(key);
        if (pool) pool.push(a);
        else map.set(key, [a]);
      }
    }
    this.trusted = networkList(trustedNetworks);
  }

  account(email: string): Account | null {
    return this.byEmail.get(email) ?? null;
  }

  isTrusted(remoteAddress: string): boolean {
    // Asked at every MAIL: BlockList.check builds a native SocketAddress each time (about 1 % of
    // the relay's CPU per message in a profile), so answers are kept; the router is replaced
    // whole when the trusted networks change, and the few client addresses an MTA relay sees
    // are bounded by TRUST_CACHE_MAX.
    let known = this.trustCache.get(remoteAddress);
    if (known === undefined) {
      known = this.checkTrusted(remoteAddress);
      if (this.trustCache.size >= TRUST_CACHE_MAX) this.trustCache.clear();
      this.trustCache.set(remoteAddress, known);
    }
    return known;
  }

  private checkTrusted(remoteAddress: string): boolean {
    return addressIn(this.trusted, remoteAddress);
  }

  /**
   * The account for AUTH PLAIN/LOGIN credentials, or null. The password comparison takes the
   * same time whatever the input (digests of equal length), so timing leaks nothing.
   */
  authenticate(username: string, password: string): Account | null {
    const account = this.byEmail.get(username.trim().toLowerCase());
    const expected = digest(account?.password ?? '\0no-password');
    const ok = timingSafeEqual(expected, digest(password));
    return ok && account?.password != null ? account : null;
  }

  /** The first-configured candidate: the account that sends when none is over its limits. */
  route(session: SessionIdentity, mailFrom: string): Account {
    return this.candidates(session, mailFrom)[0]!;
  }

  /**
   * The accounts that may send a transaction with this MAIL FROM (never empty), or the
   * RelayError to answer. An authenticated session keeps its own account: a pool never
   * reroutes a client that said who it is.
   */
  candidates(session: SessionIdentity, mailFrom: string): readonly Account[] {
    if (!session.account) {
      if (!this.isTrusted(session.remoteAddress)) throw new RelayError('AUTH_REQUIRED');
      return this.poolFor(mailFrom);
    }
    const from = canonicalAddress(mailFrom);
    const { senders } = session.account;
    // The null sender names no one: an authenticated account may send it (the provider decides).
    if (from !== '' && senders.length && !senders.some((p) => matchesSender(p, from))) {
      throw new RelayError('SENDER_NOT_ALLOWED', `${session.account.email} may not send as ${from || '<>'}`);
    }
    return [session.account];
  }

  /**
   * The pool of a trusted session's sender. Asked at every MAIL with the few senders an MTA
   * relays for: kept by the address as written, so that it is made canonical (lower case,
   * A-labels) once, not at each message (the router is replaced whole when accounts change).
   */
  private poolFor(mailFrom: string): readonly Account[] {
    const known = this.poolCache.get(mailFrom);
    if (known) return known;
    const from = canonicalAddress(mailFrom);
    const pool = this.exact.get(from) ?? (from ? this.byDomain.get(domainOf(from)) : undefined);
    if (!pool) throw new RelayError('NO_ROUTE', `no account sends as ${from || '<>'}`);
    if (this.poolCache.size >= TRUST_CACHE_MAX) this.poolCache.clear();
    this.poolCache.set(mailFrom, pool);
    return pool;
  }
}
