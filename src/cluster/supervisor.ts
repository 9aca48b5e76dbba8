// `workers: N` (or auto: one per core): the supervisor forks N gateway processes that share the
// listeners (Node's cluster module: the supervisor accepts and hands connections round-robin), and keeps
// what must hold for the whole host:
//   - the limits' state (lockout windows, bind rate, provisioning dedupe) in memory here, reached by the
//     workers over IPC (cluster/state.ts), unless state.redis holds it for every host
//   - the one provisioning outbox and its delivery, unless the outbox is on Redis
//   - the bus that carries a write's invalidations to every worker
//   - /metrics (every worker's metrics and its own, aggregated: counters and gauges summed), /healthz,
//     /readyz (every worker up and answering)
// A worker that dies is replaced (back-off 1 s doubling to 30 s, reset after a minute of life); SIGHUP
// is validated here and fanned out; SIGTERM drains every worker, then the supervisor stops.
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import { AggregatorRegistry, Counter } from 'prom-client';
import { ConfigError, loadConfigFile } from '../config/load';
import type { Config } from '../config/schema';
import { startHttp } from '../observability/http';
import { Metrics } from '../observability/metrics';
import { startProvisioning } from '../provisioning/start';
import { memoryState } from '../state/memory';
import { Channel, isOurs, sendTo, type ToPrimary } from './ipc';
import { Replica, type Update } from './state';

export const workerCount = (cfg: Config): number => (cfg.workers === 'auto' ? Math.max(1, availableParallelism()) : cfg.workers);

/** Whether the outbox lives with the supervisor (durable provisioning, not on Redis). */
export const outboxHere = (cfg: Config): boolean => (cfg.provisioning.mode === 'defguard' || cfg.provisioning.mode === 'webhook') && !cfg.state.redis;

interface Slot {
  index: number;
  worker?: Worker;
  channel?: Channel;
  startedAt: number;
  backoffMs: number;
  listening?: Extract<ToPrimary, { ldapgw: 'listening' }>;
  /** has taken the snapshot: later updates reach it one by one (earlier ones are in the snapshot) */
  synced?: boolean;
}

export async function runSupervisor(configFile: string, cfg: Config, log: Logger): Promise<number> {
  const n = workerCount(cfg);
  const metrics = new Metrics();
  const restarts = new Counter({ name: 'ldap_gateway_worker_restarts_total', help: 'Gateway worker processes replaced after they died', registers: [metrics.registry] });
  const state = memoryState();
  // the supervisor's copy of the workers' replicated stores: what a starting worker is given
  /** each worker's connections per address, as it announced them */
  const conns = new Map<number, Map<string, number>>();
  const replica = new Replica(Math.max(cfg.protection.lockout.windowMs, cfg.provisioning.dedupeWindowMs, 120_000));
  const events = outboxHere(cfg)
    ? startProvisioning(cfg, log, metrics, state, () => {
        throw new Error('the supervisor has no directory');
      })
    : undefined;

  cluster.setupPrimary({ serialization: 'advanced' });
  const slots: Slot[] = Array.from({ length: n }, (_, index) => ({ index, startedAt: 0, backoffMs: 1000 }));
  let stopping = false;
  let announced = false;
  let announce: () => void = () => undefined;

  const handle = async (slot: Slot, method: string, args: unknown[]): Promise<unknown> => {
    switch (method) {
      case 'update': {
        // one worker's update: kept here, and applied by every other worker
        const u = args[0] as Update;
        await replica.apply(u);
        for (const s of slots) if (s !== slot && s.synced && s.worker?.isConnected()) sendTo(s.worker)({ ldapgw: 'apply', u });
        return undefined;
      }
      case 'snapshot':
        slot.synced = true;
        return { updates: replica.snapshot(), conns: [...conns].flatMap(([w, m]) => [...m].map(([ip, k]) => [w, ip, k])) };
      case 'conns': {
        // a worker's connections from one address: the others count them against maxConnectionsPerIp
        const [ip, k] = args as [string, number];
        let m = conns.get(slot.index);
        if (!m) conns.set(slot.index, (m = new Map()));
        if (k > 0) m.set(ip, k);
        else m.delete(ip);
        for (const s of slots) if (s !== slot && s.synced && s.worker?.isConnected()) sendTo(s.worker)({ ldapgw: 'conns', worker: slot.index, ip, n: k });
        return undefined;
      }
      case 'outbox.append':
        if (!events?.append) throw new Error('no outbox in the supervisor');
        return events.append(args[0] as never);
      default:
        throw new Error(`cluster: unknown request ${method} from worker ${slot.index}`);
    }
  };

  const fork = (slot: Slot) => {
    const w = cluster.fork({ LDAP_GATEWAY_WORKER: String(slot.index) });
    const ch = new Channel(sendTo(w));
    slot.worker = w;
    slot.channel = ch;
    slot.startedAt = Date.now();
    slot.listening = undefined;
    slot.synced = false;
    w.on('message', (m: unknown) => {
      if (!isOurs(m)) return;
      const msg = m as ToPrimary;
      if (msg.ldapgw === 'res') ch.settle(msg);
      else if (msg.ldapgw === 'req') ch.serve(msg, (method, args) => handle(slot, method, args));
      else if (msg.ldapgw === 'publish') {
        for (const s of slots) if (s.worker?.isConnected()) sendTo(s.worker)({ ldapgw: 'bus', topic: msg.topic, message: msg.message });
      } else if (msg.ldapgw === 'listening') {
        slot.listening = msg;
        announce();
      }
    });
    w.on('exit', (code, signal) => {
      ch.close();
      slot.worker = undefined;
      // its connections went with it
      conns.delete(slot.index);
      for (const s of slots) if (s !== slot && s.worker?.isConnected()) sendTo(s.worker)({ ldapgw: 'conns', worker: slot.index });
      if (stopping) return;
      const lived = Date.now() - slot.startedAt;
      if (lived > 60_000) slot.backoffMs = 1000;
      log.warn({ event: 'worker', worker: slot.index, pid: w.process.pid, code, signal, restartInMs: slot.backoffMs }, 'gateway worker died: replacing it');
      restarts.inc();
      const t = setTimeout(() => {
        if (!stopping) fork(slot);
      }, slot.backoffMs);
      t.unref();
      slot.backoffMs = Math.min(30_000, slot.backoffMs * 2);
    });
    log.info({ event: 'worker', worker: slot.index, pid: w.process.pid }, 'gateway worker started');
  };

  // /metrics: each worker's registry as JSON, and the supervisor's own, aggregated by name
  const httpMetrics = {
    registry: {
      contentType: metrics.registry.contentType,
      async metrics(): Promise<string> {
        const parts = await Promise.all([
          metrics.registry.getMetricsAsJSON(),
          ...slots.filter((s) => s.channel && s.worker?.isConnected()).map((s) => (s.channel as Channel).request<unknown[]>('metrics', []).catch(() => [] as unknown[])),
        ]);
        return AggregatorRegistry.aggregate(parts as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics();
      },
    },
  } as unknown as Metrics;
  const ready = async (): Promise<boolean> => {
    const up = slots.filter((s) => s.worker?.isConnected() && s.listening);
    if (up.length < n) return false;
    const answers = await Promise.all(up.map((s) => (s.channel as Channel).request<boolean>('ready', []).catch(() => false)));
    return answers.every(Boolean);
  };

  for (const s of slots) fork(s);
  // the listening line once every worker listens (the ports are the workers' shared ones)
  await new Promise<void>((resolve) => {
    announce = () => {
      if (!announced && slots.every((s) => s.listening)) {
        announced = true;
        resolve();
      }
    };
  });
  const http = cfg.http.listen ? await startHttp(cfg.http.listen, httpMetrics, ready) : undefined;
  const first = slots[0]?.listening;
  log.info({ ldap: first?.ldap, ldaps: first?.ldaps, http: http ? { port: http.port } : undefined, workers: n, pids: slots.map((s) => s.worker?.process.pid), baseDN: cfg.directory.baseDN }, 'ldap-gateway listening');

  return new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal, workers: n }, 'shutting down: every worker drains its in-flight operations');
      const deadlineMs = 10_000;
      const exits = slots
        .filter((s) => s.worker)
        .map(
          (s) =>
            new Promise<void>((done) => {
              const w = s.worker as Worker;
              if (w.isDead()) return done();
              const kill = setTimeout(() => w.process.kill('SIGKILL'), deadlineMs + 2000);
              w.once('exit', () => {
                clearTimeout(kill);
                done();
              });
              sendTo(w)({ ldapgw: 'stop', deadlineMs });
            }),
        );
      void Promise.all(exits)
        .then(async () => {
          // the workers have stopped appending: the outbox can close
          await events?.stop(deadlineMs);
          if (http) await new Promise<void>((r) => http.server.close(() => r()));
          log.info('stopped');
          resolve(0);
        })
        .catch((err: unknown) => {
          log.error({ err: (err as Error).message }, 'error during shutdown');
          resolve(1);
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    // SIGHUP: validated once here; only a valid file goes to the workers, each of which swaps it in
    process.on('SIGHUP', () => {
      if (stopping) return;
      try {
        loadConfigFile(configFile);
      } catch (err) {
        const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
        metrics.reloads.inc({ result: 'failure' });
        log.error({ event: 'reload', result: 'failure', problems }, 'configuration reload refused: the running configuration stays');
        return;
      }
      for (const s of slots) if (s.worker?.isConnected()) sendTo(s.worker)({ ldapgw: 'reload', file: configFile });
      log.info({ event: 'reload', workers: n }, 'configuration validated: reloading every worker');
    });
  });
}
