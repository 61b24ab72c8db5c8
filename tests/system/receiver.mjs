// A webhook receiver on loopback and the checks every webhook test makes of what it got;
// shared by webhooks.test.mjs and replay_processor.test.mjs.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { sleep } from './harness.mjs';
import { ResilientSender } from './resilient.mjs';

export const HOOK_SECRET = 'webhook-test-secret';

/** Reads a request body. */
export function bodyOf(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

/**
 * A webhook receiver: answers `status` (500) while `failing()` says so, else 200 after
 * `delayMs` (and after `hold()`, if given, resolves). Keeps every attempt, checks each
 * signature (made with `secret`), and counts POSTs in flight per room.
 */
export class Receiver {
  constructor({ failing = () => false, delayMs = 0, status = 500, secret = HOOK_SECRET, hold = null } = {}) {
    Object.assign(this, { failing, delayMs, status, secret, hold, attempts: [], accepted: [], badSignatures: 0 });
    this.inFlight = new Map();
    this.maxInFlightPerRoom = 0;
    this.maxInFlight = 0;
    this.total = 0;
    this.server = createServer(async (req, res) => {
      const raw = await bodyOf(req);
      const expected = `sha256=${createHmac('sha256', this.secret).update(raw).digest('hex')}`;
      if (req.headers['x-tidings-signature'] !== expected) this.badSignatures++;
      const event = JSON.parse(raw.toString());
      assert.equal(req.headers['x-tidings-delivery'], event.delivery_id);
      const room = event.room;
      this.inFlight.set(room, (this.inFlight.get(room) ?? 0) + 1);
      this.total++;
      this.maxInFlightPerRoom = Math.max(this.maxInFlightPerRoom, this.inFlight.get(room));
      this.maxInFlight = Math.max(this.maxInFlight, this.total);
      const fail = this.failing(event);
      this.attempts.push({ ...event, ok: !fail });
      if (this.hold) await this.hold(event);
      if (this.delayMs) await sleep(this.delayMs);
      this.inFlight.set(room, this.inFlight.get(room) - 1);
      this.total--;
      if (fail) {
        res.writeHead(this.status).end('not now');
      } else {
        this.accepted.push(event);
        res.writeHead(200).end('ok');
      }
    });
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}/hook?k=v`;
    return this;
  }

  close() {
    this.server.closeAllConnections?.();
    this.server.close();
  }

  /** `room/seq` of every event accepted at least once. */
  acceptedKeys() {
    return new Set(this.accepted.map((e) => `${e.room}/${e.seq}`));
  }
}

/**
 * At least once and in order: every acked (room, seq) was accepted; one delivery id per
 * (room, seq) and the other way round; per room, the first acceptance of each seq comes in
 * seq order; every POST was correctly signed.
 */
export function checkDelivered(receiver, acked) {
  const keys = receiver.acceptedKeys();
  for (const [room, seqs] of acked) {
    for (const seq of seqs) assert.ok(keys.has(`${room}/${seq}`), `${room}/${seq} delivered`);
  }
  const idOf = new Map();
  const keyOf = new Map();
  for (const a of receiver.attempts) {
    const key = `${a.room}/${a.seq}`;
    assert.equal(idOf.get(key) ?? a.delivery_id, a.delivery_id, `one delivery id for ${key}`);
    assert.equal(keyOf.get(a.delivery_id) ?? key, key, `delivery id ${a.delivery_id} is one event`);
    idOf.set(key, a.delivery_id);
    keyOf.set(a.delivery_id, key);
  }
  const firstTimes = new Map();
  const seen = new Set();
  for (const e of receiver.accepted) {
    if (seen.has(e.delivery_id)) continue;
    seen.add(e.delivery_id);
    if (!firstTimes.has(e.room)) firstTimes.set(e.room, []);
    firstTimes.get(e.room).push(e.seq);
  }
  for (const [room, seqs] of firstTimes) {
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${room} delivered in seq order`);
  }
  assert.equal(receiver.badSignatures, 0, 'every signature verifies');
}

/**
 * Sends `count` messages to each room (pipelined), returns room → acked seqs. Client ids are
 * `<idPrefix>-<n>`: calls with the same prefix resend the same messages.
 */
export async function sendToRooms(urls, rooms, count, onProgress = async () => {}, idPrefix = 'm') {
  const acked = new Map();
  let done = 0;
  await Promise.all(rooms.map(async (room, i) => {
    const sender = new ResilientSender(urls, `ada${i}`, room);
    const ids = Array.from({ length: count }, (_, n) => `${idPrefix}-${n}`);
    await sender.sendAll(ids, 10, async () => onProgress(++done));
    acked.set(room, [...sender.acked.values()]);
    sender.close();
  }));
  return acked;
}

