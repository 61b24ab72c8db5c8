// The v2 client contract (order, read-your-writes, typing, direct messages), checked with the
// stock socket.io-client against a deployment given by `setup()` (standalone, or two edges
// and processors on Kafka and Cassandra). `urls[0]` and `urls[1]` are two edges (the same
// one on standalone).

import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { call, connect, token, unique, waitUntil } from './harness.mjs';

export function contractV2Suite(name, setup) {
  describe(`v2 contract on ${name}`, () => {
    let deployment;
    let edgeA;
    let edgeB;

    before(async () => {
      deployment = await setup();
      [edgeA, edgeB] = deployment.urls;
    });
    after(async () => deployment?.stop());

    it('pipelined sends from one connection take seqs in emit order', async () => {
      const room = unique('order');
      const ada = await connect(edgeA, { token: token('ada') });
      await call(ada, 'join', { room });
      for (let round = 0; round < 3; round++) {
        // Emitted back to back, no ack awaited in between.
        const acks = await Promise.all(Array.from({ length: 30 }, (_, i) =>
          call(ada, 'send', { room, id: `r${round}-m${i}`, text: `line ${i}` })));
        const seqs = acks.map((a) => a.seq);
        assert.ok(acks.every((a) => a.ok), JSON.stringify(acks.find((a) => !a.ok)));
        const first = seqs[0];
        assert.deepEqual(seqs, seqs.map((_, i) => first + i), `seqs in emit order: ${seqs}`);
      }
      ada.close();
    });

    it('sends of one connection to two rooms do not wait for each other to be ordered', async () => {
      const [r1, r2] = [unique('order'), unique('order')];
      const ada = await connect(edgeA, { token: token('ada') });
      await call(ada, 'join', { room: r1 });
      await call(ada, 'join', { room: r2 });
      const acks = await Promise.all(Array.from({ length: 20 }, (_, i) =>
        call(ada, 'send', { room: i % 2 ? r2 : r1, id: `m${i}`, text: `t${i}` })));
      for (const [parity, room] of [[0, r1], [1, r2]]) {
        const seqs = acks.filter((_, i) => i % 2 === parity).map((a) => a.seq);
        assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], `${room}: ${seqs}`);
      }
      ada.close();
    });

    it('history includes every message acked before it, asked on the other edge', async () => {
      const room = unique('ryw');
      const ada = await connect(edgeA, { token: token('ada') });
      const bob = await connect(edgeB, { token: token('bob') });
      await call(ada, 'join', { room });
      for (let i = 1; i <= 40; i++) {
        const ack = await call(ada, 'send', { room, id: `m${i}`, text: `message ${i}` });
        assert.equal(ack.seq, i);
        const reader = i % 2 ? bob : ada;
        const page = await call(reader, 'history', { room, limit: 5 });
        assert.equal(page.ok, true, JSON.stringify(page));
        assert.equal(page.messages.at(-1)?.seq, i, `history right after ack ${i} ends at ${page.messages.at(-1)?.seq}`);
      }
      ada.close();
      bob.close();
    });

    for (const how of ['leaves', 'disconnects']) {
      it(`a user who ${how} while typing stops typing for the others`, async () => {
        const room = unique('typing');
        const ada = await connect(edgeA, { token: token('ada') });
        const bob = await connect(edgeB, { token: token('bob') });
        await call(ada, 'join', { room });
        await call(bob, 'join', { room });
        assert.deepEqual(await call(ada, 'typing', { room, on: true }), { ok: true });
        await waitUntil('bob sees ada typing', () => bob.typing.length === 1);
        if (how === 'leaves') assert.deepEqual(await call(ada, 'leave', { room }), { ok: true });
        else ada.close();
        await waitUntil('bob sees ada stop', () => bob.typing.length === 2);
        assert.deepEqual(bob.typing, [{ room, user: 'ada', on: true }, { room, user: 'ada', on: false }]);
        bob.close();
      });
    }

    it('a user who stopped typing before leaving sends no second off', async () => {
      const room = unique('typing');
      const ada = await connect(edgeA, { token: token('ada') });
      const bob = await connect(edgeB, { token: token('bob') });
      await call(ada, 'join', { room });
      await call(bob, 'join', { room });
      await call(ada, 'typing', { room, on: true });
      await call(ada, 'typing', { room, on: false });
      await waitUntil('bob sees on and off', () => bob.typing.length === 2);
      await call(ada, 'leave', { room });
      // A marker after the leave: once bob has it, any extra "off" would have come first.
      await call(ada, 'join', { room });
      await call(ada, 'typing', { room, on: true });
      await waitUntil('bob sees the marker', () => bob.typing.length >= 3);
      assert.deepEqual(bob.typing.map((t) => t.on), [true, false, true]);
      ada.close();
      bob.close();
    });

    const online = (s, room) => s.presence.filter((p) => p.room === room);
    const statusOf = async (socket, user) => (await call(socket, 'status', { users: [user] })).users[0];

    it('presence: one user on two devices is online until both are gone', async () => {
      const room = unique('presence');
      const ada = unique('ada');
      const bob = await connect(edgeB, { token: token('bob') });
      assert.equal((await call(bob, 'join', { room })).ok, true);
      const phone = await connect(edgeA, { token: token(ada, { name: 'Ada' }) });
      const laptop = await connect(edgeB, { token: token(ada, { name: 'Ada' }) });
      await call(phone, 'join', { room });
      await waitUntil('bob sees ada online', () => online(bob, room).some((p) => p.user === ada));
      await call(laptop, 'join', { room });

      // Asked right after a join's ack: the asker is in it (the question follows the join).
      const whole = await call(laptop, 'presence', { room });
      assert.equal(whole.ok, true, JSON.stringify(whole));
      assert.equal(whole.count, 2);
      assert.deepEqual(whole.users.map((u) => u.user).sort(), [ada, 'bob'].sort());
      assert.equal(whole.users.find((u) => u.user === ada).name, 'Ada');

      phone.close();
      assert.deepEqual((await statusOf(bob, ada)).online, true, 'still on the laptop');
      assert.equal((await call(bob, 'presence', { room })).count, 2);
      assert.equal(online(bob, room).filter((p) => p.user === ada).length, 1, 'no offline while the laptop is in');

      assert.deepEqual(await call(laptop, 'leave', { room }), { ok: true });
      await waitUntil('bob sees ada leave', () => online(bob, room).filter((p) => p.user === ada).length === 2);
      assert.deepEqual(online(bob, room).filter((p) => p.user === ada), [
        { room, user: ada, online: true },
        { room, user: ada, online: false },
      ]);
      const stillConnected = await statusOf(bob, ada);
      assert.equal(stillConnected.online, true, 'connected, in no room');

      const before = Date.now();
      laptop.close();
      await waitUntil('ada offline everywhere', async () => (await statusOf(bob, ada)).online === false);
      const gone = await statusOf(bob, ada);
      assert.ok(gone.last_seen >= before - 5000 && gone.last_seen <= Date.now() + 5000, `last_seen ${gone.last_seen}`);
      const stranger = unique('never');
      assert.deepEqual(await statusOf(bob, stranger), { user: stranger, online: false, last_seen: null });
      bob.close();
    });

    it('presence needs the room joined and a DM room of ones own; status checks its input', async () => {
      const room = unique('presence');
      const eve = await connect(edgeA, { token: token('eve') });
      assert.equal((await call(eve, 'presence', { room })).error.code, 'not_joined');
      assert.equal((await call(eve, 'presence', { room: 'dm:ada:bob' })).error.code, 'forbidden');
      assert.equal((await call(eve, 'presence', {})).error.code, 'invalid');
      assert.equal((await call(eve, 'status', { users: [] })).error.code, 'invalid');
      assert.equal((await call(eve, 'status', { users: Array.from({ length: 101 }, (_, i) => `u${i}`) })).error.code, 'invalid');
      assert.equal((await call(eve, 'status', { users: [42] })).error.code, 'invalid');
      const ok = await call(eve, 'status', { users: ['eve'] });
      assert.deepEqual(ok.users, [{ user: 'eve', online: true, last_seen: ok.users[0].last_seen }]);
      eve.close();
    });

    it('a room past TIDINGS_PRESENCE_EVENTS_MAX (5 here) gets occupancy, at most once a second, ending on the count', async () => {
      const room = unique('big');
      const bob = await connect(edgeA, { token: token('bob') });
      await call(bob, 'join', { room });
      const users = [];
      for (let i = 0; i < 7; i++) {
        const s = await connect(i % 2 ? edgeA : edgeB, { token: token(unique(`u${i}`)) });
        await call(s, 'join', { room });
        users.push(s);
      }
      // bob + 7 = 8 online: per-user events up to 5, then counts.
      await waitUntil('occupancy reaches 8', () => bob.occupancy.at(-1)?.count === 8);
      const perUser = online(bob, room);
      assert.equal(perUser.length, 5, `per-user events only while small: ${JSON.stringify(perUser)}`);
      const first = bob.occupancy.length;
      assert.ok(first <= 3, `${first} occupancy events for a burst of 3 joins`);
      assert.equal((await call(bob, 'presence', { room })).count, 8);

      // Back to 5: one last count, then per-user events again.
      for (const s of users.slice(4)) await call(s, 'leave', { room });
      await waitUntil('occupancy ends on 5', () => bob.occupancy.at(-1)?.count === 5);
      await new Promise((r) => setTimeout(r, 1200));
      assert.equal(bob.occupancy.at(-1).count, 5);
      await call(users[0], 'leave', { room });
      await waitUntil('a per-user offline again', () => online(bob, room).length === 6);
      assert.equal(online(bob, room).at(-1).online, false);
      for (const s of [bob, ...users]) s.close();
    });

    it('a direct-message room is private to its two users', async () => {
      const room = `dm:${unique('ada')}:${unique('bob').replace(/^bob/, 'zed')}`;
      const [, a, b] = room.split(':');
      const ada = await connect(edgeA, { token: token(a) });
      const bob = await connect(edgeB, { token: token(b) });
      const eve = await connect(edgeA, { token: token('eve') });
      assert.equal((await call(ada, 'join', { room })).ok, true);
      assert.equal((await call(bob, 'join', { room })).ok, true);
      const sent = await call(ada, 'send', { room, id: 'hi', text: 'just us' });
      assert.equal(sent.seq, 1);
      await waitUntil('bob gets it', () => bob.messages.length === 1);
      assert.equal((await call(bob, 'history', { room })).messages[0].text, 'just us');

      for (const [event, payload] of [
        ['join', { room }],
        ['send', { room, id: 'x', text: 'let me in' }],
        ['history', { room }],
      ]) {
        const ack = await call(eve, event, payload);
        assert.equal(ack.ok, false, event);
        assert.equal(ack.error.code, 'forbidden', `${event}: ${JSON.stringify(ack)}`);
      }
      assert.equal(eve.messages.length, 0);
      // The same two users in the wrong order name nobody's room.
      const reversed = `dm:${b}:${a}`;
      assert.equal((await call(ada, 'join', { room: reversed })).error.code, 'forbidden');
      assert.equal((await call(bob, 'join', { room: reversed })).error.code, 'forbidden');
      // Eve's refusals left the conversation untouched.
      assert.deepEqual((await call(ada, 'history', { room })).messages.map((m) => m.id), ['hi']);
      for (const s of [ada, bob, eve]) s.close();
    });

    const dmRoom = (x, y) => (x < y ? `dm:${x}:${y}` : `dm:${y}:${x}`);
    const inboxOf = async (socket) => {
      const reply = await call(socket, 'inbox', {});
      assert.equal(reply.ok, true, JSON.stringify(reply));
      return reply.rooms;
    };
    const entry = async (socket, room) => (await inboxOf(socket)).find((r) => r.room === room);
    // Edges announce their users asynchronously: until the inbox processor has heard of a
    // user's connection, notices for it have nowhere to go. A probe user mentions them in a
    // room of its own until a notice arrives.
    const reachable = async (socket, user) => {
      const probe = await connect(edgeA, { token: token(unique('probe')) });
      const room = unique('probe');
      await call(probe, 'join', { room });
      let i = 0;
      await waitUntil(`${user} reachable by notify`, async () => {
        await call(probe, 'send', { room, id: `p${i++}`, text: `@${user} ping` });
        await new Promise((r) => setTimeout(r, 100));
        return socket.notify.some((n) => n.room === room);
      });
      probe.close();
      socket.notify = [];
    };

    it('read markers: checked against the head, never move back, reach the other connections and members', async () => {
      const room = unique('reads');
      const [a, b] = [unique('ada'), unique('bob')];
      const phone = await connect(edgeA, { token: token(a) });
      const laptop = await connect(edgeB, { token: token(a) });
      const bob = await connect(edgeB, { token: token(b) });
      await call(phone, 'join', { room });
      await call(bob, 'join', { room });
      for (let i = 1; i <= 3; i++) await call(bob, 'send', { room, id: `m${i}`, text: `line ${i}` });
      await reachable(laptop, a);

      for (const bad of [{ room, seq: 4 }, { room, seq: -1 }, { room }, { room, seq: 'x' }, { seq: 1 }]) {
        const ack = await call(phone, 'read', bad);
        assert.equal(ack.error?.code, 'invalid', `${JSON.stringify(bad)} → ${JSON.stringify(ack)}`);
      }
      assert.deepEqual(await call(phone, 'read', { room, seq: 2 }), { ok: true });
      // Read its writes: the inbox right after the ack has the marker.
      assert.equal((await entry(phone, room)).read, 2);
      await waitUntil('the laptop hears of it', () => laptop.reads.length === 1);
      assert.deepEqual(laptop.reads, [{ room, seq: 2 }]);
      await waitUntil('bob gets a receipt', () => bob.receipts.length === 1);
      assert.deepEqual(bob.receipts, [{ room, user: a, seq: 2 }]);

      // Older and equal markers are acknowledged and change nothing.
      assert.deepEqual(await call(laptop, 'read', { room, seq: 1 }), { ok: true });
      assert.deepEqual(await call(laptop, 'read', { room, seq: 2 }), { ok: true });
      assert.deepEqual(await call(laptop, 'read', { room, seq: 3 }), { ok: true });
      await waitUntil('the phone hears of 3', () => phone.reads.length === 1);
      await waitUntil('bob gets the receipt for 3', () => bob.receipts.length === 2);
      assert.deepEqual(phone.reads, [{ room, seq: 3 }], 'the setter itself gets no read');
      assert.deepEqual(bob.receipts.map((r) => r.seq), [2, 3]);
      assert.deepEqual(laptop.reads, [{ room, seq: 2 }]);
      assert.equal(phone.receipts.length + laptop.receipts.length, 0, 'no receipts of ones own reads');
      const e = await entry(phone, room);
      assert.deepEqual({ ...e, last: { ...e.last, ts: 0 } }, {
        room, head: 3, read: 3, unread: 0, mentions: 0, last: { seq: 3, from: b, text: 'line 3', ts: 0 },
      });

      const eve = await connect(edgeA, { token: token('eve') });
      assert.equal((await call(eve, 'read', { room: dmRoom(a, b), seq: 0 })).error.code, 'forbidden');
      assert.equal((await call(eve, 'inbox', 'nope')).error.code, 'invalid');
      for (const s of [phone, laptop, bob, eve]) s.close();
    });

    it('inbox: DMs and whole-word mentions, unread without ones own, newest first; notify outside joined rooms', async () => {
      const [a, b, c] = [unique('ada'), unique('bob'), unique('cat')];
      const dm = dmRoom(a, b);
      const room = unique('mentions');
      const ada = await connect(edgeA, { token: token(a) });
      const bob = await connect(edgeB, { token: token(b) });
      const cat = await connect(edgeA, { token: token(c) });
      await reachable(bob, b);

      await call(ada, 'join', { room: dm });
      await call(ada, 'send', { room: dm, id: 'd1', text: 'are you there?' });
      await call(ada, 'send', { room: dm, id: 'd2', text: 'ping' });
      await call(ada, 'join', { room });
      await call(cat, 'join', { room });
      await call(ada, 'send', { room, id: 'r1', text: `hey @${b}, look` });
      await call(ada, 'send', { room, id: 'r2', text: `@${b}by is someone else` });
      await call(cat, 'send', { room, id: 'r3', text: 'no mention here' });

      await waitUntil('bob notified of two DMs and one mention', () => bob.notify.length === 3);
      assert.deepEqual(bob.notify.map(({ room: r, seq, from, text, kind }) => ({ r, seq, from, text, kind })), [
        { r: dm, seq: 1, from: a, text: 'are you there?', kind: 'dm' },
        { r: dm, seq: 2, from: a, text: 'ping', kind: 'dm' },
        { r: room, seq: 1, from: a, text: `hey @${b}, look`, kind: 'mention' },
      ]);
      assert.equal(cat.notify.length, 0);

      // Only these two rooms: the probe's mentions put its room in bob's inbox too.
      const ours = async () => (await inboxOf(bob)).filter((r) => r.room === room || r.room === dm);
      const settled = (want) => async () => JSON.stringify((await ours()).map(
        ({ room: r, head, read, unread, mentions }) => ({ r, head, read, unread, mentions }))) === JSON.stringify(want);
      await waitUntil('bob inbox: the room (newest) then the DM', settled([
        { r: room, head: 3, read: 0, unread: 3, mentions: 1 },
        { r: dm, head: 2, read: 0, unread: 2, mentions: 0 },
      ]));
      const [first, second] = await ours();
      assert.deepEqual({ ...first.last, ts: 0 }, { seq: 3, from: c, text: 'no mention here', ts: 0 });
      assert.equal(second.last.text, 'ping');
      assert.ok(first.last.ts >= second.last.ts);

      // Joined now: messages, not notices; ones own messages are never unread.
      await call(bob, 'join', { room });
      await call(bob, 'send', { room, id: 'b1', text: 'replying' });
      await call(ada, 'send', { room, id: 'r4', text: `@${b} again` });
      await waitUntil('bob has the message', () => bob.messages.some((m) => m.id === 'r4'));
      await waitUntil('bob inbox counts', settled([
        { r: room, head: 5, read: 0, unread: 4, mentions: 2 },
        { r: dm, head: 2, read: 0, unread: 2, mentions: 0 },
      ]));
      assert.equal(bob.notify.length, 3, 'no notify for a joined room');
      assert.deepEqual(await call(bob, 'read', { room, seq: 4 }), { ok: true });
      assert.deepEqual(await call(bob, 'read', { room: dm, seq: 1 }), { ok: true });
      assert.deepEqual(
        (await ours()).map(({ room: r, read, unread, mentions }) => ({ r, read, unread, mentions })),
        [{ r: room, read: 4, unread: 1, mentions: 1 }, { r: dm, read: 1, unread: 1, mentions: 0 }],
      );
      // Ada's side of the DM: all hers, nothing unread.
      await waitUntil('ada inbox has the DM', async () => (await entry(ada, dm))?.unread === 0);
      assert.equal((await entry(cat, dm)), undefined, 'a DM is nobody elses');
      for (const s of [ada, bob, cat]) s.close();
    });

    it('an offline user loses nothing: 10,000 DMs, then inbox and join since read give each exactly once', async () => {
      const [a, b] = [unique('ada'), unique('bob')];
      const dm = dmRoom(a, b);
      const total = 10000;
      const ada = await connect(edgeA, { token: token(a) });
      await call(ada, 'join', { room: dm });
      for (let start = 1; start <= total; start += 50) {
        const acks = await Promise.all(Array.from({ length: 50 }, (_, i) =>
          call(ada, 'send', { room: dm, id: `m${start + i}`, text: `dm ${start + i}` }, 60000)));
        assert.ok(acks.every((x) => x.ok), JSON.stringify(acks.find((x) => !x.ok)));
      }
      ada.close();

      const bob = await connect(edgeB, { token: token(b) });
      await waitUntil('bob inbox has all of them', async () => (await entry(bob, dm))?.unread === total, 60000);
      const e = await entry(bob, dm);
      assert.deepEqual([e.head, e.read, e.unread, e.last.text], [total, 0, total, `dm ${total}`]);
      const joined = await call(bob, 'join', { room: dm, since: e.read }, 60000);
      assert.equal(joined.ok, true, JSON.stringify(joined));
      await waitUntil('bob caught up', () => bob.messages.length >= total, 60000);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(bob.messages.length, total, 'each once');
      assert.deepEqual(bob.messages.map((m) => m.seq), Array.from({ length: total }, (_, i) => i + 1));
      assert.ok(bob.messages.every((m) => m.text === `dm ${m.seq}` && m.from === a));
      assert.deepEqual(await call(bob, 'read', { room: dm, seq: total }), { ok: true });
      assert.equal((await entry(bob, dm)).unread, 0);
      bob.close();
    });
  });
}
