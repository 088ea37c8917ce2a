// At most `n` tasks at once, the rest started in order as others finish. Start-up opens the warm
// accounts' connections through one: 500 TLS logins begun together all finish late (each gets a
// five-hundredth of the CPU), so no account could send until nearly all could.

export function bounded(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const queue: Array<() => void> = [];
  return <T>(task: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      const run = () => {
        running++;
        task()
          .then(resolve, reject)
          .finally(() => {
            running--;
            queue.shift()?.();
          });
      };
      if (running < n) run();
      else queue.push(run);
    });
}
