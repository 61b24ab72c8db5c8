// The v3 client contract (room permissions, moderator actions, token lifecycle), checked with
// the stock socket.io-client against a deployment given by `setup()` (standalone, or two
// edges and processors on Kafka and Cassandra). `urls[0]` and `urls[1]` are two edges (the
// same one on standalone).

import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { call, connect, sleep, tempDir, token, unique, waitUntil } from './harness.mjs';
import { keyPair, signJwt, startIdp } from './idp.mjs';

const code = (ack) => ack?.error?.code;
/** The edge's default leeway on `exp` (TIDINGS_JWT_LEEWAY_SECS), in seconds. */
const LEEWAY_SECS = 5;
const nowSecs = () => Math.floor(Date.now() / 1000);

/** Resolves with the time of `socket`'s next `event` (a disconnect, an `expired`). */
const when = (socket, event) => new Promise((resolve) => socket.once(event, () => resolve(Date.now())));

/** `POST /api/admin/revoke` with `auth` as the bearer token. */
async function revoke(url, auth, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (auth) headers.Authorization = `Bearer ${auth}`;
  const res = await fetch(`${url}/api/admin/revoke`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json().catch(() => null), at: Date.now() };
}

/**
 * `setup()` gives `{urls, stop, edge(env)}`; `edge(env)` starts one more edge of the same
 * deployment with `env` added (an identity provider's settings) and gives `{url, stop}`.
 */
export function contractV3Suite(name, setup) {
  describe(`v3 contract on ${name}`, () => {
    let deployment;
    let edgeA;
    let edgeB;

    before(async () => {
      deployment = await setup();
      [edgeA, edgeB] = deployment.urls;
    });
    after(async () => deployment?.stop());

    it('a room outside the rooms claim is forbidden for join, history, send, typing, presence and read', async () => {
      const team = unique('team-a');
      const other = unique('team-b');
      const ada = await connect(edgeA, { token: token('ada', { claims: { rooms: [`${team}*`, 'dm:*'] } }) });
      const bob = await connect(edgeB, { token: token('bob') });
      assert.equal((await call(bob, 'join', { room: other })).ok, true);
      assert.equal((await call(bob, 'send', { room: other, id: 'b1', text: 'secret plans' })).seq, 1);

      for (const [event, payload] of [
        ['join', { room: other }],
        ['history', { room: other }],
        ['send', { room: other, id: 'a1', text: 'hello' }],
        ['typing', { room: other, on: true }],
        ['presence', { room: other }],
        ['read', { room: other, seq: 1 }],
      ]) {
        const ack = await call(ada, event, payload);
        assert.equal(code(ack), 'forbidden', `${event}: ${JSON.stringify(ack)}`);
      }
      // What the claim allows still works, including the user's own DM rooms.
      const allowed = `${team}.general`;
      assert.equal((await call(ada, 'join', { room: allowed })).ok, true);
      assert.equal((await call(ada, 'send', { room: allowed, id: 'a2', text: 'hi team' })).seq, 1);
      assert.equal((await call(ada, 'join', { room: 'dm:ada:bob' })).ok, true);
      assert.equal((await call(bob, 'history', { room: other })).messages.length, 1, 'the room itself is fine');
      ada.close();
      bob.close();
    });

    it('a read-only pattern lets a user join and read but not send or type', async () => {
      const room = unique('announce');
      const staff = await connect(edgeA, { token: token('staff') });
      const reader = await connect(edgeB, { token: token('reader', { claims: { rooms: [`${room}=read`] } }) });
      await call(staff, 'join', { room });
      assert.equal((await call(staff, 'send', { room, id: 's1', text: 'release on friday' })).seq, 1);
      assert.equal((await call(reader, 'join', { room })).ok, true);
      const page = await call(reader, 'history', { room });
      assert.deepEqual(page.messages.map((m) => m.text), ['release on friday']);
      assert.equal(code(await call(reader, 'send', { room, id: 'r1', text: 'me too' })), 'forbidden');
      assert.equal(code(await call(reader, 'typing', { room, on: true })), 'forbidden');
      assert.equal((await call(reader, 'read', { room, seq: 1 })).ok, true);
      staff.close();
      reader.close();
    });

    it('inbox and notify never show a room the claim does not allow', async () => {
      const other = unique('hidden');
      const bob = await connect(edgeB, { token: token('bob') });
      const eve = await connect(edgeA, { token: token('eve', { claims: { rooms: ['nothing-here'] } }) });
      await call(bob, 'join', { room: other });
      assert.equal((await call(bob, 'send', { room: other, id: 'm1', text: 'hey @eve look' })).ok, true);
      // The same mention in a room eve may read reaches her, so the hidden one was not lost
      // by accident.
      const open = await connect(edgeA, { token: token('eve2') });
      assert.equal((await call(bob, 'send', { room: other, id: 'm2', text: 'and @eve2' })).ok, true);
      await waitUntil('the mention of eve2 notified', () => open.notify.some((n) => n.room === other));
      await sleep(300);
      assert.deepEqual(eve.notify.filter((n) => n.room === other), []);
      const inbox = await call(eve, 'inbox', {});
      assert.equal(inbox.ok, true);
      assert.deepEqual(inbox.rooms.filter((r) => r.room === other), []);
      for (const s of [bob, eve, open]) s.close();
    });

    it('a moderator deletes a message: members get deleted, history and catch-up show it deleted, no gap', async () => {
      const room = unique('mod');
      const ada = await connect(edgeA, { token: token('ada') });
      const bob = await connect(edgeB, { token: token('bob') });
      const mod = await connect(edgeB, { token: token('mia', { claims: { role: 'moderator' } }) });
      const deleted = [];
      bob.on('deleted', (d) => deleted.push(d));
      for (const s of [ada, bob, mod]) assert.equal((await call(s, 'join', { room })).ok, true);
      for (let i = 1; i <= 3; i++) assert.equal((await call(ada, 'send', { room, id: `m${i}`, text: `text ${i}` })).seq, i);
      await waitUntil('bob has the three messages', () => bob.messages.filter((m) => m.room === room).length === 3);

      assert.deepEqual(await call(mod, 'delete', { room, seq: 2 }), { ok: true });
      await waitUntil('bob told of the deletion', () => deleted.some((d) => d.room === room && d.seq === 2));
      assert.deepEqual(deleted.filter((d) => d.room === room), [{ room, seq: 2 }]);

      const page = await call(bob, 'history', { room });
      assert.deepEqual(page.messages.map((m) => m.seq), [1, 2, 3], 'the seq stays: no gap');
      const gone = page.messages.find((m) => m.seq === 2);
      assert.equal(gone.deleted, true);
      assert.equal('text' in gone, false, 'no text');
      assert.deepEqual([gone.room, gone.id, gone.from, typeof gone.ts], [room, 'm2', 'ada', 'number']);
      assert.equal(page.messages.find((m) => m.seq === 3).text, 'text 3');
      assert.equal(page.messages.find((m) => m.seq === 1).deleted, undefined);

      // A catch-up replay shows it the same way.
      const late = await connect(edgeA, { token: token('carol') });
      await call(late, 'join', { room, since: 0 });
      await waitUntil('carol caught up', () => late.messages.filter((m) => m.room === room).length === 3);
      const replayed = late.messages.find((m) => m.room === room && m.seq === 2);
      assert.equal(replayed.deleted, true);
      assert.equal(replayed.text, undefined);
      // The next message takes the next seq.
      assert.equal((await call(ada, 'send', { room, id: 'm4', text: 'text 4' })).seq, 4);
      for (const s of [ada, bob, mod, late]) s.close();
    });

    it('members delete only their own messages; moderators only in rooms their token allows', async () => {
      const room = unique('own');
      const ada = await connect(edgeA, { token: token('ada') });
      const bob = await connect(edgeB, { token: token('bob') });
      const elsewhere = await connect(edgeA, { token: token('otto', { claims: { role: 'moderator', rooms: ['other-*'] } }) });
      await call(ada, 'join', { room });
      await call(bob, 'join', { room });
      assert.equal((await call(ada, 'send', { room, id: 'a1', text: 'mine' })).seq, 1);
      assert.equal((await call(bob, 'send', { room, id: 'b1', text: 'bobs' })).seq, 2);
      assert.equal(code(await call(ada, 'delete', { room, seq: 2 })), 'forbidden');
      assert.equal(code(await call(elsewhere, 'delete', { room, seq: 2 })), 'forbidden');
      assert.equal(code(await call(ada, 'delete', { room, seq: 99 })), 'invalid');
      assert.equal(code(await call(ada, 'delete', { room, seq: 0 })), 'invalid');
      assert.deepEqual(await call(ada, 'delete', { room, seq: 1 }), { ok: true });
      const page = await call(bob, 'history', { room });
      assert.deepEqual(page.messages.map((m) => [m.seq, m.deleted ?? false, m.text]), [[1, true, undefined], [2, false, 'bobs']]);
      for (const s of [ada, bob, elsewhere]) s.close();
    });

    it('a muted user is refused on every edge until the mute ends; members cannot mute', async () => {
      const room = unique('mute');
      const eve = await connect(edgeB, { token: token('eve') });
      const ada = await connect(edgeA, { token: token('ada') });
      const mod = await connect(edgeA, { token: token('mia', { claims: { role: 'moderator' } }) });
      await call(eve, 'join', { room });
      await call(ada, 'join', { room });
      assert.equal(code(await call(ada, 'mute', { room, user: 'eve', until: Date.now() + 60000 })), 'forbidden');
      assert.equal(code(await call(mod, 'mute', { room, user: 'eve' })), 'invalid');
      assert.deepEqual(await call(mod, 'mute', { room, user: 'eve', until: Date.now() + 60000 }), { ok: true });
      assert.equal(code(await call(eve, 'send', { room, id: 'e1', text: 'let me speak' })), 'forbidden');
      assert.equal((await call(ada, 'send', { room, id: 'a1', text: 'others still can' })).seq, 1);
      assert.equal((await call(eve, 'history', { room })).messages.length, 1, 'a muted user still reads');
      // Muting a user in a room they never joined works too, and only there.
      const other = unique('mute-other');
      await call(eve, 'join', { room: other });
      assert.equal((await call(eve, 'send', { room: other, id: 'e2', text: 'fine here' })).seq, 1);
      // An until in the past lifts it.
      assert.deepEqual(await call(mod, 'mute', { room, user: 'eve', until: Date.now() - 1 }), { ok: true });
      assert.equal((await call(eve, 'send', { room, id: 'e3', text: 'thanks' })).seq, 2);
      for (const s of [eve, ada, mod]) s.close();
    });

    it('a mute refuses the muted user\'s sends already in flight, in the room\'s order', async () => {
      const room = unique('inflight');
      const eve = await connect(edgeB, { token: token('eve') });
      const mod = await connect(edgeA, { token: token('mia', { claims: { role: 'moderator' } }) });
      await call(eve, 'join', { room });
      // Eve keeps 50 sends in flight (under the per-connection cap) until one is refused.
      const outcomes = [];
      const emittedAt = [];
      let refusedSeen = false;
      let first;
      const firstAck = new Promise((resolve) => { first = resolve; });
      const inFlight = new Set();
      const pump = (async () => {
        for (let i = 0; i < 3000 && !refusedSeen; i++) {
          while (inFlight.size >= 50) await Promise.race(inFlight);
          emittedAt[i] = Date.now();
          const p = call(eve, 'send', { room, id: `e${i}`, text: `burst ${i}` }, 30000).then((ack) => {
            outcomes[i] = ack;
            if (!ack.ok) refusedSeen = true;
            first();
            inFlight.delete(p);
          });
          inFlight.add(p);
        }
        await Promise.all(inFlight);
      })();
      await firstAck;
      assert.deepEqual(await call(mod, 'mute', { room, user: 'eve', until: Date.now() + 60000 }), { ok: true });
      const muteAcked = Date.now();
      await pump;
      const ok = outcomes.filter((a) => a.ok);
      const refused = outcomes.filter((a) => !a.ok);
      assert.ok(ok.length >= 1 && refused.length >= 1, `some before, some after the mute: ${ok.length} / ${refused.length}`);
      assert.ok(refused.every((a) => code(a) === 'forbidden'), JSON.stringify(refused.find((a) => code(a) !== 'forbidden')));
      // In emit order: accepted ones, then only refusals; accepted ones take 1..n.
      const firstRefused = outcomes.findIndex((a) => !a.ok);
      assert.ok(outcomes.slice(firstRefused).every((a) => !a.ok), 'nothing accepted after the mute took effect');
      assert.deepEqual(ok.map((a) => a.seq), ok.map((_, i) => i + 1));
      assert.ok(emittedAt[firstRefused] < muteAcked, 'sends already in flight when the mute was answered were refused');
      const newest = (await call(mod, 'history', { room, limit: 1 })).messages[0]?.seq ?? 0;
      assert.equal(newest, ok.length, 'nothing of eve after the mute is stored');
      eve.close();
      mod.close();
    });

    it('a token with a malformed rooms or role claim is refused', async () => {
      for (const claims of [{ rooms: ['a b'] }, { role: 'root' }, { rooms: 'general' }]) {
        await assert.rejects(connect(edgeA, { token: token('mallory', { claims }) }), /unauthorized/, JSON.stringify(claims));
      }
    });

    it('refresh extends a connection past its first exp; another sub is forbidden, garbage unauthorized', async () => {
      const room = unique('refresh');
      // Two users whose tokens run out in 3 s; only one refreshes.
      const firstExp = nowSecs() + 3;
      const kept = await connect(edgeA, { token: token('kept', { claims: { exp: firstExp } }) });
      const lapsed = await connect(edgeB, { token: token('lapsed', { claims: { exp: firstExp } }) });
      const expiredAt = when(lapsed, 'expired');
      const lapsedGone = when(lapsed, 'disconnect');
      let keptExpired = false;
      kept.on('expired', () => { keptExpired = true; });
      assert.equal((await call(kept, 'join', { room })).ok, true);

      assert.equal(code(await call(kept, 'refresh', { token: token('someone-else') })), 'forbidden');
      assert.equal(code(await call(kept, 'refresh', { token: 'not.a.token' })), 'unauthorized');
      assert.equal(code(await call(kept, 'refresh', { token: token('kept', { secret: 'wrong' }) })), 'unauthorized');
      assert.equal(code(await call(kept, 'refresh', { token: token('kept', { expiresIn: -60 }) })), 'unauthorized');
      assert.equal(code(await call(kept, 'refresh', {})), 'invalid');
      assert.deepEqual(await call(kept, 'refresh', { token: token('kept', { expiresIn: 60 }) }), { ok: true });

      // The one that did not refresh: `expired {}` near exp + leeway, never before exp, then
      // disconnected by the server.
      const expired = await expiredAt;
      assert.ok(expired >= firstExp * 1000, `expired ${firstExp * 1000 - expired} ms before exp`);
      assert.ok(expired <= (firstExp + LEEWAY_SECS) * 1000 + 1500, `expired ${expired - (firstExp + LEEWAY_SECS) * 1000} ms after exp + leeway`);
      const gone = await lapsedGone;
      assert.ok(gone - expired < 1000);
      assert.equal(lapsed.connected, false);

      // The refreshed one is alive past the first exp + leeway, and still works.
      await sleep(Math.max(0, (firstExp + LEEWAY_SECS) * 1000 + 1000 - Date.now()));
      assert.equal(kept.connected, true);
      assert.equal(keptExpired, false);
      assert.equal((await call(kept, 'send', { room, id: 'k1', text: 'still here' })).seq, 1);
      kept.close();
    });

    it('a refresh that drops a room leaves it: its messages stop arriving', async () => {
      const keep = unique('keep');
      const drop = unique('drop');
      const ada = await connect(edgeA, { token: token('ada', { claims: { rooms: [keep, drop] } }) });
      const bob = await connect(edgeB, { token: token('bob') });
      for (const room of [keep, drop]) {
        assert.equal((await call(ada, 'join', { room })).ok, true);
        assert.equal((await call(bob, 'join', { room })).ok, true);
      }
      await call(bob, 'send', { room: drop, id: 'b1', text: 'before' });
      await waitUntil('ada has the message in the room she will lose', () => ada.messages.some((m) => m.room === drop));

      const fresh = token('ada', { claims: { rooms: [keep], role: 'member' } });
      assert.deepEqual(await call(ada, 'refresh', { token: fresh }), { ok: true });
      await call(bob, 'send', { room: drop, id: 'b2', text: 'after' });
      await call(bob, 'send', { room: keep, id: 'b3', text: 'still shared' });
      await waitUntil('the kept room still delivers', () => ada.messages.some((m) => m.room === keep && m.text === 'still shared'));
      await sleep(300);
      assert.deepEqual(ada.messages.filter((m) => m.room === drop).map((m) => m.text), ['before']);
      // The new claims are the ones checked now.
      assert.equal(code(await call(ada, 'send', { room: drop, id: 'a1', text: 'hi' })), 'forbidden');
      assert.equal(code(await call(ada, 'join', { room: drop })), 'forbidden');
      assert.equal((await call(ada, 'send', { room: keep, id: 'a2', text: 'hi' })).ok, true);
      ada.close();
      bob.close();
    });

    it('a revoked user is cut on every edge within a second, and refused while it lasts', async () => {
      const mallory = unique('mallory');
      const ada = unique('ada');
      const room = unique('revoked');
      const cut = [];
      const sockets = [];
      for (const url of [edgeA, edgeB]) {
        const m = await connect(url, { token: token(mallory) });
        cut.push(when(m, 'disconnect'));
        sockets.push(m);
        const a = await connect(url, { token: token(ada) });
        assert.equal((await call(a, 'join', { room })).ok, true);
        sockets.push(a);
      }
      const admin = token(unique('root'), { claims: { role: 'admin' } });

      // Only an admin token opens the API.
      assert.equal((await revoke(edgeA, null, { sub: mallory })).status, 401);
      assert.equal((await revoke(edgeA, 'garbage', { sub: mallory })).status, 401);
      assert.equal((await revoke(edgeA, token('member'), { sub: mallory })).status, 403);
      assert.equal((await revoke(edgeA, token('mod', { claims: { role: 'moderator' } }), { sub: mallory })).status, 403);
      assert.equal((await revoke(edgeA, admin, { sub: mallory, jti: 'x' })).status, 400);
      assert.equal(sockets[0].connected && sockets[2].connected, true, 'refused requests cut nobody');

      const answer = await revoke(edgeA, admin, { sub: mallory, reason: 'system test' });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.ok, true);
      assert.equal(answer.body.key, `sub:${mallory}`);
      // Default: the longest token lifetime accepted (a day) plus the leeway.
      assert.ok(Math.abs(answer.body.until - (answer.at + 86_400_000 + LEEWAY_SECS * 1000)) < 5000, JSON.stringify(answer.body));
      const times = await Promise.all(cut);
      for (const t of times) assert.ok(t - answer.at <= 1000, `cut ${t - answer.at} ms after the answer`);

      // Refused on both edges while it lasts; other users are untouched.
      for (const url of [edgeA, edgeB]) {
        await assert.rejects(connect(url, { token: token(mallory) }), /unauthorized/);
      }
      assert.equal(sockets[1].connected && sockets[3].connected, true);
      assert.equal((await call(sockets[1], 'send', { room, id: 'a1', text: 'still fine' })).seq, 1);
      for (const s of sockets) s.close();
    });

    it('revoking one token (jti) cuts its connections only, refuses it, and can be lifted', async () => {
      const eve = unique('eve');
      const [j1, j2] = [unique('jti'), unique('jti')];
      const first = await connect(edgeB, { token: token(eve, { claims: { jti: j1 } }) });
      const second = await connect(edgeA, { token: token(eve, { claims: { jti: j2 } }) });
      const firstCut = when(first, 'disconnect');
      const admin = token(unique('root'), { claims: { role: 'admin' } });
      const answer = await revoke(edgeA, admin, { jti: j1, until: Date.now() + 60_000 });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.ok((await firstCut) - answer.at <= 1000);
      await sleep(300);
      assert.equal(second.connected, true, 'the same user with another token stays');
      assert.equal(code(await call(second, 'refresh', { token: token(eve, { claims: { jti: j1 } }) })), 'unauthorized');
      await assert.rejects(connect(edgeB, { token: token(eve, { claims: { jti: j1 } }) }), /unauthorized/);

      // An until already past lifts it, on every edge.
      const lifted = await revoke(edgeB, admin, { jti: j1, until: 0 });
      assert.equal(lifted.status, 200);
      await waitUntil('the lift reached edge A', async () => {
        const s = await connect(edgeA, { token: token(eve, { claims: { jti: j1 } }) });
        s.close();
        return true;
      }, 5000);
      second.close();
    });

    describe('with an identity provider (JWKS, PEM keys, iss and aud)', () => {
      let idp;
      let edge;
      let rsa;
      let ec;
      let ed;
      let pemKey;
      const claims = (sub, extra = {}) => ({
        sub, exp: nowSecs() + 600, iss: 'https://idp.test', aud: 'tidings', ...extra,
      });

      before(async () => {
        [rsa, ec, ed] = [keyPair('RS256', 'k-rsa'), keyPair('ES256', 'k-ec'), keyPair('EdDSA', 'k-ed')];
        pemKey = keyPair('EdDSA', null);
        const dir = tempDir();
        writeFileSync(join(dir, 'extra.pem'), pemKey.pem);
        idp = await startIdp([rsa, ec, ed]);
        edge = await deployment.edge({
          TIDINGS_JWKS_URL: idp.url,
          TIDINGS_JWKS_MIN_REFETCH_SECS: '1',
          TIDINGS_JWT_PUBLIC_KEYS: join(dir, 'extra.pem'),
          TIDINGS_JWT_ISSUER: 'https://idp.test',
          TIDINGS_JWT_AUDIENCE: 'tidings',
        });
      });
      after(async () => {
        await edge?.stop();
        await idp?.stop();
      });

      const accepted = async (jwt) => {
        const s = await connect(edge.url, { token: jwt });
        const ack = await call(s, 'join', { room: unique('idp') });
        s.close();
        return ack.ok === true;
      };
      const refused = (jwt, why) => assert.rejects(connect(edge.url, { token: jwt }), /unauthorized/, why);

      it('RS256, ES256 and EdDSA tokens from the JWKS and a PEM key from the settings are accepted', async () => {
        for (const key of [rsa, ec, ed]) {
          assert.equal(await accepted(signJwt(key, claims(unique(key.alg)))), true, key.alg);
        }
        assert.equal(await accepted(signJwt(pemKey, claims(unique('pem')))), true, 'PEM key, no kid');
      });

      it('a key not in the JWKS, alg confusion, and iss or aud mismatches are refused', async () => {
        const rogue = keyPair('RS256', 'k-rogue');
        await refused(signJwt(rogue, claims('mallory')), 'a kid the provider does not publish');
        await refused(signJwt(rogue, claims('mallory'), { kid: 'k-rsa' }), 'a known kid, the wrong key');
        await refused(signJwt(ec, claims('mallory'), { alg: 'RS256' }), 'an EC signature labelled RS256');
        // HS256 "signed" with the provider's public key, which anyone can read.
        const hs = token('mallory', { secret: rsa.pem, claims: { iss: 'https://idp.test', aud: 'tidings' } });
        await refused(hs, 'a public key used as an HMAC secret');
        await refused(signJwt(rsa, claims('mallory', { iss: 'https://evil.test' })), 'another issuer');
        await refused(signJwt(rsa, claims('mallory', { aud: 'another-service' })), 'another audience');
        await refused(signJwt(rsa, { sub: 'mallory', exp: nowSecs() + 600, aud: 'tidings' }), 'no iss');
      });

      it('a key rotation is picked up without a restart, and random kids do not hammer the provider', async () => {
        const next = keyPair('ES256', 'k-next');
        idp.keys = [next, ed];
        await sleep(1100); // the edge's minimum time between refetches, in this deployment
        assert.equal(await accepted(signJwt(next, claims(unique('rotated')))), true);
        await refused(signJwt(rsa, claims('old')), 'a key the provider dropped');

        // A flood of tokens naming kids nobody has: at most one fetch per second.
        const before = idp.fetches;
        const started = Date.now();
        const flood = [];
        for (let i = 0; i < 40; i += 1) {
          flood.push(refused(signJwt(next, claims('flood'), { kid: unique('random') })));
        }
        await Promise.all(flood);
        const seconds = (Date.now() - started) / 1000;
        assert.ok(idp.fetches - before <= Math.ceil(seconds) + 1,
          `${idp.fetches - before} fetches in ${seconds.toFixed(1)} s for 40 unknown kids`);
      });
    });
  });
}
