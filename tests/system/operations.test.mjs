// OPERATIONS.md's procedures for standalone, done as an operator would: back up by stopping
// (SIGTERM) and copying the data directory, restore by starting on the copy. Everything acked
// before the stop comes back: history, heads, read markers and the inbox; and the restored
// process goes on from there.

import assert from 'node:assert/strict';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { call, connect, standalone, tempDir, token, unique, waitUntil } from './harness.mjs';

const dmRoom = (x, y) => (x < y ? `dm:${x}:${y}` : `dm:${y}:${x}`);

async function snapshot(url, user, rooms) {
  const socket = await connect(url, { token: token(user) });
  try {
    const histories = {};
    for (const room of rooms) {
      const reply = await call(socket, 'history', { room, limit: 200 });
      assert.equal(reply.ok, true, JSON.stringify(reply));
      histories[room] = reply.messages.map(({ seq, id, from, text }) => ({ seq, id, from, text }));
    }
    const inbox = await call(socket, 'inbox', {});
    assert.equal(inbox.ok, true, JSON.stringify(inbox));
    return { histories, inbox: inbox.rooms.map(({ room, head, read, unread, mentions }) => ({ room, head, read, unread, mentions })) };
  } finally {
    socket.close();
  }
}

describe('standalone backup and restore (OPERATIONS.md)', () => {
  it('a copy of the data directory taken after SIGTERM restores every acked message, marker and inbox row', async () => {
    const dir = tempDir();
    const [a, b] = [unique('ada'), unique('bob')];
    const room = unique('ops');
    const dm = dmRoom(a, b);
    let proc = await standalone(dir);
    let before;
    try {
      const ada = await connect(proc.url, { token: token(a) });
      const bob = await connect(proc.url, { token: token(b) });
      await call(ada, 'join', { room });
      await call(ada, 'join', { room: dm });
      const acks = await Promise.all(Array.from({ length: 40 }, (_, i) => call(ada, 'send', { room, id: `m${i}`, text: i % 10 === 0 ? `@${b} look ${i}` : `line ${i}` })));
      assert.ok(acks.every((x) => x.ok), JSON.stringify(acks.find((x) => !x.ok)));
      for (let i = 0; i < 5; i++) {
        const ack = await call(ada, 'send', { room: dm, id: `d${i}`, text: `psst ${i}` });
        assert.equal(ack.ok, true, JSON.stringify(ack));
      }
      assert.deepEqual(await call(bob, 'read', { room: dm, seq: 3 }), { ok: true });
      ada.close();
      bob.close();
      await waitUntil('the inbox has both rooms', async () => (await snapshot(proc.url, b, [])).inbox.length === 2);
      before = await snapshot(proc.url, b, [room, dm]);
    } finally {
      await proc.kill('SIGTERM');
    }
    assert.equal(proc.child.exitCode, 0, 'a SIGTERM stop is clean');
    assert.equal(before.histories[room].length, 40);
    assert.deepEqual(before.inbox.find((r) => r.room === dm), { room: dm, head: 5, read: 3, unread: 2, mentions: 0 });

    const backup = join(tempDir(), 'backup');
    cpSync(dir, backup, { recursive: true });
    proc = await standalone(backup);
    try {
      assert.deepEqual(await snapshot(proc.url, b, [room, dm]), before, 'the restored copy says what the original said');
      const ada = await connect(proc.url, { token: token(a) });
      await call(ada, 'join', { room });
      assert.equal((await call(ada, 'send', { room, id: 'after', text: 'after the restore' })).seq, 41, 'and goes on from its head');
      assert.equal((await call(ada, 'send', { room, id: 'm0', text: 'a retry' })).seq, 1, 'a retry before the backup keeps its seq');
      ada.close();
    } finally {
      await proc.kill('SIGTERM');
    }
  });
});
