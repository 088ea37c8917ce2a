// relay.yaml loaded on a worker thread, for the long-running relay (`serve` and its reloads).
// Parsing YAML allocates about 50 times the file: yaml's CST and Document for a 1.7 MB file of
// 5,000 accounts came to ≈ 75 MB, the schema and the resolving ≈ 20 MB more, all garbage a moment
// later. On the relay's own thread V8 grows the heap to hold that peak and keeps the pages: a
// relay with 5,000 idle accounts sat at 190 MB RSS with 31 MB live. On a worker the peak lives in
// the worker's isolate, whose heap is given back when it exits; only the Config (plain data,
// structured-cloned, ≈ 1 MB for 5,000 accounts) crosses over. The same loadConfig runs, so the
// result and every error, line numbers included, are what `check-config` gives.
import { Worker } from 'node:worker_threads';
import { ConfigError, type ConfigProblem } from './errors.js';
import type { LoadOptions } from './load.js';
import type { Config } from './schema.js';

/** What the worker posts back: the config, or the error it threw. */
export type LoadOutcome =
  | { config: Config }
  | { configError: { reason: string; path: string | null; problems: readonly ConfigProblem[] } }
  | { failure: string };

export interface LoadRequest {
  file: string | undefined;
  opts: LoadOptions;
}

const WORKER_ENTRY = new URL('./load-worker.js', import.meta.url);

/** loadConfig(file, opts), off this thread; rejects with the same ConfigError. */
export async function loadConfigOffThread(file: string | undefined, opts: LoadOptions = {}): Promise<Config> {
  // Run from source (tsx, vitest) there is no compiled worker entry a plain worker could start:
  // the same load on this thread, imported only then.
  if (!import.meta.url.endsWith('.js')) return (await import('./load.js')).loadConfig(file, opts);
  // process.env is not cloneable as such; its plain copy is what the worker reads `${NAME}` from.
  const request: LoadRequest = { file, opts: { ...opts, env: { ...(opts.env ?? process.env) } } };
  const outcome = await new Promise<LoadOutcome>((resolve, reject) => {
    // No inherited node flags: the loader needs none, and some break it or do not belong in it
    // (--input-type refuses a file entry; --cpu-prof would write a profile of the loader).
    // A small young generation (8 MB; V8's default grows to several times that): the parser's
    // objects live until the parse ends, so a larger one only copies more of them around (peak
    // RSS of the load 177 → 155 MB at 5,000 accounts, measured; the same CPU).
    const worker = new Worker(WORKER_ENTRY, { workerData: request, execArgv: [], resourceLimits: { maxYoungGenerationSizeMb: 8 } });
    let answered = false;
    worker.once('message', (m: LoadOutcome) => {
      answered = true;
      resolve(m);
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`the config loader thread exited (${code}) without an answer`));
    });
  });
  if ('config' in outcome) return outcome.config;
  if ('configError' in outcome) {
    const { reason, path, problems } = outcome.configError;
    throw new ConfigError(reason, path, problems);
  }
  throw new Error(outcome.failure);
}
