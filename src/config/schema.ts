// The configuration contract. Every field is documented in config/README.md; keep the two in step.
// Objects are strict: an unknown key is an error, so a misspelt `upstrem:` cannot be silently ignored.
import { z } from 'zod';
import { isWithin, normalizeDN } from '../directory/dn';
import { isAddressOrCidr } from '../server/proxy-protocol';

const dnWithin = (inner: string, outer: string): boolean => {
  try {
    return isWithin(normalizeDN(inner), normalizeDN(outer));
  } catch {
    return false;
  }
};

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:1389');

const ldapUrl = z.string().regex(/^ldaps?:\/\/[^\s/]+(:\d+)?\/?$/i, 'must be an ldap:// or ldaps:// URL');

const dn = z.string().min(1, 'must be a DN');

const tlsFiles = z.strictObject({
  cert: z.string().min(1),
  key: z.string().min(1),
});

const listen = z
  .strictObject({
    ldap: hostPort.optional(),
    ldaps: hostPort.optional(),
    tls: tlsFiles.optional(),
    startTLS: z.boolean().default(true),
    requireTLSForBind: z.boolean().default(false),
    maxConnections: z.int().positive().default(10_000),
    maxConnectionsPerIp: z.int().positive().default(1000),
    idleTimeoutMs: z.int().nonnegative().default(300_000),
    maxPduBytes: z.int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
    maxOutstandingPerConnection: z.int().positive().default(32),
    // PROXY protocol v1/v2 (HAProxy send-proxy-v2, cloud load balancers): accepted only from these
    // addresses or CIDRs, and required from them; absent: off
    proxyProtocol: z.strictObject({ trusted: z.array(z.string().refine(isAddressOrCidr, 'must be an IP address or CIDR, e.g. 10.0.0.5 or 10.0.0.0/24')).min(1) }).optional(),
  })
  .superRefine((v, ctx) => {
    if (!v.ldap && !v.ldaps) ctx.addIssue({ code: 'custom', message: 'set ldap, ldaps or both', path: [] });
    if (v.ldaps && !v.tls) ctx.addIssue({ code: 'custom', message: 'ldaps needs listen.tls.cert and listen.tls.key', path: ['tls'] });
    if (v.requireTLSForBind && !v.tls) ctx.addIssue({ code: 'custom', message: 'requireTLSForBind needs listen.tls', path: ['requireTLSForBind'] });
  });

export const upstreamSchema = z.strictObject({
  // what kind of directory is upstream: Active Directory, or an inetOrgPerson tree such as OpenLDAP
  flavor: z.enum(['ad', 'openldap']).default('ad'),
  urls: z.array(ldapUrl).min(1),
  startTLS: z.boolean().default(false),
  tls: z
    .strictObject({
      ca: z.string().optional(),
      verify: z.boolean().default(true),
      servername: z.string().optional(),
    })
    .prefault({}),
  bind: z.strictObject({ dn, password: z.string().min(1, 'the service account password must not be empty') }),
  baseDN: dn,
  // NetBIOS domain accepted in DOMAIN\user bind names; UPN suffixes are whatever AD holds.
  domain: z.string().optional(),
  pool: z.strictObject({ service: z.int().min(1).max(64).default(4), bind: z.int().min(1).max(256).default(8) }).prefault({}),
  timeouts: z
    .strictObject({
      connectMs: z.int().positive().default(3000),
      operationMs: z.int().positive().default(5000),
      // AD drops idle connections after MaxConnIdleTime (900 s); we retire ours well before that.
      idleMs: z.int().positive().default(600_000),
    })
    .prefault({}),
  // a DC that failed to connect is skipped for this long before it is tried again
  failureBackoffMs: z.int().nonnegative().default(10_000),
  pageSize: z.int().min(1).max(1000).default(500),
  // after a write, reads and binds go to the DC that took it for this long (AD replicates with a delay)
  stickyAfterWriteMs: z.int().nonnegative().default(30_000),
});

const filterText = z.string().refine((f) => {
  let depth = 0;
  for (const c of f.replace(/\\./g, '')) {
    if (c === '(') depth++;
    else if (c === ')' && --depth < 0) return false;
  }
  return depth === 0 && f.startsWith('(');
}, 'must be an LDAP filter in parentheses, e.g. (memberOf=CN=VPN,OU=Groups,DC=corp,DC=example)');

const source = z.strictObject({ base: dn.optional(), filter: filterText.optional() });

// an attribute rule overriding the profile, one field at a time (null removes the attribute)
const attributeRule = z.union([
  z.strictObject({
    from: z.union([z.string(), z.array(z.string()).min(1)]).transform((v) => (Array.isArray(v) ? v : [v])),
    transform: z.enum(['text', 'guid', 'sid', 'filetime', 'disabled']).optional(),
    operational: z.boolean().optional(),
  }),
  z.strictObject({ const: z.array(z.string()).min(1) }),
  z.strictObject({ computed: z.enum(['memberOf', 'members']) }),
]);
const attributeOverrides = z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9-]*$/, 'an attribute name'), attributeRule.nullable());

const directory = z.strictObject({
  // virtual: a clean tree under baseDN (uid=<name>,ou=users / cn=<name>,ou=groups);
  // transparent: AD's own DNs and tree, only attributes and object classes mapped
  mode: z.enum(['virtual', 'transparent']).default('virtual'),
  baseDN: dn.optional(),
  users: z
    .strictObject({ rdn: z.string().default('ou=users'), source: source.default({}), attributes: attributeOverrides.optional() })
    .prefault({}),
  groups: z
    .strictObject({
      rdn: z.string().default('ou=groups'),
      source: source.default({}),
      attributes: attributeOverrides.optional(),
      // how groups look to clients: groupOfUniqueNames/uniqueMember (Defguard's default) or groupOfNames/member
      objectClass: z.enum(['groupOfUniqueNames', 'groupOfNames']).default('groupOfUniqueNames'),
      // flatten: members of nested groups are members; direct: subgroups are listed as members
      nested: z.enum(['flatten', 'direct']).default('flatten'),
    })
    .prefault({}),
  // how long the membership index (memberOf and member lists) may be reused
  membershipCacheMs: z.int().nonnegative().default(60_000),
  // while the index was asked for within this time, it is rebuilt in the background before it expires
  // (so a periodic Defguard sync never waits for it); 0: built only when asked for
  membershipKeepWarmMs: z.int().nonnegative().default(600_000),
  paging: z
    .strictObject({ maxCursorsPerConnection: z.int().positive().default(8), cursorIdleMs: z.int().positive().default(300_000) })
    .prefault({}),
  bindNames: z
    .strictObject({ mail: z.boolean().default(false) })
    .prefault({}),
});

// What a consumer may write through to AD (issue 12). Absent: read-only. See config/README.md.
const writes = z.strictObject({
  // true: every write is answered 53 and the exact AD operations it would have sent are logged
  dryRun: z.boolean().default(false),
  users: z
    .strictObject({
      // where an Add creates users (an AD DN inside the users source)
      ou: dn,
      // userPrincipalName of a created user: <sAMAccountName>@<upnSuffix>; default: the upstream baseDN's DC components
      upnSuffix: z.string().regex(/^[A-Za-z0-9.-]+$/, 'a DNS-style suffix such as example.com').optional(),
      create: z.boolean().default(true),
      modify: z.boolean().default(true),
      rename: z.boolean().default(true),
      password: z.boolean().default(true),
      // what a Delete of a user does: disable (set ACCOUNTDISABLE, keep the object), delete, or refuse
      delete: z.enum(['disable', 'delete', 'refuse']).default('disable'),
    })
    .optional(),
  groups: z
    .strictObject({
      ou: dn,
      // AD groupType of created groups; -2147483646 = global security group
      groupType: z.int().default(-2147483646),
      create: z.boolean().default(true),
      // member changes: only on managed groups, or on every group of the groups source
      members: z.enum(['managed', 'all']).default('managed'),
      rename: z.boolean().default(true),
      // a Delete of a managed group: delete it or refuse; groups the gateway does not manage are never deleted
      delete: z.enum(['delete', 'refuse']).default('delete'),
      // Defguard deletes a group when its last member leaves: keep (remove the member, keep the group) or delete
      lastMember: z.enum(['keep', 'delete']).default('keep'),
      // names of existing AD groups handed to the gateway; groups it creates are managed (adminDescription marker)
      manage: z.array(z.string().min(1)).default([]),
    })
    .optional(),
});

const consumer = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, . _ - only'),
  bindDN: dn,
  password: z.string().min(8, 'a consumer password needs at least 8 characters'),
  // what this consumer may do once bound: search at all, in which subtrees, which attributes
  search: z.boolean().default(true),
  subtrees: z.array(z.enum(['users', 'groups'])).min(1).default(['users', 'groups']),
  attributes: z.array(z.string().regex(/^[A-Za-z][A-Za-z0-9-]*$/, 'an attribute name')).min(1).optional(),
  writes: writes.optional(),
});

// Shared state of several replicas (issue 13). Absent: each process keeps its own (memory).
const state = z.strictObject({
  redis: z
    .strictObject({
      url: z.string().regex(/^rediss?:\/\/[^\s]+$/, 'must be a redis:// or rediss:// URL'),
      password: z.string().min(1).optional(),
      tls: z.strictObject({ ca: z.string().optional(), verify: z.boolean().default(true) }).optional(),
      // every key the gateway writes starts with this (several gateways may share one Redis)
      keyPrefix: z.string().min(1).default('ldap-gateway:'),
      // Redis unreachable: go on with per-process state (local, the default) or refuse binds with 52
      onUnavailable: z.enum(['local', 'refuse']).default('local'),
      connectTimeoutMs: z.int().positive().default(2000),
      commandTimeoutMs: z.int().positive().default(1000),
    })
    .optional(),
});

export const configSchema = z
  .strictObject({
    // this replica's name in logs and metrics (e.g. from the host or pod name)
    instance: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, . _ - only').optional(),
    // gateway processes on this host sharing the listeners: a number, or auto (one per core)
    workers: z.union([z.int().min(1).max(64), z.literal('auto')]).default(1),
    state: state.prefault({}),
    listen,
    http: z.strictObject({ listen: hostPort.optional() }).default({}),
    log: z
      .strictObject({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
        pretty: z.boolean().default(false),
        // lines are written together, 4 KiB or this often at most (0: each line at once)
        flushMs: z.int().nonnegative().max(10_000).default(100),
      })
      .prefault({}),
    // `demo: true` runs the embedded demo directory in-process and points the upstream at it
    demo: z.boolean().default(false),
    upstream: upstreamSchema.optional(),
    directory,
    auth: z
      .strictObject({
        anonymous: z.enum(['rootdse', 'deny', 'allow']).default('rootdse'),
        diagnostics: z.enum(['reason', 'raw', 'none']).default('reason'),
        // a bind name's look-up (name -> AD entry) is reused this long; a failed bind drops it at once
        resolveCacheMs: z.int().nonnegative().default(60_000),
        // off: end users never write; self: an end user may change their own password (with the old one)
        passwordChange: z.enum(['off', 'self']).default('off'),
        // offline binds while no DC is reachable (README "Offline binds"): verifiers of recent passwords
        offline: z
          .strictObject({
            enabled: z.boolean().default(false),
            maxAgeMs: z.int().positive().default(86_400_000),
            maxAccounts: z.int().positive().max(1_000_000).default(10_000),
            checkIntervalMs: z.int().min(1000).default(60_000),
            // a verifier older than this is recomputed on the next successful online bind (default: a quarter of maxAgeMs, at most 15 min)
            refreshMs: z.int().positive().optional(),
            // an encrypted copy for restarts during an outage (AES-256-GCM; key from the secrets)
            file: z.string().min(1).optional(),
            key: z.string().min(16, 'auth.offline.key needs at least 16 characters').optional(),
          })
          .prefault({})
          .superRefine((o, ctx) => {
            if (o.refreshMs !== undefined && o.refreshMs > o.maxAgeMs) ctx.addIssue({ code: 'custom', message: 'refreshMs must not exceed maxAgeMs', path: ['refreshMs'] });
            if (o.checkIntervalMs > o.maxAgeMs) ctx.addIssue({ code: 'custom', message: 'checkIntervalMs must not exceed maxAgeMs (a change in AD would go unseen for longer than a verifier lives)', path: ['checkIntervalMs'] });
            if (Boolean(o.file) !== Boolean(o.key)) ctx.addIssue({ code: 'custom', message: 'file and key go together (the file is encrypted with the key)', path: [o.file ? 'key' : 'file'] });
          }),
      })
      .prefault({}),
    consumers: z.array(consumer).default([]),
    provisioning: z
      .strictObject({
        // off | log-only (audit lines only: a dry run) | defguard (REST API) | webhook (signed JSON POST)
        mode: z.enum(['off', 'log-only', 'defguard', 'webhook']).default('off'),
        // the durable outbox's folder (SQLite inside), relative to the config file
        outbox: z.string().min(1).default('var/outbox'),
        // a user's repeated binds with unchanged data cause one delivery per window
        dedupeWindowMs: z.int().nonnegative().default(3_600_000),
        // true: an acknowledged bind's event survives a machine crash (fsync per commit); false: a
        // gateway crash (kill -9) only, for less bind latency
        fsync: z.boolean().default(true),
        retry: z
          .strictObject({ initialMs: z.int().positive().default(1000), maxMs: z.int().positive().default(300_000) })
          .prefault({}),
        defguard: z
          .strictObject({
            url: z.string().regex(/^https?:\/\/[^\s]+$/, 'must be an http:// or https:// URL'),
            token: z.string().min(1, 'an API token (dg-…) is required'),
            timeoutMs: z.int().positive().default(10_000),
            // AD group name -> Defguard group name; only these memberships are managed
            groups: z.record(z.string(), z.string()).default({}),
          })
          .optional(),
        webhook: z
          .strictObject({
            url: z.string().regex(/^https?:\/\/[^\s]+$/, 'must be an http:// or https:// URL'),
            secret: z.string().min(16, 'the signing secret needs at least 16 characters'),
            timeoutMs: z.int().positive().default(10_000),
          })
          .optional(),
      })
      .prefault({}),
    protection: z
      .strictObject({
        // the lockout shield: failed binds per (account, address), per account and per address in a
        // sliding window; perAccount must stay below AD's lockoutThreshold. 0 turns a limit off.
        lockout: z
          .strictObject({
            windowMs: z.int().positive().default(900_000),
            perAccountIp: z.int().nonnegative().default(3),
            perAccount: z.int().nonnegative().default(4),
            // off by default: Defguard, RADIUS servers and NATs bind for many users from one address
            perIp: z.int().nonnegative().default(0),
          })
          .prefault({}),
        bindRatePerIp: z.number().nonnegative().default(0),
        bindBurstPerIp: z.int().positive().default(50),
      })
      .prefault({}),
    // cache of whole, small, non-paged search results per identity; ttlMs: 0 turns it off
    cache: z
      .strictObject({
        ttlMs: z.int().nonnegative().default(30_000),
        maxSearches: z.int().positive().default(10_000),
        maxBytes: z.int().positive().default(64 * 1024 * 1024),
        maxResultEntries: z.int().positive().default(100),
      })
      .prefault({}),
  })
  .superRefine((v, ctx) => {
    if (!v.demo && !v.upstream) ctx.addIssue({ code: 'custom', message: 'required unless demo: true', path: ['upstream'] });
    if (v.demo && v.upstream) ctx.addIssue({ code: 'custom', message: 'demo: true brings its own upstream; remove this block', path: ['upstream'] });
    if (v.provisioning.mode === 'defguard' && !v.provisioning.defguard) ctx.addIssue({ code: 'custom', message: 'mode defguard needs provisioning.defguard (url, token)', path: ['provisioning', 'defguard'] });
    if (v.provisioning.mode === 'webhook' && !v.provisioning.webhook) ctx.addIssue({ code: 'custom', message: 'mode webhook needs provisioning.webhook (url, secret)', path: ['provisioning', 'webhook'] });
    v.consumers.forEach((c, i) => {
      if (!c.writes || !v.upstream) return;
      if (v.upstream.flavor !== 'ad') ctx.addIssue({ code: 'custom', message: 'write-through is implemented for Active Directory only (upstream.flavor: ad)', path: ['consumers', i, 'writes'] });
      const inside = (ou: string, base: string | undefined) => dnWithin(ou, base ?? (v.upstream as { baseDN: string }).baseDN);
      // an object created outside the source would be invisible, and Defguard would create it again on every sync
      if (c.writes.users && !inside(c.writes.users.ou, v.directory.users.source.base))
        ctx.addIssue({ code: 'custom', message: 'must lie inside the users source (directory.users.source.base, or upstream.baseDN)', path: ['consumers', i, 'writes', 'users', 'ou'] });
      if (c.writes.groups && !inside(c.writes.groups.ou, v.directory.groups.source.base))
        ctx.addIssue({ code: 'custom', message: 'must lie inside the groups source (directory.groups.source.base, or upstream.baseDN)', path: ['consumers', i, 'writes', 'groups', 'ou'] });
    });
    if (v.directory.mode === 'virtual' && !v.directory.baseDN) ctx.addIssue({ code: 'custom', message: 'required in virtual mode', path: ['directory', 'baseDN'] });
    const offline = v.auth.offline;
    if (offline.enabled && !v.demo && v.upstream?.flavor !== 'ad')
      ctx.addIssue({ code: 'custom', message: "offline binds read AD's uSNChanged and pwdLastSet: they need upstream.flavor: ad", path: ['auth', 'offline', 'enabled'] });
    // one process writes the file; workers share verifiers through the supervisor, replicas through Redis
    if (offline.enabled && offline.file && v.workers !== 1) ctx.addIssue({ code: 'custom', message: 'the offline file is for one process (workers: 1)', path: ['auth', 'offline', 'file'] });
  });

export type Config = z.infer<typeof configSchema>;
export type UpstreamConfig = z.infer<typeof upstreamSchema>;
export type DirectoryConfig = z.infer<typeof directory>;
export type ConsumerConfig = z.infer<typeof consumer>;
export type StateConfig = z.infer<typeof state>;
export type WritesConfig = z.infer<typeof writes>;
export type ListenConfig = z.infer<typeof listen>;
