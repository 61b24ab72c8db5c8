// Graceful drain: SIGTERM in the middle of a stream of pipelined sends. Every send gets an
// answer before its connection closes (acked, or `unavailable` while shutting down), the
// process exits on its own within the drain bound, and after a restart the clients' retries
// (same ids) leave every message stored exactly once, seqs without a gap.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { call, connect, standalone, tempDir, token, unique } from './harness.mjs';

describe('graceful drain on SIGTERM (standalone)', () => {
  it('in-flight sends are answered before the close; retries leave each message once', async () => {
    const dir = tempDir();
    let proc = await standalone(dir, { TIDINGS_DRAIN_TIMEOUT_MS: '5000' });
    const room = unique('drain');
    const clients = [];
    for (let i = 0; i < 8; i++) {
      const s = await connect(proc.url, { token: token(`u${i}`) });
      await call(s, 'join', { room });
      clients.push(s);
    }
    const outcomes = { acked: new Map(), unavailable: [], unanswered: [] };
    const beforeTerm = new Set(); // emitted before SIGTERM: in flight when it came
    let stopping = false;
    const sender = async (s, i) => {
      let n = 0;
      let closed = false;
      s.on('disconnect', () => { closed = true; });
      while (!closed && n < 2000) {
        // Eight in flight at a time, no ack awaited in between.
        const batch = Array.from({ length: 8 }, () => `c${i}-${n++}`);
        await Promise.all(batch.map(async (id) => {
          if (!stopping) beforeTerm.add(id);
          try {
            const ack = await call(s, 'send', { room, id, text: `text ${id}` }, 10000);
            if (ack.ok) outcomes.acked.set(id, ack.seq);
            else if (ack.error.code === 'unavailable') outcomes.unavailable.push(id);
            else throw new Error(JSON.stringify(ack));
          } catch (e) {
            if (!stopping) throw e;
            outcomes.unanswered.push(id);
          }
        }));
      }
    };
    const senders = clients.map(sender);
    // SIGTERM once the stream flows (how soon depends on the machine's load).
    const flowingBy = Date.now() + 20000;
    while (outcomes.acked.size <= 100 && Date.now() < flowingBy) await new Promise((r) => setTimeout(r, 50));
    const ackedBefore = outcomes.acked.size;
    stopping = true;
    const termAt = Date.now();
    proc.child.kill('SIGTERM');
    await Promise.all(senders);
    const code = await proc.exited;
    const took = Date.now() - termAt;
    console.log(`drain: ${ackedBefore} acked before SIGTERM, ${outcomes.acked.size} in all, ${outcomes.unavailable.length} unavailable, ${outcomes.unanswered.length} unanswered; exited ${code} after ${took} ms`);
    assert.ok(ackedBefore > 100, 'the stream was flowing');
    assert.equal(code, 0, 'a clean exit');
    assert.ok(took < 5000 + 3000, `exited within the drain bound (${took} ms)`);
    // Sends emitted after SIGTERM race the close (the client keeps sending until it sees
    // it); those in flight when it came must all have their answer.
    assert.deepEqual(outcomes.unanswered.filter((id) => beforeTerm.has(id)), [], 'every send in flight at SIGTERM was answered');
    assert.ok(outcomes.acked.size > ackedBefore || outcomes.unavailable.length > 0, 'sends were in flight at SIGTERM');

    // The clients retry what was not acked, with the same ids, after the restart.
    proc = await standalone(dir);
    try {
      const retrier = await connect(proc.url, { token: token('u0') });
      await call(retrier, 'join', { room });
      for (const id of [...outcomes.unavailable, ...outcomes.unanswered]) {
        const ack = await call(retrier, 'send', { room, id, text: `text ${id}` });
        assert.equal(ack.ok, true, JSON.stringify(ack));
        outcomes.acked.set(id, ack.seq);
      }
      // Every acked id once in the room, seqs 1..N with no gap.
      const stored = [];
      let before;
      for (;;) {
        const page = await call(retrier, 'history', { room, limit: 200, before });
        stored.unshift(...page.messages);
        if (!page.has_more) break;
        before = page.messages[0].seq;
      }
      assert.deepEqual(stored.map((m) => m.seq), stored.map((_, i) => i + 1), 'no gap');
      const ids = stored.map((m) => m.id);
      assert.equal(new Set(ids).size, ids.length, 'no message twice');
      assert.equal(ids.length, outcomes.acked.size, 'exactly the acked messages');
      for (const m of stored) assert.equal(outcomes.acked.get(m.id), m.seq, `${m.id} kept its seq`);
      retrier.close();
    } finally {
      for (const s of clients) s.close();
      await proc.kill('SIGTERM');
    }
  });
});
