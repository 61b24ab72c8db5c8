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

    it('a moderator deletes a message: members get deleted, history and catch-up show it deleted, no gap', async () => {
      const room = unique('mod');
      const ada = await connect(edgeA, { token: token('ada') });
      const bob = await connect(edgeB, { token: token('bob') });
      const mod = await connect(edgeB, { token: token('mia', { claims: { role: 'moderator' } }) });
      const deleted = [];
      bob.on('deleted', (d) => deleted.push(d));
      for (const s of [ada, bob, mod]) assert.equal((await call(s, 'join', { room })).ok, true);
      for (let i = 1; i <= 3; i++) assert.equal((await call(ada, 'send', { room, id: `m${i}`, text: `text ${i}` })).seq, i);
      await waitUntil('bob has the three messages', () => bob.messages.filter((m) => m.room === room).length === 3);

      assert.deepEqual(await call(mod, 'delete', { room, seq: 2 }), { ok: true });
      await waitUntil('bob told of the deletion', () => deleted.some((d) => d.room === room && d.seq === 2));
      assert.deepEqual(deleted.filter((d) => d.room === room), [{ room, seq: 2 }]);

      const page = await call(bob, 'history', { room });
      assert.deepEqual(page.messages.map((m) => m.seq), [1, 2, 3], 'the seq stays: no gap');
      const gone = page.messages.find((m) => m.seq === 2);
      assert.equal(gone.deleted, true);
      assert.equal('text' in gone, false, 'no text');
      assert.deepEqual([gone.room, gone.id, gone.from, typeof gone.ts], [room, 'm2', 'ada', 'number']);
      assert.equal(page.messages.find((m) => m.seq === 3).text, 'text 3');
      assert.equal(page.messages.find((m) => m.seq === 1).deleted, undefined);

      // A catch-up replay shows it the same way.
      const late = await connect(edgeA, { token: token('carol') });
      await call(late, 'join', { room, since: 0 });
      await waitUntil('carol caught up', () => late.messages.filter((m) => m.room === room).length === 3);
      const replayed = late.messages.find((m) => m.room === room && m.seq === 2);
      assert.equal(replayed.deleted, true);
      assert.equal(replayed.text, undefined);
      // The next message takes the next seq.
      assert.equal((await call(ada, 'send', { room, id: 'm4', text: 'text 4' })).seq, 4);
      for (const s of [ada, bob, mod, late]) s.close();
    });

    it('members delete only their own messages; moderators only in rooms their token allows', async () => {
      const room = unique('own');
      const ada = await connect(edgeA, { token: token('ada') });
      const bob = await connect(edgeB, { token: token('bob') });
      const elsewhere = await connect(edgeA, { token: token('otto', { claims: { role: 'moderator', rooms: ['other-*'] } }) });
      await call(ada, 'join', { room });
      await call(bob, 'join', { room });
      assert.equal((await call(ada, 'send', { room, id: 'a1', text: 'mine' })).seq, 1);
      assert.equal((await call(bob, 'send', { room, id: 'b1', text: 'bobs' })).seq, 2);
      assert.equal(code(await call(ada, 'delete', { room, seq: 2 })), 'forbidden');
      assert.equal(code(await call(elsewhere, 'delete', { room, seq: 2 })), 'forbidden');
      assert.equal(code(await call(ada, 'delete', { room, seq: 99 })), 'invalid');
      assert.equal(code(await call(ada, 'delete', { room, seq: 0 })), 'invalid');
      assert.deepEqual(await call(ada, 'delete', { room, seq: 1 }), { ok: true });
      const page = await call(bob, 'history', { room });
      assert.deepEqual(page.messages.map((m) => [m.seq, m.deleted ?? false, m.text]), [[1, true, undefined], [2, false, 'bobs']]);
      for (const s of [ada, bob, elsewhere]) s.close();
    });

    it('a muted user is refused on every edge until the mute ends; members cannot mute', async () => {
      const room = unique('mute');
      const eve = await connect(edgeB, { token: token('eve') });
      const ada = await connect(edgeA, { token: token('ada') });
      const mod = await connect(edgeA, { token: token('mia', { claims: { role: 'moderator' } }) });
      await call(eve, 'join', { room });
      await call(ada, 'join', { room });
      assert.equal(code(await call(ada, 'mute', { room, user: 'eve', until: Date.now() + 60000 })), 'forbidden');
      assert.equal(code(await call(mod, 'mute', { room, user: 'eve' })), 'invalid');
      assert.deepEqual(await call(mod, 'mute', { room, user: 'eve', until: Date.now() + 60000 }), { ok: true });
      assert.equal(code(await call(eve, 'send', { room, id: 'e1', text: 'let me speak' })), 'forbidden');
      assert.equal((await call(ada, 'send', { room, id: 'a1', text: 'others still can' })).seq, 1);
      assert.equal((await call(eve, 'history', { room })).messages.length, 1, 'a muted user still reads');
      // Muting a user in a room they never joined works too, and only there.
      const other = unique('mute-other');
      await call(eve, 'join', { room: other });
      assert.equal((await call(eve, 'send', { room: other, id: 'e2', text: 'fine here' })).seq, 1);
      // An until in the past lifts it.
      assert.deepEqual(await call(mod, 'mute', { room, user: 'eve', until: Date.now() - 1 }), { ok: true });
      assert.equal((await call(eve, 'send', { room, id: 'e3', text: 'thanks' })).seq, 2);
      for (const s of [eve, ada, mod]) s.close();
    });

    it('a mute refuses the muted user\'s sends already in flight, in the room\'s order', async () => {
      const room = unique('inflight');
      const eve = await connect(edgeB, { token: token('eve') });
      const mod = await connect(edgeA, { token: token('mia', { claims: { role: 'moderator' } }) });
      await call(eve, 'join', { room });
      // Eve keeps 50 sends in flight (under the per-connection cap) until one is refused.
      const outcomes = [];
      const emittedAt = [];
      let refusedSeen = false;
      let first;
      const firstAck = new Promise((resolve) => { first = resolve; });
      const inFlight = new Set();
      const pump = (async () => {
        for (let i = 0; i < 3000 && !refusedSeen; i++) {
          while (inFlight.size >= 50) await Promise.race(inFlight);
          emittedAt[i] = Date.now();
          const p = call(eve, 'send', { room, id: `e${i}`, text: `burst ${i}` }, 30000).then((ack) => {
            outcomes[i] = ack;
            if (!ack.ok) refusedSeen = true;
            first();
            inFlight.delete(p);
          });
          inFlight.add(p);
        }
        await Promise.all(inFlight);
      })();
      await firstAck;
      assert.deepEqual(await call(mod, 'mute', { room, user: 'eve', until: Date.now() + 60000 }), { ok: true });
      const muteAcked = Date.now();
      await pump;
      const ok = outcomes.filter((a) => a.ok);
      const refused = outcomes.filter((a) => !a.ok);
      assert.ok(ok.length >= 1 && refused.length >= 1, `some before, some after the mute: ${ok.length} / ${refused.length}`);
      assert.ok(refused.every((a) => code(a) === 'forbidden'), JSON.stringify(refused.find((a) => code(a) !== 'forbidden')));
      // In emit order: accepted ones, then only refusals; accepted ones take 1..n.
      const firstRefused = outcomes.findIndex((a) => !a.ok);
      assert.ok(outcomes.slice(firstRefused).every((a) => !a.ok), 'nothing accepted after the mute took effect');
      assert.deepEqual(ok.map((a) => a.seq), ok.map((_, i) => i + 1));
      assert.ok(emittedAt[firstRefused] < muteAcked, 'sends already in flight when the mute was answered were refused');
      const newest = (await call(mod, 'history', { room, limit: 1 })).messages[0]?.seq ?? 0;
      assert.equal(newest, ok.length, 'nothing of eve after the mute is stored');
      eve.close();
      mod.close();
    });

    it('a token with a malformed rooms or role claim is refused', async () => {
      for (const claims of [{ rooms: ['a b'] }, { role: 'root' }, { rooms: 'general' }]) {
        await assert.rejects(connect(edgeA, { token: token('mallory', { claims }) }), /unauthorized/, JSON.stringify(claims));
      }
    });
  });
}
