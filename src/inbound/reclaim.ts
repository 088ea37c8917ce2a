// Frees the buffers message bodies arrive in while they stream, so that the relay's memory
// does not grow with a message (issue 9, item 8: a 30 MB message adds at most 16 MB to the
// peak RSS).
//
// Node hands every socket read to JavaScript in a Buffer of its own (up to 64 KB in clear,
// 16 KB chunks through TLS), allocated outside V8's heap. Once its bytes have gone upstream it
// is garbage, but only a GC frees it, and a streaming body allocates next to nothing on the
// heap: V8 saw no reason for a GC until its external-memory limit (64 MB). Measured in the
// relay while one 30 MB message went through: 26 MB of dead read buffers
// (`process.memoryUsage().arrayBuffers`) and 28-35 MB added to the peak RSS; one minor GC
// brought the buffers back to 1 MB. Nothing holds them: the body goes straight to the
// upstream socket, whose buffer is bounded (backpressure: upstream/connection.ts's
// BodySender). Reading into one reused buffer (net.Socket `onread`) would avoid the
// allocations, but Node offers it neither on a server's sockets nor through TLS, and the body
// outlives the read anyway (it queues in the upstream socket).
//
// So: after every RECLAIM_BYTES of message bodies read (all sessions together: 100 KB
// messages on 10 connections piled up 32 MB of dead buffers the same way), a minor GC (a
// scavenge: young objects only, milliseconds) unless less than that much buffer memory exists
// at all. 2 KB messages never get there: the GCs their own allocations cause keep the buffers
// below it.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export const RECLAIM_BYTES = 4 * 1024 * 1024;

type Gc = (opts: { type: 'minor' | 'major' }) => void;

let unreclaimed = 0;
let gc: Gc | null = null;
/** Minor GCs run so far (for tests). */
export let reclaims = 0;

/** Counts `bytes` of a message body as read; see above. */
export function bodyRead(bytes: number): void {
  unreclaimed += bytes;
  if (unreclaimed < RECLAIM_BYTES) return;
  unreclaimed = 0;
  if (process.memoryUsage().arrayBuffers < RECLAIM_BYTES) return;
  (gc ??= exposeGc())({ type: 'minor' });
  reclaims++;
}

/**
 * V8's own `gc`, taken from a fresh context with the flag set only for that moment, so that
 * no other code sees a global `gc` it did not ask for.
 */
function exposeGc(): Gc {
  const own = (globalThis as { gc?: Gc }).gc;
  if (typeof own === 'function') return own;
  setFlagsFromString('--expose-gc');
  try {
    return runInNewContext('gc') as Gc;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}
