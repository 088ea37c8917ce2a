// The worker thread of load-off-thread.ts: loads relay.yaml, posts the Config or the error, exits
// (and with it goes the parser's garbage).
import { parentPort, workerData } from 'node:worker_threads';
import { ConfigError } from './errors.js';
import { loadConfig } from './load.js';
import type { LoadOutcome, LoadRequest } from './load-off-thread.js';

const { file, opts } = workerData as LoadRequest;
let outcome: LoadOutcome;
try {
  outcome = { config: loadConfig(file, opts) };
} catch (e) {
  outcome =
    e instanceof ConfigError
      ? { configError: { reason: e.reason, path: e.path, problems: e.problems } }
      : { failure: (e as Error).message ?? String(e) };
}
parentPort!.postMessage(outcome);
