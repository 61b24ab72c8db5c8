// The v1 client contract, checked with the stock socket.io-client against a deployment given
// by `setup()` (standalone, or edges and processors on Kafka and Cassandra).

import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { call, connect, sleep, token, unique, waitUntil } from './harness.mjs';

export function contractSuite(name, setup) {
  describe(`v1 contract on ${name}`, () => {
    let deployment;
    let edgeA;
    let edgeB;

    before(async () => {
      deployment = await setup();
      [edgeA, edgeB] = deployment.urls;
    });
    after(async () => deployment?.stop());

    it('two users on two edges exchange messages in seq order', async () => {
      const room = unique('room');
      const ada = await connect(edgeA, { token: token('ada', { name: 'Ada' }) });
      const bob = await connect(edgeB, { token: token('bob') });
      const joinedA = await call(ada, 'join', { room });
      const joinedB = await call(bob, 'join', { room });
      assert.deepEqual(joinedA, { ok: true, room, head: 0 });
      assert.equal(joinedB.ok, true);

      const first = await call(ada, 'send', { room, id: 'm1', text: 'hello bob' });
      assert.equal(first.ok, true);
      assert.equal(first.seq, 1);
      assert.equal(typeof first.ts, 'number');
      const second = await call(bob, 'send', { room, id: 'm2', text: 'hi ada' });
      assert.equal(second.seq, 2);

      await waitUntil('both see both messages', () => ada.messages.length >= 2 && bob.messages.length >= 2);
      for (const socket of [ada, bob]) {
        assert.deepEqual(socket.messages.map((m) => [m.seq, m.id, m.from, m.text]), [
          [1, 'm1', 'ada', 'hello bob'],
          [2, 'm2', 'bob', 'hi ada'],
        ]);
        assert.equal(socket.messages[0].room, room);
        assert.equal(socket.messages[0].ts, first.ts);
      }
      ada.close();
      bob.close();
    });

    it('resume with since replays exactly what was missed, then live', async () => {
      const room = unique('room');
      const ada = await connect(edgeA, { token: token('ada') });
      await call(ada, 'join', { room });
      const bob = await connect(edgeB, { token: token('bob') });
      await call(bob, 'join', { room });
      for (let i = 1; i <= 5; i++) await call(ada, 'send', { room, id: `a${i}`, text: `before ${i}` });
      await waitUntil('bob got 5', () => bob.messages.length === 5);
      bob.close();
      for (let i = 6; i <= 25; i++) await call(ada, 'send', { room, id: `a${i}`, text: `missed ${i}` });

      // Bob comes back on the other edge.
      const back = await connect(edgeA, { token: token('bob') });
      const joined = await call(back, 'join', { room, since: 5 });
      assert.deepEqual(joined, { ok: true, room, head: 25 });
      assert.deepEqual(back.messages.map((m) => m.seq), Array.from({ length: 20 }, (_, i) => i + 6),
        'replayed before the ack, in order, nothing twice');
      await call(ada, 'send', { room, id: 'a26', text: 'live' });
      await waitUntil('live message', () => back.messages.length === 21);
      await sleep(200);
      assert.deepEqual(back.messages.map((m) => m.seq), Array.from({ length: 21 }, (_, i) => i + 6));
      ada.close();
      back.close();
    });

    it('a retried send gets the original seq and the message exists once', async () => {
      const room = unique('room');
      const ada = await connect(edgeA, { token: token('ada') });
      await call(ada, 'join', { room });
      const first = await call(ada, 'send', { room, id: 'same', text: 'once' });
      const again = await call(ada, 'send', { room, id: 'same', text: 'once' });
      assert.deepEqual(again, first);
      // Also from another connection on another edge.
      const other = await connect(edgeB, { token: token('ada') });
      await call(other, 'join', { room });
      assert.deepEqual(await call(other, 'send', { room, id: 'same', text: 'once' }), first);
      const next = await call(ada, 'send', { room, id: 'other', text: 'twice' });
      assert.equal(next.seq, first.seq + 1, 'no seq was spent on the duplicates');
      await waitUntil('history has both', async () => (await call(ada, 'history', { room })).messages.length === 2);
      const history = await call(ada, 'history', { room });
      assert.deepEqual(history.messages.map((m) => m.id), ['same', 'other']);
      ada.close();
      other.close();
    });

    it('moderation rejects with a code and spends no seq', async () => {
      const room = unique('room');
      const ada = await connect(edgeA, { token: token('ada') });
      const bob = await connect(edgeB, { token: token('bob') });
      await call(ada, 'join', { room });
      await call(bob, 'join', { room });
      const blocked = await call(ada, 'send', { room, id: 'b1', text: 'this is SPAM indeed' });
      assert.equal(blocked.ok, false);
      assert.equal(blocked.error.code, 'rejected');
      const empty = await call(ada, 'send', { room, id: 'b2', text: '  \u0007 ' });
      assert.equal(empty.error.code, 'invalid');
      const long = await call(ada, 'send', { room, id: 'b3', text: 'x'.repeat(201) });
      assert.equal(long.error.code, 'too_large');
      const fine = await call(ada, 'send', { room, id: 'b4', text: 'cafe\u0301\u0000 ok' });
      assert.equal(fine.seq, 1, 'rejections took no seq');
      await waitUntil('bob sees the accepted one', () => bob.messages.length === 1);
      await sleep(300);
      assert.equal(bob.messages.length, 1, 'rejected messages are never delivered');
      assert.equal(bob.messages[0].text, 'café ok', 'control characters removed, NFC');
      ada.close();
      bob.close();
    });

    it('missing, expired and wrongly signed tokens are refused as unauthorized', async () => {
      const cases = [
        {},
        { token: 'not-a-jwt' },
        { token: token('ada', { expiresIn: -60 }) },
        { token: token('ada', { secret: 'wrong' }) },
      ];
      for (const auth of cases) {
        await assert.rejects(connect(edgeA, auth), (err) => err.message === 'unauthorized');
      }
    });

    it('bad events get clear codes and the connection keeps serving', async () => {
      const room = unique('room');
      const ada = await connect(edgeA, { token: token('ada') });
      assert.equal((await call(ada, 'send', { room, id: 'x', text: 'early' })).error.code, 'not_joined');
      assert.equal((await call(ada, 'join', { room: 'bad room!' })).error.code, 'invalid');
      assert.equal((await call(ada, 'join', 'not an object')).error.code, 'invalid');
      assert.equal((await call(ada, 'join', { room, since: -3 })).error.code, 'invalid');
      assert.equal((await call(ada, 'frobnicate', { room })).error.code, 'invalid');
      await call(ada, 'join', { room });
      assert.equal((await call(ada, 'send', { room, id: '', text: 'x' })).error.code, 'invalid');
      assert.equal((await call(ada, 'send', { room, id: 'x'.repeat(65), text: 'x' })).error.code, 'invalid');
      assert.equal((await call(ada, 'send', { room, id: 'n', text: 42 })).error.code, 'invalid');
      const huge = await call(ada, 'send', { room, id: 'big', text: 'y'.repeat(40000) });
      assert.equal(huge.error.code, 'too_large');
      assert.equal((await call(ada, 'history', { room, limit: 500 })).error.code, 'invalid');
      const ok = await call(ada, 'send', { room, id: 'good', text: 'still here' });
      assert.equal(ok.seq, 1);
      assert.ok(ada.connected);
      ada.close();
    });

    it('history pages backwards in ascending order with has_more', async () => {
      const room = unique('room');
      const ada = await connect(edgeA, { token: token('ada') });
      await call(ada, 'join', { room });
      for (let i = 1; i <= 12; i++) await call(ada, 'send', { room, id: `h${i}`, text: `t${i}` });
      await waitUntil('persisted', async () => (await call(ada, 'history', { room, limit: 1 })).messages[0]?.seq === 12);
      const latest = await call(ada, 'history', { room, limit: 5 });
      assert.deepEqual(latest.messages.map((m) => m.seq), [8, 9, 10, 11, 12]);
      assert.equal(latest.has_more, true);
      const older = await call(ada, 'history', { room, before: 8, limit: 5 });
      assert.deepEqual(older.messages.map((m) => m.seq), [3, 4, 5, 6, 7]);
      const oldest = await call(ada, 'history', { room, before: 3, limit: 5 });
      assert.deepEqual(oldest.messages.map((m) => m.seq), [1, 2]);
      assert.equal(oldest.has_more, false);
      ada.close();
    });

    it('typing reaches the other members, not the typist', async () => {
      const room = unique('room');
      const ada = await connect(edgeA, { token: token('ada') });
      const bob = await connect(edgeB, { token: token('bob') });
      await call(ada, 'join', { room });
      await call(bob, 'join', { room });
      assert.deepEqual(await call(ada, 'typing', { room, on: true }), { ok: true });
      await waitUntil('bob sees typing', () => bob.typing.length === 1);
      assert.deepEqual(bob.typing[0], { room, user: 'ada', on: true });
      await sleep(300);
      assert.equal(ada.typing.length, 0);
      ada.close();
      bob.close();
    });

    it('leave stops delivery to that connection', async () => {
      const room = unique('room');
      const ada = await connect(edgeA, { token: token('ada') });
      const bob = await connect(edgeB, { token: token('bob') });
      await call(ada, 'join', { room });
      await call(bob, 'join', { room });
      assert.deepEqual(await call(bob, 'leave', { room }), { ok: true });
      await call(ada, 'send', { room, id: 'l1', text: 'anyone?' });
      await waitUntil('ada sees her own', () => ada.messages.length === 1);
      await sleep(400);
      assert.equal(bob.messages.length, 0);
      assert.equal((await call(bob, 'send', { room, id: 'l2', text: 'x' })).error.code, 'not_joined');
      ada.close();
      bob.close();
    });

    it('serves health, readiness and metrics', async () => {
      assert.equal((await fetch(`${edgeA}/healthz`)).status, 200);
      assert.equal((await fetch(`${edgeA}/readyz`)).status, 200);
      const metrics = await (await fetch(`${edgeA}/metrics`)).text();
      assert.match(metrics, /tidings_edge_connections/);
      assert.match(metrics, /tidings_edge_events_in_total\{kind="send"/);
    });
  });
}
