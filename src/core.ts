// Everything a configuration reload replaces, built from one config: the upstream pools, the virtual
// directory, the search runner and cache, the authenticator, and the LDAP handlers over them.
// The request flow is one-directional: server/ (protocol) -> handlers here -> auth/ or directory/ -> upstream/.
import type { Logger } from 'pino';
import { Authenticator, type AuthOptions } from './auth/authenticator';
import type { LockoutGuard } from './auth/guard';
import type { Identity } from './auth/identity';
import type { Config, UpstreamConfig } from './config/schema';
import { SearchCache } from './directory/cache';
import { normalizeDN } from './directory/dn';
import { flavors } from './directory/flavors';
import { Mapper, selection, withOverrides, type AdEntry, type Rule } from './directory/mapping';
import { buildIndex, MembershipCache } from './directory/membership';
import { SearchRunner } from './directory/paging';
import { DirectorySearch, type KindSource } from './directory/search';
import { VirtualTree } from './directory/tree';
import type { Metrics } from './observability/metrics';
import { Policy } from './auth/policy';
import type { CursorStore } from './directory/cursors';
import { OID } from './ldap/protocol';
import type { StateStores } from './state/types';
import type { Handlers } from './ldap/types';
import { Upstream } from './upstream/upstream';
import { VERSION } from './version';

/** What provisioning adds to the bind flow: the virtual attributes its events carry, and two callbacks. */
export type AuthHooks = Pick<AuthOptions, 'succeeded' | 'failed'> & { eventNames?: string[] };

export interface Core {
  cfg: Config;
  upstream: Upstream;
  directory: DirectorySearch;
  auth: Authenticator;
  handlers: Handlers<Identity>;
  /** close once no operation uses it any more (bounded by deadlineMs) */
  retire(deadlineMs: number): Promise<void>;
}

/** What outlives a reload: state that would be wrong to reset (the shield's counters). */
export interface Shared {
  guard: LockoutGuard;
  /** open paged listings: a reload must not end them */
  cursors: CursorStore;
  /** where the stores below come from (memory today) */
  state: StateStores;
}

export function buildCore(cfg: Config, upCfg: UpstreamConfig, log: Logger, metrics: Metrics, hooks: AuthHooks, shared: Shared): Core {
  const upstream = new Upstream(upCfg, (op, dc, s, ok) => metrics.upstream(op, dc, s, ok));

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
  let reported = '';
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
      ).then((idx) => {
        const key = idx.shadowed.join('|');
        if (key && key !== reported) log.warn({ groups: idx.shadowed }, 'groups with the same cn as another group are not shown: they would share its virtual DN (narrow directory.groups.source)');
        reported = key;
        return idx;
      }),
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
      supportedControl: [OID.pagedResults],
      supportedExtension: [OID.whoami, ...(tlsOn && cfg.listen.startTLS ? [OID.startTLS] : [])],
      supportedSASLMechanisms: [],
      vendorName: ['ldap-gateway'],
      vendorVersion: [VERSION],
    },
  });

  const cache = new SearchCache(cfg.cache, shared.state, (e) => metrics.cache(e));
  shared.cursors.configure(cfg.directory.paging);
  const runner = new SearchRunner(directory, shared.cursors, cache);
  const policy = new Policy({ anonymous: cfg.auth.anonymous, requireTLSForBind: cfg.listen.requireTLSForBind });

  if (upCfg.flavor === 'ad' && cfg.protection.lockout.perAccount > 0) void checkLockoutPolicy(upstream, upCfg.baseDN, cfg.protection.lockout.perAccount, log);

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
    resolved: cfg.provisioning.mode === 'off' && cfg.auth.resolveCacheMs > 0 ? shared.state.ttlMap<AdEntry[]>('bind-names', { max: 50_000, ttlMs: cfg.auth.resolveCacheMs }) : undefined,
    log,
    observe: (result, reason) => metrics.bind(result, reason),
    succeeded: hooks.succeeded,
    failed: hooks.failed,
    eventAttributes: hooks.eventNames ? users.sourceAttributes(selection(hooks.eventNames)) : undefined,
    guard: shared.guard,
    policy,
  });

  const refuse = async (op: Parameters<Policy['write']>[1], session: { identity: Identity | null }) => policy.write(session.identity, op);
  const handlers: Handlers<Identity> = {
    bind: (op, session) => auth.bind(op, session),
    async search(op, session, sink) {
      const d = policy.search(session.identity, op);
      if (!d.allow) return { code: d.code, message: d.message };
      return runner.run(op, d.scope, session, sink, d.partition);
    },
    add: refuse,
    modify: refuse,
    modifyDN: refuse,
    delete: refuse,
    compare: refuse,
    passwordModify: refuse,
    whoami: (session) => (session.identity ? `dn:${session.identity.dn}` : ''),
    closed: (session) => void shared.cursors.closeSession(session),
  };

  return {
    cfg,
    upstream,
    directory,
    auth,
    handlers,
    async retire(deadlineMs) {
      const until = Date.now() + deadlineMs;
      // in-flight operations, and paged listings this core started (continued until they end or expire)
      const busy = () => upstream.service.stats().inUse + upstream.binds.stats().inUse > 0 || runner.openCursors > 0;
      while (busy() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      await upstream.close();
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
