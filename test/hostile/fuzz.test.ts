// A bounded fuzz run against the inbound side: well-formed sessions, mutated ones and random
// bytes, from many parallel clients and several source addresses, split at random TCP
// boundaries. Afterwards: no crash (a normal message still goes through), no unhandled rejection
// or exception, no session or upstream connection left behind, and the heap back to baseline.
// And nothing acknowledged went astray: every 250 a client read names a message the provider
// holds; for the well-formed sessions (whose messages the test knows byte for byte) that message
// is one the client sent, byte-identical, and upstream exactly once.
//
// FUZZ_SECONDS sets the duration (default 60 in CI, 10 otherwise); FUZZ_SEED replays a run.
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplyReader } from '../../src/smtp/reply-reader.js';
import { captureLog } from '../helpers/log-capture.js';
import { settledHeapMb } from '../helpers/memory.js';
import { prng } from '../helpers/random.js';
import { rawMessage, sha256, startStack, stillDelivers, type Stack } from '../helpers/stack.js';
import { sleep, until } from '../helpers/wait.js';

const SECONDS = Number(process.env.FUZZ_SECONDS ?? (process.env.CI ? 60 : 10));
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const WORKERS = 16;
const SESSION_CAP_MS = 3_000;
const ACCOUNT = 'fuzz@gmail.test';
const PASSWORD = 'fuzz-password';
const IDLE_MS = 2_000;

type Rng = () => number;
const int = (rng: Rng, n: number) => Math.floor(rng() * n);
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, xs.length)]!;
const randomBytes = (rng: Rng, n: number) => Buffer.from(Array.from({ length: n }, () => int(rng, 256)));

/** A session a real MTA could send, with the variations it might have, and the messages in it. */
function wellFormed(rng: Rng, n: number): { text: string; raws: string[] } {
  const raws: string[] = [];
  const lines = [pick(rng, ['EHLO fuzz.test', 'HELO fuzz.test', 'EHLO [127.0.0.1]'])];
  if (rng() < 0.3) lines.push('AUTH PLAIN ' + Buffer.from(`\0${ACCOUNT}\0${rng() < 0.7 ? PASSWORD : 'wrong'}`).toString('base64'));
  const transactions = 1 + int(rng, 3);
  for (let t = 0; t < transactions; t++) {
    lines.push(`MAIL FROM:<${pick(rng, [ACCOUNT, 'other@fuzz.test', ''])}>${rng() < 0.3 ? ` SIZE=${int(rng, 100_000)}` : ''}`);
    const rcpts = 1 + int(rng, 4);
    for (let r = 0; r < rcpts; r++) lines.push(`RCPT TO:<r${r}-${n}@example.net>`);
    if (rng() < 0.2) {
      lines.push('RSET');
      continue;
    }
    lines.push('DATA');
    // Lines starting with one or two dots (some nothing but dots), stuffed on the wire as an MTA does.
    const dots = (i: number) => (i % 7 === 0 ? '.' : i % 11 === 0 ? '..' : '');
    const body = rawMessage(ACCOUNT, ['x@example.net'], `fuzz-${n}-${t}`, Array.from({ length: int(rng, 50) }, (_, i) => dots(i) + 'body '.repeat(int(rng, 30))));
    raws.push(body);
    lines.push(body.replace(/\r\n\./g, '\r\n..') + '.');
  }
  lines.push(pick(rng, ['QUIT', 'NOOP', 'RSET', 'QUIT']));
  return { text: lines.join('\r\n') + '\r\n', raws };
}

const INSERTS = ['\r', '\n', '\0', '.', '\r\n.\r\n', '\n.\n', '\r\n', 'MAIL FROM:<x@y>\r\n', 'DATA\r\n', 'STARTTLS\r\n', 'AUTH LOGIN\r\n', '\xff\xfe'];

/** A well-formed session with a few random edits. */
function mutated(rng: Rng, n: number): Buffer {
  let b = Buffer.from(wellFormed(rng, n).text, 'latin1');
  const edits = 1 + int(rng, 6);
  for (let e = 0; e < edits; e++) {
    const at = int(rng, b.length + 1);
    switch (int(rng, 6)) {
      case 0: // flip a byte
        if (b.length) b[Math.min(at, b.length - 1)] = int(rng, 256);
        break;
      case 1: // insert random bytes
        b = Buffer.concat([b.subarray(0, at), randomBytes(rng, 1 + int(rng, 64)), b.subarray(at)]);
        break;
      case 2: // delete a range
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + int(rng, 200))]);
        break;
      case 3: // repeat a range
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + int(rng, 300)), b.subarray(at)]);
        break;
      case 4: // insert a line-end, dot, NUL or command fragment
        b = Buffer.concat([b.subarray(0, at), Buffer.from(pick(rng, INSERTS), 'latin1'), b.subarray(at)]);
        break;
      default: // an overlong run
        b = Buffer.concat([b.subarray(0, at), Buffer.alloc(int(rng, 40_000), 'A'), b.subarray(at)]);
    }
  }
  return b;
}

/** The bytes of a session, and its messages when the test knows them exactly (well-formed ones). */
function session(rng: Rng, n: number): { data: Buffer; raws: string[] | null } {
  const r = rng();
  if (r < 0.3) {
    const { text, raws } = wellFormed(rng, n);
    return { data: Buffer.from(text, 'latin1'), raws };
  }
  if (r < 0.85) return { data: mutated(rng, n), raws: null };
  return { data: randomBytes(rng, 1 + int(rng, 8_192)), raws: null };
}

/** The sandbox's message id in its 250 to a final dot, as the relay passed it on (see acceptedText in the sandbox). */
const ACCEPTED_ID = /^2\.0\.0 OK\s+\d+ (sbx[0-9a-f]+) - gsmtp$/;

/**
 * Writes `data` in random pieces with random pauses, then waits (bounded) for the relay to
 * close. Returns the sandbox ids of the messages it read a 250 for.
 */
async function play(port: number, rng: Rng, data: Buffer): Promise<string[]> {
  const accepted: string[] = [];
  const socket: Socket = connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${10 + int(rng, 20)}` });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  // Usually after the greeting, as clients do; sometimes before it (an early talker).
  const ready = rng() < 0.05 ? 'connect' : 'data';
  const open = await Promise.race([new Promise<boolean>((r) => socket.once(ready, () => r(true))), closed.then(() => false), sleep(SESSION_CAP_MS).then(() => false)]);
  const replies = new ReplyReader((r) => {
    const id = r.code === 250 ? ACCEPTED_ID.exec(r.lines.join(' '))?.[1] : undefined;
    if (id) accepted.push(id);
  });
  socket.on('data', (chunk: Buffer) => replies.push(chunk));
  if (!open) {
    socket.destroy();
    return accepted;
  }
  const started = Date.now();
  for (let at = 0; at < data.length && !socket.destroyed && Date.now() - started < SESSION_CAP_MS; ) {
    const size = 1 + int(rng, rng() < 0.5 ? 16 : 4_096);
    socket.write(data.subarray(at, at + size));
    at += size;
    if (rng() < 0.3) await sleep(int(rng, 5));
  }
  await Promise.race([closed, sleep(rng() < 0.9 ? 200 : SESSION_CAP_MS)]);
  socket.destroy();
  return accepted;
}

/**
 * What breaks "acknowledged means delivered once, intact": a 250 naming no message upstream;
 * for a well-formed session, a message that is none of those it sent, or is upstream twice.
 */
function acknowledgementProblems(played: ReadonlyArray<{ raws: string[] | null; accepted: string[] }>, upstream: Stack['sandbox']['messages']): string[] {
  const byId = new Map(upstream.map((m) => [m.id, m]));
  const copies = new Map<string, number>();
  for (const m of upstream) copies.set(m.sha256, (copies.get(m.sha256) ?? 0) + 1);
  const problems: string[] = [];
  for (const { raws, accepted } of played) {
    for (const id of accepted) {
      const m = byId.get(id);
      if (!m) problems.push(`250 for ${id}, which the provider does not hold`);
      else if (raws && !raws.some((raw) => sha256(raw) === m.sha256)) problems.push(`${id}: not byte-identical to any message the session sent`);
      else if (raws && copies.get(m.sha256) !== 1) problems.push(`${id}: upstream ${copies.get(m.sha256)} times`);
    }
  }
  return problems;
}

describe(`fuzzing the inbound side for ${SECONDS} s`, () => {
  let stack: Stack;
  const log = captureLog('warn');
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    process.on('uncaughtException', onUnhandled);
    stack = await startStack({
      logger: log.logger,
      accounts: [{ email: ACCOUNT, kind: 'google', password: PASSWORD, senders: [ACCOUNT, '*@fuzz.test'], extra: { max_connections: 4 } }],
      overrides: {
        inbound: { idle_timeout_ms: IDLE_MS, data_timeout_ms: 4_000, max_message_bytes: 50_000, max_recipients: 10, auth_failure_delay_ms: 10 },
      },
    });
  });
  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    process.off('uncaughtException', onUnhandled);
    await stack.stop();
  });

  it('survives random and mutated sessions with no crash, no leak and nothing left hanging; every 250 read was delivered, once and intact', { timeout: (SECONDS + 60) * 1000 }, async () => {
    console.log(`[fuzz] ${SECONDS} s, seed ${SEED} (FUZZ_SEED=${SEED} replays it)`);
    const baseline = await settledHeapMb();
    const master = prng(SEED);
    const stopAt = Date.now() + SECONDS * 1000;
    let sessions = 0;
    const played: Array<{ raws: string[] | null; accepted: string[] }> = [];
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        const rng = prng(int(master, 2 ** 31));
        while (Date.now() < stopAt) {
          const { data, raws } = session(rng, sessions++);
          played.push({ raws, accepted: await play(stack.port, rng, data) });
        }
      }),
    );
    const acked = played.flatMap((p) => p.accepted).length;
    const ackedWellFormed = played.flatMap((p) => (p.raws ? p.accepted : [])).length;
    console.log(
      `[fuzz] ${sessions} sessions, ${stack.sandbox.messages.length} messages delivered upstream, ${acked} 250s read (${ackedWellFormed} for well-formed sessions, checked byte for byte)`,
    );
    // Every acknowledged message is upstream; a well-formed one once and intact. (A message
    // upstream without a 250 read is a session that closed before its reply: no promise broken.)
    expect(acknowledgementProblems(played, stack.sandbox.messages)).toEqual([]);
    expect(ackedWellFormed).toBeGreaterThan(0);

    // Nothing left behind: sessions, transactions in flight, busy upstream connections.
    // Bounds with room for a loaded machine: they end as soon as the condition holds.
    await until(() => stack.app.inbound.sessionCount === 0, IDLE_MS * 10, 'every session closed');
    await until(() => [...stack.app.relay.pools.values()].every((p) => p.stats.busy === 0 && p.stats.waiting === 0), 20_000, 'no upstream connection held');
    expect(unhandled).toEqual([]);
    // Whatever the clients did, nothing was an error of the relay's own.
    expect(log.events(50)).toEqual([]);

    expect(await stillDelivers(stack, ACCOUNT, 'after-fuzz')).toBe(true);

    // The sandbox keeps every message it accepted; forget them before weighing the relay.
    stack.sandbox.reset();
    await until(() => stack.app.inbound.sessionCount === 0, 10_000, 'last session closed');
    const after = await settledHeapMb();
    console.log(`[fuzz] heap ${baseline.toFixed(1)} MB before, ${after.toFixed(1)} MB after`);
    expect(after - baseline).toBeLessThan(25);
  });
});
