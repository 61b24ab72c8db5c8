// `tidings replay processor`: one processor run over the room log's history beside the live
// one, with real processes, real HTTP receivers on loopback and messages sent through stock
// socket.io clients. The live webhook processor delivers to endpoint A; endpoint B, added
// later, gets the whole history from a backfill (in order per room, signed with B's secret,
// nothing newer) while A keeps getting new messages, each once. A backfill from a time gives
// A again exactly what came after that time, with the delivery ids A got live, so A drops
// them as repeats. The live group's committed offsets do not move during a backfill. The
// sequencer refuses, saying why. On Kafka + Cassandra, and on the embedded log of a stopped
// standalone.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { BIN, Proc, distributedEnv, freePort, migrate, sleep, standalone, tempDir, unique, waitUntil } from './harness.mjs';
import { Receiver, checkDelivered, sendToRooms } from './receiver.mjs';

/** A webhook endpoint entry for `receiver`, for rooms matching `pattern`. */
const endpoint = (name, receiver, pattern) => ({ name, url: receiver.url, secret: receiver.secret, rooms: pattern });

const RETRIES = {
  TIDINGS_WEBHOOK_BASE_DELAY_MS: '20',
  TIDINGS_WEBHOOK_MAX_DELAY_MS: '300',
  TIDINGS_WEBHOOK_MAX_ATTEMPTS: '1000',
  // B's receiver holds POSTs for a while (below): no try may time out meanwhile.
  TIDINGS_WEBHOOK_TIMEOUT_MS: '60000',
};

/** `tidings replay processor ARGS`, to its exit: { status, stdout, stderr }; `.child` too. */
function replay(args, env) {
  const child = spawn(BIN, ['replay', 'processor', ...args], {
    env: { ...process.env, RUST_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => { stdout += c; });
  child.stderr.on('data', (c) => { stderr += c; });
  const exited = new Promise((resolve) => child.on('exit', (status) => resolve({ status, stdout, stderr })));
  exited.child = child;
  return exited;
}

/** The dry run's view of the live group: partition → its committed offset (or 'none'). */
async function liveOffsets(args, env) {
  const run = await replay([...args, '--dry-run'], env);
  assert.equal(run.status, 0, run.stderr);
  const offsets = {};
  for (const [, partition, committed] of run.stdout.matchAll(/^partition (\d+): offsets \d+\.\.\d+; live group tidings-webhook committed (\w+)$/gm)) {
    offsets[partition] = committed;
  }
  assert.ok(Object.keys(offsets).length > 0, run.stdout);
  assert.ok(Object.values(offsets).some((o) => o !== 'none'), `the live group committed: ${run.stdout}`);
  return offsets;
}

const keyOf = (e) => `${e.room}/${e.seq}`;
const keysOf = (acked) => new Set([...acked].flatMap(([room, seqs]) => seqs.map((seq) => `${room}/${seq}`)));

function merge(...sends) {
  const all = new Map();
  for (const acked of sends) {
    for (const [room, seqs] of acked) all.set(room, [...(all.get(room) ?? []), ...seqs]);
  }
  return all;
}

/** B got exactly `history`, each event once, in seq order per room, signed with its secret. */
function checkExactly(receiver, history) {
  checkDelivered(receiver, history);
  assert.deepEqual(new Set(receiver.accepted.map(keyOf)), keysOf(history), 'exactly the history');
  assert.equal(receiver.accepted.length, keysOf(history).size, 'each event once');
}

/**
 * The deliveries `receiver` got after its first `since`: exactly the events of `later`, in
 * order per room, each with the delivery id it had from the live processor (`liveIds`).
 */
function checkRedelivered(receiver, since, later, liveIds) {
  const again = receiver.accepted.slice(since);
  assert.deepEqual(new Set(again.map(keyOf)), keysOf(later), 'exactly what came at or after the time');
  assert.equal(again.length, keysOf(later).size, 'each once');
  for (const e of again) assert.equal(e.delivery_id, liveIds.get(keyOf(e)), `${keyOf(e)} has its live delivery id`);
  const rooms = new Map();
  for (const e of again) rooms.set(e.room, [...(rooms.get(e.room) ?? []), e.seq]);
  for (const [room, seqs] of rooms) assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), `${room} in order`);
}

/** A moment between two sends: the log's records before it are older, after it newer. */
async function between() {
  await sleep(100);
  const t = Date.now();
  await sleep(100);
  return t;
}

function expectRefusal(run, processor, why) {
  assert.notEqual(run.status, 0, `${processor} must be refused: ${run.stdout}`);
  assert.match(run.stderr, new RegExp(`${processor} cannot be backfilled: .*${why}`), run.stderr);
}

/** B's receiver: takes the first POST at once, holds the rest until `open()`. */
function gated(secret) {
  let open;
  const gate = new Promise((resolve) => { open = resolve; });
  const receiver = new Receiver({ secret, hold: () => (receiver.attempts.length > 1 ? gate : null) });
  receiver.open = open;
  return receiver;
}

describe('replay processor on Kafka and Cassandra', () => {
  it('backfills endpoint B beside the live processor, redelivers A from a time with its live ids, leaves the live group alone', async (t) => {
    const a = await new Receiver({ secret: 'secret-of-a' }).start();
    const b = await gated('secret-of-b').start();
    t.after(() => {
      b.open();
      a.close();
      b.close();
    });
    const prefix = unique('bf');
    const base = distributedEnv({ TIDINGS_CASSANDRA_KEYSPACE: 'tidings_backfill', ...RETRIES });
    const live = { ...base, TIDINGS_WEBHOOKS: JSON.stringify([endpoint('a', a, `${prefix}.*`)]) };
    // The backfill's configuration has the new endpoint too; the live one does not yet.
    const backfill = {
      ...base,
      TIDINGS_WEBHOOKS: JSON.stringify([endpoint('a', a, `${prefix}.*`), endpoint('b', b, `${prefix}.*`)]),
    };
    migrate(base);
    const proc = (args, name, port, ops) => new Proc(args, { ...live, TIDINGS_NODE_ID: unique(name) }, { port, ops });
    const core = await proc(['processor', 'sequencer,persistence,fanout'], 'core').start();
    const webhook = await proc(['processor', 'webhook'], 'webhook', await freePort(), true).start();
    const edge = await proc(['edge'], 'edge', await freePort()).start();
    t.after(async () => {
      for (const p of [edge, webhook, core]) await p.kill('SIGTERM');
    });
    const rooms = [1, 2, 3].map((i) => `${prefix}.r${i}`);
    const urls = () => [edge.url];

    const history = await sendToRooms(urls, rooms, 40, undefined, 'h');
    await waitUntil('A has the history', () => a.acceptedKeys().size >= 120, 60000);

    // B's backfill from the beginning. Its ends are fixed before its first POST; while B
    // holds its POSTs, new messages go to A through the live processor.
    const running = replay(['webhook', '--endpoint', 'b', '--from', 'earliest'], backfill);
    let exited = false;
    running.then(() => { exited = true; });
    await waitUntil('the backfill POSTs to B', () => b.attempts.length > 0, 60000);
    const fresh = await sendToRooms(urls, rooms, 20, undefined, 'n');
    await waitUntil('A has the new messages', () => a.acceptedKeys().size >= 180, 60000);
    assert.equal(exited, false, 'the live processor delivered while the backfill ran');
    b.open();
    const done = await running;
    assert.equal(done.status, 0, done.stderr);
    console.log(done.stdout.trim());
    // Other tests' rooms (and records that do not decode) share the room log.
    assert.match(done.stdout, /^backfilled webhook from earliest: \d+ room-log records in [\d.]+ s \(\d+ records\/s\); by kind: .*message \d+.*; undecodable \d+; delivered 120, dead-lettered 0, failed attempts 0$/m);
    checkExactly(b, history);
    checkExactly(a, merge(history, fresh));

    // A lost what came after `from`: a backfill from then gives it again, with the ids A
    // got live. Nothing else is sent meanwhile, so the live group must not move at all.
    const from = await between();
    const later = await sendToRooms(urls, rooms, 10, undefined, 'l');
    await waitUntil('A has the later messages', () => a.acceptedKeys().size >= 210, 60000);
    await sleep(1500); // the live processor commits every 200 ms, between polls
    const liveIds = new Map(a.accepted.map((e) => [keyOf(e), e.delivery_id]));
    const seen = a.accepted.length;
    const before = await liveOffsets(['webhook', '--endpoint', 'a', '--from', String(from)], backfill);
    const again = await replay(['webhook', '--endpoint', 'a', '--from', new Date(from).toISOString()], backfill);
    assert.equal(again.status, 0, again.stderr);
    console.log(again.stdout.trim());
    assert.match(again.stdout, /delivered 30, dead-lettered 0/);
    checkRedelivered(a, seen, later, liveIds);
    assert.equal(b.accepted.length, 120, 'B got nothing from A\'s backfill');
    assert.deepEqual(await liveOffsets(['webhook', '--endpoint', 'a', '--from', String(from)], backfill), before, 'the live group did not move');

    expectRefusal(await replay(['sequencer'], backfill), 'sequencer', 'seq');
    expectRefusal(await replay(['fanout'], backfill), 'fanout', 'live clients');
    const unknown = await replay(['webhook', '--endpoint', 'c'], backfill);
    assert.notEqual(unknown.status, 0);
    assert.match(unknown.stderr, /no webhook endpoint is named "c"; configured: a, b/);
  });
});

describe('replay processor on the embedded log', () => {
  it('backfills endpoint B from a stopped standalone\'s files, redelivers A from a time with its live ids, leaves the live group alone', async (t) => {
    const a = await new Receiver({ secret: 'secret-of-a' }).start();
    const b = await new Receiver({ secret: 'secret-of-b' }).start();
    const c = await gated('secret-of-c').start();
    t.after(() => {
      c.open();
      for (const r of [a, b, c]) r.close();
    });
    const dir = tempDir();
    const prefix = unique('bfe');
    const live = { ...RETRIES, TIDINGS_WEBHOOKS: JSON.stringify([endpoint('a', a, `${prefix}.*`)]) };
    const backfill = {
      ...RETRIES,
      TIDINGS_DATA_DIR: dir,
      TIDINGS_WEBHOOKS: JSON.stringify(['a', 'b', 'c'].map((name, i) => endpoint(name, [a, b, c][i], `${prefix}.*`))),
    };
    const rooms = [1, 2, 3].map((i) => `${prefix}.r${i}`);
    let proc = await standalone(dir, live);
    t.after(() => proc.kill('SIGTERM'));
    const history = await sendToRooms(() => [proc.url], rooms, 40, undefined, 'h');
    await waitUntil('A has the history', () => a.acceptedKeys().size >= 120, 60000);

    // A refusal comes before anything is opened; a backfill needs the files standalone holds.
    expectRefusal(await replay(['sequencer', '--embedded'], backfill), 'sequencer', 'seq');
    const locked = await replay(['webhook', '--embedded', '--endpoint', 'b'], backfill);
    assert.notEqual(locked.status, 0);
    assert.match(locked.stderr, /open in another process \(a running `tidings standalone`\? stop it first\)/);
    await proc.kill('SIGTERM');

    const before = await liveOffsets(['webhook', '--embedded'], backfill);

    // SIGTERM stops a backfill while deliveries are in flight: it says what it did and exits 130.
    const stopped = replay(['webhook', '--embedded', '--endpoint', 'c'], backfill);
    await waitUntil('C holds a POST', () => c.attempts.length > 1, 60000);
    stopped.child.kill('SIGTERM');
    const interrupted = await stopped;
    assert.equal(interrupted.status, 130, interrupted.stderr);
    assert.match(interrupted.stdout, /delivered 1, dead-lettered 0/);
    assert.match(interrupted.stderr, /interrupted before the end: run it again to finish/);

    const done = await replay(['webhook', '--embedded', '--endpoint', 'b', '--from', 'earliest'], backfill);
    assert.equal(done.status, 0, done.stderr);
    console.log(done.stdout.trim());
    assert.match(done.stdout, /delivered 120, dead-lettered 0, failed attempts 0$/m);
    checkExactly(b, history);
    assert.equal(a.accepted.length, 120, 'A got nothing from B\'s backfill');
    assert.deepEqual(await liveOffsets(['webhook', '--embedded'], backfill), before, 'the live group did not move');

    // The live processor goes on from where it was: new messages reach A, nothing twice.
    proc = await standalone(dir, live);
    const from = await between();
    const later = await sendToRooms(() => [proc.url], rooms, 10, undefined, 'l');
    await waitUntil('A has the later messages', () => a.acceptedKeys().size >= 150, 60000);
    await proc.kill('SIGTERM');
    checkExactly(a, merge(history, later));

    const liveIds = new Map(a.accepted.map((e) => [keyOf(e), e.delivery_id]));
    const again = await replay(['webhook', '--embedded', '--endpoint', 'a', '--from', String(from)], backfill);
    assert.equal(again.status, 0, again.stderr);
    console.log(again.stdout.trim());
    checkRedelivered(a, 150, later, liveIds);
    assert.equal(b.accepted.length, 120);
  });
});
