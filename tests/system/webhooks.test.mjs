// Webhooks, the pre-send hook and the publish API, against real `tidings` processes and real
// HTTP servers on loopback: standalone, and Kafka + Cassandra with the webhook processor run
// apart and SIGKILLed mid-stream.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, it } from 'node:test';
import { Proc, call, connect, distributedEnv, freePort, migrate, sleep, standalone, tempDir, token, unique, waitUntil } from './harness.mjs';
import { HOOK_SECRET, Receiver, bodyOf, checkDelivered, sendToRooms } from './receiver.mjs';
import { ResilientSender } from './resilient.mjs';

/** The env of a webhook endpoint for rooms matching `pattern`. */
function webhookEnv(receiver, pattern, extra = {}) {
  return {
    TIDINGS_WEBHOOKS: JSON.stringify([{ name: 'test', url: receiver.url, secret: HOOK_SECRET, rooms: pattern }]),
    TIDINGS_WEBHOOK_BASE_DELAY_MS: '20',
    TIDINGS_WEBHOOK_MAX_DELAY_MS: '300',
    TIDINGS_WEBHOOK_MAX_ATTEMPTS: '1000',
    ...extra,
  };
}

/** A pre-send hook: approves, rejects texts with "nope", rewrites "shout", stalls on "slow". */
class PresendHook {
  constructor() {
    this.calls = [];
    this.server = createServer(async (req, res) => {
      const m = JSON.parse((await bodyOf(req)).toString());
      this.calls.push(m);
      let answer = { action: 'approve' };
      if (m.text.includes('nope')) answer = { action: 'reject', reason: 'no nope here' };
      if (m.text.includes('shout')) answer = { action: 'rewrite', text: m.text.toUpperCase() };
      if (m.text.includes('sneak')) answer = { action: 'rewrite', text: 'a forbidden thing' };
      if (m.text.includes('slow')) await sleep(1500);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}/presend`;
    return this;
  }

  close() {
    this.server.closeAllConnections?.();
    this.server.close();
  }

  callsFor(id) {
    return this.calls.filter((c) => c.client_id === id).length;
  }
}

async function metric(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** The hook's approve, reject, rewrite, moderation after rewrite, timeout, no second call. */
async function checkPresend(url, hook, { failOpen }) {
  const room = unique('hooked');
  const socket = await connect(url, { token: token('ann') });
  try {
    assert.equal((await call(socket, 'join', { room })).ok, true);
    const ok = await call(socket, 'send', { room, id: 'a1', text: 'hello' });
    assert.equal(ok.seq, 1, JSON.stringify(ok));
    const refused = await call(socket, 'send', { room, id: 'a2', text: 'nope nope' });
    assert.deepEqual(refused.error, { code: 'rejected', message: 'no nope here' });
    const rewritten = await call(socket, 'send', { room, id: 'a3', text: 'shout this' });
    assert.equal(rewritten.seq, 2, 'the rejected one took no seq');
    const sneaky = await call(socket, 'send', { room, id: 'a4', text: 'sneak' });
    assert.equal(sneaky.error?.code, 'rejected', 'a rewrite is moderated again');
    const slow = await call(socket, 'send', { room, id: 'a5', text: 'slow one' });
    if (failOpen) {
      assert.equal(slow.seq, 3, `fail-open approves: ${JSON.stringify(slow)}`);
    } else {
      assert.equal(slow.error?.code, 'unavailable', `fail-closed refuses: ${JSON.stringify(slow)}`);
    }
    // A retry of a sequenced send is answered without asking the hook again.
    const again = await call(socket, 'send', { room, id: 'a1', text: 'hello' });
    assert.equal(again.seq, 1);
    assert.equal(hook.callsFor('a1'), 1, 'the hook was asked once for a1');
    const history = await call(socket, 'history', { room });
    const texts = history.messages.map((m) => m.text);
    assert.deepEqual(texts, failOpen ? ['hello', 'SHOUT THIS', 'slow one'] : ['hello', 'SHOUT THIS']);
    assert.equal(socket.messages.find((m) => m.seq === 2)?.text, 'SHOUT THIS', 'delivered rewritten');
  } finally {
    socket.close();
  }
}

/** `POST /api/publish`: auth, validation, the ack, delivery to members, idempotent retry. */
async function checkPublish(url) {
  const room = unique('bots');
  const member = await connect(url, { token: token('reader') });
  try {
    assert.equal((await call(member, 'join', { room })).ok, true);
    const post = (body, auth = 'Bearer bot-token') => fetch(`${url}/api/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: auth },
      body: JSON.stringify(body),
    });
    const denied = await post({ room, id: 'p1', text: 'hi' }, 'Bearer wrong');
    assert.equal(denied.status, 401);
    assert.equal((await denied.json()).error.code, 'unauthorized');
    const first = await post({ room, id: 'p1', text: 'deploy done', user: 'ci-bot' });
    assert.equal(first.status, 200);
    const acked = await first.json();
    assert.equal(acked.seq, 1, JSON.stringify(acked));
    const retried = await (await post({ room, id: 'p1', text: 'deploy done', user: 'ci-bot' })).json();
    assert.deepEqual(retried, acked, 'a retry gets the first seq and ts');
    const bad = await post({ room: 'no spaces allowed', id: 'p2', text: 'x' });
    assert.equal(bad.status, 400);
    const blocked = await post({ room, id: 'p3', text: 'forbidden words' });
    assert.equal(blocked.status, 422);
    assert.equal((await blocked.json()).error.code, 'rejected');
    const dm = await post({ room: 'dm:x:y', id: 'p4', text: 'hi' });
    assert.equal(dm.status, 403);
    const second = await (await post({ room, id: 'p5', text: 'second' })).json();
    assert.equal(second.seq, 2);
    await waitUntil('member got both', () => member.messages.length === 2, 10000);
    assert.deepEqual(member.messages.map((m) => [m.seq, m.from, m.text]), [[1, 'ci-bot', 'deploy done'], [2, 'service', 'second']]);
  } finally {
    member.close();
  }
}

describe('webhooks, standalone', () => {
  it('every message arrives, in order per room, signed, through a receiver that fails for a while', async (t) => {
    const start = Date.now();
    const receiver = await new Receiver({ failing: () => Date.now() - start < 3000, delayMs: 2 }).start();
    t.after(() => receiver.close());
    const prefix = unique('wh');
    const proc = await standalone(tempDir(), webhookEnv(receiver, `${prefix}.*`));
    t.after(() => proc.kill('SIGTERM'));
    const rooms = [1, 2, 3, 4].map((i) => `${prefix}.r${i}`);
    const acked = await sendToRooms(() => [proc.url], rooms, 50);
    // A room outside the pattern is not delivered.
    const other = new ResilientSender(() => [proc.url], 'bob', unique('other'));
    await other.sendAll(['x'], 1, async () => {});
    other.close();
    await waitUntil('all delivered', () => receiver.acceptedKeys().size >= 200, 60000);
    await sleep(300);
    checkDelivered(receiver, acked);
    assert.equal(receiver.acceptedKeys().size, 200, 'nothing from other rooms');
    assert.ok(receiver.attempts.some((a) => !a.ok), 'the receiver failed some attempts');
    assert.equal(receiver.maxInFlightPerRoom, 1, 'one POST at a time per room');
    assert.ok(await metric(proc.url, 'tidings_webhook_failed_attempts_total{endpoint="test"}') > 0);
    assert.equal(await metric(proc.url, 'tidings_webhook_delivered_total{endpoint="test"}'), receiver.accepted.length);
  });

  it('after max attempts an event is dead-lettered and the next one goes', async (t) => {
    const receiver = await new Receiver({ failing: (e) => e.text !== 'fine' }).start();
    t.after(() => receiver.close());
    const prefix = unique('dl');
    const proc = await standalone(tempDir(), webhookEnv(receiver, `${prefix}.*`, { TIDINGS_WEBHOOK_MAX_ATTEMPTS: '3' }));
    t.after(() => proc.kill('SIGTERM'));
    const room = `${prefix}.room`;
    const socket = await connect(proc.url, { token: token('ann') });
    t.after(() => socket.close());
    assert.equal((await call(socket, 'join', { room })).ok, true);
    for (const [id, text] of [['1', 'bad one'], ['2', 'bad two'], ['3', 'fine']]) {
      assert.equal((await call(socket, 'send', { room, id, text })).ok, true);
    }
    await waitUntil('fine delivered', () => receiver.accepted.length === 1, 30000);
    assert.deepEqual(receiver.attempts.map((a) => a.seq), [1, 1, 1, 2, 2, 2, 3], 'three tries each, in order');
    await waitUntil('dead letters counted', async () => (await metric(proc.url, 'tidings_webhook_dead_lettered_total{endpoint="test"}')) === 2, 10000);
  });

  it('a 4xx refusal is dead-lettered at once, a 429 is tried again', async (t) => {
    const receiver = await new Receiver({ failing: (e) => e.text === 'refused', status: 410 }).start();
    t.after(() => receiver.close());
    const prefix = unique('gone');
    const proc = await standalone(tempDir(), webhookEnv(receiver, `${prefix}.*`, { TIDINGS_WEBHOOK_MAX_ATTEMPTS: '3' }));
    t.after(() => proc.kill('SIGTERM'));
    const room = `${prefix}.room`;
    const socket = await connect(proc.url, { token: token('ann') });
    t.after(() => socket.close());
    assert.equal((await call(socket, 'join', { room })).ok, true);
    for (const [id, text] of [['1', 'refused'], ['2', 'fine']]) {
      assert.equal((await call(socket, 'send', { room, id, text })).ok, true);
    }
    await waitUntil('fine delivered', () => receiver.accepted.length === 1, 30000);
    assert.deepEqual(receiver.attempts.map((a) => a.seq), [1, 2], 'one try for a 410');
    await waitUntil('dead letter counted', async () => (await metric(proc.url, 'tidings_webhook_dead_lettered_total{endpoint="test"}')) === 1, 10000);

    const busy = await new Receiver({ failing: (e) => e.text === 'busy', status: 429 }).start();
    t.after(() => busy.close());
    const prefix2 = unique('busy');
    const proc2 = await standalone(tempDir(), webhookEnv(busy, `${prefix2}.*`, { TIDINGS_WEBHOOK_MAX_ATTEMPTS: '3' }));
    t.after(() => proc2.kill('SIGTERM'));
    const socket2 = await connect(proc2.url, { token: token('ann') });
    t.after(() => socket2.close());
    const room2 = `${prefix2}.room`;
    assert.equal((await call(socket2, 'join', { room: room2 })).ok, true);
    for (const [id, text] of [['1', 'busy'], ['2', 'fine']]) {
      assert.equal((await call(socket2, 'send', { room: room2, id, text })).ok, true);
    }
    await waitUntil('fine delivered', () => busy.accepted.length === 1, 30000);
    assert.deepEqual(busy.attempts.map((a) => a.seq), [1, 1, 1, 2], 'a 429 is tried again');
  });

  it('a SIGKILL mid-stream loses nothing', async (t) => {
    const receiver = await new Receiver({ delayMs: 1 }).start();
    t.after(() => receiver.close());
    const prefix = unique('kill');
    const proc = await standalone(tempDir(), webhookEnv(receiver, `${prefix}.*`));
    t.after(() => proc.kill('SIGTERM'));
    const rooms = [1, 2, 3].map((i) => `${prefix}.r${i}`);
    let killed = false;
    const acked = await sendToRooms(() => (proc.child.exitCode === null ? [proc.url] : []), rooms, 100, async (n) => {
      if (!killed && n >= 120) {
        killed = true;
        await proc.restart();
      }
    });
    assert.ok(killed);
    await waitUntil('all delivered', () => receiver.acceptedKeys().size >= 300, 60000);
    checkDelivered(receiver, acked);
  });

  it('the pre-send hook approves, rejects, rewrites; fails closed with unavailable', async (t) => {
    const hook = await new PresendHook().start();
    t.after(() => hook.close());
    const proc = await standalone(tempDir(), { TIDINGS_PRESEND_URL: hook.url, TIDINGS_PRESEND_TIMEOUT_MS: '300' });
    t.after(() => proc.kill('SIGTERM'));
    await checkPresend(proc.url, hook, { failOpen: false });
  });

  it('the pre-send hook fails open when told to', async (t) => {
    const hook = await new PresendHook().start();
    t.after(() => hook.close());
    const proc = await standalone(tempDir(), {
      TIDINGS_PRESEND_URL: hook.url, TIDINGS_PRESEND_TIMEOUT_MS: '300', TIDINGS_PRESEND_FAIL_OPEN: 'true',
    });
    t.after(() => proc.kill('SIGTERM'));
    await checkPresend(proc.url, hook, { failOpen: true });
  });

  it('POST /api/publish appends like a send', async (t) => {
    const proc = await standalone(tempDir(), { TIDINGS_SERVICE_TOKENS: 'other-token,bot-token' });
    t.after(() => proc.kill('SIGTERM'));
    await checkPublish(proc.url);
  });
});

describe('webhooks, Kafka and Cassandra', () => {
  it('the webhook processor is SIGKILLed mid-stream while the receiver fails, and nothing is lost', async (t) => {
    // Fails for 2 s once 50 events were accepted.
    let failFrom = null;
    const receiver = await new Receiver({
      failing: () => {
        if (failFrom === null && receiver.accepted.length >= 50) failFrom = Date.now();
        return failFrom !== null && Date.now() - failFrom < 2000;
      },
      delayMs: 2,
    }).start();
    const hook = await new PresendHook().start();
    t.after(() => {
      receiver.close();
      hook.close();
    });
    const prefix = unique('dwh');
    const env = distributedEnv({
      // Its own keyspace: other suites on the same Cassandra drop and recreate theirs.
      TIDINGS_CASSANDRA_KEYSPACE: 'tidings_webhooks',
      ...webhookEnv(receiver, `${prefix}.*`),
      TIDINGS_PRESEND_URL: hook.url,
      TIDINGS_PRESEND_TIMEOUT_MS: '300',
      TIDINGS_SERVICE_TOKENS: 'bot-token',
    });
    migrate(env);
    const proc = (args, name, port, ops) => new Proc(args, { ...env, TIDINGS_NODE_ID: unique(name) }, { port, ops });
    const processors = await proc(['processor', 'sequencer,persistence,fanout'], 'core').start();
    const webhook = await proc(['processor', 'webhook'], 'webhook', await freePort(), true).start();
    const edge = await proc(['edge'], 'edge', await freePort()).start();
    t.after(async () => {
      for (const p of [edge, webhook, processors]) await p.kill('SIGTERM');
    });
    const rooms = [1, 2, 3].map((i) => `${prefix}.r${i}`);
    // SIGKILL once the receiver has 150 of the 300 events (after the failures).
    let acceptedAtKill = null;
    const killer = waitUntil('150 accepted', () => receiver.acceptedKeys().size >= 150, 120000).then(async () => {
      acceptedAtKill = receiver.acceptedKeys().size;
      await webhook.restart();
    });
    const acked = await sendToRooms(() => [edge.url], rooms, 100);
    await killer;
    await waitUntil('all delivered', () => receiver.acceptedKeys().size >= 300, 120000);
    assert.ok(acceptedAtKill < 300, `killed mid-stream (${acceptedAtKill} of 300 accepted)`);
    checkDelivered(receiver, acked);
    assert.ok(receiver.attempts.some((a) => !a.ok), 'the receiver failed some attempts');

    await checkPresend(edge.url, hook, { failOpen: false });
    await checkPublish(edge.url);
  });
});
