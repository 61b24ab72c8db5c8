// The inbox under SIGKILL: the inbox processor dies while DMs, mentions and read markers flow,
// and comes back; standalone dies and comes back. Afterwards unread and mention counts are
// exact, no read marker is lost or moved back, and nothing is counted twice.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Proc, call, connect, distributedEnv, freePort, migrate, sleep, standalone, tempDir, token, unique, waitUntil } from './harness.mjs';

const dmRoom = (x, y) => (x < y ? `dm:${x}:${y}` : `dm:${y}:${x}`);
const inboxOf = async (socket) => {
  const reply = await call(socket, 'inbox', {});
  assert.equal(reply.ok, true, JSON.stringify(reply));
  return Object.fromEntries(reply.rooms.map(({ room, head, read, unread, mentions }) => [room, { head, read, unread, mentions }]));
};

/**
 * Ada writes `rounds` rounds to Bob: 20 DMs and 10 room messages, every other one mentioning
 * him; Bob marks the DM read up to the middle of each round, and then once more to an older
 * seq (which must change nothing). Returns what the inbox must say afterwards.
 */
async function traffic(ada, bob, dm, room, b, rounds, between = async () => {}) {
  let dmHead = 0;
  let roomHead = 0;
  let mentions = 0;
  let marker = 0;
  for (let round = 0; round < rounds; round++) {
    const dms = Array.from({ length: 20 }, (_, i) => call(ada, 'send', { room: dm, id: `d${round}-${i}`, text: `dm ${round}.${i}` }, 60000));
    const posts = Array.from({ length: 10 }, (_, i) => {
      const mention = i % 2 === 0;
      if (mention) mentions++;
      return call(ada, 'send', { room, id: `r${round}-${i}`, text: mention ? `@${b} round ${round}` : `round ${round}` }, 60000);
    });
    const acks = await Promise.all([...dms, ...posts]);
    assert.ok(acks.every((a) => a.ok), JSON.stringify(acks.find((a) => !a.ok)));
    dmHead += 20;
    roomHead += 10;
    marker = dmHead - 10;
    assert.deepEqual(await call(bob, 'read', { room: dm, seq: marker }, 60000), { ok: true });
    assert.deepEqual(await call(bob, 'read', { room: dm, seq: Math.max(0, marker - 15) }, 60000), { ok: true });
    await between(round);
  }
  return {
    [dm]: { head: dmHead, read: marker, unread: dmHead - marker, mentions: 0 },
    [room]: { head: roomHead, read: 0, unread: roomHead, mentions },
  };
}

describe('the inbox on Kafka and Cassandra under SIGKILL', () => {
  const env = distributedEnv();
  let core;
  let inbox;
  let edgeA;
  let edgeB;

  before(async () => {
    migrate(env);
    core = await new Proc(['processor', 'sequencer,persistence,fanout,typing,presence'], { ...env, TIDINGS_NODE_ID: unique('core') }).start();
    inbox = await new Proc(['processor', 'inbox'], { ...env, TIDINGS_NODE_ID: unique('inbox') }).start();
    edgeA = await new Proc(['edge'], { ...env, TIDINGS_NODE_ID: unique('edge-a') }, { port: await freePort() }).start();
    edgeB = await new Proc(['edge'], { ...env, TIDINGS_NODE_ID: unique('edge-b') }, { port: await freePort() }).start();
  });
  after(async () => {
    for (const p of [edgeA, edgeB, inbox, core]) await p?.kill('SIGTERM');
  });

  it('the inbox processor SIGKILLed mid-stream comes back exact: counts, markers, nothing twice', async () => {
    const [a, b] = [unique('ada'), unique('bob')];
    const dm = dmRoom(a, b);
    const room = unique('crowd');
    const ada = await connect(edgeA.url, { token: token(a) });
    const bob = await connect(edgeB.url, { token: token(b) });
    await call(ada, 'join', { room: dm });
    await call(ada, 'join', { room });

    let killed = false;
    const expected = await traffic(ada, bob, dm, room, b, 12, async (round) => {
      if (round === 3) {
        // Mid-stream: the next rounds are already being appended.
        setTimeout(() => { inbox.kill('SIGKILL'); killed = true; }, 30);
      }
      if (round === 7) await inbox.start();
    });
    assert.ok(killed);

    try {
      await waitUntil('the inbox is exact again', async () => JSON.stringify(await inboxOf(bob)) === JSON.stringify(expected), 90000);
    } catch (e) {
      // Show what it says instead, and what the inbox processor logged.
      console.log(`inbox processor output:\n${inbox.output.join('')}`);
      assert.deepEqual(await inboxOf(bob), expected, e.message);
    }
    await sleep(2000); // and stays so: nothing replayed twice on top
    assert.deepEqual(await inboxOf(bob), expected);
    const adas = await inboxOf(ada);
    assert.deepEqual(adas[dm], { head: expected[dm].head, read: 0, unread: 0, mentions: 0 }, 'her own DMs are not unread for her');
    ada.close();
    bob.close();
  });
});

describe('the inbox on standalone across a SIGKILL', () => {
  it('read markers, unread and mention counts survive the crash', async () => {
    const dir = tempDir();
    let proc = await standalone(dir);
    const [a, b] = [unique('ada'), unique('bob')];
    const dm = dmRoom(a, b);
    const room = unique('crowd');
    const ada = await connect(proc.url, { token: token(a) });
    const bob = await connect(proc.url, { token: token(b) });
    await call(ada, 'join', { room: dm });
    await call(ada, 'join', { room });
    const expected = await traffic(ada, bob, dm, room, b, 3);
    await waitUntil('the inbox is exact', async () => JSON.stringify(await inboxOf(bob)) === JSON.stringify(expected));
    await proc.kill('SIGKILL');
    proc = await standalone(dir);
    try {
      const again = await connect(proc.url, { token: token(b) });
      assert.deepEqual(await inboxOf(again), expected, 'the same after the crash');
      // Still moving forward, never back.
      assert.deepEqual(await call(again, 'read', { room: dm, seq: 1 }), { ok: true });
      assert.equal((await inboxOf(again))[dm].read, expected[dm].read);
      again.close();
    } finally {
      await proc.kill('SIGTERM');
    }
  });
});
