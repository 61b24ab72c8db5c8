// The v3 client contract (room permissions, moderator actions, token lifecycle), checked with
// the stock socket.io-client against a deployment given by `setup()` (standalone, or two
// edges and processors on Kafka and Cassandra). `urls[0]` and `urls[1]` are two edges (the
// same one on standalone).

import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { call, connect, sleep, token, unique, waitUntil } from './harness.mjs';

const code = (ack) => ack?.error?.code;

export function contractV3Suite(name, setup) {
  describe(`v3 contract on ${name}`, () => {
    let deployment;
    let edgeA;
    let edgeB;

    before(async () => {
      deployment = await setup();
      [edgeA, edgeB] = deployment.urls;
    });
    after(async () => deployment?.stop());

    it('a room outside the rooms claim is forbidden for join, history, send, typing, presence and read', async () => {
      const team = unique('team-a');
      const other = unique('team-b');
      const ada = await connect(edgeA, { token: token('ada', { claims: { rooms: [`${team}*`, 'dm:*'] } }) });
      const bob = await connect(edgeB, { token: token('bob') });
      assert.equal((await call(bob, 'join', { room: other })).ok, true);
      assert.equal((await call(bob, 'send', { room: other, id: 'b1', text: 'secret plans' })).seq, 1);

      for (const [event, payload] of [
        ['join', { room: other }],
        ['history', { room: other }],
        ['send', { room: other, id: 'a1', text: 'hello' }],
        ['typing', { room: other, on: true }],
        ['presence', { room: other }],
        ['read', { room: other, seq: 1 }],
      ]) {
        const ack = await call(ada, event, payload);
        assert.equal(code(ack), 'forbidden', `${event}: ${JSON.stringify(ack)}`);
      }
      // What the claim allows still works, including the user's own DM rooms.
      const allowed = `${team}.general`;
      assert.equal((await call(ada, 'join', { room: allowed })).ok, true);
      assert.equal((await call(ada, 'send', { room: allowed, id: 'a2', text: 'hi team' })).seq, 1);
      assert.equal((await call(ada, 'join', { room: 'dm:ada:bob' })).ok, true);
      assert.equal((await call(bob, 'history', { room: other })).messages.length, 1, 'the room itself is fine');
      ada.close();
      bob.close();
    });

    it('a read-only pattern lets a user join and read but not send or type', async () => {
      const room = unique('announce');
      const staff = await connect(edgeA, { token: token('staff') });
      const reader = await connect(edgeB, { token: token('reader', { claims: { rooms: [`${room}=read`] } }) });
      await call(staff, 'join', { room });
      assert.equal((await call(staff, 'send', { room, id: 's1', text: 'release on friday' })).seq, 1);
      assert.equal((await call(reader, 'join', { room })).ok, true);
      const page = await call(reader, 'history', { room });
      assert.deepEqual(page.messages.map((m) => m.text), ['release on friday']);
      assert.equal(code(await call(reader, 'send', { room, id: 'r1', text: 'me too' })), 'forbidden');
      assert.equal(code(await call(reader, 'typing', { room, on: true })), 'forbidden');
      assert.equal((await call(reader, 'read', { room, seq: 1 })).ok, true);
      staff.close();
      reader.close();
    });

    it('inbox and notify never show a room the claim does not allow', async () => {
      const other = unique('hidden');
      const bob = await connect(edgeB, { token: token('bob') });
      const eve = await connect(edgeA, { token: token('eve', { claims: { rooms: ['nothing-here'] } }) });
      await call(bob, 'join', { room: other });
      assert.equal((await call(bob, 'send', { room: other, id: 'm1', text: 'hey @eve look' })).ok, true);
      // The same mention in a room eve may read reaches her, so the hidden one was not lost
      // by accident.
      const open = await connect(edgeA, { token: token('eve2') });
      assert.equal((await call(bob, 'send', { room: other, id: 'm2', text: 'and @eve2' })).ok, true);
      await waitUntil('the mention of eve2 notified', () => open.notify.some((n) => n.room === other));
      await sleep(300);
      assert.deepEqual(eve.notify.filter((n) => n.room === other), []);
      const inbox = await call(eve, 'inbox', {});
      assert.equal(inbox.ok, true);
      assert.deepEqual(inbox.rooms.filter((r) => r.room === other), []);
      for (const s of [bob, eve, open]) s.close();
    });

    it('a token with a malformed rooms or role claim is refused', async () => {
      for (const claims of [{ rooms: ['a b'] }, { role: 'root' }, { rooms: 'general' }]) {
        await assert.rejects(connect(edgeA, { token: token('mallory', { claims }) }), /unauthorized/, JSON.stringify(claims));
      }
    });
  });
}
