// Clients that behave like a real app across crashes: a sender that resends with the same
// ids until acked, and a receiver that rejoins with `since` and checks every seq it sees.

import { call, connect, sleep, token } from './harness.mjs';

async function connectAndJoin(urls, user, room, since) {
  for (;;) {
    for (const url of urls()) {
      try {
        const socket = await connect(url, { token: token(user) });
        const joined = await call(socket, 'join', since === undefined ? { room } : { room, since }, 20000);
        if (joined.ok) return { socket, joined };
        socket.close();
      } catch {
        // that edge is down or restarting: try the next one
      }
    }
    await sleep(200);
  }
}

export class ResilientSender {
  constructor(urls, user, room) {
    Object.assign(this, { urls, user, room, socket: null, connecting: null, acked: new Map(), attempts: 0 });
  }

  async live() {
    if (this.socket?.connected) return this.socket;
    this.connecting ??= connectAndJoin(this.urls, this.user, this.room).then(({ socket }) => {
      this.socket = socket;
      this.connecting = null;
      return socket;
    });
    return this.connecting;
  }

  async sendOne(id) {
    for (;;) {
      const socket = await this.live();
      this.attempts++;
      try {
        const ack = await call(socket, 'send', { room: this.room, id, text: `text of ${id}` }, 8000);
        if (ack.ok) {
          this.acked.set(id, ack.seq);
          return;
        }
        if (ack.error.code !== 'unavailable' && ack.error.code !== 'rate_limited') {
          throw new Error(`send ${id} refused: ${JSON.stringify(ack)}`);
        }
      } catch (err) {
        if (err.message.startsWith('send ')) throw err;
        // timeout or disconnect: the same id goes again
        if (!socket.connected) socket.close();
      }
      await sleep(100);
    }
  }

  /** Sends ids with `window` in flight; `onProgress(count)` after each ack. */
  async sendAll(ids, window, onProgress) {
    let next = 0;
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++];
        await this.sendOne(id);
        await onProgress(this.acked.size);
      }
    };
    await Promise.all(Array.from({ length: window }, worker));
  }

  close() {
    this.socket?.close();
  }
}

export class ResilientReceiver {
  constructor(urls, user, room) {
    Object.assign(this, { urls, user, room, lastSeq: 0, seqs: [], problems: [], closed: false, rejoins: 0 });
  }

  async start() {
    const { socket } = await this.attach(undefined);
    return socket;
  }

  async attach(since) {
    const attached = await connectAndJoin(this.urls, this.user, this.room, since);
    const { socket } = attached;
    // Messages replayed during the join arrived through the handler installed by connect().
    for (const m of socket.messages) this.take(m);
    socket.messages = { push: (m) => this.take(m) };
    socket.on('disconnect', () => {
      if (this.closed) return;
      this.rejoins++;
      this.attach(this.lastSeq);
    });
    this.socket = socket;
    return attached;
  }

  take(message) {
    if (message.seq === this.lastSeq + 1) {
      this.lastSeq = message.seq;
      this.seqs.push(message.seq);
    } else {
      this.problems.push({ expected: this.lastSeq + 1, got: message.seq });
    }
  }

  close() {
    this.closed = true;
    this.socket?.close();
  }
}
