// A tiny identity provider for the tests, on loopback: key pairs made with node:crypto,
// their public halves served as a JWKS at /jwks.json, and tokens signed with RS256, ES256
// or EdDSA the way any issuer signs them. Rotating is replacing the served keys.

import { createServer } from 'node:http';
import { generateKeyPairSync, sign } from 'node:crypto';

const b64url = (data) => Buffer.from(data).toString('base64url');

/** A key pair for `alg` (`RS256`, `ES256` or `EdDSA`) under `kid`. */
export function keyPair(alg, kid) {
  const { publicKey, privateKey } =
    alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519');
  return {
    alg,
    kid,
    privateKey,
    publicKey,
    jwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig' },
    pem: publicKey.export({ format: 'pem', type: 'spki' }),
  };
}

/** A JWT of `claims` signed with `key` (its `kid` in the header unless `kid: null`). */
export function signJwt(key, claims, { kid = key.kid, alg = key.alg } = {}) {
  const header = { alg, typ: 'JWT', ...(kid ? { kid } : {}) };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature =
    key.alg === 'RS256' ? sign('sha256', Buffer.from(input), key.privateKey)
      : key.alg === 'ES256' ? sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' })
        : sign(null, Buffer.from(input), key.privateKey);
  return `${input}.${b64url(signature)}`;
}

/** Serves `keys` (replaceable: `idp.keys = [...]`) at /jwks.json; counts the fetches. */
export async function startIdp(keys) {
  const idp = { keys, fetches: 0 };
  const server = createServer((req, res) => {
    if (req.url !== '/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    idp.fetches += 1;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ keys: idp.keys.map((k) => k.jwk) }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  idp.url = `http://127.0.0.1:${server.address().port}/jwks.json`;
  idp.stop = () => new Promise((resolve) => server.close(resolve));
  return idp;
}
