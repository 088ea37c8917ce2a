// Getting a refresh token for a person who signs in on another device: the device authorization
// grant (RFC 8628) — Microsoft's flow for command-line tools. The user code and verification URL
// are handed to the caller to show; then the token endpoint is polled at the interval it asked
// for, one interval more (5 s, §3.5) after each slow_down, until the person has signed in,
// declined, or the device code expired.
import { ConsentError, TokenGrantError, type ObtainedCredentials } from '../grant.js';
import { postForm, requestToken, requireRefreshToken } from './token-request.js';

export const DEVICE_CODE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';

/** RFC 8628 §3.2: the interval when the endpoint names none, and what slow_down adds. */
const DEFAULT_INTERVAL_S = 5;
const SLOW_DOWN_S = 5;

export interface UserCode {
  userCode: string;
  verificationUri: string;
  /** The endpoint's own instruction, ready to print. */
  message: string | null;
  expiresInSec: number;
}

export interface DeviceFlowOptions {
  deviceCodeUrl: string;
  tokenUrl: string;
  clientId: string;
  /** Only for a confidential client; device-flow apps are normally public. */
  clientSecret: string | null;
  scope: string;
  requestTimeoutMs: number;
  /** Shows the code to the person. */
  onUserCode: (code: UserCode) => void;
  /**
   * Multiplies every wait (poll interval, device-code lifetime). 1 in production; tests use a
   * small factor so they do not wait real seconds.
   */
  pollScale?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

export async function authorizeWithDeviceCode(opts: DeviceFlowOptions): Promise<ObtainedCredentials> {
  const scale = opts.pollScale ?? 1;
  if (!(scale > 0 && Number.isFinite(scale))) throw new Error('pollScale must be a positive number');
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = opts.now ?? Date.now;

  const start = await postForm(opts.deviceCodeUrl, new URLSearchParams({ client_id: opts.clientId, scope: opts.scope }), opts.requestTimeoutMs, 'devicecode endpoint');
  const deviceCode = start.device_code;
  const userCode = start.user_code;
  // RFC 8628 says verification_uri; some endpoints (Google's, Microsoft's v1) say verification_url.
  const verificationUri = start.verification_uri ?? start.verification_url;
  const expiresIn = Number(start.expires_in);
  if (typeof deviceCode !== 'string' || typeof userCode !== 'string' || typeof verificationUri !== 'string' || !(expiresIn > 0)) {
    throw new TokenGrantError('bad_response', 'devicecode endpoint answer lacks device_code, user_code, verification_uri or expires_in');
  }
  opts.onUserCode({ userCode, verificationUri, message: typeof start.message === 'string' ? start.message : null, expiresInSec: expiresIn });

  let intervalS = Number(start.interval) > 0 ? Number(start.interval) : DEFAULT_INTERVAL_S;
  const deadline = now() + expiresIn * 1000 * scale;
  const form = new URLSearchParams({ grant_type: DEVICE_CODE_GRANT_TYPE, client_id: opts.clientId, device_code: deviceCode });
  if (opts.clientSecret) form.set('client_secret', opts.clientSecret);
  for (;;) {
    await sleep(intervalS * 1000 * scale);
    if (now() >= deadline) throw new ConsentError(`the code ${userCode} expired before the sign-in was completed`);
    try {
      return requireRefreshToken(await requestToken(opts.tokenUrl, form, opts.requestTimeoutMs), opts.scope);
    } catch (e) {
      if (!(e instanceof TokenGrantError)) throw e;
      switch (e.oauthError) {
        case 'authorization_pending':
          continue;
        case 'slow_down':
          intervalS += SLOW_DOWN_S;
          continue;
        case 'expired_token':
          throw new ConsentError(`the code ${userCode} expired before the sign-in was completed`);
        case 'authorization_declined':
        case 'access_denied':
          throw new ConsentError('the sign-in was declined');
        default:
          throw e;
      }
    }
  }
}
