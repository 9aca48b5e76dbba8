// Wiring: config -> upstream pools -> directory + authenticator -> LDAP listeners + HTTP.
// The request flow is one-directional: server/ (protocol) -> gateway handlers -> auth/ or directory/ -> upstream/.
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { Authenticator } from './auth/authenticator';
import { LockoutGuard } from './auth/guard';
import type { Identity } from './auth/identity';
import { upstreamSchema, type Config, type UpstreamConfig } from './config/schema';
import { startDemoDirectory, type DemoDirectory } from './demo/directory';
import { SearchCache } from './directory/cache';
import { flavors } from './directory/flavors';
import { Mapper, withOverrides, type Rule } from './directory/mapping';
import { buildIndex, MembershipCache } from './directory/membership';
import { SearchRunner } from './directory/paging';
import { DirectorySearch, type KindSource } from './directory/search';
import { normalizeDN } from './directory/dn';
import { VirtualTree } from './directory/tree';
import { startHttp } from './observability/http';
import { Metrics } from './observability/metrics';
import { LdapListeners } from './server/listener';
import { ResultCode, type Handlers } from './server/types';
import { Upstream } from './upstream/upstream';
import { startProvisioning } from './provisioning/start';
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

  const transparent = cfg.directory.mode === 'transparent';
  const tree = new VirtualTree(cfg.directory.baseDN ?? upCfg.baseDN, cfg.directory.users.rdn, cfg.directory.groups.rdn);
  const flavor = flavors[upCfg.flavor];
  const profile = flavor.profile({ groupClass: cfg.directory.groups.objectClass });
  const users = new Mapper(withOverrides(profile.users, cfg.directory.users.attributes as Record<string, Rule | null> | undefined), 'uid');
  const groups = new Mapper(withOverrides(profile.groups, cfg.directory.groups.attributes as Record<string, Rule | null> | undefined), 'cn');
  const usersSource: KindSource = { base: cfg.directory.users.source.base ?? upCfg.baseDN, filter: cfg.directory.users.source.filter };
  const groupsSource: KindSource = { base: cfg.directory.groups.source.base ?? upCfg.baseDN, filter: cfg.directory.groups.source.filter };
  const source = { search: (q: Parameters<Upstream['search']>[0]) => upstream.search(q) };
  const list = (base: string, filter: string, attributes: string[]) => () => upstream.search({ base, scope: 'sub', filter, attributes });
  const groupsAreAll = normalizeDN(groupsSource.base) === normalizeDN(upCfg.baseDN) && !groupsSource.filter;
  const membership = new MembershipCache(
    () =>
      buildIndex(
        {
          // the whole domain's groups give the nesting graph; the groups source says which are shown
          allGroups: list(upCfg.baseDN, `(&${flavor.groupClass})`, [groups.dnSource, 'memberOf']),
          ...(groupsAreAll ? {} : { visibleGroups: list(groupsSource.base, `(&${flavor.groupClass}${groupsSource.filter ?? ''})`, [groups.dnSource]) }),
          users: list(usersSource.base, `(&${flavor.userClass}${usersSource.filter ?? ''})`, [users.dnSource, 'memberOf']),
          groupKeyAttr: groups.dnSource,
          userKeyAttr: users.dnSource,
        },
        cfg.directory.groups.nested,
      ),
    cfg.directory.membershipCacheMs,
  );

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
    membership,
    inChain: flavor.inChain && cfg.directory.groups.nested === 'flatten',
    transparent,
    adBaseDN: upCfg.baseDN,
    rootDSE: {
      namingContexts: [transparent ? upCfg.baseDN : tree.baseDN],
      supportedLDAPVersion: ['3'],
      supportedControl: ['1.2.840.113556.1.4.319'],
      supportedExtension: ['1.3.6.1.4.1.4203.1.11.3', ...(tlsOn && cfg.listen.startTLS ? ['1.3.6.1.4.1.1466.20037'] : [])],
      supportedSASLMechanisms: [],
      vendorName: ['ldap-gateway'],
      vendorVersion: [VERSION],
    },
  });

  const cache = new SearchCache(cfg.cache, (e) => metrics.cache(e));
  const runner = new SearchRunner(directory, cfg.directory.paging, cache);

  const events = startProvisioning(cfg, log, metrics, directory, users);

  const lockout = cfg.protection.lockout;
  const announced = new LRUCache<string, true>({ max: 10_000, ttl: 60_000 });
  const guard = new LockoutGuard(
    { windowMs: lockout.windowMs, perAccountIp: lockout.perAccountIp, perAccount: lockout.perAccount, perIp: lockout.perIp, bindRatePerIp: cfg.protection.bindRatePerIp, bindBurstPerIp: cfg.protection.bindBurstPerIp },
    (scope, client, account) => {
      metrics.lockoutTrips.inc({ scope });
      // an attack refuses thousands of binds: one audit line per key and minute, the metric counts all
      const key = `${scope}|${client}|${account ?? ''}`;
      if (announced.has(key)) return;
      announced.set(key, true);
      log.warn({ event: 'lockout', scope, client, ...(account ? { dn: account } : {}) }, 'binds refused by the lockout shield');
    },
  );
  if (upCfg.flavor === 'ad' && lockout.perAccount > 0) void checkLockoutPolicy(upstream, upCfg.baseDN, lockout.perAccount, log);

  const auth = new Authenticator({
    tree,
    upstream,
    source,
    usersSource,
    userClass: flavor.userClass,
    keyAttr: users.dnSource,
    upnAttr: flavor.upnAttr,
    transparent,
    consumers: cfg.consumers,
    domain: upCfg.domain,
    mail: cfg.directory.bindNames.mail,
    anonymous: cfg.auth.anonymous,
    diagnostics: cfg.auth.diagnostics,
    // with provisioning on, each bind reads the user's current entry: a change in AD is provisioned on
    // the next bind, not after the cache expires
    resolveCacheMs: cfg.provisioning.mode === 'off' ? cfg.auth.resolveCacheMs : 0,
    log,
    observe: (result, reason) => metrics.bind(result, reason),
    ...events.authHooks,
    guard,
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
        return runner.run(op, { subtrees: who.access.subtrees, attributes: who.access.attributes }, session, sink, `consumer:${who.name}`);
      }
      // an end user sees their own entry and the groups; anonymous (when allowed) sees the tree
      if (who?.kind === 'user') return runner.run(op, { onlyUser: who.username }, session, sink, `user:${who.adDn}`);
      return runner.run(op, {}, session, sink, 'anonymous');
    },
    whoami: (session) => (session.identity ? `dn:${session.identity.dn}` : ''),
    closed: (session) => void runner.closeSession(session),
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
    maxConnectionsPerIp: cfg.listen.maxConnectionsPerIp,
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
      await events.stop(deadlineMs);
      if (http) await new Promise<void>((r) => http.server.close(() => r()));
      await upstream.close();
      if (demo) await demo.close();
    },
  };
}

/** Read AD's domain lockout policy once: the shield's per-account limit must stay below it. */
async function checkLockoutPolicy(upstream: Upstream, baseDN: string, perAccount: number, log: Logger): Promise<void> {
  try {
    for await (const page of upstream.search({ base: baseDN, scope: 'base', filter: '(objectClass=*)', attributes: ['lockoutThreshold'] })) {
      const threshold = Number(String(page[0]?.attrs.get('lockoutthreshold')?.[0] ?? '0'));
      if (threshold === 0) log.info({ perAccount }, "AD's domain policy has no lockout threshold (fine-grained policies may still set one); the shield limits failures to protection.lockout.perAccount");
      else if (perAccount >= threshold) log.warn({ lockoutThreshold: threshold, perAccount }, "protection.lockout.perAccount is not below AD's lockoutThreshold: failed binds through the gateway can still lock accounts");
      else log.info({ lockoutThreshold: threshold, perAccount }, "lockout shield below AD's lockout threshold");
    }
  } catch (err) {
    log.warn({ err: (err as Error).message }, "could not read AD's lockout policy");
  }
}
