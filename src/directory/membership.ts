// Group membership as the virtual directory shows it: users' memberOf and groups' member lists, nested
// groups flattened (or not), computed from three paged listings instead of one search per group and
// without ever reading a group's `member` attribute (which Windows AD returns ranged past 1500 values).
// Membership *filters* are not evaluated here: they are rewritten into AD terms AD evaluates (see
// Mapper.rewrite). For users with nesting flattened, "member of G" becomes equality on the direct memberOf
// of G and of every group nested in G that has users (Index.within): the same flattened semantics as AD's
// LDAP_MATCHING_RULE_IN_CHAIN, which Samba evaluates entry by entry (over 5 s for seven groups and 1,500
// users, where the equalities take 0.3 s), and consistent with the values returned, which come from here.
// AD's primary group (primaryGroupID, usually Domain Users) is not in memberOf and so not shown.
import { normalizeDN } from './dn';
import type { AdEntry } from './mapping';
import type { EntrySource, KindSource } from './search';

export interface GroupRef {
  key: string; // the group's naming value (cn)
  dn: string; // its AD DN
}
export interface UserRef {
  key: string; // the user's naming value (sAMAccountName / uid)
  dn: string;
}

export interface Index {
  builtAt: number;
  /** visible groups by normalized AD DN */
  groups: Map<string, GroupRef>;
  /** visible groups by lower-case key (the virtual DN's cn) */
  groupsByKey: Map<string, GroupRef>;
  /** users in the users source by lower-case key */
  usersByKey: Map<string, UserRef>;
  /** normalized user DN -> normalized DNs of the visible groups they belong to */
  userGroups: Map<string, Set<string>>;
  /** normalized group DN -> its users (and, with nested: direct, its visible subgroups), sorted by key */
  members: Map<string, { users: UserRef[]; groups: GroupRef[] }>;
  /** AD DNs of groups whose cn another visible group already has: they share one virtual DN */
  shadowed: string[];
  /** DNs as AD wrote them (users and visible groups) -> normalized: mapping an entry needs no DN parsing */
  normalized: Map<string, string>;
  /**
   * flatten: normalized visible group -> AD DNs of the groups whose direct members (users in the source)
   * are its members: itself and every group nested in it, at any depth, that users name in their memberOf
   */
  within: Map<string, string[]>;
}

export interface IndexSources {
  /** every group of the domain with its memberOf: the nesting graph (groups outside the source still link) */
  allGroups(): AsyncIterable<AdEntry[]>;
  /** the groups the virtual tree shows (groups source base + filter); absent = every group of allGroups */
  visibleGroups?(): AsyncIterable<AdEntry[]>;
  /** the users the virtual tree shows, with memberOf */
  users(): AsyncIterable<AdEntry[]>;
  groupKeyAttr: string;
  userKeyAttr: string;
}

const text = (v: string | Buffer | undefined) => (v === undefined ? undefined : typeof v === 'string' ? v : v.toString('utf8'));

function safeNorm(dn: string): string | undefined {
  try {
    return normalizeDN(dn);
  } catch {
    return undefined;
  }
}

/** normalizeDN for the memberOf values of one index build: the same few group DNs recur on every member */
function groupDnNormalizer(): (dn: string) => string | undefined {
  const seen = new Map<string, string | undefined>();
  return (dn) => {
    if (seen.has(dn)) return seen.get(dn);
    const n = safeNorm(dn);
    seen.set(dn, n);
    return n;
  };
}

export async function buildIndex(src: IndexSources, nested: 'flatten' | 'direct'): Promise<Index> {
  const groupNorm = groupDnNormalizer();
  const parents = new Map<string, string[]>(); // group -> groups it is a member of (direct)
  const groups = new Map<string, GroupRef>();
  const groupsByKey = new Map<string, GroupRef>();
  const shadowed: string[] = [];
  const addVisible = (g: AdEntry) => {
    const n = safeNorm(g.dn);
    const key = text(g.attrs.get(src.groupKeyAttr.toLowerCase())?.[0]);
    if (!n || !key) return;
    const ref = { key, dn: g.dn };
    // two groups with the same cn in different OUs would share a virtual DN: the first one wins
    if (groupsByKey.has(key.toLowerCase())) {
      shadowed.push(g.dn);
      return;
    }
    groups.set(n, ref);
    groupsByKey.set(key.toLowerCase(), ref);
  };
  for await (const page of src.allGroups()) {
    for (const g of page) {
      const n = safeNorm(g.dn);
      if (!n) continue;
      parents.set(n, (g.attrs.get('memberof') ?? []).map((v) => groupNorm(text(v) as string)).filter((x): x is string => x !== undefined));
      if (!src.visibleGroups) addVisible(g);
    }
  }
  if (src.visibleGroups) for await (const page of src.visibleGroups()) page.forEach(addVisible);

  // ancestors(g): every group g is nested in, transitively (memoized; cycles tolerated)
  const memo = new Map<string, Set<string>>();
  const ancestors = (g: string, visiting = new Set<string>()): Set<string> => {
    const known = memo.get(g);
    if (known) return known;
    const out = new Set<string>();
    visiting.add(g);
    for (const p of parents.get(g) ?? []) {
      out.add(p);
      if (!visiting.has(p)) for (const a of ancestors(p, visiting)) out.add(a);
    }
    visiting.delete(g);
    memo.set(g, out);
    return out;
  };

  const usersByKey = new Map<string, UserRef>();
  const userGroups = new Map<string, Set<string>>();
  const rawUserDn = new Map<string, string>();
  const members = new Map<string, { users: UserRef[]; groups: GroupRef[] }>();
  for (const n of groups.keys()) members.set(n, { users: [], groups: [] });
  const directGroups = new Map<string, string>(); // normalized -> as AD wrote it, every group a user names
  for await (const page of src.users()) {
    for (const u of page) {
      const n = safeNorm(u.dn);
      const key = text(u.attrs.get(src.userKeyAttr.toLowerCase())?.[0]);
      if (!n || !key) continue;
      const ref = { key, dn: u.dn };
      usersByKey.set(key.toLowerCase(), ref);
      rawUserDn.set(n, u.dn);
      const all = new Set<string>();
      for (const v of u.attrs.get('memberof') ?? []) {
        const raw = text(v) as string;
        const g = groupNorm(raw);
        if (g === undefined) continue;
        if (!directGroups.has(g)) directGroups.set(g, raw);
        all.add(g);
        if (nested === 'flatten') for (const a of ancestors(g)) all.add(a);
      }
      const visible = new Set([...all].filter((g) => groups.has(g)));
      userGroups.set(n, visible);
      for (const g of visible) members.get(g)?.users.push(ref);
    }
  }
  const within = new Map<string, string[]>();
  if (nested === 'flatten') {
    for (const [g, raw] of directGroups) {
      for (const a of new Set([g, ...ancestors(g)])) {
        if (!groups.has(a)) continue;
        const list = within.get(a);
        if (list) list.push(raw);
        else within.set(a, [raw]);
      }
    }
  }
  if (nested === 'direct') {
    for (const [g, ps] of parents) {
      const ref = groups.get(g);
      if (!ref) continue;
      for (const p of ps) members.get(p)?.groups.push(ref);
    }
  }
  const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
  for (const m of members.values()) {
    m.users.sort(byKey);
    m.groups.sort(byKey);
  }
  const normalized = new Map<string, string>();
  for (const [n, g] of groups) normalized.set(g.dn, n);
  for (const n of userGroups.keys()) normalized.set(rawUserDn.get(n) as string, n);
  return { builtAt: Date.now(), groups, groupsByKey, usersByKey, userGroups, members, shadowed, normalized, within };
}

/**
 * The index, rebuilt at most every ttlMs; concurrent callers share one build. While it is in use (asked
 * for within keepWarmMs), it is rebuilt in the background before it expires, so that no request waits
 * for a build: a Defguard sync every 300 s would otherwise meet an expired index each time and wait for
 * the directory to be listed twice (the index's listing, then its own). The index served is never older
 * than ttlMs; the cost is one rebuild per ttlMs while in use.
 */
export class MembershipCache {
  private current: Index | undefined;
  private building: Promise<Index> | undefined;
  private lastUsed = 0;
  private lastBuildMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly build: () => Promise<Index>,
    private readonly ttlMs: number,
    /** a failed rebuild answers with the index it has when this says so (offline binds: no DC reachable) */
    private readonly stale: (err: unknown) => boolean = () => false,
    private readonly keepWarmMs = 0,
  ) {}

  async get(): Promise<Index> {
    this.lastUsed = Date.now();
    if (this.current && Date.now() - this.current.builtAt < this.ttlMs) return this.current;
    return this.building ?? this.start();
  }

  private start(): Promise<Index> {
    const t0 = Date.now();
    const building = this.build().then(
      (idx) => {
        // a build that started before a write (invalidate) answers its callers but is not kept
        if (this.building === building) {
          this.current = idx;
          this.building = undefined;
          this.lastBuildMs = Date.now() - t0;
          this.schedule();
        }
        return idx;
      },
      (err: unknown) => {
        if (this.building === building) this.building = undefined;
        if (this.current && this.stale(err)) return this.current;
        throw err;
      },
    );
    this.building = building;
    return building;
  }

  /**
   * The next background rebuild: early enough to be done before the index expires, and never sooner than
   * half its time to live after the last one (a build slower than that is waited for once it expired).
   */
  private schedule(): void {
    clearTimeout(this.timer);
    if (this.stopped || this.keepWarmMs <= 0 || this.ttlMs <= 0) return;
    const delay = Math.max(this.ttlMs / 2, this.ttlMs - 2 * this.lastBuildMs - 100);
    this.timer = setTimeout(() => this.refresh(), Math.min(delay, 2 ** 31 - 1)).unref(); // setTimeout's limit
  }

  private refresh(): void {
    // not used lately: let it expire (the next request builds it); a failure waits for the next request too
    if (this.stopped || this.building || Date.now() - this.lastUsed > this.keepWarmMs) return;
    this.start().catch(() => undefined);
  }

  /** A write changed membership or names: the next read builds the index anew. */
  invalidate(): void {
    clearTimeout(this.timer);
    this.current = undefined;
    this.building = undefined;
  }

  /** No more background rebuilds (a reload retired the core that owns this index). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}

/** Where the index's three listings come from, in directory terms. */
export interface MembershipQueries {
  source: EntrySource;
  /** the whole domain: every group, for the nesting graph (groups outside the source still link) */
  domainBase: string;
  userClass: string;
  groupClass: string;
  usersSource: KindSource;
  groupsSource: KindSource;
  userKeyAttr: string;
  groupKeyAttr: string;
  nested: 'flatten' | 'direct';
  cacheMs: number;
  /** rebuilt in the background before it expires while asked for within this time (0: only when asked) */
  keepWarmMs?: number;
  /** groups hidden because another visible group has their cn (reported once per change) */
  onShadowed(dns: string[]): void;
  /** a failed rebuild may answer with the last index (offline binds) */
  stale?: (err: unknown) => boolean;
}

/** The membership index of a directory, rebuilt at most every cacheMs. */
export function membershipCache(q: MembershipQueries): MembershipCache {
  const list = (base: string, filter: string, attributes: string[]) => () => q.source.search({ base, scope: 'sub', filter, attributes });
  const groupsAreAll = normalizeDN(q.groupsSource.base) === normalizeDN(q.domainBase) && !q.groupsSource.filter;
  let reported = '';
  return new MembershipCache(async () => {
    const idx = await buildIndex(
      {
        allGroups: list(q.domainBase, `(&${q.groupClass})`, [q.groupKeyAttr, 'memberOf']),
        ...(groupsAreAll ? {} : { visibleGroups: list(q.groupsSource.base, `(&${q.groupClass}${q.groupsSource.filter ?? ''})`, [q.groupKeyAttr]) }),
        users: list(q.usersSource.base, `(&${q.userClass}${q.usersSource.filter ?? ''})`, [q.userKeyAttr, 'memberOf']),
        groupKeyAttr: q.groupKeyAttr,
        userKeyAttr: q.userKeyAttr,
      },
      q.nested,
    );
    const key = idx.shadowed.join('|');
    if (key && key !== reported) q.onShadowed(idx.shadowed);
    reported = key;
    return idx;
  }, q.cacheMs, q.stale, q.keepWarmMs);
}
