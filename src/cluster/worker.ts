// One gateway worker under the supervisor (cluster/supervisor.ts): the whole gateway, except that the
// limits' state, the outbox and the bus go through the supervisor (unless Redis holds them), and /metrics
// and the health endpoints are the supervisor's. The worker answers the supervisor's requests (its
// metrics, its readiness) and obeys reload and stop; when the supervisor goes away, it drains and exits.
import type { Logger } from 'pino';
import { startGateway } from '../app';
import { ConfigError, loadConfigFile } from '../config/load';
import type { Config } from '../config/schema';
import { Channel, isOurs, type ToWorker } from './ipc';
import { PeerConnections, workerState, type Update } from './state';
import { outboxHere } from './supervisor';

export async function runWorker(cfg: Config, log: Logger): Promise<number> {
  const send = (m: unknown) => (process.connected && process.send ? process.send(m as never) : false);
  const ch = new Channel(send);
  const peers = new PeerConnections((ip, n) => ch.post('conns', [ip, n]));
  const state = cfg.state.redis ? undefined : workerState(ch, (topic, message) => void send({ ldapgw: 'publish', topic, message }));
  // replies and the other workers' updates may arrive from now on
  process.on('message', (m: unknown) => {
    if (!isOurs(m)) return;
    const msg = m as ToWorker;
    if (msg.ldapgw === 'res') ch.settle(msg);
    else if (msg.ldapgw === 'apply') void state?.applyRemote(msg.u as Update).catch(() => undefined);
    else if (msg.ldapgw === 'conns') peers.heard(msg.worker, msg.ip, msg.n);
  });
  // a worker that starts after others (a replaced one) takes the host's state first
  const snap = await ch.request<{ updates: Update[]; conns: Array<[number, string, number]> }>('snapshot', []);
  if (state) for (const u of snap.updates) await state.applyRemote(u);
  for (const [worker, ip, n] of snap.conns) peers.heard(worker, ip, n);
  const outbox = outboxHere(cfg) ? { append: (e: unknown) => ch.request<void>('outbox.append', [e]) } : undefined;
  const gateway = await startGateway({ ...cfg, http: {} }, log, { worker: Number(process.env.LDAP_GATEWAY_WORKER ?? 0), peers, ...(state ? { state } : {}), ...(outbox ? { outbox } : {}) });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (deadlineMs: number) => {
      if (stopping) return;
      stopping = true;
      gateway.stop(deadlineMs).then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err: (err as Error).message }, 'error during shutdown');
          resolve(1);
        },
      );
    };
    process.on('message', (m: unknown) => {
      if (!isOurs(m)) return;
      const msg = m as ToWorker;
      switch (msg.ldapgw) {
        case 'req':
          return ch.serve(msg, async (method) => {
            if (method === 'metrics') return gateway.metrics.registry.getMetricsAsJSON();
            if (method === 'ready') return gateway.core.upstream.ready();
            throw new Error(`unknown request ${method}`);
          });
        case 'bus':
          return state?.deliver(msg.topic, msg.message);
        case 'stop':
          return stop(msg.deadlineMs);
        case 'reload': {
          let next: Config;
          try {
            next = loadConfigFile(msg.file);
          } catch (err) {
            log.error({ event: 'reload', result: 'failure', problems: err instanceof ConfigError ? err.problems : [(err as Error).message] }, 'configuration reload failed: the running configuration stays');
            return;
          }
          gateway.reload({ ...next, http: {} }).then(
            ({ restartNeeded }) => {
              gateway.metrics.reloads.inc({ result: 'success' });
              log.info({ event: 'reload', result: 'success', ...(restartNeeded.length ? { restartNeeded } : {}) }, 'configuration reloaded');
            },
            (err: unknown) => {
              gateway.metrics.reloads.inc({ result: 'failure' });
              log.error({ event: 'reload', result: 'failure', problems: [(err as Error).message] }, 'configuration reload failed: the running configuration stays');
            },
          );
          return;
        }
      }
    });
    // the supervisor went away (killed): nobody would restart or stop this worker
    process.on('disconnect', () => stop(10_000));
    // the supervisor handles these for the whole group (a terminal's Ctrl-C reaches every process)
    process.on('SIGINT', () => undefined);
    process.on('SIGHUP', () => undefined);
    process.once('SIGTERM', () => stop(10_000));
    const at = (listen: string | undefined, port: number | undefined) => (listen && port !== undefined ? { host: listen.slice(0, listen.lastIndexOf(':')), port } : undefined);
    send({ ldapgw: 'listening', ldap: at(cfg.listen.ldap, gateway.ldapPort), ldaps: at(cfg.listen.ldaps, gateway.ldapsPort) });
  });
}
