// The attack suite: hostile and broken clients against a real `tidings standalone`, on
// loopback only, each bounded in count and time. For every memory attack it asserts that the
// server's RSS grows by at most the configured bound plus a stated margin, and that the
// server keeps serving honest clients while it happens. SECURITY.md lists the outcomes.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createHmac } from 'node:crypto';
import { connect as tcpConnect } from 'node:net';
import { SECRET, call, connect, sleep, standalone, tempDir, token, unique, waitUntil } from './harness.mjs';
import { RawWs, SIO_PATH, frame, metric, peakRss, rssBytes } from './rawws.mjs';

const MiB = 1024 * 1024;
/** What a process may grow by beyond the bound under test: allocator slack, the store's
 * page cache, per-request buffers of the few requests in flight. */
const MARGIN = 48 * MiB;
/** The configured per-connection output bound the suite runs with (the default). */
const OUT_BOUND = 1 * MiB;

/** Sends and receives one message on a fresh connection: proof the server still serves. */
async function stillServes(url) {
  const room = unique('alive');
  const s = await connect(url, { token: token(unique('honest')) });
  try {
    assert.equal((await call(s, 'join', { room })).ok, true);
    const ack = await call(s, 'send', { room, id: 'x', text: 'still here' });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    await waitUntil('own message back', () => s.messages.some((m) => m.seq === ack.seq), 10000);
  } finally {
    s.close();
  }
}

async function rawClient(port, sub = unique('raw')) {
  const ws = await RawWs.open(port);
  const answer = await ws.sioConnect({ token: token(sub) });
  assert.ok(answer.startsWith('40'), `connect answered ${answer}`);
  return ws;
}

describe('attacks on memory (G7)', () => {
  let proc;
  let port;
  before(async () => {
    proc = await standalone(tempDir(), {
      TIDINGS_MAX_TEXT: '4000',
      // High enough that the limits under test, not the event rate, are what stops them.
      TIDINGS_RATE_PER_SEC: '10000',
      TIDINGS_RATE_BURST: '10000',
      TIDINGS_USER_RATE_PER_SEC: '10000',
      TIDINGS_USER_RATE_BURST: '10000',
    });
    port = proc.port;
  });
  after(() => proc.kill('SIGTERM'));

  test('a client that never reads, asking for large history pages, is dropped within the byte bound', async () => {
    const room = unique('big');
    const writer = await connect(proc.url, { token: token(unique('w')) });
    assert.equal((await call(writer, 'join', { room })).ok, true);
    // 200 messages of 4,000 three-byte characters: a full history page is ~2.4 MB.
    const text = '€'.repeat(4000);
    for (let i = 0; i < 200; i++) {
      const ack = await call(writer, 'send', { room, id: `m${i}`, text });
      assert.equal(ack.ok, true, JSON.stringify(ack));
    }
    writer.close();

    const ws = await rawClient(port);
    try {
      assert.deepEqual((await ws.call(1, 'join', { room })).ok, true);
      const base = rssBytes(proc.child.pid);
      const kicksBefore = await metric(proc.url, 'tidings_edge_forced_disconnects_total', { reason: 'slow_consumer' });
      ws.pause();
      const { peak, result: dropped } = await peakRss(proc.child.pid, async () => {
        // In waves: only 16 requests may be in progress per connection (the rest are refused
        // at once), and the kernel's socket buffers absorb the first few MB of replies, so the
        // pressure has to last for the queue in the process to pass its bound.
        for (let i = 0; i < 600; i++) {
          ws.sendText(`42${100 + i}["history",{"room":"${room}","limit":200}]`);
          if (i % 16 === 15) await sleep(20);
        }
        try {
          await waitUntil('the slow reader is dropped', async () =>
            (await metric(proc.url, 'tidings_edge_forced_disconnects_total', { reason: 'slow_consumer' })) > kicksBefore, 15000);
          await sleep(500);
          return true;
        } catch {
          return false;
        }
      });
      const growth = peak - base;
      console.log(`slow reader: RSS ${(base / MiB).toFixed(1)} -> peak ${(peak / MiB).toFixed(1)} MiB`);
      assert.ok(growth <= OUT_BOUND + MARGIN, `RSS grew ${(growth / MiB).toFixed(1)} MiB`);
      assert.ok(dropped, 'the slow reader is disconnected as slow_consumer');
    } finally {
      // Also when an assertion failed: a paused socket left open would keep the server busy.
      ws.close();
    }
    await stillServes(proc.url);
  });

  for (const [label, clients, size, pieces] of [
    ['8 clients, one 10 MB frame each', 8, 10 * MiB, 1],
    ['3 clients, 60 MB each in four fragments', 3, 60 * MiB, 4],
  ]) {
    test(`a WebSocket message over 64 KiB (${label}) is refused before it is buffered`, async () => {
      const conns = await Promise.all(Array.from({ length: clients }, () => rawClient(port)));
      const base = rssBytes(proc.child.pid);
      const big = Buffer.alloc(size, 0x61);
      big.write('42["send",{"room":"r","id":"a","text":"', 0);
      const step = size / pieces;
      const { peak } = await peakRss(proc.child.pid, () => Promise.all(conns.map(async (ws) => {
        for (let i = 0; i < pieces && !ws.isClosed; i++) {
          const opcode = i === 0 ? 0x1 : 0x0;
          await ws.writeAll(frame(opcode, big.subarray(i * step, (i + 1) * step), { fin: i === pieces - 1, zeroMask: true }));
        }
        await Promise.race([ws.closed, sleep(5000)]);
      })));
      const growth = peak - base;
      console.log(`${label}: RSS ${(base / MiB).toFixed(1)} -> peak ${(peak / MiB).toFixed(1)} MiB`);
      assert.ok(growth <= MARGIN, `RSS grew ${(growth / MiB).toFixed(1)} MiB`);
      assert.equal(conns.filter((ws) => !ws.isClosed).length, 0, 'the server closes connections that send an oversized message');
      await stillServes(proc.url);
    });
  }

  test('a 10 MB message split into 32 KiB fragments is refused once past 64 KiB', async () => {
    const conns = await Promise.all(Array.from({ length: 8 }, () => rawClient(port)));
    const base = rssBytes(proc.child.pid);
    const chunk = Buffer.alloc(32 * 1024, 0x61);
    const { peak } = await peakRss(proc.child.pid, () => Promise.all(conns.map(async (ws) => {
      ws.write(frame(0x1, '42["send",', { fin: false }));
      for (let sent = 0; sent < 10 * MiB && !ws.isClosed; sent += chunk.length) {
        await ws.writeAll(frame(0x0, chunk, { fin: false, zeroMask: true }));
      }
      await Promise.race([ws.closed, sleep(5000)]);
    })));
    const growth = peak - base;
    console.log(`8 x 10 MB in fragments: RSS ${(base / MiB).toFixed(1)} -> peak ${(peak / MiB).toFixed(1)} MiB`);
    assert.equal(conns.filter((ws) => !ws.isClosed).length, 0, 'every connection is closed');
    assert.ok(growth <= MARGIN, `RSS grew ${(growth / MiB).toFixed(1)} MiB`);
    await stillServes(proc.url);
  });

  test('a slow reader in a busy room is dropped; the other members get every message', async () => {
    const text = 'x'.repeat(3000);
    // 3,000 messages of 3 KB (9 MB): more than the kernel's socket buffers absorb for a
    // client that does not read, so the edge's own bound must act.
    async function busyRoom(withSlowReader) {
      const room = unique('busy');
      const writer = await connect(proc.url, { token: token(unique('w')) });
      const reader = await connect(proc.url, { token: token(unique('r')) });
      await call(writer, 'join', { room });
      await call(reader, 'join', { room });
      let slow = null;
      if (withSlowReader) {
        slow = await rawClient(port);
        assert.equal((await slow.call(1, 'join', { room })).ok, true);
        slow.pause();
      }
      const base = rssBytes(proc.child.pid);
      const { peak } = await peakRss(proc.child.pid, async () => {
        for (let i = 0; i < 3000; i += 50) {
          await Promise.all(Array.from({ length: 50 }, (_, j) => call(writer, 'send', { room, id: `b${i + j}`, text })));
        }
        await waitUntil('the reader has all 3000', () => reader.messages.length >= 3000, 30000);
      });
      const seqs = reader.messages.map((m) => m.seq);
      assert.deepEqual(seqs, Array.from({ length: 3000 }, (_, i) => i + 1), 'in order, no gap');
      writer.close();
      reader.close();
      slow?.close();
      return peak - base;
    }
    // The same traffic with honest members only: what storage and allocator take anyway.
    const honest = await busyRoom(false);
    const kicksBefore = await metric(proc.url, 'tidings_edge_forced_disconnects_total', { reason: 'slow_consumer' });
    const growth = await busyRoom(true);
    console.log(`busy room: RSS growth ${(honest / MiB).toFixed(1)} MiB honest, ${(growth / MiB).toFixed(1)} MiB with a slow reader`);
    assert.ok((await metric(proc.url, 'tidings_edge_forced_disconnects_total', { reason: 'slow_consumer' })) > kicksBefore,
      'the slow reader was dropped as slow_consumer');
    assert.ok(growth <= Math.max(honest, 0) + OUT_BOUND + MARGIN, `RSS grew ${(growth / MiB).toFixed(1)} MiB`);
  });

  test('a polling body over 64 KiB is refused', async () => {
    const open = await (await fetch(`${proc.url}/socket.io/?EIO=4&transport=polling`)).text();
    const sid = JSON.parse(open.slice(1)).sid;
    const base = rssBytes(proc.child.pid);
    // Refusal is an error status, or the server cutting the upload short (the client
    // then sees a reset instead of a response); a 2xx means the body was taken.
    let outcome;
    try {
      const res = await fetch(`${proc.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain;charset=UTF-8' },
        body: `42["send",{"text":"${'a'.repeat(8 * MiB)}"}]`,
      });
      outcome = `status ${res.status}`;
      assert.ok(res.status >= 400, outcome);
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      outcome = `cut: ${err.cause?.code ?? err.message}`;
    }
    console.log(`8 MB polling body: ${outcome}`);
    assert.ok(rssBytes(proc.child.pid) - base <= MARGIN);
    await stillServes(proc.url);
  });

  test('never-authenticated connections sending partial binary packets hold nothing', async () => {
    const base = rssBytes(proc.child.pid);
    const conns = await Promise.all(Array.from({ length: 10 }, () => RawWs.open(port)));
    const { peak } = await peakRss(proc.child.pid, async () => {
      await Promise.all(conns.map(async (ws) => {
        await ws.nextText('0');
        // A binary event announcing 1,000 attachments, then 1 MB of them, without ever
        // sending CONNECT: the server must not collect them for an anonymous client.
        ws.sendText('451000-["send",{"_placeholder":true,"num":0}]');
        const attachment = Buffer.alloc(32 * 1024, 0x62);
        for (let i = 0; i < 640 && !ws.isClosed; i++) {
          await ws.writeAll(frame(0x2, attachment, { zeroMask: true }));
        }
      }));
      await Promise.all(conns.map((ws) => Promise.race([ws.closed, sleep(5000)])));
    });
    const open = conns.filter((ws) => !ws.isClosed).length;
    for (const ws of conns) ws.close();
    const growth = peak - base;
    console.log(`partial binary x10: RSS ${(base / MiB).toFixed(1)} -> peak ${(peak / MiB).toFixed(1)} MiB`);
    assert.equal(open, 0, 'every anonymous binary sender is disconnected');
    assert.ok(growth <= MARGIN, `RSS grew ${(growth / MiB).toFixed(1)} MiB`);
    await stillServes(proc.url);
  });
});

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** A JWT with any header and claims, signed with HMAC-SHA256 of `secret` (or unsigned). */
function forge(header, claims, { secret = SECRET, sign = true } = {}) {
  const body = `${b64(header)}.${b64(claims)}`;
  const sig = sign ? createHmac('sha256', secret).update(body).digest('base64url') : '';
  return `${body}.${sig}`;
}

/** Resolves to the connect error's message, 'connected', or 'no answer' after 10 s. */
async function connectOutcome(url, auth) {
  const attempt = connect(url, auth).then((s) => {
    s.close();
    return 'connected';
  }, (err) => err.message);
  return Promise.race([attempt, sleep(10000).then(() => 'no answer')]);
}

describe('attacks on identity', () => {
  let proc;
  before(async () => {
    proc = await standalone(tempDir());
  });
  after(() => proc.kill('SIGTERM'));

  const now = () => Math.floor(Date.now() / 1000);
  const cases = [
    ['alg none, unsigned', () => forge({ alg: 'none', typ: 'JWT' }, { sub: 'eve', exp: now() + 60 }, { sign: false })],
    ['alg none with a signature', () => forge({ alg: 'none', typ: 'JWT' }, { sub: 'eve', exp: now() + 60 })],
    ['key confusion: RS256 header, HMAC with the secret', () => forge({ alg: 'RS256', typ: 'JWT' }, { sub: 'eve', exp: now() + 60 })],
    ['HS512 header', () => forge({ alg: 'HS512', typ: 'JWT' }, { sub: 'eve', exp: now() + 60 })],
    ['signed with another key', () => forge({ alg: 'HS256' }, { sub: 'eve', exp: now() + 60 }, { secret: 'guess' })],
    ['expired', () => forge({ alg: 'HS256' }, { sub: 'eve', exp: now() - 60 })], // past the 5 s leeway
    ['no exp', () => forge({ alg: 'HS256' }, { sub: 'eve' })],
    ['not valid yet (nbf)', () => forge({ alg: 'HS256' }, { sub: 'eve', exp: now() + 600, nbf: now() + 300 })],
    ['issued in the future (iat)', () => forge({ alg: 'HS256' }, { sub: 'eve', exp: now() + 600, iat: now() + 300 })],
    ['sub with ESC', () => forge({ alg: 'HS256' }, { sub: 'eve\u001b[2J', exp: now() + 60 })],
    ['sub with NUL', () => forge({ alg: 'HS256' }, { sub: 'eve\u0000', exp: now() + 60 })],
    ['sub with CR/LF', () => forge({ alg: 'HS256' }, { sub: 'eve\r\nadmin', exp: now() + 60 })],
    ['sub with U+202E', () => forge({ alg: 'HS256' }, { sub: 'eve\u202Etxt.exe', exp: now() + 60 })],
    ['sub with a zero-width space', () => forge({ alg: 'HS256' }, { sub: 'ev\u200Be', exp: now() + 60 })],
    ['sub over 128 bytes', () => forge({ alg: 'HS256' }, { sub: 'é'.repeat(65), exp: now() + 60 })],
    ['name with U+202E', () => forge({ alg: 'HS256' }, { sub: 'eve', name: 'Eve\u202E', exp: now() + 60 })],
    ['not a JWT', () => 'a.b.c'],
    ['a 60 KB token', () => 'x'.repeat(60_000)],
  ];
  for (const [label, make] of cases) {
    test(`refused as unauthorized: ${label}`, async () => {
      assert.equal(await connectOutcome(proc.url, { token: make() }), 'unauthorized');
    });
  }

  test('a good token with nbf and iat now is accepted', async () => {
    const t = forge({ alg: 'HS256', typ: 'JWT' }, { sub: 'zoë', name: 'Zoë', exp: now() + 60, nbf: now(), iat: now() });
    assert.equal(await connectOutcome(proc.url, { token: t }), 'connected');
  });
});

describe('attacks on input', () => {
  let proc;
  before(async () => {
    proc = await standalone(tempDir(), { TIDINGS_MAX_TEXT: '4000' });
  });
  after(() => proc.kill('SIGTERM'));

  test('text made only of invisible characters is invalid; length counts after stripping', async () => {
    const room = unique('hyg');
    const s = await connect(proc.url, { token: token(unique('u')) });
    try {
      await call(s, 'join', { room });
      const blank = await call(s, 'send', { room, id: 'zw', text: '\u200B\u200C\u200D\uFEFF \u2060' });
      assert.equal(blank.error?.code, 'invalid', JSON.stringify(blank));
      const padded = await call(s, 'send', { room, id: 'nul', text: `${'\u0000'.repeat(4000)}a` });
      assert.equal(padded.ok, true, JSON.stringify(padded));
      await waitUntil('the message', () => s.messages.some((m) => m.seq === padded.seq));
      assert.equal(s.messages.find((m) => m.seq === padded.seq).text, 'a');
      const history = await call(s, 'history', { room });
      assert.deepEqual(history.messages.map((m) => m.text), ['a'], 'nothing invisible was stored');
    } finally {
      s.close();
    }
  });

  const badFrames = [
    ['invalid UTF-8 in a text frame', () => frame(0x1, Buffer.from([0x34, 0x32, 0xff, 0xfe]))],
    ['an unmasked client frame', () => frame(0x1, '42["x"]', { mask: false })],
    ['a continuation with no start', () => frame(0x0, 'abc')],
    ['a 200-byte ping', () => frame(0x9, Buffer.alloc(200))],
    ['a reserved opcode', () => frame(0x3, 'x')],
    ['RSV bits set', () => { const f = frame(0x1, '3'); f[0] |= 0x70; return f; }],
  ];
  for (const [label, make] of badFrames) {
    test(`a malformed WebSocket frame (${label}) closes that connection only`, async () => {
      const ws = await rawClient(proc.port);
      ws.write(make());
      await Promise.race([ws.closed, sleep(5000)]);
      assert.ok(ws.isClosed, 'the connection is closed');
      await stillServes(proc.url);
    });
  }

  test('bad Engine.IO and Socket.IO packets are refused or ignored, and the server serves on', async () => {
    const packets = ['9', '', '4', '42', '42[', '42["send"', '42{}', '4x', '40/admin,{}', '43999[{}]', '6', '5',
      '42["join",{"room":"' + 'r'.repeat(10000) + '"}]', '421["' + 'e'.repeat(2000) + '",{}]'];
    for (const p of packets) {
      const ws = await rawClient(proc.port);
      ws.sendText(p);
      await Promise.race([ws.closed, sleep(300)]);
      ws.close();
    }
    const ws = await rawClient(proc.port);
    try {
      assert.equal((await ws.call(7, 'join', 'lobby')).error?.code, 'invalid');
      assert.equal((await ws.call(8, 'join', { room: 'a b' })).error?.code, 'invalid');
      assert.equal((await ws.call(9, 'nope', {})).error?.code, 'invalid');
      assert.equal((await ws.call(10, 'send', { room: 'x', id: 'i', text: 5 })).error?.code, 'invalid');
    } finally {
      ws.close();
    }
    await stillServes(proc.url);
  });

  test('the page is served with CSP, nosniff, frame-ancestors and Referrer-Policy', async () => {
    const res = await fetch(`${proc.url}/`);
    assert.equal(res.status, 200);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
    assert.doesNotMatch(await res.text(), /<script>|<style>/, 'no inline script or style for CSP to allow');
  });
});

describe('attacks on connections and rates', () => {
  let proc;
  before(async () => {
    proc = await standalone(tempDir(), {
      // The defaults for events, and small caps to reach in a test.
      TIDINGS_RATE_PER_SEC: '20',
      TIDINGS_RATE_BURST: '40',
      TIDINGS_USER_RATE_PER_SEC: '50',
      TIDINGS_USER_RATE_BURST: '100',
      TIDINGS_MAX_CONNS_PER_USER: '4',
      TIDINGS_MAX_CONNS_PER_IP: '20',
      TIDINGS_CONNECT_RATE_PER_IP: '5',
      TIDINGS_CONNECT_BURST_PER_IP: '60',
      TIDINGS_AUTH_TIMEOUT_MS: '2000',
      TIDINGS_REQUEST_HEAD_TIMEOUT_MS: '2000',
    });
  });
  after(() => proc.kill('SIGTERM'));

  test('an event flood from one connection is rate_limited with retry_after_ms', async () => {
    const room = unique('flood');
    const s = await connect(proc.url, { token: token(unique('f')) });
    try {
      await call(s, 'join', { room });
      const acks = await Promise.all(Array.from({ length: 80 }, (_, i) => call(s, 'typing', { room, on: i % 2 === 0 })));
      const limited = acks.filter((a) => a.error?.code === 'rate_limited');
      assert.ok(limited.length >= 30, `${limited.length} of 80 limited`);
      assert.ok(limited.every((a) => a.error.retry_after_ms > 0));
    } finally {
      s.close();
    }
  });

  test("one user's connections share an event rate", async () => {
    const user = unique('multi');
    const room = unique('share');
    const socks = await Promise.all([0, 1, 2].map(() => connect(proc.url, { token: token(user) })));
    try {
      for (const s of socks) await call(s, 'join', { room });
      // 3 x 38 events: each connection stays within its own burst of 40, the user's 100 is passed.
      const acks = (await Promise.all(socks.map((s) =>
        Promise.all(Array.from({ length: 38 }, () => call(s, 'typing', { room, on: true })))))).flat();
      const limited = acks.filter((a) => a.error?.code === 'rate_limited').length;
      assert.ok(limited > 0, 'the per-user rate limited some events');
    } finally {
      for (const s of socks) s.close();
    }
  });

  test("a user's connections are capped per edge", async () => {
    const user = unique('many');
    const socks = [];
    try {
      for (let i = 0; i < 4; i++) socks.push(await connect(proc.url, { token: token(user) }));
      assert.equal(await connectOutcome(proc.url, { token: token(user) }), 'rate_limited');
      socks.pop().close();
      await waitUntil('a place frees up', async () => (await connectOutcome(proc.url, { token: token(user) })) === 'connected');
    } finally {
      for (const s of socks) s.close();
    }
  });

  test('connections from one address are capped; other addresses are served', async () => {
    const opened = [];
    let refused = 0;
    for (let i = 0; i < 30; i++) {
      try {
        opened.push(await RawWs.open(proc.port, { localAddress: '127.0.0.7' }));
      } catch (err) {
        assert.equal(err.status, 429, err.message);
        refused++;
      }
    }
    assert.equal(opened.length, 20, 'the cap is 20');
    assert.equal(refused, 10);
    await stillServes(proc.url);
    for (const ws of opened) ws.close();
  });

  test('connecting too fast from one address is refused', async () => {
    let refused = 0;
    for (let i = 0; i < 80; i++) {
      try {
        const ws = await RawWs.open(proc.port, { localAddress: '127.0.0.8' });
        ws.close();
      } catch (err) {
        assert.equal(err.status, 429, err.message);
        refused++;
      }
    }
    assert.ok(refused >= 10, `${refused} of 80 refused`);
  });

  test('connections that never authenticate are cut after the auth timeout', async () => {
    const silent = await RawWs.open(proc.port, { localAddress: '127.0.0.11' });
    await silent.nextText('0');
    const refusedClient = await RawWs.open(proc.port, { localAddress: '127.0.0.11' });
    assert.ok((await refusedClient.sioConnect({ token: 'bad' })).startsWith('44'));
    const t0 = Date.now();
    await Promise.race([Promise.all([silent.closed, refusedClient.closed]), sleep(8000)]);
    assert.ok(silent.isClosed && refusedClient.isClosed, 'both were cut');
    assert.ok(Date.now() - t0 < 6000);
    const authed = await rawClient(proc.port);
    await sleep(3000);
    assert.ok(!authed.isClosed, 'an authenticated connection stays');
    authed.close();
  });

  test('clients that start on polling and upgrade outlive the auth timeout', async () => {
    const room = unique('upg');
    const s = await connect(proc.url, { token: token(unique('p')) }, { transports: ['polling', 'websocket'] });
    try {
      await waitUntil('the upgrade to WebSocket', () => s.io.engine.transport.name === 'websocket');
      await sleep(3000);
      assert.ok(s.connected, 'still connected past the 2 s auth timeout');
      await call(s, 'join', { room });
      const ack = await call(s, 'send', { room, id: 'u1', text: 'after the deadline' });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      await waitUntil('own message', () => s.messages.some((m) => m.seq === ack.seq));
    } finally {
      s.close();
    }
  });

  test('slowloris: request heads trickled byte by byte are cut at the head timeout', async () => {
    const conns = Array.from({ length: 15 }, () => tcpConnect({ port: proc.port, host: '127.0.0.1', localAddress: '127.0.0.12' }));
    const closedAt = conns.map((c) => new Promise((resolve) => c.on('close', () => resolve(Date.now()))));
    for (const c of conns) c.on('error', () => {});
    const head = `GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ${'a'.repeat(100)}`;
    const t0 = Date.now();
    let i = 0;
    const timer = setInterval(() => {
      for (const c of conns) if (!c.destroyed) c.write(head[i % head.length]);
      i++;
    }, 200);
    const times = await Promise.race([Promise.all(closedAt), sleep(8000).then(() => null)]);
    clearInterval(timer);
    for (const c of conns) c.destroy();
    assert.ok(times, 'every trickling connection was closed');
    assert.ok(Math.max(...times) - t0 < 6000);
    await stillServes(proc.url);
  });

  test('pages from other origins cannot open Socket.IO connections', async () => {
    await assert.rejects(RawWs.open(proc.port, { headers: { Origin: 'https://evil.example' } }), (err) => err.status === 403);
    const poll = await fetch(`${proc.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: 'https://evil.example' } });
    assert.equal(poll.status, 403);
    const same = await RawWs.open(proc.port, { headers: { Origin: `http://127.0.0.1:${proc.port}` } });
    same.close();
    const loopbackDev = await RawWs.open(proc.port, { headers: { Origin: 'http://localhost:5173' } });
    loopbackDev.close();
  });
});
