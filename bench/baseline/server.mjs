// The benchmark's baseline: a stock socket.io v4 server, in memory, implementing the subset of
// Tidings' v1 client contract that `tidings-bench load` drives (PROTOCOL.md): HS256 JWT auth,
// join / leave / send / typing with the same acks and the same `message` event. No history, no
// durability, no idempotence: it is what a team would write in an afternoon, run the fair way
// (websocket transport only, no per-message compression, as Tidings).
//
//   npm install && PORT=18081 JWT_SECRET=bench node server.mjs
//
// Env: PORT (default 18081), HOST (default 127.0.0.1), JWT_SECRET or TIDINGS_JWT_SECRET
// (default "bench"). Prints one JSON line {"pid", "port"} once listening.

import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Server } from 'socket.io';

const port = Number(process.env.PORT ?? 18081);
const host = process.env.HOST ?? '127.0.0.1';
const secret = process.env.JWT_SECRET ?? process.env.TIDINGS_JWT_SECRET ?? 'bench';
const MAX_TEXT = Number(process.env.TIDINGS_MAX_TEXT ?? 4000);
const ROOM = /^[A-Za-z0-9._:-]{1,128}$/;

/** The claims of a valid HS256 token (signature, `exp`, `sub`), or null. */
function verify(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
    if (header.alg !== 'HS256') return null;
    const expected = createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest();
    const given = Buffer.from(parts[2], 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    if (typeof claims.sub !== 'string' || claims.sub.length === 0) return null;
    if (typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now()) return null;
    return claims;
  } catch {
    return null;
  }
}

const err = (code, message) => ({ ok: false, error: { code, message } });

const http = createServer((req, res) => {
  res.writeHead(req.url === '/healthz' ? 200 : 404).end();
});
const io = new Server(http, {
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
  maxHttpBufferSize: 64 * 1024,
});

io.use((socket, next) => {
  const claims = verify(socket.handshake.auth?.token);
  if (!claims) return next(new Error('unauthorized'));
  socket.data.user = claims.sub;
  next();
});

/** room → its latest seq. */
const heads = new Map();

io.on('connection', (socket) => {
  const on = (event, handler) =>
    socket.on(event, (payload, ack) => {
      const reply = typeof ack === 'function' ? ack : () => {};
      if (payload === null || typeof payload !== 'object') return reply(err('invalid', 'payload must be an object'));
      reply(handler(payload));
    });

  on('join', ({ room }) => {
    if (typeof room !== 'string' || !ROOM.test(room)) return err('invalid', 'bad room');
    socket.join(room);
    return { ok: true, room, head: heads.get(room) ?? 0 };
  });
  on('leave', ({ room }) => {
    if (typeof room !== 'string' || !ROOM.test(room)) return err('invalid', 'bad room');
    socket.leave(room);
    return { ok: true };
  });
  on('send', ({ room, id, text }) => {
    if (typeof room !== 'string' || !ROOM.test(room)) return err('invalid', 'bad room');
    if (typeof id !== 'string' || id.length < 1 || id.length > 64) return err('invalid', 'bad id');
    if (typeof text !== 'string' || text.trim().length === 0) return err('invalid', 'blank text');
    if (text.length > MAX_TEXT) return err('too_large', 'text too long');
    if (!socket.rooms.has(room)) return err('not_joined', 'join the room first');
    const seq = (heads.get(room) ?? 0) + 1;
    heads.set(room, seq);
    const ts = Date.now();
    io.to(room).emit('message', { room, seq, id, from: socket.data.user, text, ts });
    return { ok: true, seq, ts };
  });
  on('typing', ({ room, on: typing }) => {
    if (typeof room !== 'string' || !ROOM.test(room)) return err('invalid', 'bad room');
    if (!socket.rooms.has(room)) return err('not_joined', 'join the room first');
    socket.to(room).emit('typing', { room, user: socket.data.user, on: Boolean(typing) });
    return { ok: true };
  });
});

http.listen(port, host, () => {
  console.log(JSON.stringify({ pid: process.pid, port }));
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
