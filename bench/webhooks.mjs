// What the pre-send hook adds to send→ack, and how many events per second webhooks deliver,
// against fast receivers on loopback and `tidings standalone`.
//
//   node bench/webhooks.mjs [sends] [webhook-events]
//
// Needs `npm install` in tests/system (it reuses that harness); TIDINGS_BIN picks the binary.
// Prints one JSON record.

import { createServer } from 'node:http';
import { call, connect, standalone, tempDir, token, unique, waitUntil } from '../tests/system/harness.mjs';

const [sendsArg = '1000', eventsArg = '10000'] = process.argv.slice(2);
const SENDS = Number(sendsArg);
const EVENTS = Number(eventsArg);
const ROOMS = 20;

const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
const ms = (ns) => Number(ns) / 1e6;

/** A server answering every POST at once with `answer` (500 while `closed()`); `onBody`
 * sees each accepted body. */
async function server(answer, onBody = () => {}, closed = () => false) {
  const s = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (closed()) {
        res.writeHead(500).end();
        return;
      }
      onBody(Buffer.concat(chunks));
      res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
    });
  });
  s.keepAliveTimeout = 60000;
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${s.address().port}/`, close: () => { s.closeAllConnections(); s.close(); } };
}

/** send→ack latency of SENDS sequential sends (after 100 to warm up). */
async function ackLatency(env) {
  const proc = await standalone(tempDir(), env);
  try {
    const room = unique('lat');
    const socket = await connect(proc.url, { token: token('bench') });
    await call(socket, 'join', { room });
    const took = [];
    for (let i = 0; i < SENDS + 100; i++) {
      const t0 = process.hrtime.bigint();
      const ack = await call(socket, 'send', { room, id: `m${i}`, text: `message ${i}` });
      if (!ack.ok) throw new Error(JSON.stringify(ack));
      if (i >= 100) took.push(ms(process.hrtime.bigint() - t0));
    }
    socket.close();
    // The hook's own round trip, as the sequencer measured it (what it adds to a batch).
    const metrics = await (await fetch(`${proc.url}/metrics`)).text();
    const value = (name) => Number(metrics.split('\n').find((l) => l.startsWith(name))?.split(' ').pop() ?? NaN);
    const hookMeanMs = (value('tidings_presend_hook_seconds_sum') / value('tidings_presend_hook_seconds_count')) * 1000;
    return {
      p50_ms: quantile(took, 0.5),
      p99_ms: quantile(took, 0.99),
      mean_ms: took.reduce((a, b) => a + b, 0) / took.length,
      ...(Number.isFinite(hookMeanMs) ? { hook_call_mean_ms: hookMeanMs } : {}),
    };
  } finally {
    await proc.kill('SIGTERM');
  }
}

/** EVENTS messages over ROOMS rooms, sent while the receiver refuses them (so the backlog
 * does not depend on the send rate), then deliveries per second once it accepts. */
async function webhookThroughput() {
  const times = [];
  let gate = true;
  const receiver = await server('ok', () => times.push(process.hrtime.bigint()), () => gate);
  const prefix = unique('tp');
  const proc = await standalone(tempDir(), {
    TIDINGS_WEBHOOKS: JSON.stringify([{ url: receiver.url, secret: 's', rooms: `${prefix}.*` }]),
    TIDINGS_WEBHOOK_MAX_ATTEMPTS: '1000000',
    TIDINGS_WEBHOOK_BASE_DELAY_MS: '200',
    TIDINGS_WEBHOOK_MAX_DELAY_MS: '200',
  });
  try {
    const sockets = await Promise.all(Array.from({ length: ROOMS }, async (_, r) => {
      const socket = await connect(proc.url, { token: token(`u${r}`) });
      await call(socket, 'join', { room: `${prefix}.${r}` });
      return socket;
    }));
    const sendStart = process.hrtime.bigint();
    await Promise.all(sockets.map(async (socket, r) => {
      const per = EVENTS / ROOMS;
      for (let i = 0; i < per; i += 50) {
        const batch = [];
        for (let j = i; j < Math.min(per, i + 50); j++) {
          batch.push(call(socket, 'send', { room: `${prefix}.${r}`, id: `m${j}`, text: `message ${j}` }, 60000));
        }
        await Promise.all(batch);
      }
    }));
    const sendSecs = ms(process.hrtime.bigint() - sendStart) / 1000;
    const opened = process.hrtime.bigint();
    gate = false;
    await waitUntil('all delivered', () => times.length >= EVENTS, 600000);
    const deliverSecs = ms(times[times.length - 1] - opened) / 1000;
    sockets.forEach((s) => s.close());
    return {
      events: EVENTS,
      rooms: ROOMS,
      sent_per_sec: Math.round(EVENTS / sendSecs),
      delivered_per_sec: Math.round(EVENTS / deliverSecs),
      backlog_drained_in_s: Number(deliverSecs.toFixed(2)),
    };
  } finally {
    await proc.kill('SIGTERM');
    receiver.close();
  }
}

const hook = await server('{"action":"approve"}');
const without = await ackLatency({});
const withHook = await ackLatency({ TIDINGS_PRESEND_URL: hook.url });
hook.close();
const throughput = await webhookThroughput();
console.log(JSON.stringify({
  bench: 'webhooks',
  binary: process.env.TIDINGS_BIN ?? 'target/debug/tidings',
  sends: SENDS,
  ack_without_hook: without,
  ack_with_hook: withHook,
  hook_added_p50_ms: Number((withHook.p50_ms - without.p50_ms).toFixed(3)),
  webhook: throughput,
}));
process.exit(0);
