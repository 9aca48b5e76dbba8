// A client search against the virtual tree: plan it (which virtual entries, which AD queries), stream AD's
// pages through the mapper as a generator, and say how it ends. Filters are rewritten into AD terms and
// evaluated by AD; the only local matching is over the few synthetic entries we own (root, containers,
// rootDSE). Paging, limits and failure handling are the caller's (paging.ts), one entry at a time.
import { DnSyntaxError, normalizeDN } from './dn';
import { and, eq, filterToString, hideTerms, simplify, type FilterNode } from './filter';
import { mayRead, selection, sortedGroupDNs, type AdEntry, type Mapper, type MembershipView, type Selection } from './mapping';
import type { GroupRef, MembershipCache, UserRef } from './membership';
import type { KindPlan, Naming } from './naming';
import { ResultCode } from '../ldap/protocol';
import type { Entry, LdapResult, SearchOp } from '../ldap/types';

export interface AdQuery {
  base: string;
  scope: 'base' | 'one' | 'sub';
  filter: string;
  attributes: string[];
}

/** Where AD entries come from (upstream/ implements it). */
export interface EntrySource {
  search(q: AdQuery): AsyncIterable<AdEntry[]>;
}

export interface KindSource {
  base: string; // AD base of this kind's entries
  filter?: string; // extra AD filter from config, e.g. transitive members of a VPN group
}

export interface SearchScope {
  /** restrict users to this naming value (an end user sees their own entry) */
  onlyUser?: string;
  /** the subtrees this identity may see; undefined = both */
  subtrees?: ReadonlyArray<'users' | 'groups'>;
  /** lower-case attribute allow-list; undefined = all */
  attributes?: ReadonlySet<string>;
}

export interface DirectoryOptions {
  userClass: string; // filter fragments selecting user and group entries upstream
  groupClass: string;
  users: Mapper;
  groups: Mapper;
  usersSource: KindSource;
  groupsSource: KindSource;
  source: EntrySource;
  membership: MembershipCache;
  /** AD (memberOf kept by the directory) with nesting flattened: membership filters become memberOf equalities (Index.within) */
  inChain: boolean;
  /** how clients name entries: the virtual tree, or AD's own DNs (transparent mode) */
  naming: Naming;
  rootDSE: Record<string, string[]>;
}

/** The directory behind the gateway failed; what was already sent may be incomplete. */
export class UpstreamFailure extends Error {
  /** the LDAP result code, when the directory answered with one */
  readonly code: number | undefined;
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.name = 'UpstreamFailure';
    const code = (cause as { code?: unknown }).code;
    this.code = typeof code === 'number' ? code : undefined;
  }
}

/** Match a filter against one of our own synthetic entries (equality and presence, case-insensitive). */
function matchesSynthetic(f: FilterNode, e: Entry): boolean {
  const values = (attr: string) => e.attributes.find((a) => a.type.toLowerCase() === attr.toLowerCase())?.values;
  switch (f.type) {
    case 'and':
      return f.children.every((c) => matchesSynthetic(c, e));
    case 'or':
      return f.children.some((c) => matchesSynthetic(c, e));
    case 'not':
      return !matchesSynthetic(f.child, e);
    case 'present':
      return f.attr.toLowerCase() === 'objectclass' || values(f.attr) !== undefined;
    case 'equal':
      return (values(f.attr) ?? []).some((v) => v.toLowerCase() === f.value.toLowerCase());
    case 'true':
      return true;
    default:
      return false;
  }
}

function select(e: Entry, sel: Selection): Entry {
  const wanted = (lower: string) => (sel.all || sel.names.has(lower)) && mayRead(sel, lower);
  return { dn: e.dn, attributes: e.attributes.filter((a) => wanted(a.type.toLowerCase())).map((a) => ({ type: sel.names.get(a.type.toLowerCase()) ?? a.type, values: a.values })) };
}

/** Iterate an upstream source, turning its failures into UpstreamFailure. */
async function* guarded<T>(it: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* it;
  } catch (err) {
    throw new UpstreamFailure(err);
  }
}

/** Store a value in a weak map and return it. */
const remember = <K extends object, V>(m: WeakMap<K, V>, k: K, v: V): V => (m.set(k, v), v);

export class DirectorySearch {
  /**
   * The client-facing DN of each member and group of the membership index, formatted once per index build
   * (the refs are the index's own objects, so an index that is replaced takes its names with it).
   */
  private readonly named = new WeakMap<object, string>();
  /** each user's memberOf values (sorted group DNs), per set of group keys of the index; shared, never changed */
  private readonly groupLists = new WeakMap<ReadonlySet<string>, string[]>();

  constructor(private readonly o: DirectoryOptions) {}

  /** The entries of each kind a search covers, within the subtrees the identity may see. */
  private plan(op: SearchOp, scope: SearchScope): ReturnType<Naming['plan']> | 'rootDSE' {
    if (op.base.trim() === '') return op.scope === 'base' ? 'rootDSE' : 'noSuchObject';
    const naming = this.o.naming;
    const plan = naming.plan(op);
    if (typeof plan === 'string' || !scope.subtrees) return plan;
    // a subtree the identity may not see does not exist for it
    const users = scope.subtrees.includes('users');
    const groups = scope.subtrees.includes('groups');
    const region = naming.region(op.base);
    if ((!users && region === 'users') || (!groups && region === 'groups')) return 'noSuchObject';
    const c = naming.containers();
    const hidden = (e: Entry) => (!users && e === c.users) || (!groups && e === c.groups);
    return { synthetic: plan.synthetic.filter((e) => !hidden(e)), ...(users && plan.users ? { users: plan.users } : {}), ...(groups && plan.groups ? { groups: plan.groups } : {}) };
  }

  /** The membership view (index + DN helpers) for computed attributes and membership filters. */
  private async view(): Promise<MembershipView> {
    let index;
    try {
      index = await this.o.membership.get();
    } catch (err) {
      throw new UpstreamFailure(err);
    }
    const naming = this.o.naming;
    const named = this.named;
    const userDN = (r: UserRef) => named.get(r) ?? remember(named, r, naming.userDN(r));
    const groupDN = (r: GroupRef) => named.get(r) ?? remember(named, r, naming.groupDN(r));
    const lists = this.groupLists;
    const groupDNsOf = (groups: ReadonlySet<string>) => lists.get(groups) ?? remember(lists, groups, sortedGroupDNs(groups, { index, groupDN }));
    return { index, flatten: this.o.inChain, userDN, groupDN, groupDNsOf, adDN: (value) => naming.adDN(value, index) };
  }

  /** The virtual entry of a user, attribute by attribute with the rule behind it (ldap-gateway map). */
  async explainUser(ad: AdEntry): Promise<{ dn: string; attributes: Array<{ type: string; values: string[]; rule: string }> }> {
    const sel = selection(['*', '+']);
    const view = await this.view();
    const key = this.o.users.keyOf(ad) ?? '';
    return { dn: this.o.naming.userDN({ key, dn: ad.dn }), attributes: this.o.users.explain(ad, sel, view) };
  }

  /** AD attributes the user mapping reads (for fetching a whole entry). */
  userSourceAttributes(): string[] {
    return this.o.users.sourceAttributes(selection(['*', '+']));
  }

  /** A user's mapped attributes (lower-case names) and group names, for provisioning events. */
  async describeUser(ad: AdEntry, names: string[]): Promise<{ attrs: Map<string, string[]>; groups: string[] }> {
    const sel = selection(names);
    const view = this.o.users.selectionNeedsIndex(sel) ? await this.view() : undefined;
    const attrs = new Map(this.o.users.mapAttributes(ad, sel, view).map((a) => [a.type.toLowerCase(), a.values]));
    let groups: string[] = [];
    if (view) {
      try {
        groups = [...(view.index.userGroups.get(normalizeDN(ad.dn)) ?? [])].flatMap((g) => view.index.groups.get(g)?.key ?? []).sort();
      } catch {
        groups = [];
      }
    }
    return { attrs, groups };
  }

  /** Every entry of a search, in order; the return value says how it ends. Throws UpstreamFailure. */
  async *entries(op: SearchOp, scope: SearchScope): AsyncGenerator<Entry, LdapResult> {
    let plan: ReturnType<DirectorySearch['plan']>;
    try {
      plan = this.plan(op, scope);
    } catch (err) {
      if (err instanceof DnSyntaxError) return { code: ResultCode.invalidDNSyntax, message: `invalid base DN: ${err.message}` };
      throw err;
    }
    const naming = this.o.naming;
    if (plan === 'noSuchObject') return { code: ResultCode.noSuchObject, message: 'no such entry in the virtual directory', matchedDN: naming.matchedDN };
    const sel: Selection = { ...selection(op.attributes), allow: scope.attributes };
    const filter = scope.attributes ? hideTerms(op.filter, (a) => mayRead(sel, a)) : op.filter;

    if (plan === 'rootDSE') {
      const dse: Entry = { dn: '', attributes: Object.entries(this.o.rootDSE).map(([type, values]) => ({ type, values })) };
      // the rootDSE lists its attributes only when asked for them by name or with '+' (RFC 4512 §5.1)
      if (matchesSynthetic(op.filter, dse)) yield select(dse, { ...sel, all: sel.all || sel.operational, allow: undefined });
      return { code: ResultCode.success };
    }

    for (const e of plan.synthetic) if (matchesSynthetic(filter, e)) yield select(e, sel);

    const kinds: Array<{ mapper: Mapper; source: KindSource; plan: KindPlan; classFilter: string; dn: (k: string, ad: AdEntry) => string; only?: string }> = [];
    if (plan.users) kinds.push({ mapper: this.o.users, source: this.o.usersSource, plan: plan.users, classFilter: this.o.userClass, dn: (key, ad) => naming.userDN({ key, dn: ad.dn }), only: scope.onlyUser });
    if (plan.groups) kinds.push({ mapper: this.o.groups, source: this.o.groupsSource, plan: plan.groups, classFilter: this.o.groupClass, dn: (key, ad) => naming.groupDN({ key, dn: ad.dn }) });
    const view = kinds.some((k) => k.mapper.selectionNeedsIndex(sel) || k.mapper.filterNeedsIndex(filter)) ? await this.view() : undefined;

    let total = 0;
    for (const k of kinds) {
      const scoped: FilterNode[] = [];
      if (k.plan.key !== undefined) scoped.push(eq(k.mapper.dnSource, k.plan.key));
      if (k.only !== undefined) scoped.push(eq(k.mapper.dnSource, k.only));
      const rewritten = simplify(and(k.mapper.rewrite(filter, view), ...scoped));
      const query = (f: FilterNode) => `(&${k.classFilter}${k.source.filter ?? ''}${f.type === 'true' ? '' : filterToString(f)})`;
      const at = k.plan.at ?? { base: k.source.base, scope: 'sub' as const };
      let found = 0;
      // one entry per virtual DN: two AD groups may share a cn (sAMAccountName, the users' key, is unique)
      const emitted = k.mapper === this.o.groups && naming.oneEntryPerDN ? new Set<string>() : undefined;
      if (rewritten.type !== 'false') {
        try {
          for await (const page of guarded(this.o.source.search({ base: at.base, scope: at.scope, filter: query(rewritten), attributes: k.mapper.sourceAttributes(sel) }))) {
            for (const ad of page) {
              const key = k.mapper.keyOf(ad);
              if (key === undefined) continue;
              const dn = k.dn(key, ad);
              if (emitted) {
                const lower = dn.toLowerCase();
                if (emitted.has(lower)) continue;
                emitted.add(lower);
              }
              found++;
              yield { dn, attributes: k.mapper.mapAttributes(ad, sel, view) };
            }
          }
        } catch (err) {
          // a base that does not exist in AD is noSuchObject, answered below
          if (!(naming.checkBaseUpstream && err instanceof UpstreamFailure && err.code === ResultCode.noSuchObject)) throw err;
        }
      }
      total += found;
      // a search based at one user or group that does not exist (or is not visible) is noSuchObject
      if (found === 0 && k.plan.key !== undefined && !(await this.exists({ base: k.source.base, scope: 'sub', filter: query(simplify(and(...scoped))), attributes: ['1.1'] }))) {
        return { code: ResultCode.noSuchObject, message: 'no such entry in the virtual directory', matchedDN: naming.matchedDN };
      }
    }
    if (naming.checkBaseUpstream && total === 0 && !(await this.exists({ base: op.base, scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] }))) {
      return { code: ResultCode.noSuchObject, message: 'no such entry', matchedDN: naming.matchedDN };
    }
    return { code: ResultCode.success };
  }

  /** Whether an AD query finds anything; a base that does not exist finds nothing. */
  private async exists(q: AdQuery): Promise<boolean> {
    try {
      for await (const page of guarded(this.o.source.search(q))) if (page.length > 0) return true;
    } catch (err) {
      if (err instanceof UpstreamFailure && err.code === ResultCode.noSuchObject) return false;
      throw err;
    }
    return false;
  }
}
