// The attack suite: hostile and broken clients against a real `tidings standalone`, on
// loopback only, each bounded in count and time. For every memory attack it asserts that the
// server's RSS grows by at most the configured bound plus a stated margin, and that the
// server keeps serving honest clients while it happens. SECURITY.md lists the outcomes.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { call, connect, sleep, standalone, tempDir, token, unique, waitUntil } from './harness.mjs';
import { RawWs, frame, metric, peakRss, rssBytes } from './rawws.mjs';

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
    assert.deepEqual((await ws.call(1, 'join', { room })).ok, true);
    const base = rssBytes(proc.child.pid);
    const kicksBefore = await metric(proc.url, 'tidings_edge_forced_disconnects_total', { reason: 'slow_consumer' });
    ws.pause();
    const { peak, result: dropped } = await peakRss(proc.child.pid, async () => {
      for (let i = 0; i < 150; i++) ws.sendText(`42${100 + i}["history",{"room":"${room}","limit":200}]`);
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
    ws.close();
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
