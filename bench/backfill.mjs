// How fast `tidings replay processor` runs over history: EVENTS messages over 20 rooms are
// sent to `tidings standalone` (no webhook configured), which is then stopped; then the
// webhook processor is backfilled from the beginning to a loopback receiver that answers at
// once, and persistence and inbox are backfilled into the same files. With --distributed,
// the messages go through `tidings edge` and `tidings processor sequencer,persistence` on
// TIDINGS_KAFKA_BROKERS and TIDINGS_CASSANDRA (keyspace tidings_bench_backfill) instead, and
// the backfills read Kafka and write Cassandra (the room log may hold other rooms too).
//
//   node bench/backfill.mjs [events] [--distributed]
//
// Needs `npm install` in tests/system (it reuses that harness); TIDINGS_BIN picks the binary.
// Prints one JSON record: each backfill's own summary line and its wall time.

import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { BIN, Proc, call, connect, distributedEnv, freePort, migrate, standalone, tempDir, token, unique } from '../tests/system/harness.mjs';

const DISTRIBUTED = process.argv.includes('--distributed');
const EVENTS = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? '10000');
const ROOMS = 20;

/** A receiver answering every POST at once; counts them. */
async function receiver() {
  let count = 0;
  const s = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      count++;
      res.writeHead(200).end('ok');
    });
  });
  s.keepAliveTimeout = 60000;
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${s.address().port}/`,
    count: () => count,
    close: () => { s.closeAllConnections(); s.close(); },
  };
}

/** One backfill, run to its end (not spawnSync: the receiver answers from this process). */
async function backfill(args, env) {
  const started = process.hrtime.bigint();
  const child = spawn(BIN, ['replay', 'processor', ...args, ...(DISTRIBUTED ? [] : ['--embedded'])], {
    env: { ...process.env, RUST_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => { stdout += c; });
  child.stderr.on('data', (c) => { stderr += c; });
  const status = await new Promise((resolve) => child.on('exit', resolve));
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  if (status !== 0) throw new Error(`${args.join(' ')}: ${stderr}`);
  const [, records, seconds, rate] = stdout.match(/: (\d+) room-log records in ([\d.]+) s \((\d+) records\/s\)/);
  return { summary: stdout.trim(), records: Number(records), seconds: Number(seconds), records_per_sec: Number(rate), wall_s: Number(wall.toFixed(2)) };
}

/** Where the messages are sent, the backfills' environment, and how to stop the senders' side. */
async function deployment() {
  if (!DISTRIBUTED) {
    const dir = tempDir();
    const proc = await standalone(dir);
    return { url: proc.url, env: { TIDINGS_DATA_DIR: dir }, stop: () => proc.kill('SIGTERM') };
  }
  const env = distributedEnv({ TIDINGS_CASSANDRA_KEYSPACE: 'tidings_bench_backfill' });
  migrate(env);
  const processors = await new Proc(['processor', 'sequencer,persistence'], { ...env, TIDINGS_NODE_ID: unique('bench-processors') }).start();
  const edge = await new Proc(['edge'], { ...env, TIDINGS_NODE_ID: unique('bench-edge') }, { port: await freePort() }).start();
  return {
    url: edge.url,
    env,
    stop: async () => {
      await edge.kill('SIGTERM');
      await processors.kill('SIGTERM');
    },
  };
}

const prefix = unique('bf');
const target = await deployment();
const sendStart = process.hrtime.bigint();
try {
  const sockets = await Promise.all(Array.from({ length: ROOMS }, async (_, r) => {
    const socket = await connect(target.url, { token: token(`u${r}`) });
    await call(socket, 'join', { room: `${prefix}.${r}` });
    return socket;
  }));
  await Promise.all(sockets.map(async (socket, r) => {
    const per = EVENTS / ROOMS;
    for (let i = 0; i < per; i += 50) {
      const batch = [];
      for (let j = i; j < Math.min(per, i + 50); j++) {
        batch.push(call(socket, 'send', { room: `${prefix}.${r}`, id: `m${j}`, text: `message ${j}` }, 60000));
      }
      const acks = await Promise.all(batch);
      if (!acks.every((a) => a.ok)) throw new Error(JSON.stringify(acks.find((a) => !a.ok)));
    }
  }));
  sockets.forEach((s) => s.close());
} finally {
  await target.stop();
}
const sendSecs = Number(process.hrtime.bigint() - sendStart) / 1e9;

const r = await receiver();
const env = {
  ...target.env,
  TIDINGS_WEBHOOKS: JSON.stringify([{ name: 'new', url: r.url, secret: 's', rooms: `${prefix}.*` }]),
};
const webhook = await backfill(['webhook', '--endpoint', 'new', '--from', 'earliest'], env);
if (r.count() !== EVENTS) throw new Error(`the receiver got ${r.count()} of ${EVENTS}`);
r.close();
const persistence = await backfill(['persistence'], env);
const inbox = await backfill(['inbox'], env);
console.log(JSON.stringify({
  bench: 'backfill',
  backend: DISTRIBUTED ? 'kafka+cassandra' : 'embedded',
  binary: BIN,
  events: EVENTS,
  rooms: ROOMS,
  sent_per_sec: Math.round(EVENTS / sendSecs),
  webhook: { ...webhook, delivered_per_sec: Math.round(EVENTS / webhook.seconds) },
  persistence,
  inbox,
}));
process.exit(0);
