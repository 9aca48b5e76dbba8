// A client search against the virtual tree: plan it (which virtual entries, which AD queries), stream AD's
// pages through the mapper, and end honestly. Filters are rewritten into AD terms and evaluated by AD; the
// only local matching is over the few synthetic entries we own (root, containers, rootDSE).
import { DnSyntaxError } from './dn';
import { and, eq, filterToString, hideTerms, simplify, type FilterNode } from './filter';
import { mayRead, selection, type AdEntry, type Mapper, type Selection } from './mapping';
import type { VirtualTree } from './tree';
import { ResultCode, type Entry, type SearchOp, type SearchOutcome, type SearchSink } from '../server/types';

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
  tree: VirtualTree;
  userClass: string; // filter fragments selecting user and group entries upstream
  groupClass: string;
  users: Mapper;
  groups: Mapper;
  usersSource: KindSource;
  groupsSource: KindSource;
  source: EntrySource;
  rootDSE: Record<string, string[]>;
}

interface Plan {
  synthetic: Entry[];
  users?: { key?: string };
  groups?: { key?: string };
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

export class DirectorySearch {
  private readonly root: Entry;
  private readonly usersContainer: Entry;
  private readonly groupsContainer: Entry;

  constructor(private readonly o: DirectoryOptions) {
    const rdnValue = (dn: string) => dn.slice(dn.indexOf('=') + 1, dn.indexOf(','));
    this.root = { dn: o.tree.baseDN, attributes: [{ type: 'objectClass', values: ['top', 'domain'] }] };
    this.usersContainer = { dn: o.tree.usersDN, attributes: [{ type: 'objectClass', values: ['top', 'organizationalUnit'] }, { type: 'ou', values: [rdnValue(o.tree.usersDN)] }] };
    this.groupsContainer = { dn: o.tree.groupsDN, attributes: [{ type: 'objectClass', values: ['top', 'organizationalUnit'] }, { type: 'ou', values: [rdnValue(o.tree.groupsDN)] }] };
  }

  private plan(op: SearchOp, scope: SearchScope): Plan | 'noSuchObject' | 'rootDSE' {
    if (op.base.trim() === '') return op.scope === 'base' ? 'rootDSE' : 'noSuchObject';
    const plan = this.planTree(op);
    if (typeof plan === 'string' || !scope.subtrees) return plan;
    // a subtree the identity may not see does not exist for it
    const users = scope.subtrees.includes('users');
    const groups = scope.subtrees.includes('groups');
    const hidden = (e: Entry) => (!users && e === this.usersContainer) || (!groups && e === this.groupsContainer);
    const loc = this.o.tree.locate(op.base);
    if ((!users && (loc.kind === 'users' || loc.kind === 'user')) || (!groups && (loc.kind === 'groups' || loc.kind === 'group'))) return 'noSuchObject';
    return { synthetic: plan.synthetic.filter((e) => !hidden(e)), ...(users && plan.users ? { users: plan.users } : {}), ...(groups && plan.groups ? { groups: plan.groups } : {}) };
  }

  private planTree(op: SearchOp): Plan | 'noSuchObject' {
    const loc = this.o.tree.locate(op.base);
    const below = op.scope !== 'base';
    const sub = op.scope === 'sub';
    switch (loc.kind) {
      case 'root':
        if (op.scope === 'base') return { synthetic: [this.root] };
        return { synthetic: sub ? [this.root, this.usersContainer, this.groupsContainer] : [this.usersContainer, this.groupsContainer], ...(sub ? { users: {}, groups: {} } : {}) };
      case 'users':
        return { synthetic: op.scope === 'one' ? [] : [this.usersContainer], ...(below ? { users: {} } : {}) };
      case 'groups':
        return { synthetic: op.scope === 'one' ? [] : [this.groupsContainer], ...(below ? { groups: {} } : {}) };
      case 'user':
        return op.scope === 'one' ? { synthetic: [] } : { synthetic: [], users: { key: loc.key } };
      case 'group':
        return op.scope === 'one' ? { synthetic: [] } : { synthetic: [], groups: { key: loc.key } };
      default:
        return 'noSuchObject';
    }
  }

  async search(op: SearchOp, scope: SearchScope, sink: SearchSink): Promise<SearchOutcome> {
    let plan: ReturnType<DirectorySearch['plan']>;
    try {
      plan = this.plan(op, scope);
    } catch (err) {
      if (err instanceof DnSyntaxError) return { code: ResultCode.invalidDNSyntax, message: `invalid base DN: ${err.message}` };
      throw err;
    }
    if (plan === 'noSuchObject') return { code: ResultCode.noSuchObject, message: 'no such entry in the virtual directory', matchedDN: this.o.tree.baseDN };
    const sel: Selection = { ...selection(op.attributes), allow: scope.attributes };
    const filter = scope.attributes ? hideTerms(op.filter, (a) => mayRead(sel, a)) : op.filter;
    const done = (code: number, message?: string): SearchOutcome => ({ code, message, ...(op.paged ? { paged: { size: 0, cookie: Buffer.alloc(0) } } : {}) });

    if (plan === 'rootDSE') {
      const dse: Entry = { dn: '', attributes: Object.entries(this.o.rootDSE).map(([type, values]) => ({ type, values })) };
      // the rootDSE lists its attributes only when asked for them by name or with '+' (RFC 4512 §5.1)
      const rootSel: Selection = { ...sel, all: sel.all || sel.operational };
      if (matchesSynthetic(op.filter, dse)) await sink.entry(select(dse, { ...rootSel, allow: undefined }));
      return done(ResultCode.success);
    }

    let sent = 0;
    const deadline = op.timeLimit > 0 ? Date.now() + op.timeLimit * 1000 : Infinity;
    const emit = async (e: Entry): Promise<number | undefined> => {
      if (op.sizeLimit > 0 && sent >= op.sizeLimit) return ResultCode.sizeLimitExceeded;
      if (Date.now() > deadline) return ResultCode.timeLimitExceeded;
      await sink.entry(e);
      sent++;
      return undefined;
    };

    for (const e of plan.synthetic) {
      if (!matchesSynthetic(filter, e)) continue;
      const stop = await emit(select(e, sel));
      if (stop) return done(stop);
    }

    const kinds: Array<{ mapper: Mapper; source: KindSource; key?: string; classFilter: string; keyAttr: string; dn: (k: string) => string; only?: string }> = [];
    if (plan.users) kinds.push({ mapper: this.o.users, source: this.o.usersSource, key: plan.users.key, classFilter: this.o.userClass, keyAttr: this.o.users.dnSource, dn: (k) => this.o.tree.userDN(k), only: scope.onlyUser });
    if (plan.groups) kinds.push({ mapper: this.o.groups, source: this.o.groupsSource, key: plan.groups.key, classFilter: this.o.groupClass, keyAttr: this.o.groups.dnSource, dn: (k) => this.o.tree.groupDN(k) });

    for (const k of kinds) {
      const scoped: FilterNode[] = [];
      if (k.key !== undefined) scoped.push(eq(k.keyAttr, k.key));
      if (k.only !== undefined) scoped.push(eq(k.keyAttr, k.only));
      const rewritten = simplify(and(k.mapper.rewrite(filter), ...scoped));
      const query = (f: FilterNode) => `(&${k.classFilter}${k.source.filter ?? ''}${f.type === 'true' ? '' : filterToString(f)})`;
      try {
        let found = 0;
        if (rewritten.type !== 'false') {
          for await (const page of this.o.source.search({ base: k.source.base, scope: 'sub', filter: query(rewritten), attributes: k.mapper.sourceAttributes(sel) })) {
            for (const ad of page) {
              const key = k.mapper.keyOf(ad);
              if (key === undefined) continue;
              found++;
              const stop = await emit({ dn: k.dn(key), attributes: k.mapper.mapAttributes(ad, sel) });
              if (stop) return done(stop);
            }
          }
        }
        // a search based at one user or group that does not exist (or is not visible) is noSuchObject
        if (found === 0 && k.key !== undefined && !(await this.exists(k, query(simplify(and(...scoped)))))) {
          return { code: ResultCode.noSuchObject, message: 'no such entry in the virtual directory', matchedDN: this.o.tree.baseDN };
        }
      } catch (err) {
        if (sink.signal.aborted) throw err;
        const reason = err instanceof Error ? err.message : String(err);
        // entries already went out: a SearchResultDone now would pass partial data off as complete
        if (sent > 0) return { drop: true, reason };
        return { code: ResultCode.unavailable, message: 'the directory behind the gateway did not answer' };
      }
    }
    return done(ResultCode.success);
  }

  private async exists(k: { source: KindSource }, filter: string): Promise<boolean> {
    for await (const page of this.o.source.search({ base: k.source.base, scope: 'sub', filter, attributes: ['1.1'] })) if (page.length > 0) return true;
    return false;
  }
}
