// An HTTP/2-only server without TLS (h2c by prior knowledge; HTTP/1.1 is refused), on a
// free port it prints as `{"port": N}`. Every request gets 200 and what it was.
import http2 from 'node:http2';

const server = http2.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ method: req.method, path: req.url, version: req.httpVersion }));
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
