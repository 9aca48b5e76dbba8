// A webhook receiver that accepts everything (204), so the outbox scenario measures recording and
// delivering events rather than retries against an unreachable endpoint.
// usage: node bench-dist/bench/sink.js PORT
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
createServer((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(204).end());
}).listen(port, '127.0.0.1', () => process.stdout.write(`sink listening on ${port}\n`));
