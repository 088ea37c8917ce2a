// A message body as it streams from the client's DATA to whoever sends it on, pushed rather
// than pulled: the producer (the inbound session's decoder) calls the consumer's sink as each
// piece is decoded, in the same turn, so a message that arrives in one read with its final dot
// reaches the provider's socket in that read's callback. An async iterator would cost a promise
// and a microtask per chunk and per wait; this costs a method call (the shape of
// bench/lib/minimal-relay.ts, and of a Node Writable without the stream machinery).
//
// Backpressure is a Writable's: write() always takes the chunk, and false asks the producer to
// stop reading until the consumer calls drained(). The consumer's open() is its readiness: the
// client is told 354 only then, so a consumer that never opens (DATA refused upstream) has its
// refusal reach the client instead.

/** The consumer's side: where the body's bytes (without dot-stuffing) go. */
export interface BodySink {
  /** A piece of the message, in order. Always taken; false: the producer waits for drained(). */
  write(chunk: Buffer): boolean;
  /** The final dot came: nothing follows. */
  end(): void;
  /** The message will never be complete (client gone, timeout): nothing follows. */
  fail(err: Error): void;
}

/** The producer's side, handed to the consumer. */
export interface MessageBody {
  /**
   * The consumer is ready: from now on the bytes go to `sink`, each as it is decoded. Called at
   * most once. A body that already failed calls `sink.fail` at once (the client never hears 354).
   */
  open(sink: BodySink): void;
  /** The consumer caught up after a write() that returned false. */
  drained(): void;
}

/**
 * Pushes an (async) iterable into the sink once opened, honouring its backpressure: for callers
 * that hold the body as buffers or a stream (tests, tools). Iterated to its end unless it throws.
 */
export function iterableBody(source: AsyncIterable<Buffer> | Iterable<Buffer>): MessageBody {
  let wake: (() => void) | null = null;
  const pump = async (sink: BodySink): Promise<void> => {
    try {
      for await (const chunk of source) {
        if (!sink.write(chunk)) await new Promise<void>((resolve) => (wake = resolve));
      }
    } catch (e) {
      sink.fail(e as Error);
      return;
    }
    sink.end();
  };
  return {
    open: (sink) => void pump(sink),
    drained: () => {
      const w = wake;
      wake = null;
      w?.();
    },
  };
}

/** The whole body as one Buffer, for consumers that send it in one piece (the HTTP APIs); past `limit` bytes it keeps reading (the client stays in step) but stops keeping. */
export function collectBody(body: MessageBody, limit: number): Promise<{ bytes: Buffer; size: number; over: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    body.open({
      write(chunk) {
        size += chunk.length;
        if (size <= limit) chunks.push(chunk);
        return true;
      },
      end: () => resolve({ bytes: Buffer.concat(chunks), size, over: size > limit }),
      fail: reject,
    });
  });
}
