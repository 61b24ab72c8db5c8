// Starts real `tidings` processes and drives them with the stock socket.io-client.
// Used by every *.test.mjs here; nothing in it fakes a part of Tidings.

import { spawn, spawnSync } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from 'socket.io-client';

export const BIN = process.env.TIDINGS_BIN ?? new URL('../../target/debug/tidings', import.meta.url).pathname;
export const SECRET = 'system-test-secret';
export const KAFKA = process.env.TIDINGS_KAFKA_BROKERS ?? '127.0.0.1:9092';
export const CASSANDRA = process.env.TIDINGS_CASSANDRA ?? '127.0.0.1:9042';

const b64url = (s) => Buffer.from(s).toString('base64url');

/** An HS256 JWT, made the way any issuer would; `claims` adds any (`rooms`, `role`, …). */
export function token(sub, { secret = SECRET, expiresIn = 3600, name, claims: extra = {} } = {}) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = { sub, exp: Math.floor(Date.now() / 1000) + expiresIn, ...extra };
  if (name) claims.name = name;
  const payload = b64url(JSON.stringify(claims));
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const unique = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;
export const tempDir = () => mkdtempSync(join(tmpdir(), 'tidings-'));

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export async function waitUntil(what, check, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** One `tidings` process: start, SIGKILL, start again with the same settings. */
export class Proc {
  /** `ops`: the port is TIDINGS_OPS_LISTEN (a processor's probes), not TIDINGS_LISTEN. */
  constructor(args, env, { port, ops = false } = {}) {
    this.args = args;
    this.env = env;
    this.port = port;
    this.ops = ops;
    this.child = null;
    this.output = [];
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn', ...this.env };
    if (this.port) env[this.ops ? 'TIDINGS_OPS_LISTEN' : 'TIDINGS_LISTEN'] = `127.0.0.1:${this.port}`;
    this.child = spawn(BIN, this.args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk) => {
      this.output.push(chunk.toString());
      if (this.output.length > 200) this.output.shift();
    };
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    this.exited = new Promise((resolve) => this.child.on('exit', resolve));
    if (this.port) await this.ready();
    return this;
  }

  async ready(timeoutMs = 60000) {
    await waitUntil(`${this.args.join(' ')} /readyz`, async () => {
      if (this.child.exitCode !== null) throw new Error(`exited: ${this.output.join('')}`);
      const res = await fetch(`${this.url}/readyz`);
      return res.status === 200;
    }, timeoutMs);
  }

  async kill(signal = 'SIGKILL') {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill(signal);
    await this.exited;
  }

  async restart() {
    await this.kill();
    return this.start();
  }
}

export function standalone(dataDir, extraEnv = {}) {
  return freePort().then((port) =>
    new Proc(['standalone'], {
      TIDINGS_DATA_DIR: dataDir,
      TIDINGS_JWT_SECRET: SECRET,
      TIDINGS_BLOCKED_TERMS: 'forbidden,Spam',
      TIDINGS_MAX_TEXT: '200',
      TIDINGS_RATE_PER_SEC: '5000',
      TIDINGS_RATE_BURST: '5000',
      TIDINGS_USER_RATE_PER_SEC: '5000',
      TIDINGS_USER_RATE_BURST: '5000',
      // Small, so a handful of users shows how large rooms behave.
      TIDINGS_PRESENCE_EVENTS_MAX: '5',
      ...extraEnv,
    }, { port }).start());
}

export function distributedEnv(extra = {}) {
  return {
    TIDINGS_JWT_SECRET: SECRET,
    TIDINGS_KAFKA_BROKERS: KAFKA,
    TIDINGS_CASSANDRA: CASSANDRA,
    TIDINGS_CASSANDRA_KEYSPACE: 'tidings_system',
    TIDINGS_BLOCKED_TERMS: 'forbidden,Spam',
    TIDINGS_MAX_TEXT: '200',
    TIDINGS_RATE_PER_SEC: '5000',
    TIDINGS_RATE_BURST: '5000',
    TIDINGS_USER_RATE_PER_SEC: '5000',
    TIDINGS_USER_RATE_BURST: '5000',
    TIDINGS_PRESENCE_EVENTS_MAX: '5',
    ...extra,
  };
}

/** Connects a stock socket.io-client; resolves once connected, rejects on connect_error. */
export function connect(url, auth, { transports = ['websocket'] } = {}) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth, transports, reconnection: false, forceNew: true, timeout: 10000 });
    socket.messages = [];
    socket.typing = [];
    socket.presence = [];
    socket.occupancy = [];
    socket.notify = [];
    socket.reads = [];
    socket.receipts = [];
    socket.on('notify', (n) => socket.notify.push(n));
    socket.on('read', (r) => socket.reads.push(r));
    socket.on('receipt', (r) => socket.receipts.push(r));
    socket.on('message', (m) => socket.messages.push(m));
    socket.on('typing', (t) => socket.typing.push(t));
    socket.on('presence', (p) => socket.presence.push(p));
    socket.on('occupancy', (o) => socket.occupancy.push(o));
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => {
      socket.close();
      reject(err);
    });
  });
}

export function call(socket, event, payload, timeoutMs = 15000) {
  return socket.timeout(timeoutMs).emitWithAck(event, payload);
}

/** `tidings migrate`: creates the topics and the keyspace (idempotent). */
export function migrate(env) {
  const result = spawnSync(BIN, ['migrate'], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120000 });
  if (result.status !== 0) throw new Error(`tidings migrate failed: ${result.stderr}`);
}
