// Wiring: config -> upstream pools -> directory + authenticator -> LDAP listeners + HTTP.
// The request flow is one-directional: server/ (protocol) -> gateway handlers -> auth/ or directory/ -> upstream/.
import type { Logger } from 'pino';
import { Authenticator } from './auth/authenticator';
import type { Identity } from './auth/identity';
import { upstreamSchema, type Config, type UpstreamConfig } from './config/schema';
import { startDemoDirectory, type DemoDirectory } from './demo/directory';
import { flavors } from './directory/flavors';
import { Mapper } from './directory/mapping';
import { DirectorySearch, type KindSource } from './directory/search';
import { normalizeDN } from './directory/dn';
import { VirtualTree } from './directory/tree';
import { startHttp } from './observability/http';
import { Metrics } from './observability/metrics';
import { LdapListeners } from './server/listener';
import { ResultCode, type Handlers } from './server/types';
import { Upstream } from './upstream/upstream';
import { VERSION } from './version';

export interface Gateway {
  ldapPort?: number;
  ldapsPort?: number;
  httpPort?: number;
  metrics: Metrics;
  upstream: Upstream;
  stop(deadlineMs?: number): Promise<void>;
}

export async function startGateway(cfg: Config, log: Logger): Promise<Gateway> {
  const metrics = new Metrics();
  let demo: DemoDirectory | undefined;
  let upCfg: UpstreamConfig;
  if (cfg.demo) {
    demo = await startDemoDirectory(log);
    upCfg = upstreamSchema.parse({ urls: [demo.url], bind: { dn: demo.serviceDN, password: demo.servicePassword }, baseDN: demo.baseDN, domain: 'DEMO' });
    log.info({ url: demo.url }, 'embedded demo directory started');
  } else {
    upCfg = cfg.upstream as UpstreamConfig;
  }

  const upstream = new Upstream(upCfg, (op, dc, s, ok) => metrics.upstream(op, dc, s, ok));
  metrics.gauge('ldap_gateway_upstream_pool_connections', 'Upstream connections by pool and state', ['pool', 'state'], (g) => {
    for (const p of [upstream.service, upstream.binds]) {
      const s = p.stats();
      g.set({ pool: p.opts.name, state: 'in_use' }, s.inUse);
      g.set({ pool: p.opts.name, state: 'idle' }, s.idle);
      g.set({ pool: p.opts.name, state: 'waiting' }, s.waiting);
    }
  });
  metrics.gauge('ldap_gateway_upstream_dc_up', 'Whether a domain controller is considered up (1) or in back-off (0)', ['dc'], (g) => {
    for (const d of upstream.dcs.dcs) g.set({ dc: d.url }, d.up ? 1 : 0);
  });

  const tree = new VirtualTree(cfg.directory.baseDN, cfg.directory.users.rdn, cfg.directory.groups.rdn);
  const groupsBase = cfg.directory.groups.source.base ?? upCfg.baseDN;
  const ctx = { groupsDN: tree.groupsDN, groupsSourceNorm: normalizeDN(groupsBase) };
  const flavor = flavors[upCfg.flavor];
  const users = new Mapper(flavor.profile.users, 'uid', ctx);
  const groups = new Mapper(flavor.profile.groups, 'cn', ctx);
  const usersSource: KindSource = { base: cfg.directory.users.source.base ?? upCfg.baseDN, filter: cfg.directory.users.source.filter };
  const groupsSource: KindSource = { base: groupsBase, filter: cfg.directory.groups.source.filter };
  const source = { search: (q: Parameters<Upstream['search']>[0]) => upstream.search(q) };

  const tlsOn = Boolean(cfg.listen.tls);
  const directory = new DirectorySearch({
    tree,
    userClass: flavor.userClass,
    groupClass: flavor.groupClass,
    users,
    groups,
    usersSource,
    groupsSource,
    source,
    rootDSE: {
      namingContexts: [tree.baseDN],
      supportedLDAPVersion: ['3'],
      supportedControl: ['1.2.840.113556.1.4.319'],
      supportedExtension: ['1.3.6.1.4.1.4203.1.11.3', ...(tlsOn && cfg.listen.startTLS ? ['1.3.6.1.4.1.1466.20037'] : [])],
      supportedSASLMechanisms: [],
      vendorName: ['ldap-gateway'],
      vendorVersion: [VERSION],
    },
  });

  const auth = new Authenticator({
    tree,
    upstream,
    source,
    usersSource,
    userClass: flavor.userClass,
    keyAttr: users.dnSource,
    upnAttr: flavor.upnAttr,
    consumers: cfg.consumers,
    domain: upCfg.domain,
    mail: cfg.directory.bindNames.mail,
    anonymous: cfg.auth.anonymous,
    diagnostics: cfg.auth.diagnostics,
    log,
    observe: (result, reason) => metrics.bind(result, reason),
  });

  const handlers: Handlers<Identity> = {
    bind: (op, session) => auth.bind(op, session),
    async search(op, session, sink) {
      const who = session.identity;
      const rootDSE = op.base.trim() === '' && op.scope === 'base';
      if (!who && !rootDSE && cfg.auth.anonymous !== 'allow') {
        return { code: ResultCode.insufficientAccessRights, message: 'bind first: anonymous access is limited to the rootDSE' };
      }
      if (who?.kind === 'consumer') {
        if (!who.access.search) return { code: ResultCode.insufficientAccessRights, message: `consumer ${who.name} may not search` };
        return directory.search(op, { subtrees: who.access.subtrees, attributes: who.access.attributes }, sink);
      }
      // an end user sees their own entry and the groups; anonymous (when allowed) sees the tree
      return directory.search(op, who?.kind === 'user' ? { onlyUser: who.username } : {}, sink);
    },
    whoami: (session) => (session.identity ? `dn:${session.identity.dn}` : ''),
  };

  const listeners = new LdapListeners<Identity>({
    handlers,
    observer: metrics.observer,
    log,
    ldap: cfg.listen.ldap,
    ldaps: cfg.listen.ldaps,
    tls: cfg.listen.tls,
    startTLS: cfg.listen.startTLS,
    requireTLSForBind: cfg.listen.requireTLSForBind,
    maxConnections: cfg.listen.maxConnections,
    idleTimeoutMs: cfg.listen.idleTimeoutMs,
    maxPduBytes: cfg.listen.maxPduBytes,
    maxOutstanding: cfg.listen.maxOutstandingPerConnection,
  });
  await listeners.listen();
  const http = cfg.http.listen ? await startHttp(cfg.http.listen, metrics, () => upstream.ready()) : undefined;
  log.info({ ldap: listeners.addresses.ldap, ldaps: listeners.addresses.ldaps, http: cfg.http.listen, baseDN: tree.baseDN, upstream: upCfg.urls }, 'ldap-gateway listening');

  return {
    ldapPort: listeners.addresses.ldap?.port,
    ldapsPort: listeners.addresses.ldaps?.port,
    httpPort: http?.port,
    metrics,
    upstream,
    async stop(deadlineMs = 10_000) {
      await listeners.close(deadlineMs);
      if (http) await new Promise<void>((r) => http.server.close(() => r()));
      await upstream.close();
      if (demo) await demo.close();
    },
  };
}
