// One message's DATA phase on the inbound side, from the client's DATA to the end of its body.
// The provider's readiness (the consumer opening the body) is when the client hears 354; the
// client's bytes are decoded (data-decoder.ts) and pushed through to the consumer's sink in
// the same turn, with backpressure (`behind`); a body the client can no longer send fails the
// sink, so that the provider never gets half a message.
import { BodyStream } from './body-stream.js';
import { DataDecoder } from '../smtp/data-decoder.js';
import { MessageIdSniffer } from './message-id.js';
import { bodyRead } from './reclaim.js';

/** The session's side of it: one object per session, its methods bound, so a message costs no closures of its own. */
export interface DataPhaseHost {
  /** The provider asked for the body: the client hears 354 and sends it. */
  ready(): void;
  /** The consumer caught up after `behind` was set: the socket may be read again. */
  caughtUp(): void;
}

export class DataPhase {
  readonly decoder = new DataDecoder();
  readonly body: BodyStream;
  readonly startedAt = performance.now();
  /** The Message-ID for the log line, read from the header block as it streams (never buffered). */
  readonly messageId = new MessageIdSniffer();
  /** Made only when the final reply comes before the client's part is over (rare: see clientDone). */
  private received: Promise<void> | null = null;
  private resolveReceived: (() => void) | null = null;
  /** The client's part is over (the final dot, or abandoned). */
  private finished = false;

  constructor(host: DataPhaseHost) {
    this.body = new BodyStream(host.ready, host.caughtUp);
  }

  /** The consumer is behind: the session stops reading its socket until caughtUp. */
  get behind(): boolean {
    return this.body.behind;
  }

  /** The client still owes the message (before or after its 354). */
  get owed(): boolean {
    return this.body.owed;
  }

  /**
   * Client bytes of the message. Returns what followed its end (null: nothing), or undefined
   * while the message goes on.
   */
  push(chunk: Buffer): Buffer | null | undefined {
    bodyRead(chunk.length);
    const { body, done, rest } = this.decoder.push(chunk);
    for (const piece of body) {
      this.messageId.push(piece);
      this.body.push(piece);
    }
    if (!done) return undefined;
    this.done();
    this.body.end();
    return rest;
  }

  /** The message will never be complete: the transaction is abandoned without the final dot. */
  abandon(err: Error): void {
    this.body.fail(err);
    this.done();
  }

  /** Settles when the client's part is over, if the provider ever asked for it (null: it did not). */
  clientDone(): Promise<void> | null {
    if (!this.body.started) return null;
    if (this.finished) return Promise.resolve();
    return (this.received ??= new Promise<void>((resolve) => (this.resolveReceived = resolve)));
  }

  /** Nothing is owed by the client any more: clientDone() would not wait (the common case at the final reply). */
  get clientOver(): boolean {
    return this.finished || !this.body.started;
  }

  private done(): void {
    this.finished = true;
    this.resolveReceived?.();
  }
}
