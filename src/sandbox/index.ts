// The sandbox mail provider: a local stand-in for Google's and Microsoft's token endpoints and
// submission servers, for `xoauth2-relay demo` and the integration tests. Not for production use:
// its TLS material is a throwaway CA made at run time (./tls-material.ts).
export { SandboxProvider, type SandboxAccount, type SandboxProviderOptions, type ServiceAccountKeyFile } from './provider.js';
export { SandboxConsent, DEVICE_VERIFICATION_URI, type AuthorizeOutcome, type DevicePollAnswer, type DeviceTiming } from './consent.js';
export { SandboxApps, type AppInput, type SandboxApp, type SandboxServiceAccount, type ServiceAccountInput } from './app-grants.js';
export {
  SandboxState,
  type AccessTokenCheck,
  type OAuthErrorCode,
  type ProviderKind,
  type SandboxAccountInput,
  type SandboxCredentials,
  type SandboxStateOptions,
  type TokenRequestRecord,
} from './provider-state.js';
// The providers' scopes, as the relay itself asks for them (the sandbox checks the same ones).
export { GOOGLE_MAIL_SCOPE, MICROSOFT_SMTP_SCOPE } from '../config/providers.js';
export { FakeApiServer, type ApiFaultKind, type ApiFaultRule, type ApiFaultInfo } from './api-server.js';
export { FakeGraphApi } from './graph-api.js';
export { FakeGmailApi } from './gmail-api.js';
export {
  SandboxTokenEndpoint,
  type TokenEndpointOptions,
  type TokenFault,
  type TokenFaultInfo,
  type TokenFaultOptions,
} from './token-endpoint.js';
export {
  SandboxSubmissionServer,
  SANDBOX_TLS_FILES,
  type AcceptedMessage,
  type AuthAttempt,
  type AuthOutcome,
  type ConnectionInfo,
  type SmtpFaultInfo,
  type SmtpFaultPoint,
  type SmtpFaultRule,
  type SubmissionSecurity,
  type SubmissionServerOptions,
  type SubmissionStats,
  type SubmissionStyle,
} from './submission-server.js';
