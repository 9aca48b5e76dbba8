// The operator's HTTP port: /metrics (Prometheus text), /healthz (alive), /readyz (listeners up and a DC
// answers; the shared state's condition on a second line: 200 "degraded: state is per-process" while
// Redis is unreachable and binds go on with local state, 503 while they are refused).
import { createServer, type Server } from 'node:http';
import type { Metrics } from './metrics';
import { splitHostPort } from '../server/listener';

export async function startHttp(
  listen: string,
  metrics: Metrics,
  ready: () => Promise<boolean>,
  state: () => { ready: boolean; detail?: string } = () => ({ ready: true }),
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        () => res.writeHead(500).end('metrics collection failed\n'),
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const s = state();
      const detail = s.detail ? `${s.detail}\n` : '';
      ready().then(
        (up) => {
          const ok = up && s.ready;
          res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end((ok ? 'ready\n' : 'not ready\n') + detail);
        },
        () => res.writeHead(503).end('not ready\n' + detail),
      );
    } else {
      res.writeHead(404).end('not found\n');
    }
  });
  const { host, port } = splitHostPort(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address();
  return { server, port: typeof a === 'object' && a ? a.port : port };
}
