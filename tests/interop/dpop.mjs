// DPoP (RFC 9449) with openid-client's own support: a key pair from randomDPoPKeyPair, a
// handle from getDPoPHandle, passed as { DPoP } to the grants and to
// fetchProtectedResource; the library answers the gateway's nonce challenges itself
// (use_dpop_nonce at the token endpoint and at the resource) by retrying once.
// Usage: node dpop.mjs <issuer> <cc_client_id> <cc_secret> <public_client_id> <username>
//   <password> <api_url> [redirect_port]
// Prints one JSON line. Every request openid-client makes goes through a tracing fetch, so
// the line also shows what the library sent (proof claims) and what the gateway answered.
import * as client from 'openid-client';
import { createHash } from 'node:crypto';

const [issuer, ccId, ccSecret, spaId, username, password, apiUrl, redirectPort] =
  process.argv.slice(2);
const issuerUrl = new URL(issuer);

// The tracing fetch: one entry per request, grouped by the step that is running.
const trace = {};
let step = 'discovery';
const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
async function tracingFetch(url, init) {
  const headers = new Headers(init?.headers);
  const res = await fetch(url, init);
  const proof = headers.get('dpop');
  const entry = {
    method: init?.method ?? 'GET',
    path: new URL(url).pathname,
    auth_scheme: headers.get('authorization')?.split(' ')[0] ?? null,
    status: res.status,
    dpop_nonce_header: res.headers.has('dpop-nonce'),
    www_authenticate: res.headers.get('www-authenticate'),
  };
  if (proof) {
    const [h, p] = proof.split('.');
    const { typ, alg } = b64json(h);
    const c = b64json(p);
    entry.proof = { typ, alg, htm: c.htm, htu: c.htu, has_nonce: c.nonce !== undefined, has_ath: c.ath !== undefined };
  }
  if ((res.headers.get('content-type') ?? '').includes('json')) {
    const body = await res.clone().json().catch(() => ({}));
    if (body.error !== undefined) entry.error = body.error;
    if (body.token_type !== undefined) entry.token_type = body.token_type;
  }
  (trace[step] ||= []).push(entry);
  return res;
}

// RFC 7638 thumbprint of the public key, computed here rather than by the library.
async function thumbprint(publicKey) {
  const jwk = await crypto.subtle.exportKey('jwk', publicKey);
  const members =
    jwk.kty === 'EC'
      ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
      : jwk.kty === 'OKP'
        ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x }
        : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}
const claimsOf = (jwt) => b64json(jwt.split('.')[1]);
const fail = (e) => ({ threw: true, name: e.name, code: e.code, error: e.error, status: e.status });
const options = { algorithm: 'oauth2', [client.customFetch]: tracingFetch };

// 1. A confidential client whose access tokens must be DPoP-bound: client_credentials.
const cc = await client.discovery(issuerUrl, ccId, ccSecret, client.ClientSecretBasic(), options);
const metadata = cc.serverMetadata();
const ccKeys = await client.randomDPoPKeyPair('ES256');
const ccJkt = await thumbprint(ccKeys.publicKey);
const ccDpop = client.getDPoPHandle(cc, ccKeys);
step = 'client_credentials';
const ccTokens = await client.clientCredentialsGrant(cc, { scope: 'orders:read' }, { DPoP: ccDpop });

// 2. The protected route through the proxy. A new handle over the same key has no nonce
// yet: the gateway challenges (401 use_dpop_nonce), the library retries with its nonce.
step = 'resource';
const api = new URL(apiUrl);
const res = await client.fetchProtectedResource(cc, ccTokens.access_token, api, 'GET', undefined, undefined, {
  DPoP: client.getDPoPHandle(cc, ccKeys),
});
const resource = { status: res.status, body: await res.json() };
step = 'resource_again';
const again = await client.fetchProtectedResource(cc, ccTokens.access_token, api, 'GET', undefined, undefined, {
  DPoP: ccDpop,
});
await again.arrayBuffer();

// 3. The same DPoP-bound token as a bearer token: refused (RFC 9449 §7.1).
const bearerRes = await fetch(apiUrl, { headers: { authorization: `Bearer ${ccTokens.access_token}` } });
const bearer = { status: bearerRes.status, www_authenticate: bearerRes.headers.get('www-authenticate') };
await bearerRes.arrayBuffer();

// 4. A public client: the authorization code flow with PKCE, the code exchanged with a
// DPoP proof; its refresh token is bound to the key (RFC 9449 §5).
step = 'spa_discovery';
const spa = await client.discovery(issuerUrl, spaId, { token_endpoint_auth_method: 'none' }, client.None(), options);
const port = redirectPort || String(49152 + Math.floor(Math.random() * 16000));
const redirectUri = `http://127.0.0.1:${port}/callback`;
const pkceCodeVerifier = client.randomPKCECodeVerifier();
const expectedState = client.randomState();
const authorizationUrl = client.buildAuthorizationUrl(spa, {
  redirect_uri: redirectUri,
  scope: 'orders:read',
  code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
  code_challenge_method: 'S256',
  state: expectedState,
});

// The browser, as in codeflow.mjs: manual redirects and a cookie jar.
const jar = new Map();
async function browse(url, init = {}) {
  const headers = new Headers(init.headers);
  if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
  const r = await fetch(url, { ...init, headers, redirect: 'manual' });
  for (const line of r.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const expired = attrs.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a));
    if (expired || value === '') jar.delete(name);
    else jar.set(name, value);
  }
  return r;
}
async function expectStatus(r, status, what) {
  if (r.status !== status) throw new Error(`${what}: expected ${status}, got ${r.status}: ${await r.text()}`);
  return r;
}
const unescapeHtml = (s) =>
  s.replaceAll('&quot;', '"').replaceAll('&#39;', "'").replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&');
function formOf(html, base, what) {
  const field = (name) => {
    const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
    if (!m) throw new Error(`${what}: no ${name} input in ${html}`);
    return unescapeHtml(m[1]);
  };
  const action = html.match(/<form method="post" action="([^"]*)"/);
  if (!action) throw new Error(`${what}: no form in ${html}`);
  return { action: new URL(unescapeHtml(action[1]), base), flow: field('flow'), csrf: field('csrf') };
}
const post = (url, fields) =>
  browse(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: issuerUrl.origin },
    body: new URLSearchParams(fields).toString(),
  });
const locationOf = (r, base) => new URL(r.headers.get('location'), base);

const loginRes = await expectStatus(await browse(authorizationUrl), 200, 'GET authorize');
const login = formOf(await loginRes.text(), authorizationUrl, 'login page');
const afterLogin = await expectStatus(
  await post(login.action, { flow: login.flow, csrf: login.csrf, username, password }),
  303,
  'POST login',
);
let callback = locationOf(afterLogin, login.action);
if (callback.href.split('?')[0] !== redirectUri) {
  const consentRes = await expectStatus(await browse(callback), 200, 'GET consent');
  const consent = formOf(await consentRes.text(), callback, 'consent page');
  const afterConsent = await expectStatus(
    await post(consent.action, { flow: consent.flow, csrf: consent.csrf, decision: 'allow' }),
    303,
    'POST consent',
  );
  callback = locationOf(afterConsent, consent.action);
}

const spaKeys = await client.randomDPoPKeyPair('ES256');
const spaJkt = await thumbprint(spaKeys.publicKey);
const spaDpop = client.getDPoPHandle(spa, spaKeys);
step = 'code';
const codeTokens = await client.authorizationCodeGrant(
  spa,
  callback,
  { pkceCodeVerifier, expectedState },
  undefined,
  { DPoP: spaDpop },
);
step = 'code_api';
const codeApi = await client.fetchProtectedResource(spa, codeTokens.access_token, api, 'GET', undefined, undefined, {
  DPoP: spaDpop,
});
await codeApi.arrayBuffer();
step = 'refresh';
const refreshed = await client.refreshTokenGrant(spa, codeTokens.refresh_token, undefined, { DPoP: spaDpop });
step = 'refreshed_api';
const refreshedApi = await client.fetchProtectedResource(spa, refreshed.access_token, api, 'GET', undefined, undefined, {
  DPoP: spaDpop,
});
await refreshedApi.arrayBuffer();

// The rotated refresh token with a proof from another key: refused.
step = 'refresh_other_key';
let otherKey;
try {
  const other = client.getDPoPHandle(spa, await client.randomDPoPKeyPair('ES256'));
  await client.refreshTokenGrant(spa, refreshed.refresh_token, undefined, { DPoP: other });
  otherKey = { threw: false };
} catch (e) {
  otherKey = fail(e);
}

console.log(JSON.stringify({
  metadata: {
    issuer: metadata.issuer,
    token_endpoint: metadata.token_endpoint,
    dpop_signing_alg_values_supported: metadata.dpop_signing_alg_values_supported,
  },
  client_credentials: {
    token_type: ccTokens.token_type,
    jkt_matches: claimsOf(ccTokens.access_token).cnf?.jkt === ccJkt,
    library_thumbprint_agrees: (await ccDpop.calculateThumbprint()) === ccJkt,
  },
  resource,
  resource_again: again.status,
  bearer,
  code: {
    token_type: codeTokens.token_type,
    jkt_matches: claimsOf(codeTokens.access_token).cnf?.jkt === spaJkt,
    has_refresh: Boolean(codeTokens.refresh_token),
    api: codeApi.status,
  },
  refresh: {
    token_type: refreshed.token_type,
    jkt_matches: claimsOf(refreshed.access_token).cnf?.jkt === spaJkt,
    rotated: refreshed.refresh_token !== codeTokens.refresh_token,
    api: refreshedApi.status,
  },
  refresh_other_key: otherKey,
  trace,
}));
