// send→ack and send→deliver latency through a whole deployment, with the stock
// socket.io-client (the Rust load generator of the benchmark issue will replace this).
//
//   node bench/chat-latency.mjs standalone|distributed [messages] [rate-per-second]
//
// Needs `npm install` in tests/system (it reuses that harness) and, for distributed,
// Kafka and Cassandra up (infra/services.sh start). Prints one JSON record.

import { Proc, call, connect, distributedEnv, freePort, migrate, standalone, tempDir, token, unique } from '../tests/system/harness.mjs';

const [mode = 'standalone', count = '2000', rate = '500'] = process.argv.slice(2);
const total = Number(count);
const perSecond = Number(rate);

function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const procs = [];
let urls;
if (mode === 'standalone') {
  const proc = await standalone(tempDir());
  procs.push(proc);
  urls = [proc.url, proc.url];
} else {
  const env = distributedEnv({ RUST_LOG: 'warn' });
  migrate(env);
  procs.push(await new Proc(['processor', 'all'], { ...env, TIDINGS_NODE_ID: unique('bench-processors') }).start());
  for (const name of ['a', 'b']) {
    procs.push(await new Proc(['edge'], { ...env, TIDINGS_NODE_ID: unique(`bench-edge-${name}`) }, { port: await freePort() }).start());
  }
  urls = [procs[1].url, procs[2].url];
}

const room = unique('bench');
const sender = await connect(urls[0], { token: token('sender') });
const receiver = await connect(urls[1], { token: token('receiver') });
await call(sender, 'join', { room });
await call(receiver, 'join', { room });

// Whatever happens below, the servers this script started go away with it.
process.on('exit', () => procs.forEach((p) => p.child?.kill('SIGKILL')));
process.on('uncaughtException', (err) => {
  console.error(err);
  process.exit(1);
});

const sentAt = new Map();
const ackMs = [];
const deliverMs = [];
let warmDelivered = 0;
receiver.messages = { push: (m) => {
  if (m.id.startsWith('warm-')) warmDelivered++;
  const t0 = sentAt.get(m.id);
  if (t0 !== undefined) deliverMs.push(performance.now() - t0);
} };

// Warm-up, not measured: every processor has joined its group and delivered once.
for (let i = 0; i < 50; i++) await call(sender, 'send', { room, id: `warm-${i}`, text: 'warm' });
while (warmDelivered < 50) await new Promise((r) => setTimeout(r, 20));

const started = performance.now();
const acks = [];
for (let i = 0; i < total; i++) {
  const due = started + (i * 1000) / perSecond;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const id = `m-${i}`;
  const t0 = performance.now();
  sentAt.set(id, t0);
  acks.push(call(sender, 'send', { room, id, text: `message ${i}` }, 30000).then((ack) => {
    if (!ack.ok) throw new Error(JSON.stringify(ack));
    ackMs.push(performance.now() - t0);
  }));
}
await Promise.all(acks);
const deadline = Date.now() + 30000;
while (deliverMs.length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));

const round = (x) => Math.round(x * 100) / 100;
console.log(JSON.stringify({
  scenario: 'chat.latency', backend: mode, messages: total, rate_per_s: perSecond,
  send_ack_p50_ms: round(quantile(ackMs, 0.5)), send_ack_p99_ms: round(quantile(ackMs, 0.99)),
  send_deliver_p50_ms: round(quantile(deliverMs, 0.5)), send_deliver_p99_ms: round(quantile(deliverMs, 0.99)),
  delivered: deliverMs.length,
}));
sender.close();
receiver.close();
for (const p of procs) await p.kill('SIGTERM');
