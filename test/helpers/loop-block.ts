// How long `work` keeps the event loop from running anything else: a 1 ms timer ticks meanwhile,
// and the longest stretch between two ticks is what an SMTP reply arriving then would wait.
// Both the stretch's wall time and the process CPU spent in it are kept: on a shared machine the
// wall time also counts the moments the process was not scheduled, the CPU time only its own work.

export interface LoopBlock<T> {
  value: T;
  /** Longest stretch between two timer ticks, minus the timer's own millisecond. */
  longestMs: number;
  /** The most process CPU (user + system, all threads) spent between two ticks. */
  longestCpuMs: number;
}

export async function longestBlockDuring<T>(work: () => Promise<T>): Promise<LoopBlock<T>> {
  let longestMs = 0;
  let longestCpuMs = 0;
  let last = performance.now();
  let lastCpu = process.cpuUsage();
  const tick = () => {
    const now = performance.now();
    const cpu = process.cpuUsage(lastCpu);
    longestMs = Math.max(longestMs, now - last - 1);
    longestCpuMs = Math.max(longestCpuMs, (cpu.user + cpu.system) / 1000);
    last = now;
    lastCpu = process.cpuUsage();
  };
  const timer = setInterval(tick, 1);
  try {
    const value = await work();
    tick(); // the stretch from the last tick to the end
    return { value, longestMs, longestCpuMs };
  } finally {
    clearInterval(timer);
  }
}
