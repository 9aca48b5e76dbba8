// The running gateway: what lives as long as the process (metrics, the embedded demo, provisioning,
// the listeners and HTTP), and the core (core.ts) they use, which a reload replaces atomically.
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { LockoutGuard } from './auth/guard';
import { OfflineStore } from './auth/offline';
import type { Identity } from './auth/identity';
import { upstreamSchema, type Config, type UpstreamConfig } from './config/schema';
import { buildCore, type Core, type Shared } from './core';
import { startDemoDirectory, type DemoDirectory } from './demo/directory';
import { startHttp } from './observability/http';
import { Metrics } from './observability/metrics';
import { startProvisioning } from './provisioning/start';
import { CursorStore } from './directory/cursors';
import { asState, buildState } from './state/index';
import type { StateStores } from './state/types';
import type { OutboxEvent } from './provisioning/outbox';
import type { Handlers } from './ldap/types';
import { LdapListeners, type ConnectionPeers } from './server/listener';

export interface Gateway {
  ldapPort?: number;
  ldapsPort?: number;
  httpPort?: number;
  metrics: Metrics;
  readonly core: Core;
  /** Swap in a validated config. Settings that need a restart are kept as they were and listed. */
  reload(cfg: Config): Promise<{ restartNeeded: string[] }>;
  stop(deadlineMs?: number): Promise<void>;
}

/** Settings read once at start: a reload reports changes to them instead of applying them. */
const RESTART_ONLY = ['listen', 'http', 'provisioning', 'demo', 'upstream.flavor', 'workers', 'state', 'instance', 'log.flushMs'] as const;

function pick(cfg: Config, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), cfg);
}

/** next, with every restart-only setting kept at its running value (the one list decides both). */
function effectiveConfig(next: Config, running: Config): Config {
  const out = structuredClone(next) as unknown as Record<string, unknown>;
  for (const path of RESTART_ONLY) {
    const keys = path.split('.');
    const last = keys.pop() as string;
    let at: Record<string, unknown> | undefined = out;
    for (const k of keys) at = at?.[k] && typeof at[k] === 'object' ? (at[k] as Record<string, unknown>) : undefined;
    const value = pick(running, path);
    if (at && value !== undefined) at[last] = structuredClone(value);
  }
  return out as unknown as Config;
}

function makeGuard(cfg: Config, log: Logger, metrics: Metrics, state: StateStores): LockoutGuard {
  const lockout = cfg.protection.lockout;
  const announced = new LRUCache<string, true>({ max: 10_000, ttl: 60_000 });
  return new LockoutGuard(
    {
      windowMs: lockout.windowMs,
      perAccountIp: lockout.perAccountIp,
      perAccount: lockout.perAccount,
      perIp: lockout.perIp,
      bindRatePerIp: cfg.protection.bindRatePerIp,
      bindBurstPerIp: cfg.protection.bindBurstPerIp,
      // the service account's credentials: the same for every worker and replica of this configuration,
      // never in the shared state (README "Operating several replicas": what Redis holds)
      ...(cfg.upstream ? { keyMaterial: `${cfg.upstream.bind.dn}\0${cfg.upstream.bind.password}` } : {}),
    },
    state,
    (scope, client, account) => {
      metrics.lockoutTrips.inc({ scope });
      // an attack refuses thousands of binds: one audit line per key and minute, the metric counts all
      const key = `${scope}|${client}|${account ?? ''}`;
      if (announced.has(key)) return;
      announced.set(key, true);
      log.warn({ event: 'lockout', scope, client, ...(account ? { dn: account } : {}) }, 'binds refused by the lockout shield');
    },
  );
}

/** What a cluster worker (cluster/worker.ts) gets from its supervisor instead of building it itself. */
export interface GatewayDeps {
  /** host-wide stores (through the supervisor) */
  state?: StateStores;
  /** the supervisor's outbox: events are recorded there, and delivered from there */
  outbox?: { append(e: OutboxEvent): Promise<void> };
  /** a worker: its listening line is not the gateway's (the supervisor announces the whole) */
  worker?: number;
  /** the other workers' connections per address (maxConnectionsPerIp holds for the host) */
  peers?: ConnectionPeers;
}

export async function startGateway(cfg: Config, log: Logger, deps: GatewayDeps = {}): Promise<Gateway> {
  const metrics = new Metrics();
  let demo: DemoDirectory | undefined;
  if (cfg.demo) {
    demo = await startDemoDirectory(log);
    log.info({ url: demo.url }, 'embedded demo directory started');
  }
  const upstreamOf = (c: Config): UpstreamConfig =>
    demo ? upstreamSchema.parse({ urls: [demo.url], bind: { dn: demo.serviceDN, password: demo.servicePassword }, baseDN: demo.baseDN, domain: 'DEMO' }) : (c.upstream as UpstreamConfig);

  let core: Core | undefined;
  const current = () => core as Core;
  // the composition root of state: every store below comes from here (state/index.ts: memory or Redis)
  const state = deps.state ? asState(deps.state) : await buildState(cfg, log, metrics);
  const events = startProvisioning(cfg, log, metrics, state, () => current().directory, deps.outbox);
  const shared: Shared = { guard: makeGuard(cfg, log, metrics, state), cursors: new CursorStore(cfg.directory.paging), state };
  // offline binds: the verifiers outlive reloads (auth.offline is read once, at start)
  if (cfg.auth.offline.enabled) shared.offline = new OfflineStore(cfg.auth.offline, state, log, (result) => metrics.offlineBinds.inc({ result }));
  core = buildCore(cfg, upstreamOf(cfg), log, metrics, events.authHooks, shared);
  await shared.offline?.load((e) => current().offline?.keysOf(e) ?? []);
  const offlineNow = () => Boolean(current().offline?.applies());
  if (shared.offline) {
    const store = shared.offline;
    metrics.gauge('ldap_gateway_offline', 'Whether binds are being decided offline (1: no domain controller reachable, offline binds on)', [], (g) => g.set(offlineNow() ? 1 : 0));
    metrics.gauge('ldap_gateway_offline_verifiers', 'Accounts with an offline verifier this process knows of', [], (g) => g.set(store.known.size));
  }

  metrics.gauge('ldap_gateway_upstream_pool_connections', 'Upstream connections by pool, domain controller and state', ['pool', 'dc', 'state'], (g) => {
    g.reset();
    for (const p of [current().upstream.service, current().upstream.binds]) {
      for (const [dc, s] of p.statsByDc()) {
        g.set({ pool: p.opts.name, dc, state: 'in_use' }, s.inUse);
        g.set({ pool: p.opts.name, dc, state: 'idle' }, s.idle);
      }
      g.set({ pool: p.opts.name, dc: '', state: 'waiting' }, p.stats().waiting);
    }
  });
  metrics.gauge('ldap_gateway_upstream_dc_up', 'Whether a domain controller is considered up (1) or in back-off (0)', ['dc'], (g) => {
    g.reset();
    for (const d of current().upstream.dcs.dcs) g.set({ dc: d.url }, d.up ? 1 : 0);
  });

  // the listeners call through to whichever core is current: a reload never touches a connection
  const handlers: Handlers<Identity> = {
    bind: (op, s) => current().handlers.bind(op, s),
    search: (op, s, sink) => current().handlers.search(op, s, sink),
    add: (op, s) => current().handlers.add(op, s),
    modify: (op, s) => current().handlers.modify(op, s),
    modifyDN: (op, s) => current().handlers.modifyDN(op, s),
    delete: (op, s) => current().handlers.delete(op, s),
    compare: (op, s) => current().handlers.compare(op, s),
    passwordModify: (op, s) => current().handlers.passwordModify(op, s),
    whoami: (s) => current().handlers.whoami(s),
    closed: (s) => current().handlers.closed?.(s),
  };
  const listeners = new LdapListeners<Identity>(cfg.listen, handlers, metrics.observer, log, { ...(deps.peers ? { peers: deps.peers } : {}) });
  await listeners.listen();
  // offline: ready (binds of cached accounts are answered), and the body says so
  const readyOrOffline = () => current().upstream.ready().then((up) => up || offlineNow());
  const health = () => {
    const h = state.health();
    return offlineNow() ? { ready: h.ready, detail: [h.detail, 'offline: no domain controller is reachable; binds of accounts with a recent verifier are decided by the gateway'].filter(Boolean).join('\n') } : h;
  };
  const http = cfg.http.listen ? await startHttp(cfg.http.listen, metrics, readyOrOffline, health) : undefined;
  log.info(
    { ldap: listeners.addresses.ldap, ldaps: listeners.addresses.ldaps, http: http ? { port: http.port } : undefined, baseDN: cfg.directory.baseDN, upstream: upstreamOf(cfg).urls },
    deps.worker === undefined ? 'ldap-gateway listening' : 'gateway worker listening',
  );

  let stopping: Promise<void> | undefined;
  return {
    ldapPort: listeners.addresses.ldap?.port,
    ldapsPort: listeners.addresses.ldaps?.port,
    httpPort: http?.port,
    metrics,
    get core() {
      return current();
    },
    async reload(next) {
      const old = current();
      const restartNeeded = RESTART_ONLY.filter((p) => JSON.stringify(pick(old.cfg, p)) !== JSON.stringify(pick(next, p)));
      if (JSON.stringify(old.cfg.protection) !== JSON.stringify(next.protection)) {
        shared.guard.stop();
        shared.guard = makeGuard(next, log, metrics, state);
      }
      log.level = next.log.level;
      const effective = effectiveConfig(next, old.cfg);
      core = buildCore(effective, upstreamOf(effective), log, metrics, events.authHooks, shared);
      // the old core's upstream stays open while its operations run and its paged listings go on
      void old.retire(Math.max(10_000, old.cfg.directory.paging.cursorIdleMs));
      return { restartNeeded: [...restartNeeded] };
    },
    stop(deadlineMs = 10_000) {
      // once: a second call (a second SIGTERM, a test's teardown) waits for the first
      stopping ??= (async () => {
        await listeners.close(deadlineMs);
        await events.stop(deadlineMs);
        if (http) await new Promise<void>((r) => http.server.close(() => r()));
        shared.cursors.stop();
        await current().retire(0);
        await shared.offline?.close();
        await state.close();
        if (demo) await demo.close();
      })();
      return stopping;
    },
  };
}
