// The byte pipe or the minimal relay (byte-pipe.ts) in a process of its own: gets its upstream over IPC, answers with
// the port it listens on, and exits on SIGTERM or when the parent goes.
import { startBytePipe, type PipeKind, type PipeUpstream } from './byte-pipe.js';

process.once('message', ({ up, kind }: { up: PipeUpstream; kind: PipeKind }) => {
  void startBytePipe(up, kind).then((server) => {
    const addr = server.address();
    process.send?.({ port: addr && typeof addr === 'object' ? addr.port : 0 });
  });
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
