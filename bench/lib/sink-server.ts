// A trivial SMTP sink: it answers every command at once and discards every message. Its only
// use is to show how fast the load generator can go when the other side costs next to nothing,
// i.e. that the generator is not what limits the relay and direct runs.
import net from 'node:net';

const TERMINATOR = Buffer.from('\r\n.\r\n');
const EHLO_REPLY = '250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n';

function session(socket: net.Socket): void {
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  socket.write('220 sink.bench ESMTP\r\n');
  let inData = false;
  // The tail of the previous chunk, so a terminator split across chunks is still seen.
  let tail: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    let buf: Buffer = tail.length ? Buffer.concat([tail, chunk]) : chunk;
    let out = '';
    for (;;) {
      if (inData) {
        const end = buf.indexOf(TERMINATOR);
        if (end === -1) {
          tail = buf.subarray(Math.max(0, buf.length - (TERMINATOR.length - 1)));
          break;
        }
        out += '250 2.0.0 OK\r\n';
        inData = false;
        buf = buf.subarray(end + TERMINATOR.length);
        continue;
      }
      const lf = buf.indexOf(0x0a);
      if (lf === -1) {
        tail = buf;
        break;
      }
      const verb = buf.toString('latin1', 0, Math.min(4, lf)).toUpperCase();
      buf = buf.subarray(lf + 1);
      if (verb === 'EHLO') out += EHLO_REPLY;
      else if (verb === 'DATA') {
        out += '354 go ahead\r\n';
        inData = true;
        // The body's first line follows the DATA line, so CRLF before "." starts the search.
        buf = Buffer.concat([Buffer.from('\r\n'), buf]);
      } else if (verb === 'QUIT') {
        socket.end('221 bye\r\n');
        return;
      } else out += '250 OK\r\n';
    }
    if (out) socket.write(out);
  });
}

/** Listens on 127.0.0.1 (ephemeral port); resolves with the server. */
export async function startSink(): Promise<net.Server> {
  const server = net.createServer(session);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
