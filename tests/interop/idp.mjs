// A real OpenID Connect provider (oidc-provider) for the external-IdP tests (tests/idp.rs):
// listens on 127.0.0.1, port 0, with one confidential client allowed the client_credentials
// grant. Resource indicators (RFC 8707) make its access tokens JWTs (RFC 9068, ES256) whose
// `aud` is the resource. Prints one JSON line with its issuer URL and token endpoint, then
// runs until killed.
// Usage: node idp.mjs <client_id> <client_secret> <resource> <scope>
import * as http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [clientId, clientSecret, resource, scope] = process.argv.slice(2);
if (!scope) {
  console.error('usage: node idp.mjs <client_id> <client_secret> <resource> <scope>');
  process.exit(2);
}

// The issuer URL names the port, so bind first and build the provider once it is known.
const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: 'oidc-es256', use: 'sig', alg: 'ES256' };

const provider = new Provider(issuer, {
  jwks: { keys: [signing] },
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  }],
  scopes: [scope],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) throw new Provider.errors.InvalidTarget();
        return {
          scope,
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});
provider.on('server_error', (_ctx, err) => console.error('oidc-provider:', err));
server.on('request', provider.callback());

const { token_endpoint: tokenEndpoint } = await (
  await fetch(`${issuer}/.well-known/openid-configuration`)
).json();
console.log(JSON.stringify({ issuer, token_endpoint: tokenEndpoint }));
