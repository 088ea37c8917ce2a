// What the relay keeps across restarts. One interface, so the embedded SQLite default and a
// shared store (Redis) are interchangeable; the message path never touches it (tokens are
// served from memory), only start-up and token refreshes do.

/** An account's token state. Every field is secret except `expiresAt` and is sealed at rest. */
export interface TokenRecord {
  accessToken: string;
  /** Epoch milliseconds. */
  expiresAt: number;
  /** The refresh token to use next: the provider's rotated one, or the config's. */
  refreshToken: string;
  /**
   * The config's refresh_token and client_id this record derives from. When the operator
   * changes either, the record is stale and the config's value wins (issue #2, rotation).
   */
  configRefreshToken: string;
  clientId: string;
}

export interface Store {
  loadToken(email: string): Promise<TokenRecord | null>;
  saveToken(email: string, record: TokenRecord): Promise<void>;
  deleteToken(email: string): Promise<void>;
  close(): Promise<void>;
}
