// A user's consent, as the sandbox plays it: Google's authorization endpoint with PKCE (RFC 7636)
// and a loopback redirect (RFC 8252), and Microsoft's device authorization grant (RFC 8628).
// A test stands in for the person at the browser: the authorization endpoint consents at once as
// the `login_hint` account (unless told to refuse), and a device code waits until the test
// approves or denies it. Both end in SandboxState.grantConsent: a new refresh token.
//
// Nothing here does I/O; the token endpoint carries requests in and answers out.
import { createHash } from 'node:crypto';
import { GOOGLE_MAIL_SCOPE, MICROSOFT_SMTP_SCOPE } from '../config/providers.js';
import {
  grantFailure,
  normaliseEmail,
  random,
  type GrantRefusal,
  type GrantResult,
  type OAuthErrorCode,
  type ProviderKind,
  type SandboxState,
} from './provider-state.js';

/** What the browser gets from the authorization endpoint. */
export type AuthorizeOutcome =
  | { redirect: string }
  // RFC 6749 §4.1.2.1: with an unknown client or a bad redirect_uri, the user is told, never redirected.
  | { status: 400; text: string };

/** The devicecode endpoint's answer: the codes to show, or an OAuth error. */
export type DeviceStart = { ok: true; body: Record<string, unknown> } | GrantRefusal;

/** Device-flow answers a test can make the next polls get, before the real state is consulted. */
export type DevicePollAnswer = 'authorization_pending' | 'slow_down';

export interface DeviceTiming {
  /** Seconds a client must wait between polls (RFC 8628 §3.2 `interval`); Microsoft says 5. */
  intervalSec: number;
  /** Seconds the device code lives; Microsoft says 900. */
  expiresInSec: number;
}

interface AuthorizationCode {
  clientId: string;
  redirectUri: string;
  challenge: string;
  email: string;
  scope: string;
  expiresAt: number;
  used: boolean;
}

interface DeviceCode {
  deviceCode: string;
  userCode: string;
  clientId: string;
  scope: string;
  tenant: string;
  expiresAt: number;
  approvedBy: string | null;
  denied: boolean;
  redeemed: boolean;
  answers: DevicePollAnswer[];
  /** State-clock times of every poll, so tests can check the client's pacing. */
  polls: number[];
}

const CODE_LIFETIME_MS = 10 * 60_000;
/** RFC 7636 §4.1: 43-128 characters of the unreserved set. */
const VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);
export const DEVICE_VERIFICATION_URI = 'https://microsoft.com/devicelogin';

export class SandboxConsent {
  private readonly codes = new Map<string, AuthorizationCode>();
  private readonly devices = new Map<string, DeviceCode>();
  private refuseNext = 0;
  private timing: DeviceTiming = { intervalSec: 5, expiresInSec: 900 };

  constructor(private readonly state: SandboxState) {}

  // ---- test controls -------------------------------------------------------------------

  /** The next `times` consents at the authorization endpoint are refused (error=access_denied). */
  refuseConsent(times = 1): void {
    this.refuseNext += times;
  }

  /** Interval and lifetime of device codes issued from now on. */
  setDeviceTiming(timing: Partial<DeviceTiming>): void {
    this.timing = { ...this.timing, ...timing };
  }

  /** User codes of device codes that are neither approved, denied nor expired. */
  pendingDeviceCodes(): string[] {
    const now = this.state.now();
    return [...this.devices.values()].filter((d) => !d.approvedBy && !d.denied && now < d.expiresAt).map((d) => d.userCode);
  }

  /** The user entered `userCode` and signed in as `email`, consenting. */
  approveDevice(userCode: string, email: string): void {
    const account = normaliseEmail(email);
    if (!this.state.hasAccount(account)) throw new Error(`sandbox: no account ${account}`);
    this.device(userCode).approvedBy = account;
  }

  /** The user declined. */
  denyDevice(userCode: string): void {
    this.device(userCode).denied = true;
  }

  /** The next polls for `userCode` get these answers, in order, whatever the user did. */
  queueDeviceAnswers(userCode: string, answers: DevicePollAnswer[]): void {
    this.device(userCode).answers.push(...answers);
  }

  /** When each poll for `userCode` arrived (state clock, epoch ms). */
  devicePolls(userCode: string): readonly number[] {
    return this.device(userCode).polls;
  }

  // ---- authorization code with PKCE ----------------------------------------------------

  /** GET on the authorization endpoint: consent at once as `login_hint`, redirect with a code. */
  authorize(query: URLSearchParams, kind: ProviderKind): AuthorizeOutcome {
    const clientId = query.get('client_id');
    if (!clientId || !this.state.client(clientId)) return { status: 400, text: 'Error 401: invalid_client. The OAuth client was not found.' };
    const redirectUri = query.get('redirect_uri') ?? '';
    if (!isLoopbackRedirect(redirectUri)) {
      return { status: 400, text: 'Error 400: redirect_uri_mismatch. Desktop clients must redirect to a loopback address (RFC 8252 §7.3).' };
    }
    const back = (params: Record<string, string>): AuthorizeOutcome => {
      const url = new URL(redirectUri);
      for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
      const state = query.get('state');
      if (state !== null) url.searchParams.set('state', state);
      return { redirect: url.toString() };
    };
    if (query.get('response_type') !== 'code') return back({ error: 'unsupported_response_type' });
    const challenge = query.get('code_challenge');
    // Plain PKCE would let whoever reads the consent URL redeem the code; the sandbox insists on S256.
    if (!challenge || query.get('code_challenge_method') !== 'S256') {
      return back({ error: 'invalid_request', error_description: 'code_challenge with code_challenge_method=S256 is required' });
    }
    const scope = query.get('scope') ?? '';
    const wanted = kind === 'google' ? GOOGLE_MAIL_SCOPE : MICROSOFT_SMTP_SCOPE;
    if (!scope.split(/\s+/).includes(wanted)) return back({ error: 'invalid_scope' });
    const hint = normaliseEmail(query.get('login_hint') ?? '');
    if (!this.state.hasAccount(hint) || this.state.kindOf(hint) !== kind) {
      return back({ error: 'access_denied', error_description: 'sandbox: login_hint names no account of this provider' });
    }
    if (this.refuseNext > 0) {
      this.refuseNext--;
      return back({ error: 'access_denied' });
    }
    const code = random('sbx-code-');
    this.codes.set(code, { clientId, redirectUri, challenge, email: hint, scope, expiresAt: this.state.now() + CODE_LIFETIME_MS, used: false });
    return back({ code, scope: kind === 'google' ? GOOGLE_MAIL_SCOPE : scope });
  }

  /** grant_type=authorization_code: the code, the verifier that hashes to its challenge, the same redirect_uri. */
  redeemCode(form: URLSearchParams, client: { clientId: string | null; clientSecret: string | null }, kind: ProviderKind): GrantResult {
    const record = this.codes.get(form.get('code') ?? '');
    const fail = (status: 400 | 401, error: OAuthErrorCode, aadsts?: number, description?: string) =>
      grantFailure(kind, status, error, { email: record?.email ?? null, kind: record ? kind : null, aadsts, ...(description ? { description } : {}) });
    if (!client.clientId) return fail(400, 'invalid_request', 900144);
    const clientError = this.state.authenticateClient(client.clientId, client.clientSecret);
    if (clientError !== null) return fail(401, 'invalid_client', clientError);
    if (!record || record.clientId !== client.clientId || this.state.now() >= record.expiresAt) {
      return fail(400, 'invalid_grant', 70008, kind === 'google' ? 'Malformed auth code.' : undefined);
    }
    // RFC 6749 §4.1.2: a code is used once; a second use is refused.
    if (record.used) return fail(400, 'invalid_grant', 54005, kind === 'google' ? 'Bad Request' : undefined);
    if (form.get('redirect_uri') !== record.redirectUri) return fail(400, 'invalid_grant', 9002313, kind === 'google' ? 'Bad Request' : undefined);
    const verifier = form.get('code_verifier') ?? '';
    if (!VERIFIER.test(verifier) || s256(verifier) !== record.challenge) {
      return fail(400, 'invalid_grant', 501481, kind === 'google' ? 'Invalid code verifier.' : undefined);
    }
    record.used = true;
    return this.state.grantConsent(record.email, { clientId: client.clientId, clientSecret: client.clientSecret }, record.scope);
  }

  // ---- device authorization ------------------------------------------------------------

  /** POST on the devicecode endpoint: a device code and the user code to show. */
  startDevice(form: URLSearchParams, tenant: string): DeviceStart {
    const clientId = form.get('client_id');
    const client = clientId ? this.state.client(clientId) : null;
    const error = (code: OAuthErrorCode, aadsts: number) => grantFailure('microsoft', 400, code, { aadsts });
    if (!clientId || !client || client.kind !== 'microsoft') return error('invalid_client', 700016);
    const scope = form.get('scope') ?? '';
    if (!scope.split(/\s+/).some((s) => s.toLowerCase() === MICROSOFT_SMTP_SCOPE.toLowerCase())) return error('invalid_scope', 70011);
    const device: DeviceCode = {
      deviceCode: random('sbx-dc-'),
      userCode: userCode(),
      clientId,
      scope,
      tenant,
      expiresAt: this.state.now() + this.timing.expiresInSec * 1000,
      approvedBy: null,
      denied: false,
      redeemed: false,
      answers: [],
      polls: [],
    };
    this.devices.set(device.deviceCode, device);
    return {
      ok: true,
      body: {
        user_code: device.userCode,
        device_code: device.deviceCode,
        verification_uri: DEVICE_VERIFICATION_URI,
        expires_in: this.timing.expiresInSec,
        interval: this.timing.intervalSec,
        message: `To sign in, use a web browser to open the page ${DEVICE_VERIFICATION_URI} and enter the code ${device.userCode} to authenticate.`,
      },
    };
  }

  /** grant_type=urn:ietf:params:oauth:grant-type:device_code: pending, slowed, refused, expired or granted. */
  pollDevice(form: URLSearchParams, client: { clientId: string | null; clientSecret: string | null }): GrantResult {
    const device = this.devices.get(form.get('device_code') ?? '');
    const fail = (error: OAuthErrorCode, aadsts: number, status: 400 | 401 = 400) =>
      grantFailure('microsoft', status, error, { email: device?.approvedBy ?? null, kind: 'microsoft', aadsts });
    if (!client.clientId) return fail('invalid_request', 900144);
    const clientError = this.state.authenticateClient(client.clientId, client.clientSecret);
    if (clientError !== null) return fail('invalid_client', clientError, 401);
    if (!device || device.clientId !== client.clientId) return fail('invalid_grant', 9002313);
    device.polls.push(this.state.now());
    // A device code gives tokens once.
    if (device.redeemed) return fail('invalid_grant', 54005);
    const queued = device.answers.shift();
    if (queued) return fail(queued, 70016);
    if (this.state.now() >= device.expiresAt) return fail('expired_token', 70020);
    if (device.denied) return fail('authorization_declined', 65004);
    if (!device.approvedBy) return fail('authorization_pending', 70016);
    device.redeemed = true;
    return this.state.grantConsent(device.approvedBy, { clientId: client.clientId, clientSecret: client.clientSecret }, device.scope);
  }

  /** The account a code or device-code request is about, for the request log and per-account faults. */
  attribute(form: URLSearchParams | null): string | null {
    if (!form) return null;
    return this.codes.get(form.get('code') ?? '')?.email ?? this.devices.get(form.get('device_code') ?? '')?.approvedBy ?? null;
  }

  private device(userCode: string): DeviceCode {
    for (const d of this.devices.values()) if (d.userCode === userCode) return d;
    throw new Error(`sandbox: no device code with user code ${userCode}`);
  }
}

const s256 = (verifier: string) => createHash('sha256').update(verifier).digest('base64url');

function isLoopbackRedirect(uri: string): boolean {
  if (!URL.canParse(uri)) return false;
  const url = new URL(uri);
  return url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname) && !url.hash;
}

/** Nine characters like Entra's (`ABCD1EFGH`): letters and digits without look-alikes. */
function userCode(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  return Array.from(random('').slice(0, 9), (c) => alphabet[c.charCodeAt(0) % alphabet.length]).join('');
}
