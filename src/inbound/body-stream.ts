// The message body handed to the transaction: an AsyncIterable<Buffer> the session pushes into
// as DATA arrives, with backpressure (the session pauses its socket while the consumer is
// behind). The consumer's first pull is its readiness for the body: the session answers the
// client's DATA with 354 only then, so a backend that refuses DATA never pulls and its refusal
// is what the client gets instead of 354.

/** Above this many bytes waiting for the consumer, the session stops reading its socket. */
const HIGH_WATER = 256 * 1024;

export class BodyStream implements AsyncIterable<Buffer> {
  private readonly chunks: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  /** The consumer pulled at least once (the client was told 354). */
  started = false;
  /** The consumer stopped (returned early or finished): pushes are dropped. */
  abandoned = false;

  constructor(
    private readonly onStart: () => void,
    /** Called when the consumer caught up after the stream asked the producer to wait. */
    private readonly onDrain: () => void,
  ) {}

  /** False when the producer should wait for onDrain before pushing more. */
  push(chunk: Buffer): boolean {
    if (this.abandoned || this.ended || chunk.length === 0) return true;
    this.chunks.push(chunk);
    this.queued += chunk.length;
    this.signal();
    return this.queued < HIGH_WATER;
  }

  /** The consumer is behind: the producer should wait for onDrain. */
  get behind(): boolean {
    return this.queued >= HIGH_WATER;
  }

  /** Still owed by the client: neither complete nor failed. */
  get owed(): boolean {
    return !this.ended;
  }

  end(): void {
    this.ended = true;
    this.signal();
  }

  fail(err: Error): void {
    if (this.ended) return;
    this.failure = err;
    this.ended = true;
    this.signal();
  }

  private signal(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: async (): Promise<IteratorResult<Buffer>> => {
        if (!this.started) {
          // Failed before the consumer was ready (the client can no longer send it): no 354.
          if (this.failure) throw this.failure;
          this.started = true;
          this.onStart();
        }
        for (;;) {
          const chunk = this.chunks.shift();
          if (chunk) {
            const before = this.queued;
            this.queued -= chunk.length;
            if (before >= HIGH_WATER && this.queued < HIGH_WATER) this.onDrain();
            return { value: chunk, done: false };
          }
          if (this.failure) throw this.failure;
          if (this.ended) return { value: undefined, done: true };
          await new Promise<void>((resolve) => (this.wake = resolve));
        }
      },
      return: async (): Promise<IteratorResult<Buffer>> => {
        this.abandoned = true;
        this.chunks.length = 0;
        if (this.queued >= HIGH_WATER) this.onDrain();
        this.queued = 0;
        return { value: undefined, done: true };
      },
    };
  }
}
