// `tidings replay store`: the store is lost (the embedded store file deleted; on Cassandra a
// keyspace that never saw the traffic, as after a dropped keyspace and `tidings migrate`),
// the room log is replayed into it, and every room's history, read marker and inbox count
// is identical: checksums of every page compared.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BIN, Proc, call, connect, distributedEnv, freePort, migrate, standalone, tempDir, token, unique, waitUntil } from './harness.mjs';

const dmRoom = (x, y) => (x < y ? `dm:${x}:${y}` : `dm:${y}:${x}`);

/** Users, rooms, and the traffic: three rooms of 150 messages with mentions, a DM, markers. */
function plan() {
  const [a, b] = [unique('ada'), unique('bob')];
  return { a, b, rooms: [unique('r1'), unique('r2'), unique('r3')], dm: dmRoom(a, b) };
}

async function traffic(url, { a, b, rooms, dm }) {
  const ada = await connect(url, { token: token(a) });
  const bob = await connect(url, { token: token(b) });
  for (const room of [...rooms, dm]) await call(ada, 'join', { room });
  for (const room of rooms) {
    for (let i = 0; i < 150; i += 30) {
      const acks = await Promise.all(Array.from({ length: 30 }, (_, j) => call(ada, 'send', {
        room, id: `m${i + j}`, text: (i + j) % 25 === 0 ? `@${b} number ${i + j}` : `number ${i + j}`,
      }, 60000)));
      assert.ok(acks.every((x) => x.ok), JSON.stringify(acks.find((x) => !x.ok)));
    }
  }
  for (let i = 0; i < 12; i++) assert.equal((await call(ada, 'send', { room: dm, id: `d${i}`, text: `psst ${i}` })).ok, true);
  assert.deepEqual(await call(bob, 'read', { room: dm, seq: 7 }, 30000), { ok: true });
  assert.deepEqual(await call(bob, 'read', { room: rooms[0], seq: 100 }, 30000), { ok: true });
  ada.close();
  bob.close();
}

/** Every page of every room, oldest first, hashed; and the inbox of `user`. */
async function digest(url, { b, rooms, dm }) {
  const bob = await connect(url, { token: token(b) });
  try {
    const rooms_ = {};
    for (const room of [...rooms, dm]) {
      const pages = [];
      let before;
      for (;;) {
        const page = await call(bob, 'history', before === undefined ? { room, limit: 200 } : { room, limit: 200, before }, 30000);
        assert.equal(page.ok, true, JSON.stringify(page));
        pages.unshift(page.messages.map(({ seq, id, from, text, ts }) => [seq, id, from, text, ts]));
        if (!page.has_more) break;
        before = page.messages[0].seq;
      }
      const all = pages.flat();
      rooms_[room] = { count: all.length, sha256: createHash('sha256').update(JSON.stringify(all)).digest('hex') };
    }
    const inbox = await call(bob, 'inbox', {}, 30000);
    assert.equal(inbox.ok, true, JSON.stringify(inbox));
    return { rooms: rooms_, inbox: inbox.rooms.map(({ room, head, read, unread, mentions }) => ({ room, head, read, unread, mentions })) };
  } finally {
    bob.close();
  }
}

function replayStore(env) {
  const run = spawnSync(BIN, ['replay', 'store', ...(env.TIDINGS_DATA_DIR ? ['--embedded'] : [])], {
    env: { ...process.env, RUST_LOG: 'warn', ...env }, encoding: 'utf8', timeout: 600000,
  });
  assert.equal(run.status, 0, run.stderr);
  console.log(run.stdout.trim());
  return run.stdout;
}

function expectComplete(before, { rooms, dm }) {
  for (const room of rooms) assert.equal(before.rooms[room].count, 150);
  assert.equal(before.rooms[dm].count, 12);
  assert.deepEqual(before.inbox.find((r) => r.room === dm), { room: dm, head: 12, read: 7, unread: 5, mentions: 0 });
}

describe('replay store on standalone', () => {
  it('the store file deleted and replayed from the log: identical history, markers and inbox', async () => {
    const dir = tempDir();
    const p = plan();
    let proc = await standalone(dir);
    let before;
    try {
      await traffic(proc.url, p);
      await waitUntil('the inbox has every room', async () => (await digest(proc.url, p)).inbox.length === 4);
      before = await digest(proc.url, p);
    } finally {
      await proc.kill('SIGTERM');
    }
    expectComplete(before, p);

    rmSync(join(dir, 'store.redb'));
    const out = replayStore({ TIDINGS_DATA_DIR: dir });
    assert.match(out, /replayed \d+ room-log records .* 462 messages, 2 read markers, 0 undecodable/);
    proc = await standalone(dir);
    try {
      assert.deepEqual(await digest(proc.url, p), before);
      const ada = await connect(proc.url, { token: token(p.a) });
      await call(ada, 'join', { room: p.rooms[0] });
      assert.equal((await call(ada, 'send', { room: p.rooms[0], id: 'after', text: 'after' })).seq, 151);
      ada.close();
    } finally {
      await proc.kill('SIGTERM');
    }
  });
});

describe('replay store on Kafka and Cassandra', () => {
  /** An edge and `processor all` on keyspace `keyspace`. */
  async function deployment(keyspace) {
    const env = distributedEnv({ TIDINGS_CASSANDRA_KEYSPACE: keyspace });
    migrate(env);
    const processors = await new Proc(['processor', 'all'], { ...env, TIDINGS_NODE_ID: unique('processors') },
      { port: await freePort(), ops: true }).start();
    const edge = await new Proc(['edge'], { ...env, TIDINGS_NODE_ID: unique('edge') }, { port: await freePort() }).start();
    return { env, url: edge.url, stop: async () => { for (const x of [edge, processors]) await x.kill('SIGTERM'); } };
  }

  it('a keyspace that never saw the traffic, replayed from the room log: identical history, markers and inbox', async () => {
    const p = plan();
    const suffix = unique('k').replace(/-/g, '_');
    let live = await deployment(`tidings_replay_a_${suffix}`);
    let before;
    try {
      await traffic(live.url, p);
      await waitUntil('the inbox has every room', async () => (await digest(live.url, p)).inbox.length === 4, 60000);
      before = await digest(live.url, p);
    } finally {
      await live.stop();
    }
    expectComplete(before, p);

    const fresh = `tidings_replay_b_${suffix}`;
    migrate(distributedEnv({ TIDINGS_CASSANDRA_KEYSPACE: fresh }));
    replayStore(distributedEnv({ TIDINGS_CASSANDRA_KEYSPACE: fresh }));
    live = await deployment(fresh);
    try {
      assert.deepEqual(await digest(live.url, p), before);
    } finally {
      await live.stop();
    }
  });
});
