// A provider far away: a TCP proxy that holds every chunk for half a round trip in each
// direction before passing it on. It is a byte proxy, so STARTTLS and AUTH go through it
// untouched, and what a client sends in one write arrives upstream in one delayed chunk, which
// is what makes pipelining pay. Order is kept because every chunk waits the same time and
// Node fires timers of one duration in the order they were set. Backpressure is ignored: the
// benchmark's messages are small and few at a time.
import net from 'node:net';

function forward(from: net.Socket, to: net.Socket, delayMs: number): void {
  from.on('data', (chunk: Buffer) => {
    setTimeout(() => {
      if (!to.destroyed) to.write(chunk);
    }, delayMs);
  });
  from.on('end', () => setTimeout(() => to.end(), delayMs));
  from.on('close', () => setTimeout(() => to.destroy(), delayMs));
  from.on('error', () => from.destroy());
}

/** Listens on 127.0.0.1 (ephemeral port), in front of `target`, adding `rttMs` per round trip. */
export async function startLatencyProxy(target: { host: string; port: number }, rttMs: number): Promise<net.Server> {
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const upstream = net.connect({ host: target.host, port: target.port, noDelay: true });
    forward(client, upstream, rttMs / 2);
    forward(upstream, client, rttMs / 2);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
