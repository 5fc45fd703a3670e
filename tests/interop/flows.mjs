// Discover a tollgate from its issuer URL alone (RFC 8414) and run every flow with
// openid-client: client_credentials, password, refresh, introspection, revocation.
// Usage: node flows.mjs <issuer> <client_id> <client_secret> <username> <password> <api_url>
// Prints one JSON line describing what each step returned.
import * as client from 'openid-client';

const [issuer, clientId, clientSecret, username, password, apiUrl] = process.argv.slice(2);
const config = await client.discovery(
  new URL(issuer),
  clientId,
  clientSecret,
  client.ClientSecretBasic(),
  { algorithm: 'oauth2', execute: [client.allowInsecureRequests] },
);
const callApi = async (token) =>
  (await fetch(apiUrl, { headers: { authorization: `Bearer ${token}` } })).status;

const cc = await client.clientCredentialsGrant(config, { scope: 'orders:read' });
const pw = await client.genericGrantRequest(config, 'password', { username, password });
const refreshed = await client.refreshTokenGrant(config, pw.refresh_token);
const introspected = await client.tokenIntrospection(config, refreshed.access_token);
const apiBeforeRevocation = await callApi(refreshed.access_token);
await client.tokenRevocation(config, refreshed.access_token);
const introspectedAfter = await client.tokenIntrospection(config, refreshed.access_token);

console.log(JSON.stringify({
  metadata: config.serverMetadata(),
  client_credentials: { scope: cc.scope, expires_in: cc.expires_in, api: await callApi(cc.access_token) },
  password: { scope: pw.scope, has_refresh: Boolean(pw.refresh_token) },
  refresh: { rotated: refreshed.refresh_token !== pw.refresh_token },
  introspection: { active: introspected.active, username: introspected.username, client_id: introspected.client_id },
  api_before_revocation: apiBeforeRevocation,
  api_after_revocation: await callApi(refreshed.access_token),
  introspection_after_revocation: introspectedAfter.active,
}));
