// Discover a tollgate from its issuer URL alone (RFC 8414) and run client_credentials
// with openid-client, then call a protected API with the token.
// Usage: node client_credentials.mjs <issuer> <client_id> <client_secret> <scope> <api_url>
// Prints one JSON line: the discovered token endpoint, the token response and the API status.
import * as client from 'openid-client';

const [issuer, clientId, clientSecret, scope, apiUrl] = process.argv.slice(2);
const config = await client.discovery(
  new URL(issuer),
  clientId,
  clientSecret,
  client.ClientSecretBasic(),
  { algorithm: 'oauth2', execute: [client.allowInsecureRequests] },
);
const tokens = await client.clientCredentialsGrant(config, { scope });
const api = await fetch(apiUrl, { headers: { authorization: `Bearer ${tokens.access_token}` } });
console.log(JSON.stringify({
  token_endpoint: config.serverMetadata().token_endpoint,
  token_type: tokens.token_type,
  scope: tokens.scope,
  expires_in: tokens.expires_in,
  api_status: api.status,
}));
