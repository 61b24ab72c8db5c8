// TLS on the edge: `tidings standalone` with TIDINGS_TLS_CERT / TIDINGS_TLS_KEY serves HTTPS
// and WSS on its port. A certificate made here with the openssl command line, a stock
// socket.io-client that trusts it (its `ca` option), one that does not, plain HTTP and
// stalled handshakes on the TLS port, and the per-address cap in front of the handshake.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { Proc, call, connect, freePort, httpsGet, sleep, standalone, tempDir, token, unique, waitUntil } from './harness.mjs';

/** A self-signed certificate for 127.0.0.1 and localhost, valid for a day. */
function selfSigned(dir, name) {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${name}`,
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  return { cert, key, pem: readFileSync(cert, 'utf8') };
}

/** A raw TCP connection; resolves once connected, collecting what the server sends. */
function rawSocket(port) {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1', () => resolve(socket));
    socket.received = '';
    socket.on('data', (d) => {
      if (socket.received.length < 4096) socket.received += d.toString('latin1');
    });
    socket.ended = new Promise((r) => socket.on('close', r));
    socket.on('error', () => {});
    socket.once('error', reject);
  });
}

describe('edge TLS', () => {
  const dir = tempDir();
  const tls = selfSigned(dir, 'tidings-edge');
  const tlsEnv = { TIDINGS_TLS_CERT: tls.cert, TIDINGS_TLS_KEY: tls.key };
  let server;

  before(async () => {
    // A short head timeout, so a stalled handshake is seen to be cut.
    server = await standalone(join(dir, 'data'), { ...tlsEnv, TIDINGS_REQUEST_HEAD_TIMEOUT_MS: '1500' }, { ca: tls.pem });
  });
  after(() => server?.kill('SIGTERM'));

  it('serves HTTPS and a stock client that trusts the certificate chats over WSS and polling', async () => {
    assert.match(server.url, /^https:/);
    assert.equal((await httpsGet(`${server.url}/healthz`, { ca: tls.pem })).status, 200);
    const room = unique('tls');
    const ada = await connect(server.url, { token: token('ada') }, { ca: tls.pem });
    // Long polling then the upgrade, both over TLS.
    const bob = await connect(server.url, { token: token('bob') }, { ca: tls.pem, transports: ['polling', 'websocket'] });
    try {
      assert.equal(ada.io.engine.transport.name, 'websocket');
      assert.deepEqual(await call(ada, 'join', { room }), { ok: true, room, head: 0 });
      assert.equal((await call(bob, 'join', { room })).ok, true);
      const ack = await call(ada, 'send', { room, id: 'm1', text: 'over tls' });
      assert.equal(ack.seq, 1);
      await waitUntil('bob gets the message', () => bob.messages.length === 1);
      assert.deepEqual([bob.messages[0].seq, bob.messages[0].from, bob.messages[0].text], [1, 'ada', 'over tls']);
      const reply = await call(bob, 'send', { room, id: 'm2', text: 'and back' });
      assert.equal(reply.seq, 2);
      await waitUntil('ada gets the reply', () => ada.messages.length === 2);
    } finally {
      ada.close();
      bob.close();
    }
  });

  it('a client that does not trust the certificate is refused', async () => {
    await assert.rejects(
      connect(server.url, { token: token('eve') }),
      (err) => /self[- ]signed|certificate/i.test(`${err.message} ${err.description?.message ?? ''} ${err.description ?? ''}`),
    );
    // Nor does a certificate for another name help: another self-signed one is not trusted.
    const other = selfSigned(dir, 'someone-else');
    await assert.rejects(httpsGet(`${server.url}/healthz`, { ca: other.pem }), /self[- ]signed|certificate/i);
  });

  it('plain HTTP on the TLS port fails and the server keeps serving', async () => {
    const plain = server.url.replace('https:', 'http:');
    await assert.rejects(fetch(`${plain}/healthz`, { signal: AbortSignal.timeout(5000) }));
    // And raw bytes that are no TLS at all.
    const junk = await rawSocket(server.port);
    junk.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await junk.ended;
    assert.doesNotMatch(junk.received, /^HTTP\/1\.1 200/);
    const ada = await connect(server.url, { token: token('ada') }, { ca: tls.pem });
    ada.close();
    assert.equal((await httpsGet(`${server.url}/readyz`, { ca: tls.pem })).status, 200);
  });

  it('a stalled handshake is cut at the head timeout and holds up no one', async () => {
    const stalled = await rawSocket(server.port);
    const started = Date.now();
    // Served while the stalled connection sits there.
    const ada = await connect(server.url, { token: token('ada') }, { ca: tls.pem });
    ada.close();
    await Promise.race([stalled.ended, sleep(10000).then(() => assert.fail('the stalled handshake was kept'))]);
    const held = Date.now() - started;
    assert.ok(held >= 1000 && held < 8000, `closed after ${held} ms, head timeout 1500 ms`);
  });

  it('the per-address cap applies before the handshake', async () => {
    const capped = await standalone(join(dir, 'capped'), { ...tlsEnv, TIDINGS_MAX_CONNS_PER_IP: '3' }, { ca: tls.pem });
    const held = [];
    try {
      // The readiness probe's connection may still be closing: wait for room for three.
      for (let i = 0; i < 3; i++) held.push(await rawSocket(capped.port));
      await sleep(200);
      const fourth = await rawSocket(capped.port);
      await fourth.ended;
      assert.match(fourth.received, /^HTTP\/1\.1 429/);
      for (const s of held) s.destroy();
      await Promise.all(held.map((s) => s.ended));
      await waitUntil('a TLS client is served again', async () => {
        const ada = await connect(capped.url, { token: token('ada') }, { ca: tls.pem });
        ada.close();
        return true;
      }, 10000);
    } finally {
      for (const s of held) s.destroy();
      await capped.kill('SIGTERM');
    }
  });

  it('a certificate without its key, or a key that is not a key, stops the start with the setting named', async () => {
    const listen = `127.0.0.1:${await freePort()}`;
    const only = new Proc(['standalone'], { TIDINGS_LISTEN: listen, TIDINGS_DATA_DIR: join(dir, 'bad1'), TIDINGS_TLS_CERT: tls.cert });
    await only.start();
    assert.notEqual(await only.exited, 0);
    assert.match(only.output.join(''), /TIDINGS_TLS_CERT.*without TIDINGS_TLS_KEY/);

    const wrong = new Proc(['standalone'], {
      TIDINGS_LISTEN: listen, TIDINGS_DATA_DIR: join(dir, 'bad2'), TIDINGS_TLS_CERT: tls.cert, TIDINGS_TLS_KEY: tls.cert,
    });
    await wrong.start();
    assert.notEqual(await wrong.exited, 0);
    assert.match(wrong.output.join(''), new RegExp(`TLS key ${tls.cert.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  });
});
