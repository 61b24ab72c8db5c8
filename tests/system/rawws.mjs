// A WebSocket client written on raw TCP, for the attack suite: it can do what a stock client
// refuses to (oversized or malformed frames, never reading its socket, stalling a handshake)
// and speaks just enough Engine.IO / Socket.IO to reach the server's handlers.

import { randomBytes } from 'node:crypto';
import { connect as tcpConnect } from 'node:net';
import { readFileSync } from 'node:fs';

export const SIO_PATH = '/socket.io/?EIO=4&transport=websocket';

/** Resident memory of a process, in bytes (Linux). */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
  return kb * 1024;
}

/** Samples `pid`'s RSS every 20 ms while `work` runs; resolves to the peak and work's result. */
export async function peakRss(pid, work) {
  let peak = rssBytes(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {
      // the process ended; the caller sees why
    }
  }, 20);
  try {
    const result = await work();
    peak = Math.max(peak, rssBytes(pid));
    return { peak, result };
  } finally {
    clearInterval(timer);
  }
}

/** Encodes one client frame (masked, as RFC 6455 requires of clients). A zero mask keeps big
 * payloads cheap to build and is still a valid masked frame. */
export function frame(opcode, payload, { fin = true, mask = true, zeroMask = false } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = data.length;
  let head;
  if (len < 126) {
    head = Buffer.alloc(2);
    head[1] = len;
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (!mask) return Buffer.concat([head, data]);
  head[1] |= 0x80;
  const key = zeroMask ? Buffer.alloc(4) : randomBytes(4);
  let body = data;
  if (!zeroMask) {
    body = Buffer.allocUnsafe(len);
    for (let i = 0; i < len; i++) body[i] = data[i] ^ key[i & 3];
  }
  return Buffer.concat([head, key, body]);
}

export class RawWs {
  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.frames = [];
    this.waiters = [];
    this.isClosed = false;
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true;
        for (const w of this.waiters.splice(0)) w.reject(new Error('connection closed'));
        resolve();
      });
    });
    socket.on('error', () => {});
    socket.on('data', (chunk) => this.onData(chunk));
  }

  /** Opens a WebSocket on `path` (default: Socket.IO's), with extra request headers. */
  static open(port, { path = SIO_PATH, headers = {}, host = '127.0.0.1', localAddress } = {}) {
    return new Promise((resolve, reject) => {
      const socket = tcpConnect({ port, host, localAddress });
      socket.setNoDelay(true);
      let head = Buffer.alloc(0);
      const onData = (chunk) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        const status = head.subarray(0, end).toString();
        if (!/^HTTP\/1\.1 101/.test(status)) {
          socket.destroy();
          const err = new Error(`upgrade refused: ${status.split('\r\n')[0]}`);
          err.status = Number(status.split(' ')[1]);
          reject(err);
          return;
        }
        const ws = new RawWs(socket);
        const rest = head.subarray(end + 4);
        if (rest.length) ws.onData(rest);
        resolve(ws);
      };
      socket.on('data', onData);
      socket.once('error', reject);
      socket.once('connect', () => {
        const lines = [
          `GET ${path} HTTP/1.1`,
          `Host: ${host}:${port}`,
          'Upgrade: websocket',
          'Connection: Upgrade',
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
          'Sec-WebSocket-Version: 13',
          ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
        ];
        socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      });
    });
  }

  onData(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (this.buf.length < 2) return;
      const opcode = this.buf[0] & 0x0f;
      let len = this.buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      if (this.buf.length < off + len) return;
      const payload = this.buf.subarray(off, off + len);
      this.buf = this.buf.subarray(off + len);
      this.onFrame({ opcode, payload });
    }
  }

  onFrame(f) {
    if (f.opcode === 0x8) {
      // The server closes: answer the closing handshake and hang up, as clients must.
      this.write(frame(0x8, f.payload.subarray(0, 2)));
      this.socket.end();
      this.isClosed = true;
    }
    if (f.opcode === 0x9) {
      this.write(frame(0xa, f.payload));
      return;
    }
    const text = f.opcode === 0x1 ? f.payload.toString() : null;
    // Engine.IO ping: answer, unless the test stopped reading on purpose.
    if (text === '2') {
      this.write(frame(0x1, '3'));
      return;
    }
    const w = this.waiters.shift();
    if (w) w.resolve({ ...f, text });
    else this.frames.push({ ...f, text });
  }

  /** The next frame from the server (Engine.IO pings are answered, not returned). */
  next(timeoutMs = 10000) {
    const f = this.frames.shift();
    if (f) return Promise.resolve(f);
    if (this.isClosed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      const w = { resolve, reject };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(new Error('no frame in time'));
        }
      }, timeoutMs);
    });
  }

  /** Frames until one whose text starts with `prefix`. */
  async nextText(prefix, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = await this.next(Math.max(1, deadline - Date.now()));
      if (f.text !== null && f.text.startsWith(prefix)) return f.text;
    }
  }

  write(buf) {
    if (this.isClosed || this.socket.destroyed) return false;
    return this.socket.write(buf);
  }

  sendText(text) {
    return this.write(frame(0x1, text));
  }

  /** Writes `buf` and resolves once it is handed to the kernel (or the peer closed). */
  writeAll(buf) {
    return new Promise((resolve) => {
      if (this.isClosed || this.socket.destroyed) return resolve(false);
      this.socket.write(buf, () => resolve(true));
      this.socket.once('close', () => resolve(false));
    });
  }

  /** Stops reading the socket: the server's writes back up, as with a stalled phone. */
  pause() {
    this.socket.pause();
  }

  close() {
    this.socket.destroy();
  }

  /** Engine.IO open, then the Socket.IO CONNECT with `auth`; resolves to the server's answer
   * (`40{...}` on success, `44{...}` on a connect error). */
  async sioConnect(auth) {
    const open = await this.nextText('0');
    this.sid = JSON.parse(open.slice(1)).sid;
    this.sendText(`40${JSON.stringify(auth)}`);
    return this.nextText('4');
  }

  /** Emits `event` with an ack id; resolves to the ack payload. */
  async call(id, event, payload, timeoutMs = 10000) {
    this.sendText(`42${id}${JSON.stringify([event, payload])}`);
    const text = await this.nextText(`43${id}[`, timeoutMs);
    return JSON.parse(text.slice(`43${id}`.length))[0];
  }
}

/** Reads a counter's value from Prometheus text (sum over series matching `labels`). */
export async function metric(url, name, labels = {}) {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})?\s+([0-9.e+-]+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const ok = Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`));
    if (ok) sum += Number(m[3]);
  }
  return sum;
}
