// The message body handed to the transaction (a MessageBody, smtp/body.ts): the session pushes
// decoded pieces into it and they go straight to the consumer's sink, in the same turn. The
// consumer's open() is its readiness for the body: the session answers the client's DATA with
// 354 only then, so a backend that refuses DATA never opens it and its refusal is what the
// client gets instead of 354. A sink's write() that returns false sets `behind` (the session
// stops reading its socket) until the consumer calls drained().
import type { BodySink, MessageBody } from '../smtp/body.js';

export class BodyStream implements MessageBody {
  private sink: BodySink | null = null;
  private ended = false;
  private failure: Error | null = null;
  /** The consumer asked the producer to wait (a write returned false) and has not caught up yet. */
  behind = false;

  constructor(
    private readonly onStart: () => void,
    /** Called when the consumer caught up after the stream asked the producer to wait. */
    private readonly onDrain: () => void,
  ) {}

  /** The consumer opened the body (the client was told 354). */
  get started(): boolean {
    return this.sink !== null;
  }

  /** Still owed by the client: neither complete nor failed. */
  get owed(): boolean {
    return !this.ended;
  }

  open(sink: BodySink): void {
    if (this.sink) throw new Error('message body opened twice');
    // Failed before the consumer was ready (the client can no longer send it): no 354.
    if (this.failure) return sink.fail(this.failure);
    this.sink = sink;
    this.onStart();
  }

  drained(): void {
    if (!this.behind) return;
    this.behind = false;
    this.onDrain();
  }

  /** A decoded piece of the message; only once the consumer opened the body (after 354). */
  push(chunk: Buffer): void {
    if (this.ended || chunk.length === 0) return;
    if (!this.sink!.write(chunk)) this.behind = true;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.sink?.end();
  }

  fail(err: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = err;
    this.behind = false;
    this.sink?.fail(err);
  }
}
