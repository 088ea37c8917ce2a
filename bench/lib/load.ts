// Drives N persistent connections in closed loop (each sends its next message as soon as the
// previous one was answered) through a warm-up, then a measured window. The processes under
// test are sampled at the window's edges, so their CPU seconds cover exactly the messages
// counted, and the generator's own CPU time is reported next to the wall time it had.
import { LoadConnection, type PreparedMessage, type Target } from './load-client.js';
import { ownCpuSeconds } from './proc.js';

export interface LoadSpec {
  target: Target;
  connections: number;
  message: PreparedMessage;
  /** Either a time window (warm-up then measure) or a fixed number of measured messages. */
  warmupMs: number;
  measureMs?: number;
  messages?: number;
  /** false: a client that waits for each command's reply (default: MAIL, RCPT, DATA pipelined). */
  pipelining?: boolean;
  /** Keep each message's latency (ms). */
  latencies?: boolean;
  /** Called at both edges of the measured window (CPU of the processes under test). */
  sample?: () => number;
}

export interface LoadResult {
  messages: number;
  seconds: number;
  perSecond: number;
  /** Difference of `sample()` across the window (e.g. the relay's CPU seconds). */
  sampled: number;
  /** CPU seconds the generator used in the window, and that as a share of one core. */
  generatorCpu: number;
  generatorShare: number;
  latenciesMs: number[];
}

/** Opens `n` connections, at most 50 handshakes at a time. */
export async function openConnections(target: Target, n: number): Promise<LoadConnection[]> {
  const conns: LoadConnection[] = [];
  try {
    while (conns.length < n) {
      const batch = Math.min(50, n - conns.length);
      conns.push(...(await Promise.all(Array.from({ length: batch }, () => LoadConnection.open(target)))));
    }
  } catch (e) {
    for (const c of conns) c.close();
    throw e;
  }
  return conns;
}

export async function runLoad(spec: LoadSpec, conns?: LoadConnection[]): Promise<LoadResult> {
  const own = conns ?? (await openConnections(spec.target, spec.connections));
  const sample = spec.sample ?? (() => 0);
  let phase: 'warmup' | 'measure' | 'stop' = 'warmup';
  let counted = 0;
  const latencies: number[] = [];
  let onCounted: (() => void) | null = null;

  const loop = async (conn: LoadConnection): Promise<void> => {
    while (phase !== 'stop') {
      const ms = spec.pipelining === false ? await conn.sendStepwise(spec.message) : await conn.send(spec.message);
      if (phase !== 'measure') continue;
      counted++;
      if (spec.latencies) latencies.push(ms);
      if (spec.messages !== undefined && counted >= spec.messages) onCounted?.();
    }
  };
  const loops = own.map((c) => loop(c));
  const failed = Promise.all(loops).then(() => undefined);
  // A failing connection ends the run at once instead of leaving the window to time out.
  const guard = <T>(p: Promise<T>): Promise<T> => Promise.race([p, failed.then(() => Promise.reject(new Error('load loop ended early')))]);

  try {
    await guard(sleep(spec.warmupMs));
    const cpu0 = ownCpuSeconds();
    const s0 = sample();
    const t0 = performance.now();
    phase = 'measure';
    if (spec.messages !== undefined) await guard(new Promise<void>((resolve) => (onCounted = resolve)));
    else await guard(sleep(spec.measureMs ?? 1000));
    const seconds = (performance.now() - t0) / 1000;
    const sampled = sample() - s0;
    const generatorCpu = ownCpuSeconds() - cpu0;
    const messages = counted;
    phase = 'stop';
    await Promise.all(loops);
    return {
      messages,
      seconds,
      perSecond: messages / seconds,
      sampled,
      generatorCpu,
      generatorShare: generatorCpu / seconds,
      latenciesMs: latencies,
    };
  } finally {
    phase = 'stop';
    if (!conns) for (const c of own) c.close();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
