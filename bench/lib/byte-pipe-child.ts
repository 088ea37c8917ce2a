// The byte pipe (byte-pipe.ts) in a process of its own: gets its upstream over IPC, answers with
// the port it listens on, and exits on SIGTERM or when the parent goes.
import { startBytePipe, type PipeUpstream } from './byte-pipe.js';

process.once('message', (up: PipeUpstream) => {
  void startBytePipe(up).then((server) => {
    const addr = server.address();
    process.send?.({ port: addr && typeof addr === 'object' ? addr.port : 0 });
  });
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
