// Deletions and mutes are durable: acked mid-stream, then the process that sequenced and
// stored them is SIGKILLed; after the restart the deleted messages are still deleted (no
// text, seq kept), the mute still refuses, and a store rebuilt from the log by
// `tidings replay store` shows the same. Both backends.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  BIN, Proc, call, connect, distributedEnv, freePort, migrate, standalone, tempDir, token, unique, waitUntil,
} from './harness.mjs';

const code = (ack) => ack?.error?.code;
const moderator = () => token('mia', { claims: { role: 'moderator' } });

function replayStore(env) {
  const run = spawnSync(BIN, ['replay', 'store', ...(env.TIDINGS_DATA_DIR ? ['--embedded'] : [])], {
    env: { ...process.env, RUST_LOG: 'warn', ...env }, encoding: 'utf8', timeout: 600000,
  });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout;
}

/** Ada streams messages; the moderator deletes seqs 5 and 12 and mutes eve while it runs.
 * Resolves once every send and action is acked, with the seqs acked. */
async function moderateMidStream(url, room) {
  const ada = await connect(url, { token: token('ada') });
  const eve = await connect(url, { token: token('eve') });
  const mod = await connect(url, { token: moderator() });
  for (const s of [ada, eve, mod]) await call(s, 'join', { room });
  const before = await call(eve, 'send', { room, id: 'e0', text: 'before the mute' });
  assert.equal(before.ok, true, JSON.stringify(before));
  let sent = 0;
  const stream = (async () => {
    for (let i = 1; i <= 40; i++) {
      const ack = await call(ada, 'send', { room, id: `a${i}`, text: `line ${i}` });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      sent = i;
    }
  })();
  await waitUntil('seq 12 taken', () => sent >= 12);
  assert.deepEqual(await call(mod, 'delete', { room, seq: 5 }), { ok: true });
  assert.deepEqual(await call(mod, 'delete', { room, seq: 12 }), { ok: true });
  assert.deepEqual(await call(mod, 'mute', { room, user: 'eve', until: Date.now() + 10 * 60000 }), { ok: true });
  await stream;
  for (const s of [ada, eve, mod]) s.close();
}

/** The room's history as [seq, deleted, text] rows, asked through `url`. */
async function historyOf(url, room) {
  const bob = await connect(url, { token: token('bob') });
  try {
    // Right after a restart the store may still be catching up (`unavailable`): a client
    // asks again.
    let page;
    await waitUntil('history answered', async () => {
      page = await call(bob, 'history', { room, limit: 100 });
      if (!page.ok && code(page) !== 'unavailable') throw new Error(JSON.stringify(page));
      return page.ok;
    }, 60000);
    assert.equal(page.ok, true, JSON.stringify(page));
    return page.messages.map((m) => [m.seq, m.deleted ?? false, m.text ?? null]);
  } finally {
    bob.close();
  }
}

function expectModerated(rows) {
  assert.equal(rows.length, 41, 'every seq is there (eve 1, ada 40)');
  assert.deepEqual(rows.map((r) => r[0]), rows.map((_, i) => i + 1), 'no gap');
  for (const [seq, deleted, text] of rows) {
    if (seq === 5 || seq === 12) assert.deepEqual([deleted, text], [true, null], `seq ${seq} deleted`);
    else assert.equal(deleted, false, `seq ${seq} kept`);
  }
}

async function expectMuted(url, room) {
  const eve = await connect(url, { token: token('eve') });
  try {
    await call(eve, 'join', { room });
    assert.equal(code(await call(eve, 'send', { room, id: unique('e'), text: 'still muted?' })), 'forbidden');
  } finally {
    eve.close();
  }
}

describe('moderation survives SIGKILL on standalone', () => {
  it('deleted messages stay deleted and the mute holds after a SIGKILL, and after replay store', async () => {
    const dir = tempDir();
    const room = unique('crash-mod');
    let proc = await standalone(dir);
    await moderateMidStream(proc.url, room);
    await proc.kill('SIGKILL');
    proc = await proc.start();
    expectModerated(await historyOf(proc.url, room));
    await expectMuted(proc.url, room);

    // The store file lost: rebuilt from the log, the same.
    await proc.kill('SIGTERM');
    rmSync(join(dir, 'store.redb'));
    replayStore({ TIDINGS_DATA_DIR: dir });
    proc = await proc.start();
    expectModerated(await historyOf(proc.url, room));
    await expectMuted(proc.url, room);
    await proc.kill('SIGTERM');
  });
});

describe('moderation survives SIGKILL on Kafka and Cassandra', () => {
  it('deleted messages stay deleted and the mute holds after the processors are SIGKILLed, and in a replayed keyspace', async () => {
    const env = distributedEnv({ TIDINGS_CASSANDRA_KEYSPACE: 'tidings_moderation' });
    migrate(env);
    let processors = await new Proc(['processor', 'all'], { ...env, TIDINGS_NODE_ID: unique('processors') },
      { port: await freePort(), ops: true }).start();
    const edge = await new Proc(['edge'], { ...env, TIDINGS_NODE_ID: unique('edge') }, { port: await freePort() }).start();
    const room = unique('crash-mod');
    try {
      await moderateMidStream(edge.url, room);
      await processors.kill('SIGKILL');
      processors = await processors.start();
      expectModerated(await historyOf(edge.url, room));
      await expectMuted(edge.url, room);

      // A keyspace that never saw the traffic, filled from the room log.
      const fresh = `tidings_moderation_${unique('r').slice(2, 10)}`;
      migrate({ ...env, TIDINGS_CASSANDRA_KEYSPACE: fresh });
      replayStore({ ...env, TIDINGS_CASSANDRA_KEYSPACE: fresh });
      const reader = await new Proc(['edge'], { ...env, TIDINGS_CASSANDRA_KEYSPACE: fresh, TIDINGS_NODE_ID: unique('edge') },
        { port: await freePort() }).start();
      try {
        expectModerated(await historyOf(reader.url, room));
      } finally {
        await reader.kill('SIGTERM');
      }
    } finally {
      for (const p of [edge, processors]) await p.kill('SIGTERM');
    }
  });
});
