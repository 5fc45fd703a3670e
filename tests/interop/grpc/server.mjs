// A gRPC server (h2c) on 127.0.0.1, on a free port it prints as `{"port": N}`.
// Say answers once; Count streams. A trailer `x-served-by: echo` goes with every answer.
import grpc from '@grpc/grpc-js';
import loader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const def = loader.loadSync(path.join(here, 'echo.proto'), { keepCase: true });
const echo = grpc.loadPackageDefinition(def).echo;

function seen(call) {
  const out = {};
  for (const [k, v] of Object.entries(call.metadata.getMap())) {
    out[k] = String(v);
  }
  return JSON.stringify(out);
}

function trailer() {
  const md = new grpc.Metadata();
  md.set('x-served-by', 'echo');
  return md;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const server = new grpc.Server();
server.addService(echo.Echo.service, {
  Say: async (call, done) => {
    await sleep(call.request.delay_ms || 0);
    done(null, { text: `hello ${call.request.text}`, i: 0, seen: seen(call) }, trailer());
  },
  Count: async (call) => {
    for (let i = 1; i <= call.request.n; i++) {
      await sleep(call.request.delay_ms || 0);
      if (call.cancelled) return;
      call.write({ text: call.request.text, i, seen: i === 1 ? seen(call) : '' });
    }
    call.end(trailer());
  },
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(JSON.stringify({ port }));
});
