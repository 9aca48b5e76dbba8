// Everything a configuration reload replaces, built from one config: the upstream pools, the virtual
// directory, the search runner and cache, the authenticator, and the LDAP handlers over them.
// The request flow is one-directional: server/ (protocol) -> handlers here -> auth/ or directory/ -> upstream/.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { Authenticator, type AuthOptions } from './auth/authenticator';
import { checkLockoutPolicy, type LockoutGuard } from './auth/guard';
import { OfflineBinder, STATE_ATTRS, type OfflineStore } from './auth/offline';
import type { Identity } from './auth/identity';
import type { Config, UpstreamConfig } from './config/schema';
import { SearchCache } from './directory/cache';
import { flavors } from './directory/flavors';
import { Mapper, selection, withOverrides, type AdEntry, type Rule } from './directory/mapping';
import { membershipCache } from './directory/membership';
import { transparentNaming, virtualNaming } from './directory/naming';
import { rootDSE } from './directory/root-dse';
import { SearchRunner } from './directory/paging';
import { DirectorySearch, type KindSource } from './directory/search';
import { VirtualTree } from './directory/tree';
import type { Metrics } from './observability/metrics';
import { Policy } from './auth/policy';
import type { CursorStore } from './directory/cursors';
import type { StateStores } from './state/types';
import type { Handlers } from './ldap/types';
import { Upstream } from './upstream/upstream';
import { DirectoryWriter } from './directory/writes';
import { ForgetfulMap } from './state/types';

/** What provisioning adds to the bind flow: the virtual attributes its events carry, and two callbacks. */
export type AuthHooks = Pick<AuthOptions, 'succeeded' | 'failed'> & { eventNames?: string[] };

export interface Core {
  cfg: Config;
  upstream: Upstream;
  directory: DirectorySearch;
  auth: Authenticator;
  handlers: Handlers<Identity>;
  /** offline binds (auth.offline.enabled) */
  offline?: OfflineBinder;
  /** close once no operation uses it any more (bounded by deadlineMs) */
  retire(deadlineMs: number): Promise<void>;
}

/** What outlives a reload: state that would be wrong to reset (the shield's counters). */
export interface Shared {
  guard: LockoutGuard;
  /** open paged listings: a reload must not end them */
  cursors: CursorStore;
  /** the offline verifiers (auth.offline.enabled): they outlive a reload */
  offline?: OfflineStore;
  /** where the stores below come from (state/index.ts: memory, or Redis shared by the replicas) */
  state: StateStores;
}

/** The bus topic of writes: the message is the writing core's id (RESYNC, '': messages may be lost). */
export const DIRECTORY_CHANGED = 'directory-changed';

export function buildCore(cfg: Config, upCfg: UpstreamConfig, log: Logger, metrics: Metrics, hooks: AuthHooks, shared: Shared): Core {
  const upstream = new Upstream(upCfg, (op, dc, s, ok) => metrics.upstream(op, dc, s, ok));

  const flavor = flavors[upCfg.flavor];
  const profile = flavor.profile({ groupClass: cfg.directory.groups.objectClass });
  const users = new Mapper(withOverrides(profile.users, cfg.directory.users.attributes as Record<string, Rule | null> | undefined), 'uid', flavor.dnAttr);
  const groups = new Mapper(withOverrides(profile.groups, cfg.directory.groups.attributes as Record<string, Rule | null> | undefined), 'cn', flavor.dnAttr);
  const usersSource: KindSource = { base: cfg.directory.users.source.base ?? upCfg.baseDN, filter: cfg.directory.users.source.filter };
  const groupsSource: KindSource = { base: cfg.directory.groups.source.base ?? upCfg.baseDN, filter: cfg.directory.groups.source.filter };
  const upstreamSource = { search: (q: Parameters<Upstream['search']>[0]) => upstream.search(q) };
  // with offline binds on, a look-up of one cached user is answered from its kept entry while no DC is reachable
  const offline = shared.offline
    ? new OfflineBinder({
        store: shared.offline,
        usersSource,
        userClass: flavor.userClass,
        keyAttr: users.dnSource,
        upnAttr: flavor.upnAttr,
        mail: cfg.directory.bindNames.mail,
        snapshotAttributes: [...new Set([...users.sourceAttributes(selection(['*', '+'])), 'objectGUID', 'objectClass', ...STATE_ATTRS])],
        source: upstreamSource,
        read: (dn, attributes) => upstream.read(dn, attributes),
        // provisioning on: the groups its events carry, kept with the verifier for offline binds' events
        ...(hooks.eventNames ? { groupsOf: async (ad: AdEntry): Promise<string[]> => (await directory.describeUser(ad, ['memberOf'])).groups } : {}),
        allDown: () => upstream.dcs.dcs.every((d) => !d.up),
        guard: () => shared.guard,
      })
    : undefined;
  const source = offline ? offline.source() : upstreamSource;
  const membership = membershipCache({
    source,
    domainBase: upCfg.baseDN,
    userClass: flavor.userClass,
    groupClass: flavor.groupClass,
    usersSource,
    groupsSource,
    userKeyAttr: users.dnSource,
    groupKeyAttr: groups.dnSource,
    nested: cfg.directory.groups.nested,
    cacheMs: cfg.directory.membershipCacheMs,
    keepWarmMs: cfg.directory.membershipKeepWarmMs,
    stale: (err) => offline?.applies(err) ?? false,
    onShadowed: (dns) => log.warn({ groups: dns }, 'groups with the same cn as another group are not shown: they would share its virtual DN (narrow directory.groups.source)'),
  });

  const naming =
    cfg.directory.mode === 'transparent'
      ? transparentNaming(upCfg.baseDN, { users: usersSource, groups: groupsSource })
      : virtualNaming(new VirtualTree(cfg.directory.baseDN ?? upCfg.baseDN, cfg.directory.users.rdn, cfg.directory.groups.rdn));
  const directory = new DirectorySearch({
    naming,
    userClass: flavor.userClass,
    groupClass: flavor.groupClass,
    users,
    groups,
    usersSource,
    groupsSource,
    source,
    membership,
    inChain: flavor.inChain && cfg.directory.groups.nested === 'flatten',
    rootDSE: rootDSE({ namingContext: naming.namingContext, startTLS: Boolean(cfg.listen.tls) && cfg.listen.startTLS }),
  });

  const cache = new SearchCache(cfg.cache, shared.state, (e) => metrics.cache(e));
  const coreId = randomUUID();
  const forget = () => {
    membership.invalidate();
    cache.forgetAll();
    resolved?.forgetAll();
  };
  // a write through another core (a reload's successor, another process or replica)
  const unsubscribe = shared.state.bus.subscribe(DIRECTORY_CHANGED, (from) => from !== coreId && forget());
  shared.cursors.configure(cfg.directory.paging);
  const runner = new SearchRunner(directory, shared.cursors, cache);
  const policy = new Policy({
    anonymous: cfg.auth.anonymous,
    requireTLSForBind: cfg.listen.requireTLSForBind,
    writes: new Map(cfg.consumers.flatMap((c) => (c.writes ? [[c.name, c.writes] as const] : []))),
    passwordChange: cfg.auth.passwordChange,
  });

  if (upCfg.flavor === 'ad' && cfg.protection.lockout.perAccount > 0) void checkLockoutPolicy(source, upCfg.baseDN, cfg.protection.lockout.perAccount, log);

  // with provisioning on, each bind reads the user's current entry: a change in AD is provisioned on
  // the next bind, not after the cache expires
  const resolved = cfg.provisioning.mode === 'off' && cfg.auth.resolveCacheMs > 0 ? new ForgetfulMap(shared.state.ttlMap<AdEntry[]>('bind-names', { max: 50_000, ttlMs: cfg.auth.resolveCacheMs })) : undefined;
  const auth = new Authenticator({
    naming,
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
    resolved,
    log,
    observe: (result, reason) => metrics.bind(result, reason),
    succeeded: hooks.succeeded,
    failed: hooks.failed,
    eventAttributes: hooks.eventNames ? users.sourceAttributes(selection(hooks.eventNames)) : undefined,
    guard: shared.guard,
    policy,
    ...(offline ? { offline } : {}),
  });
  offline?.start();

  const writer = new DirectoryWriter({
    naming,
    users,
    groups,
    userClass: flavor.userClass,
    groupClass: flavor.groupClass,
    usersSource,
    groupsSource,
    domainBase: upCfg.baseDN,
    upstream,
    renames: shared.state.ttlMap<{ to: string; adDn: string }>('renames', { max: 10_000, ttlMs: 120_000 }),
    diagnostics: cfg.auth.diagnostics,
    async changed(what) {
      // what remembers the directory forgets it: the next read and bind see the write, here at once
      // (before the write is answered), and through every other core and replica once they hear it
      forget();
      await shared.state.bus.publish(DIRECTORY_CHANGED, coreId).catch((err: Error) => log.warn({ err: err.message }, 'could not tell the other replicas about a write'));
      if (what.password !== undefined) await shared.guard.passwordChanged(what.adDn, what.password);
      if (what.password !== undefined) await offline?.passwordSet(what.adDn, what.password);
    },
    audit(a) {
      metrics.write(a.op, a.outcome, a.ms / 1000);
      log.info(a, 'write');
    },
    dryRun: (d) => log.info(d, 'dry run'),
  });
  const write = async (op: Parameters<Policy['write']>[1], session: { identity: Identity | null }) => {
    const d = policy.write(session.identity, op);
    if (!d.allow) {
      if (op.op !== 'compare') {
        const who = session.identity;
        const actor = who?.kind === 'consumer' ? { consumer: who.name } : who ? { user: who.username } : { anonymous: true };
        metrics.write(op.op, 'refused', 0);
        log.info({ ...actor, op: op.op, dn: op.op === 'passwordModify' ? (op.userIdentity ?? '') : op.dn, result: d.code, outcome: 'refused', reason: d.reason }, 'write');
      }
      return { code: d.code, message: d.message };
    }
    return writer.handle(op as Exclude<typeof op, { op: 'compare' }>, d.rights);
  };
  const handlers: Handlers<Identity> = {
    bind: (op, session) => auth.bind(op, session),
    async search(op, session, sink) {
      const d = policy.search(session.identity, op);
      if (!d.allow) return { code: d.code, message: d.message };
      return runner.run(op, d.scope, session, sink, d.partition);
    },
    add: write,
    modify: write,
    modifyDN: write,
    delete: write,
    compare: write,
    passwordModify: write,
    whoami: (session) => (session.identity ? `dn:${session.identity.dn}` : ''),
    closed: (session) => void shared.cursors.closeSession(session),
  };

  return {
    cfg,
    upstream,
    directory,
    auth,
    handlers,
    ...(offline ? { offline } : {}),
    async retire(deadlineMs) {
      offline?.stop();
      membership.stop();
      unsubscribe();
      const until = Date.now() + deadlineMs;
      // in-flight operations, and paged listings this core started (continued until they end or expire)
      const busy = () => upstream.service.stats().inUse + upstream.binds.stats().inUse > 0 || runner.openCursors > 0;
      while (busy() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      await upstream.close();
    },
  };
}
