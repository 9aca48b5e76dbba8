// Prometheus metrics (prom-client), named by the conventions: ldap_gateway_ prefix, base units,
// _total on counters, low-cardinality labels only (never a user name or DN).
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { resultName } from '../ldap/protocol';
import type { OpObserver } from '../ldap/types';
import type { BindReason } from '../auth/reasons';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class Metrics {
  readonly registry = new Registry();
  readonly operations = new Counter({ name: 'ldap_gateway_operations_total', help: 'LDAP operations answered, by type and result code name', labelNames: ['op', 'result'] as const, registers: [this.registry] });
  readonly operationDuration = new Histogram({ name: 'ldap_gateway_operation_duration_seconds', help: 'Time from request to final response, by operation', labelNames: ['op'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly binds = new Counter({ name: 'ldap_gateway_binds_total', help: 'Bind attempts by result and reason', labelNames: ['result', 'reason'] as const, registers: [this.registry] });
  readonly connections = new Gauge({ name: 'ldap_gateway_client_connections', help: 'Open client connections', labelNames: ['tls'] as const, registers: [this.registry] });
  readonly rejected = new Counter({ name: 'ldap_gateway_rejected_total', help: 'Connections or requests refused by a limit or as malformed', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly cacheRequests = new Counter({ name: 'ldap_gateway_cache_requests_total', help: 'Search cache look-ups by result (hit, miss)', labelNames: ['result'] as const, registers: [this.registry] });
  readonly cacheEvictions = new Counter({ name: 'ldap_gateway_cache_evictions_total', help: 'Search results evicted from the cache to stay within its size bound', registers: [this.registry] });
  readonly provisioningEvents = new Counter({ name: 'ldap_gateway_provisioning_events_total', help: 'Bind events by kind and what became of them (recorded in the outbox, deduplicated, logged only)', labelNames: ['kind', 'outcome'] as const, registers: [this.registry] });
  readonly deliveries = new Counter({ name: 'ldap_gateway_provisioning_deliveries_total', help: 'Outbox delivery attempts by outcome (delivered, retried, failed) and failure reason', labelNames: ['outcome', 'reason'] as const, registers: [this.registry] });
  readonly lockoutTrips = new Counter({ name: 'ldap_gateway_lockout_trips_total', help: 'Binds refused by the lockout shield, by the window that tripped (account_ip, account, ip)', labelNames: ['scope'] as const, registers: [this.registry] });
  readonly reloads = new Counter({ name: 'ldap_gateway_config_reloads_total', help: 'Configuration reloads (SIGHUP) by result; a failed one leaves the running configuration in place', labelNames: ['result'] as const, registers: [this.registry] });
  readonly writes = new Counter({ name: 'ldap_gateway_writes_total', help: 'Writes carried to AD (add, modify, modifyDN, delete, passwordModify) by result: success, refused (by the gateway: policy, read-only, dry run), failed (AD refused or unreachable)', labelNames: ['op', 'result'] as const, registers: [this.registry] });
  readonly writeDuration = new Histogram({ name: 'ldap_gateway_write_duration_seconds', help: 'Time to carry a write to AD, look-ups included, by operation', labelNames: ['op'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly offlineBinds = new Counter({ name: 'ldap_gateway_offline_binds_total', help: 'Binds decided offline (no DC reachable) by result: success, wrong_password, no_verifier, expired, throttled', labelNames: ['result'] as const, registers: [this.registry] });
  readonly upstreamDuration = new Histogram({ name: 'ldap_gateway_upstream_duration_seconds', help: 'Upstream operation latency, by operation and domain controller', labelNames: ['op', 'dc', 'outcome'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.connections.set({ tls: 'true' }, 0);
    this.connections.set({ tls: 'false' }, 0);
  }

  readonly observer: OpObserver = {
    op: (op, code, seconds) => {
      this.operations.inc({ op, result: resultName(code) });
      this.operationDuration.observe({ op }, seconds);
    },
    connection: (delta, tls) => this.connections.inc({ tls: String(tls) }, delta),
    rejected: (reason) => this.rejected.inc({ reason }),
  };

  cache(e: 'hit' | 'miss' | 'evict'): void {
    if (e === 'evict') this.cacheEvictions.inc();
    else this.cacheRequests.inc({ result: e });
  }

  bind(result: 'success' | 'failure', reason: BindReason): void {
    this.binds.inc({ result, reason });
  }

  write(op: string, result: 'success' | 'refused' | 'failed', seconds: number): void {
    this.writes.inc({ op, result });
    this.writeDuration.observe({ op }, seconds);
  }

  upstream(op: 'search' | 'bind' | 'write', dc: string, seconds: number, ok: boolean): void {
    this.upstreamDuration.observe({ op, dc, outcome: ok ? 'ok' : 'error' }, seconds);
  }

  /** Gauges read at scrape time (pools, DC health) */
  gauge(name: string, help: string, labelNames: string[], collect: (g: Gauge<string>) => void): void {
    new Gauge({ name, help, labelNames, registers: [this.registry], collect() { collect(this); } });
  }
}
