// A plain HTTP/1.1 upstream: `node server.mjs <name> [port]` listens on 127.0.0.1 (port 0:
// a free one) and prints `{"port": N}`. Every answer is JSON naming the server; a path
// under /slow/<ms>/ is answered after that many milliseconds.
import http from 'node:http';

const [name, port = '0'] = process.argv.slice(2);
const server = http.createServer((req, res) => {
  const slow = req.url.match(/\/slow\/(\d+)/);
  const answer = () => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ server: name, path: req.url }));
  };
  if (slow) setTimeout(answer, Number(slow[1]));
  else answer();
});
server.keepAliveTimeout = 60000;
server.listen(Number(port), '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
