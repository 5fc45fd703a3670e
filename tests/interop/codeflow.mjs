// The authorization code flow with PKCE, as a public client (token_endpoint_auth_method
// none) configured from the issuer URL alone (OpenID Connect Discovery): openid-client
// builds the authorization request, this script plays the browser (sign in, consent) with
// fetch and a small cookie jar, and openid-client checks the response (state, RFC 9207
// iss) and validates the ID token (signature from jwks_uri, iss, aud, nonce, exp, at_hash).
// Then userinfo, the protected API, a refresh, and a replay of the code.
// Usage: node codeflow.mjs <issuer> <client_id> <username> <password> <api_url> [redirect_port]
// Prints one JSON line describing what each step returned.
import * as client from 'openid-client';

const [issuer, clientId, username, password, apiUrl, redirectPort] = process.argv.slice(2);
const issuerUrl = new URL(issuer);
const insecure = issuerUrl.protocol === 'http:';
const config = await client.discovery(
  issuerUrl,
  clientId,
  { token_endpoint_auth_method: 'none' },
  client.None(),
  insecure ? { execute: [client.allowInsecureRequests] } : undefined,
);
const metadata = config.serverMetadata();

// The authorization request (RFC 7636 S256, state, nonce). Loopback redirect URIs may use
// any port (RFC 8252 §7.3); nothing listens there: the Location header is read instead.
const port = redirectPort || String(49152 + Math.floor(Math.random() * 16000));
const redirectUri = `http://127.0.0.1:${port}/callback`;
const pkceCodeVerifier = client.randomPKCECodeVerifier();
const codeChallenge = await client.calculatePKCECodeChallenge(pkceCodeVerifier);
const expectedState = client.randomState();
const expectedNonce = client.randomNonce();
const authorizationUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile email orders:read',
  code_challenge: codeChallenge,
  code_challenge_method: 'S256',
  state: expectedState,
  nonce: expectedNonce,
});

// The browser: manual redirects, every cookie kept (by name) and sent back.
const jar = new Map();
const cookieNames = new Set();
async function browse(url, init = {}) {
  const headers = new Headers(init.headers);
  if (jar.size) {
    headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
  }
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    cookieNames.add(name);
    const expired = attrs.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a));
    if (expired || value === '') jar.delete(name);
    else jar.set(name, value);
  }
  return res;
}
async function expectStatus(res, status, what) {
  if (res.status !== status) {
    throw new Error(`${what}: expected ${status}, got ${res.status}: ${await res.text()}`);
  }
  return res;
}
const unescapeHtml = (s) =>
  s
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');
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
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      origin: issuerUrl.origin,
    },
    body: new URLSearchParams(fields).toString(),
  });
const locationOf = (res, base) => new URL(res.headers.get('location'), base);

const loginRes = await expectStatus(await browse(authorizationUrl), 200, 'GET authorize');
const login = formOf(await loginRes.text(), authorizationUrl, 'login page');
const afterLogin = await expectStatus(
  await post(login.action, { flow: login.flow, csrf: login.csrf, username, password }),
  303,
  'POST login',
);
const consentUrl = locationOf(afterLogin, login.action);
const consentRes = await expectStatus(await browse(consentUrl), 200, 'GET consent');
const consent = formOf(await consentRes.text(), consentUrl, 'consent page');
const afterConsent = await expectStatus(
  await post(consent.action, { flow: consent.flow, csrf: consent.csrf, decision: 'allow' }),
  303,
  'POST consent',
);
const callback = locationOf(afterConsent, consent.action);

// The code, exchanged by openid-client with every check it makes.
const checks = { pkceCodeVerifier, expectedState, expectedNonce, idTokenExpected: true };
// First a response whose iss was tampered with: openid-client refuses it before it sends
// the code anywhere (RFC 9207), which shows the real iss is what it checks below.
const forged = new URL(callback);
forged.searchParams.set('iss', 'https://attacker.example');
let forgedIss;
try {
  await client.authorizationCodeGrant(config, forged, checks);
  forgedIss = { threw: false };
} catch (e) {
  forgedIss = { threw: true, code: e.code };
}
const tokens = await client.authorizationCodeGrant(config, callback, checks);
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
const callApi = async (token) =>
  (await fetch(apiUrl, { headers: { authorization: `Bearer ${token}` } })).status;
const api = await callApi(tokens.access_token);
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
const apiRefreshed = await callApi(refreshed.access_token);

// The same code again: refused (invalid_grant), and what it gave is revoked.
let replay;
try {
  await client.authorizationCodeGrant(config, callback, checks);
  replay = { threw: false };
} catch (e) {
  replay = { threw: true, name: e.name, code: e.code, error: e.error, status: e.status };
}

console.log(JSON.stringify({
  metadata,
  authorization_url: authorizationUrl.href,
  redirect_uri: redirectUri,
  cookies: [...cookieNames].sort(),
  callback: {
    origin: callback.origin,
    pathname: callback.pathname,
    has_code: callback.searchParams.has('code'),
    state_matches: callback.searchParams.get('state') === expectedState,
    iss: callback.searchParams.get('iss'),
  },
  tokens: {
    token_type: tokens.token_type,
    scope: tokens.scope,
    expires_in: tokens.expiresIn(),
    has_refresh: Boolean(tokens.refresh_token),
  },
  id_token_claims: claims,
  expected_nonce: expectedNonce,
  userinfo,
  api,
  refreshed: {
    ok: Boolean(refreshed.access_token),
    rotated: refreshed.refresh_token !== tokens.refresh_token,
    api: apiRefreshed,
  },
  forged_iss: forgedIss,
  replay,
  api_after_replay: await callApi(refreshed.access_token),
}));
