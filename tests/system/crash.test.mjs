// G1-G4 under SIGKILL: thousands of sends in flight while processes are killed and restarted.
// Afterwards every acked message is in history exactly once with gapless seqs, and a client
// that stayed (rejoining with `since`) saw every one, in order, once.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Proc, call, connect, distributedEnv, freePort, migrate, standalone, tempDir, token, unique, waitUntil } from './harness.mjs';
import { ResilientReceiver, ResilientSender } from './resilient.mjs';

const TOTAL = 3000;
const WINDOW = 100;

/** Every message of the room, paging `history` backwards; retried as a client would. */
async function fullHistory(url, room) {
  for (let attempt = 1; ; attempt++) {
    const socket = await connect(url, { token: token('auditor') });
    try {
      const all = [];
      let before;
      for (;;) {
        const page = await call(socket, 'history', before === undefined ? { room, limit: 200 } : { room, before, limit: 200 });
        assert.equal(page.ok, true, JSON.stringify(page));
        all.unshift(...page.messages);
        if (!page.has_more || page.messages.length === 0) return all;
        before = page.messages[0].seq;
      }
    } catch (err) {
      if (attempt >= 3) throw new Error(`history of ${room} from ${url}: ${err.message}`);
    } finally {
      socket.close();
    }
  }
}

/** Streams TOTAL sends; `crashes` are [fraction, action] pairs run as progress passes them. */
async function streamThroughCrashes({ senderUrls, receiverUrls, auditUrl, crashes }) {
  const room = unique('crash');
  const receiver = new ResilientReceiver(receiverUrls, 'bob', room);
  await receiver.start();
  const sender = new ResilientSender(senderUrls, 'ada', room);
  const ids = Array.from({ length: TOTAL }, (_, i) => `msg-${i}`);
  const pending = [...crashes].sort((a, b) => a[0] - b[0]);
  let running = Promise.resolve();
  await sender.sendAll(ids, WINDOW, async (count) => {
    while (pending.length && count >= pending[0][0] * TOTAL) {
      const [, action] = pending.shift();
      running = running.then(action);
    }
  });
  await running;

  // G1 + G2 + G4: every id acked once, seqs 1..TOTAL, no seq spent twice.
  assert.equal(sender.acked.size, TOTAL);
  const ackedSeqs = [...sender.acked.values()].sort((a, b) => a - b);
  assert.deepEqual(ackedSeqs, Array.from({ length: TOTAL }, (_, i) => i + 1), 'acked seqs are 1..N, each once');
  assert.ok(sender.attempts > TOTAL, 'crashes forced resends (the test exercised retries)');

  // History holds each acked message exactly once, at the seq it was acked with.
  await waitUntil('history complete', async () => (await fullHistory(auditUrl(), room)).length === TOTAL, 120000);
  const history = await fullHistory(auditUrl(), room);
  assert.deepEqual(history.map((m) => m.seq), ackedSeqs, 'history is gapless');
  for (const m of history) assert.equal(sender.acked.get(m.id), m.seq, `history seq of ${m.id}`);
  assert.equal(new Set(history.map((m) => m.id)).size, TOTAL, 'no message twice');

  // G3: the receiver, rejoining with since after each disconnect, saw everything once in order.
  await waitUntil('receiver caught up', () => receiver.lastSeq === TOTAL, 120000);
  assert.deepEqual(receiver.problems, [], 'no gap and no duplicate at the receiver');
  assert.equal(receiver.seqs.length, TOTAL);
  sender.close();
  receiver.close();
  return { receiver, sender };
}

/** On failure, shows what the processes said (RUST_LOG=warn keeps it short). */
async function withLogs(procs, run) {
  try {
    return await run();
  } catch (err) {
    for (const [name, p] of Object.entries(procs)) {
      console.error(`--- ${name} (last output) ---\n${p.output.join('').slice(-4000)}`);
    }
    throw err;
  }
}

describe('G1-G4 under SIGKILL', () => {
  it('standalone: the whole process is killed twice mid-stream', async (t) => {
    const data = tempDir();
    const proc = await standalone(data);
    t.after(() => proc.kill('SIGTERM'));
    const urls = () => [proc.url];
    const { receiver } = await withLogs({ proc }, () => streamThroughCrashes({
      senderUrls: urls,
      receiverUrls: urls,
      auditUrl: () => proc.url,
      crashes: [
        [0.3, () => proc.restart()],
        [0.7, () => proc.restart()],
      ],
    }));
    assert.ok(receiver.rejoins >= 2, 'the receiver was cut off by the kills and rejoined');
  });

  it('Kafka and Cassandra: an edge, each processor, and the other edge are killed mid-stream', async (t) => {
    const env = distributedEnv();
    migrate(env);
    const proc = (args, name, port) => new Proc(args, { ...env, TIDINGS_NODE_ID: unique(name) }, { port });
    const processors = {};
    for (const name of ['sequencer', 'persistence', 'fanout', 'typing']) {
      processors[name] = await proc(['processor', name], name).start();
    }
    const edgeA = await proc(['edge'], 'edge-a', await freePort()).start();
    const edgeB = await proc(['edge'], 'edge-b', await freePort()).start();
    const all = { edgeA, edgeB, ...processors };
    t.after(async () => {
      for (const p of Object.values(all)) await p.kill('SIGTERM');
    });
    const up = (edge) => edge.child && edge.child.exitCode === null;
    const prefer = (first, second) => () => [first, second].filter(up).map((e) => e.url);
    const bounce = (p) => async () => {
      await p.kill();
      await p.start();
    };
    const { receiver } = await withLogs(all, () => streamThroughCrashes({
      senderUrls: prefer(edgeA, edgeB),
      receiverUrls: prefer(edgeB, edgeA),
      auditUrl: () => prefer(edgeB, edgeA)()[0],
      crashes: [
        [0.1, bounce(edgeA)],
        [0.25, bounce(processors.sequencer)],
        [0.4, bounce(processors.persistence)],
        [0.55, bounce(processors.fanout)],
        [0.7, bounce(edgeB)],
        [0.85, bounce(processors.sequencer)],
      ],
    }));
    assert.ok(receiver.rejoins >= 1, 'the receiver lost its edge and rejoined on the other');
  });
});
