// Dynamic client registration (RFC 7591) with openid-client's own helper: it discovers the
// gateway from its issuer URL, registers a confidential client with an initial access
// token, and returns a Configuration the script then uses for client_credentials (the
// registered secret, client_secret_basic) and to call the protected API. The same
// single-use token a second time must fail; the registration is read back (RFC 7592) with
// the registration access token through fetchProtectedResource.
// Usage: node register.mjs <issuer> <initial_access_token> <api_url>
// Prints one JSON line; every request the library makes is traced (method, path, the
// Authorization scheme and the answer's status).
import * as client from 'openid-client';

const [issuer, initialAccessToken, apiUrl] = process.argv.slice(2);

const trace = [];
async function tracingFetch(url, init) {
  const headers = new Headers(init?.headers);
  const res = await fetch(url, init);
  trace.push({
    method: init?.method ?? 'GET',
    path: new URL(url).pathname,
    auth_scheme: headers.get('authorization')?.split(' ')[0] ?? null,
    content_type: headers.get('content-type'),
    status: res.status,
  });
  return res;
}
// A refusal as the library reports it: a body error (ResponseBodyError) or the parsed
// WWW-Authenticate challenges (WWWAuthenticateChallengeError, whose `cause` lists them).
const fail = (e) => ({
  threw: true,
  name: e.name,
  code: e.code,
  status: e.status,
  error: e.error,
  challenges: Array.isArray(e.cause)
    ? e.cause.map((c) => ({ scheme: c.scheme, error: c.parameters?.error }))
    : undefined,
  message: e.message,
});
const options = {
  initialAccessToken,
  execute: [client.allowInsecureRequests],
  [client.customFetch]: tracingFetch,
};
const metadata = {
  client_name: 'openid-client interop',
  grant_types: ['client_credentials'],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: 'orders:read',
};

// 1. Discovery and registration in one call; the secret is the one the gateway issued.
const config = await client.dynamicClientRegistration(
  new URL(issuer),
  metadata,
  client.ClientSecretBasic(),
  options,
);
const registered = config.clientMetadata();

// 2. client_credentials with the registered client, and the API with its token.
const tokens = await client.clientCredentialsGrant(config, { scope: 'orders:read' });
const api = await client.fetchProtectedResource(config, tokens.access_token, new URL(apiUrl), 'GET');

// 3. The single-use initial access token again: the library reports the refusal.
let again;
try {
  await client.dynamicClientRegistration(new URL(issuer), metadata, client.ClientSecretBasic(), options);
  again = { threw: false };
} catch (e) {
  again = fail(e);
}

// 4. RFC 7592 read with the registration access token as a bearer token.
let read;
try {
  const res = await client.fetchProtectedResource(
    config,
    registered.registration_access_token,
    new URL(registered.registration_client_uri),
    'GET',
  );
  read = { status: res.status, body: await res.json() };
} catch (e) {
  read = fail(e);
}

console.log(
  JSON.stringify({
    issuer: config.serverMetadata().issuer,
    registration_endpoint: config.serverMetadata().registration_endpoint,
    client_id: config.clientMetadata().client_id,
    registered: {
      ...registered,
      client_secret: undefined,
      has_secret: typeof registered.client_secret === 'string' && registered.client_secret.length > 0,
    },
    token: {
      access_token: tokens.access_token,
      token_type: tokens.token_type,
      scope: tokens.scope,
      expires_in: tokens.expires_in,
    },
    api: { status: api.status, body: await api.json() },
    again,
    read,
    trace,
  }),
);
