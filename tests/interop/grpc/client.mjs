// One gRPC call over h2c, its outcome printed as one JSON line:
//   node client.mjs <host:port> <Say|Count> <token or -> <text> [n] [delay_ms] [deadline_ms]
// {"code": 0, "details": "...", "replies": [...], "trailers": {...}}
import grpc from '@grpc/grpc-js';
import loader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const def = loader.loadSync(path.join(here, 'echo.proto'), { keepCase: true });
const echo = grpc.loadPackageDefinition(def).echo;

const [target, method, token, text, n = '0', delay = '0', deadlineMs = '10000'] =
  process.argv.slice(2);
const client = new echo.Echo(target, grpc.credentials.createInsecure());
const md = new grpc.Metadata();
if (token !== '-') md.set('authorization', `Bearer ${token}`);
const request = { text, n: Number(n), delay_ms: Number(delay) };
const options = { deadline: new Date(Date.now() + Number(deadlineMs)) };
const replies = [];
let trailers = {};

function finish(err) {
  const out = {
    code: err ? err.code : 0,
    details: err ? err.details : '',
    replies,
    trailers,
  };
  console.log(JSON.stringify(out));
  client.close();
}

function mapOf(metadata) {
  const out = {};
  for (const [k, v] of Object.entries(metadata.getMap())) out[k] = String(v);
  return out;
}

if (method === 'Say') {
  const call = client.Say(request, md, options, (_err, reply) => {
    if (reply) replies.push(reply);
  });
  call.on('status', (s) => {
    trailers = mapOf(s.metadata);
    finish(s.code === 0 ? null : s);
  });
} else {
  const call = client.Count(request, md, options);
  call.on('data', (r) => replies.push(r));
  call.on('status', (s) => {
    trailers = mapOf(s.metadata);
    finish(s.code === 0 ? null : s);
  });
  call.on('error', () => {});
}
