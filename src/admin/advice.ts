// What an operator should do about a failed account check, in plain words. The relay's own
// replies to the MTA stay terse (4xx, see src/errors/registry.ts); `accounts test`, the API's
// verification and `accounts list` are where a person reads why and what to change.
import type { Account } from '../routing/account.js';
import { TokenGrantError } from '../tokens/grant.js';
import { UpstreamAuthError } from '../upstream/connection.js';
import { enhancedCode, formatReply } from '../smtp/reply.js';
import { RelayError } from '../errors/registry.js';

/** Where a check stopped: getting a token, reaching the provider, or authenticating to it. */
export type CheckStage = 'token' | 'connect' | 'auth';

const consentAgain = (a: Account) =>
  `Consent again, signed in as ${a.email}: xoauth2-relay auth ${a.provider.kind} --email ${a.email} --client-id ${a.clientId}` +
  `${a.tenant ? ` --tenant ${a.tenant}` : ''}, then put the new refresh_token in the account.`;

function tokenAdvice(e: TokenGrantError, a: Account): string {
  switch (e.kind) {
    case 'invalid_grant':
      if (a.auth === 'refresh_token') {
        return `The provider refused the refresh token (invalid_grant): it was revoked, expired, rotated away, or issued to another client. ${consentAgain(a)}`;
      }
      return 'The provider refused the grant (invalid_grant): check that the mailbox exists and belongs to the domain or tenant the credentials are for.';
    case 'invalid_client':
      return 'The provider does not accept the OAuth client: check client_id and client_secret (a client secret may have expired; create a new one).';
    case 'unauthorized_client':
      if (a.auth === 'service_account') {
        return `The service account may not act for ${a.email}: in the Workspace Admin console (Security > API controls > Domain-wide delegation) authorise its client id for https://mail.google.com/.`;
      }
      if (a.auth === 'client_credentials') {
        return 'The app may not use client credentials for SMTP: grant it the application permission SMTP.SendAsApp (Office 365 Exchange Online) with admin consent.';
      }
      return 'The OAuth client may not use this grant: for Microsoft allow public client flows on the app registration; for Google use a Desktop app client.';
    case 'http':
      if (e.status !== null && e.status >= 500) {
        return `The token endpoint is failing (HTTP ${e.status}): the relay retries with backoff; if it lasts, check the provider's status and the way from this host to ${a.tokenUrl}.`;
      }
      return `The token endpoint refused the request (${e.oauthError ?? (e.status !== null ? `HTTP ${e.status}` : e.message)}): check token_url, tenant and scope of the provider.`;
    default:
      return `The token endpoint could not be reached or answered badly (${e.kind}): check the network and proxy from this host to ${a.tokenUrl}.`;
  }
}

function authAdvice(e: UpstreamAuthError, a: Account): string {
  const reply = e.upstreamReply;
  const text = reply.lines.join(' ');
  const enhanced = enhancedCode(reply);
  if (reply.code >= 400 && reply.code < 500) return `The provider refused AUTH for now (${formatReply(reply)}): try again later.`;
  if (enhanced === '5.7.139' || /SmtpClientAuthentication is disabled/i.test(text)) {
    if (/for the Tenant/i.test(text)) {
      return 'SMTP AUTH is disabled for the whole tenant. An Exchange admin enables it with Set-TransportConfig -SmtpClientAuthenticationDisabled $false (or for this mailbox only: Set-CASMailbox -Identity ' + a.email + ' -SmtpClientAuthenticationDisabled $false).' + SWITCH_TO_GRAPH;
    }
    return `SMTP AUTH is disabled for the mailbox ${a.email}. An Exchange admin enables it with Set-CASMailbox -Identity ${a.email} -SmtpClientAuthenticationDisabled $false (or tenant-wide with Set-TransportConfig -SmtpClientAuthenticationDisabled $false).${SWITCH_TO_GRAPH}`;
  }
  const belongsElsewhere =
    `The token belongs to another account: the refresh token was granted to a different mailbox than ${a.email}, and the provider checks that the XOAUTH2 user= (always the account's email) owns the token. ${consentAgain(a)}`;
  if (a.provider.kind === 'microsoft') {
    // 535 5.7.3: Exchange says no more than "Authentication unsuccessful" for all three causes.
    return `Exchange refused a token its own endpoint had just issued (${formatReply(reply)}). Either SMTP AUTH is disabled for the mailbox or the tenant (Set-CASMailbox -Identity ${a.email} -SmtpClientAuthenticationDisabled $false; Set-TransportConfig -SmtpClientAuthenticationDisabled $false), or ${a.email} is a shared mailbox, or the token belongs to another account. ${SHARED_MAILBOX} ${belongsElsewhere}`;
  }
  return `Gmail refused a token Google had just issued (${formatReply(reply)}). ${belongsElsewhere} (Less often: the grant lacks the scope https://mail.google.com/.)`;
}

const SHARED_MAILBOX =
  'A shared mailbox cannot log in: make the account the licensed user who has Send As on it (its email, its own consent) and list the shared address in its senders (docs/operations.md, "Shared mailboxes and send-as").';

const SEND_AS =
  'Log in as the delegate and grant it Send As on that address: Add-RecipientPermission -Identity SHARED -Trustee ACCOUNT -AccessRights SendAs (Exchange admin; it takes effect within an hour), or send with the account\'s own address. A shared mailbox never logs in itself (docs/operations.md, "Shared mailboxes and send-as").';

/**
 * What to do about a reply the provider gave to a message, when the operator can fix its cause:
 * for the status page's recent refusals. Null when the reply is the recipient's business.
 */
export function refusalAdvice(reply: string): string | null {
  if (/\b5\.2\.252\b|SendAsDenied/i.test(reply)) return SEND_AS;
  return null;
}

const SWITCH_TO_GRAPH =
  ' Or, without SMTP AUTH, send through Microsoft Graph: set upstream: graph on the account and grant the app Mail.Send and Mail.ReadWrite (docs/operations.md, "HTTP API upstreams").';

/** An API account's check: the API host unreachable, the token refused, or a permission missing. */
function apiAdvice(stage: CheckStage, e: RelayError, a: Account): string {
  const api = a.upstream === 'graph' ? 'Microsoft Graph' : 'The Gmail API';
  const url = a.upstream === 'graph' ? a.provider.graphUrl : a.provider.gmailApiUrl;
  if (stage === 'connect') return `Could not reach ${url}: check that this host may connect out to it (HTTPS egress, proxy)${a.sourceIp ? ` from source_ip ${a.sourceIp}` : ''}.`;
  if (e.code === 'UPSTREAM_AUTH_REJECTED') {
    return `${api} refused a token just issued for ${a.email}: it is for another resource or scope. ${a.upstream === 'graph' ? 'Consent again for the Graph scopes (Mail.Send, Mail.ReadWrite), or for an app check the tenant.' : 'Consent again with https://www.googleapis.com/auth/gmail.send or https://mail.google.com/.'}`;
  }
  return `${e.reply.lines.join(' ').replace(/^4\.7\.0 /, '')}.${a.upstream === 'graph' ? ' To see whether an application access policy lets the app reach the mailbox: Test-ApplicationAccessPolicy -Identity ' + a.email + ' -AppId ' + a.clientId + '.' : ''}`;
}

/** The advice for a failed check, or a generic one when the failure is not recognised. */
export function adviceFor(stage: CheckStage, e: unknown, a: Account): string {
  if (a.upstream !== 'smtp' && stage !== 'token' && e instanceof RelayError) return apiAdvice(stage, e, a);
  if (stage === 'token' && e instanceof TokenGrantError) return tokenAdvice(e, a);
  if (stage === 'auth' && e instanceof UpstreamAuthError) return authAdvice(e, a);
  // A connection that failed during AUTH (closed, timed out) failed like one that never opened.
  if ((stage === 'connect' || stage === 'auth') && e instanceof RelayError) {
    const { host, port } = a.provider.smtp;
    if (e.code === 'UPSTREAM_TLS') return `The TLS session with ${host}:${port} failed: check providers.${a.provider.name}.smtp.security and ca_file.`;
    return `Could not reach ${host}:${port}: check that this host may connect out to it (firewall, egress to port ${port})${a.sourceIp ? ` from source_ip ${a.sourceIp}` : ''}.`;
  }
  return 'Unexpected failure: see the error, and the relay log for more.';
}
