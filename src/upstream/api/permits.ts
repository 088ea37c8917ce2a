// How many messages of one API account are at the API at once: its max_connections, for the
// whole fleet as with SMTP (Graph allows 4 concurrent requests per mailbox and app; Gmail
// throttles bursts per user). The count is the SMTP pool's own (src/upstream/pool.ts) pooling
// permits instead of sockets: a message takes one before its first request and gives it back
// after its last, so the FIFO wait up to upstream.acquire_timeout_ms (then 451 4.4.5), the
// mailbox's slots in the store, their renewal and their lapse when an instance dies are one
// piece of code for both kinds of upstream.
import type { Logger } from 'pino';
import type { ConnectionSlots } from '../../store/store.js';
import { AccountPool, type Lease, type PoolableConnection } from '../pool.js';

/** The right to one message of the account at the API; it holds no socket (ApiHttp keeps those). */
class Permit implements PoolableConnection {
  readonly isUsable = true;
  onClose(): void {}
  quit(): Promise<void> {
    return Promise.resolve();
  }
  destroy(): void {}
}

const opened = Promise.resolve({ conn: new Permit(), tokenExpiresAt: Infinity });

export interface PermitOptions {
  maxConnections: number;
  acquireTimeoutMs: number;
  slots: ConnectionSlots;
  slotTtlMs: number;
}

export class ApiPermits {
  private readonly pool: AccountPool<Permit>;

  constructor(email: string, opts: PermitOptions, logger: Logger) {
    this.pool = new AccountPool<Permit>(
      email,
      () => opened,
      // No permit is kept ready or idle: holding one would hold a slot of the fleet's for nothing.
      { ...opts, minIdle: 0, messagesPerConnection: 0, idleTimeoutMs: 0, tokenMarginMs: 0, keepIdle: false },
      logger,
    );
  }

  /** Resolves with the function that gives the permit back; POOL_BUSY after acquire_timeout_ms. */
  async acquire(): Promise<() => void> {
    const lease: Lease<Permit> = await this.pool.acquire();
    return () => this.pool.release(lease, true);
  }
}
