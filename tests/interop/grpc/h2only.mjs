// An HTTP/2-only server on a free port it prints as `{"port": N}`: without TLS (h2c by
// prior knowledge), or with `--tls cert.pem key.pem` over TLS with ALPN h2 only. HTTP/1.1
// is refused either way. Every request gets 200 and what it was.
import http2 from 'node:http2';
import fs from 'node:fs';

function handle(req, res) {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ method: req.method, path: req.url, version: req.httpVersion }));
}

const args = process.argv.slice(2);
const server =
  args[0] === '--tls'
    ? http2.createSecureServer(
        { cert: fs.readFileSync(args[1]), key: fs.readFileSync(args[2]), allowHTTP1: false },
        handle,
      )
    : http2.createServer(handle);
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
