// Polling with a bound, for conditions that settle asynchronously (a connection closed, a token refreshed).

/** Resolves once `cond` holds; rejects after `ms` (naming `what`, if given). */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what} not met within ${ms} ms`);
    await sleep(20);
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
