// The attribute map: a declarative table (virtual attribute -> AD source + transform), interpreted by
// three small functions: which AD attributes to fetch, how to map an AD entry, how to rewrite a filter.
// In the spirit of slapo-rwm's `rwm-map attribute uid sAMAccountName`: data, not `if (name === 'uid')`.
//
// Filters on virtual attributes follow one rule: a filter term on a virtual attribute matches exactly the
// entries whose returned attribute satisfies it. Filters are still evaluated by AD; the rewrite only picks
// AD terms that select the same entries:
//  - renamed attributes and fallback chains (mail from mail, else userPrincipalName) become the same test
//    on the source that supplies the value: (a=x) | (!(a=*) & (b=x));
//  - computed membership (users' memberOf, groups' uniqueMember/member) is evaluated against the
//    membership index, which is where the returned values come from, and becomes exact AD terms: for
//    groups, the DN-equality terms of the groups whose member values satisfy the term; for users, AD's
//    in-chain membership of each group whose virtual DN satisfies it (or, without in-chain, the DNs of
//    those groups' users). Presence, equality (of the DN, normalized; the value may also be the AD DN),
//    substring (on the DNs as returned, case-insensitive) and their negations are all exact;
//  - transformed values are converted back into AD's representation where that is exact (entryUUID,
//    objectSid and accountDisabled equality; pwdChangedTime equality and ordering; presence of each);
//  - a test the attribute cannot answer (an ordering test on a DN, a substring of a GUID, a malformed
//    GUID, SID, time or boolean) is Undefined (RFC 4511 §4.5.1.7): it matches nothing, and neither does
//    its negation. A DN that names no visible entry is simply unequal to every returned value.
import { and, eq, eqBytes, FALSE, not, or, TRUE, type FilterNode } from './filter';
import { normalizeDN } from './dn';
import type { GroupRef, Index, UserRef } from './membership';
import { FILETIME_MAX, FILETIME_MIN, filetimeOfSecond, generalizedToMs, guidToBytes, sidToBytes, sidToString, transforms, type TransformName } from './transforms';

import type { AdValue } from './transforms';

export type { AdValue } from './transforms';
/** An entry as AD returned it; attribute keys lower-cased (AD attribute names are case-insensitive). */
export interface AdEntry {
  dn: string;
  attrs: Map<string, AdValue[]>;
}

export type Rule =
  /** values from the first source attribute that has any (a fallback chain), optionally transformed */
  | { from: string[]; transform?: TransformName; operational?: boolean }
  /** fixed values; `aliases` are further values a filter may test for (AD's own class names) */
  | { const: string[]; aliases?: string[] }
  /** group membership from the membership index, as virtual DNs: a user's groups, or a group's members */
  | { computed: 'memberOf' | 'members' };

export type RuleTable = Record<string, Rule>;

export interface Profile {
  users: RuleTable;
  groups: RuleTable;
}

export interface ProfileOptions {
  /** the object class groups are presented as; its member attribute follows (uniqueMember / member) */
  groupClass: 'groupOfUniqueNames' | 'groupOfNames';
}

export const memberAttributeOf = (groupClass: ProfileOptions['groupClass']) => (groupClass === 'groupOfNames' ? 'member' : 'uniqueMember');

/** The profile Defguard needs (reference/defguard-ldap.md §2.2): exact-case sn/givenName/mail/mobile. */
export function defguardProfile(o: ProfileOptions): Profile {
  return {
    users: {
      objectClass: { const: ['top', 'person', 'organizationalPerson', 'inetOrgPerson'], aliases: ['user'] },
      uid: { from: ['sAMAccountName'] },
      cn: { from: ['cn'] },
      sn: { from: ['sn'] },
      givenName: { from: ['givenName'] },
      displayName: { from: ['displayName'] },
      // Defguard rejects users without mail; AD often leaves it empty and only has the UPN (defguard#3070)
      mail: { from: ['mail', 'userPrincipalName'] },
      mobile: { from: ['mobile', 'telephoneNumber'] },
      telephoneNumber: { from: ['telephoneNumber'] },
      userPrincipalName: { from: ['userPrincipalName'] },
      memberOf: { computed: 'memberOf' },
      entryUUID: { from: ['objectGUID'], transform: 'guid', operational: true },
      objectSid: { from: ['objectSid'], transform: 'sid', operational: true },
      pwdChangedTime: { from: ['pwdLastSet'], transform: 'filetime', operational: true },
      accountDisabled: { from: ['userAccountControl'], transform: 'disabled', operational: true },
      // Defguard 2.0.2+ reads it with '*' to sync disabled status (reference/defguard-ldap.md §8)
      userAccountControl: { from: ['userAccountControl'] },
    },
    groups: {
      objectClass: { const: ['top', o.groupClass], aliases: ['group', 'groupOfNames', 'groupOfUniqueNames'] },
      cn: { from: ['cn'] },
      description: { from: ['description'] },
      mail: { from: ['mail'] },
      [memberAttributeOf(o.groupClass)]: { computed: 'members' },
      entryUUID: { from: ['objectGUID'], transform: 'guid', operational: true },
    },
  };
}

/** The DN attribute a table's computed rules carry (the flavor's), if any. */
/** A rule table with config overrides applied, name by name (case-insensitive); null removes a rule. */
export function withOverrides(table: RuleTable, overrides: Record<string, Rule | null> | undefined): RuleTable {
  if (!overrides) return table;
  const out: RuleTable = { ...table };
  // a computed rule from config keeps the flavor's DN attribute, which the profile's computed rules carry
  for (const [name, rule] of Object.entries(overrides)) {
    for (const k of Object.keys(out)) if (k.toLowerCase() === name.toLowerCase()) delete out[k];
    if (rule) out[name] = rule;
  }
  return out;
}

/** What the client asked for (RFC 4511 §4.5.1.8): names in the client's case, `*`, `+`, `1.1`. */
export interface Selection {
  all: boolean; // '*' or empty list
  operational: boolean; // '+'
  names: Map<string, string>; // lower-case -> as the client wrote it
  /** lower-case names the identity may read at all (objectClass always); undefined = no restriction */
  allow?: ReadonlySet<string>;
}

export function mayRead(sel: Selection, lower: string): boolean {
  return !sel.allow || lower === 'objectclass' || sel.allow.has(lower);
}

export function selection(requested: string[]): Selection {
  const names = new Map<string, string>();
  let all = requested.length === 0;
  let operational = false;
  for (const a of requested) {
    if (a === '*') all = true;
    else if (a === '+') operational = true;
    else if (a !== '1.1' && !names.has(a.toLowerCase())) names.set(a.toLowerCase(), a);
  }
  if (requested.length === 1 && requested[0] === '1.1') all = false;
  return { all, operational, names };
}

interface CompiledRule {
  name: string; // configured case
  lower: string;
  rule: Rule;
}

/** What computed attributes and DN-valued filter terms need: the membership index and the tree's DNs. */
export interface MembershipView {
  index: Index;
  flatten: boolean;
  /** how a member or group is named to clients: its virtual DN, or (transparent mode) its AD DN */
  userDN(ref: UserRef): string;
  groupDN(ref: GroupRef): string;
  /** a user's groups (an index set of group keys) as sorted client-facing DNs (sortedGroupDNs, may be kept) */
  groupDNsOf(groups: ReadonlySet<string>): string[];
  /** a virtual (or AD) DN in a filter value -> the AD DN it stands for; undefined if unknown */
  adDN(value: string): string | undefined;
}

/** A rule table indexed by lower-case name; built once per profile, not per request. */
export class Mapper {
  private readonly byLower = new Map<string, CompiledRule>();
  /** the rules a selection wants, worked out once per search rather than once per entry */
  private readonly wantedBy = new WeakMap<Selection, CompiledRule[]>();
  readonly dnSource: string;
  /** the upstream attribute holding an entry's own DN, for computed rules that do not name theirs */

  constructor(
    readonly rules: RuleTable,
    readonly keyAttr: string, // virtual attribute that names the entry (uid / cn)
    /** the upstream attribute holding an entry's own DN (Flavor.dnAttr), by which exact membership filters name entries */
    readonly dnAttr: string,
  ) {
    for (const [name, rule] of Object.entries(rules)) this.byLower.set(name.toLowerCase(), { name, lower: name.toLowerCase(), rule });
    const key = rules[keyAttr];
    if (!key || !('from' in key)) throw new Error(`mapping: ${keyAttr} must map from an AD attribute`);
    this.dnSource = key.from[0] as string;
  }

  rule(name: string): CompiledRule | undefined {
    return this.byLower.get(name.toLowerCase());
  }

  private wanted(sel: Selection): CompiledRule[] {
    let out = this.wantedBy.get(sel);
    if (out) return out;
    out = [];
    for (const c of this.byLower.values()) {
      if (!mayRead(sel, c.lower)) continue;
      const operational = 'from' in c.rule && c.rule.operational === true;
      if (sel.names.has(c.lower) || (sel.all && !operational) || (sel.operational && operational)) out.push(c);
    }
    this.wantedBy.set(sel, out);
    return out;
  }

  /** AD attributes to request upstream for this selection (always the naming attribute). */
  sourceAttributes(sel: Selection): string[] {
    const set = new Set<string>([this.dnSource]);
    for (const c of this.wanted(sel)) if ('from' in c.rule) for (const a of c.rule.from) set.add(a);
    return [...set];
  }

  /** Whether mapping this selection needs the membership index. */
  selectionNeedsIndex(sel: Selection): boolean {
    return this.wanted(sel).some((c) => 'computed' in c.rule);
  }

  /** Whether rewriting this filter needs the membership index (any term on a computed attribute). */
  filterNeedsIndex(f: FilterNode): boolean {
    switch (f.type) {
      case 'and':
      case 'or':
        return f.children.some((c) => this.filterNeedsIndex(c));
      case 'not':
        return this.filterNeedsIndex(f.child);
      case 'true':
      case 'false':
        return false;
      default: {
        const r = f.attr === undefined ? undefined : this.rule(f.attr)?.rule;
        return r !== undefined && 'computed' in r;
      }
    }
  }

  /** The naming value of an AD entry, or undefined when it lacks one (such entries are skipped). */
  keyOf(ad: AdEntry): string | undefined {
    const v = ad.attrs.get(this.dnSource.toLowerCase())?.[0];
    if (v === undefined) return undefined;
    return typeof v === 'string' ? v : v.toString('utf8');
  }

  /** Map one AD entry's attributes; names in the case the client asked for, else the configured case. */
  mapAttributes(ad: AdEntry, sel: Selection, m?: MembershipView): Array<{ type: string; values: string[] }> {
    const out: Array<{ type: string; values: string[] }> = [];
    for (const c of this.wanted(sel)) {
      const type = sel.names.get(c.lower) ?? c.name;
      let values: string[] = [];
      if ('const' in c.rule) values = c.rule.const;
      else if ('computed' in c.rule) values = m ? computed(c.rule.computed, ad.dn, m) : [];
      else {
        for (const src of c.rule.from) {
          const raw = ad.attrs.get(src.toLowerCase());
          if (raw && raw.length > 0) {
            values = transforms[c.rule.transform ?? 'text'](raw);
            break;
          }
        }
      }
      if (values.length > 0) out.push({ type, values });
    }
    return out;
  }

  /** How each mapped attribute came about, for `ldap-gateway map` (same rules as mapAttributes). */
  explain(ad: AdEntry, sel: Selection, m?: MembershipView): Array<{ type: string; values: string[]; rule: string }> {
    const mapped = new Map(this.mapAttributes(ad, sel, m).map((a) => [a.type.toLowerCase(), a.values]));
    const out: Array<{ type: string; values: string[]; rule: string }> = [];
    for (const c of this.wanted(sel)) {
      const values = mapped.get(c.lower) ?? [];
      let rule: string;
      if ('const' in c.rule) rule = 'fixed value';
      else if ('computed' in c.rule) rule = c.rule.computed === 'memberOf' ? `computed: the user's groups from the membership index${m?.flatten ? ', nested groups flattened' : ''}` : `computed: the group's members from the membership index`;
      else {
        const used = c.rule.from.find((src) => (ad.attrs.get(src.toLowerCase())?.length ?? 0) > 0);
        const chain = c.rule.from.length > 1 ? ` (first of ${c.rule.from.join(', ')})` : '';
        const how = c.rule.transform && c.rule.transform !== 'text' ? ` via ${c.rule.transform}` : '';
        rule = used ? `from ${used}${how}${chain}` : `no value: ${c.rule.from.join(', ')} empty in AD`;
      }
      out.push({ type: sel.names.get(c.lower) ?? c.name, values, rule });
    }
    return out;
  }

  /**
   * Rewrite a client filter into AD terms for this entry kind, by the rule at the top of this file.
   * Unknown attributes pass through as AD names. An Undefined term stays Undefined through negation,
   * so negations are pushed below and/or (De Morgan) only where such a term sits under them.
   */
  rewrite(f: FilterNode, m?: MembershipView): FilterNode {
    return this.rewriteBoth(f, m).yes;
  }

  /** The AD filters for "f is TRUE" and "f is FALSE" (equal to not(yes) unless f holds an Undefined term). */
  private rewriteBoth(f: FilterNode, m?: MembershipView): { yes: FilterNode; no: FilterNode; exact: boolean } {
    switch (f.type) {
      case 'and':
      case 'or': {
        const kids = f.children.map((c) => this.rewriteBoth(c, m));
        const [join, dual] = f.type === 'and' ? [and, or] : [or, and];
        const yes = join(...kids.map((k) => k.yes));
        const exact = kids.every((k) => k.exact);
        return { yes, no: exact ? not(yes) : dual(...kids.map((k) => k.no)), exact };
      }
      case 'not': {
        const c = this.rewriteBoth(f.child, m);
        return { yes: c.no, no: c.yes, exact: c.exact };
      }
      case 'true':
        return { yes: TRUE, no: FALSE, exact: true };
      case 'false':
        return { yes: FALSE, no: TRUE, exact: true };
      default: {
        const t = this.rewriteTerm(f, m);
        return t === UNDEFINED ? { yes: FALSE, no: FALSE, exact: false } : { yes: t, no: not(t), exact: true };
      }
    }
  }

  /** One attribute term (an extensible match without an attribute passes as it is). */
  private rewriteTerm(f: Term, m?: MembershipView): FilterNode | typeof UNDEFINED {
    const c = f.attr ? this.rule(f.attr) : undefined;
    if (!c) return f;
    const rule = c.rule;
    if ('const' in rule) {
      if (f.type === 'present') return TRUE;
      if (f.type !== 'equal') return FALSE;
      const v = f.value.toLowerCase();
      return [...rule.const, ...(rule.aliases ?? [])].some((x) => x.toLowerCase() === v) ? TRUE : FALSE;
    }
    if ('computed' in rule) return m ? membershipTerm(rule.computed, this.dnAttr, f, m) : UNDEFINED;
    // a fallback chain a, b, c: (a matches) | (!a & b matches) | (!a & !b & c matches)
    const alts: FilterNode[] = [];
    const absent: FilterNode[] = [];
    for (const src of rule.from) {
      const t = sourceTerm(rule.transform ?? 'text', src, f);
      if (t === UNDEFINED) return UNDEFINED;
      alts.push(absent.length ? and(...absent, t) : t);
      absent.push(not({ type: 'present', attr: src }));
    }
    return alts.length === 1 ? (alts[0] as FilterNode) : or(...alts);
  }
}

/** A filter term: one attribute test. */
type Term = Exclude<FilterNode, { type: 'and' | 'or' | 'not' | 'true' | 'false' }>;

/** A term that is Undefined (RFC 4511 §4.5.1.7): it matches nothing, and neither does its negation. */
const UNDEFINED = Symbol('undefined');

/** Matching rules that mean plain equality on a DN-valued attribute (and AD's in-chain, for memberOf). */
const DN_EQUALITY_RULES = new Set(['2.5.13.1', 'distinguishednamematch', '2.5.13.23', 'uniquemembermatch', '1.2.840.113556.1.4.1941']);
const BIT_AND = '1.2.840.113556.1.4.803';

/** The assertion value of an equality test (approx counts as equality; so does an extensible match without a rule). */
function equalityValue(f: Term, rules?: ReadonlySet<string>): string | undefined {
  if (f.type === 'equal' || f.type === 'approx') return f.value;
  if (f.type === 'ext' && !f.dnAttributes && (f.rule === undefined || rules?.has(f.rule.toLowerCase()))) return f.value;
  return undefined;
}

/** RFC 4511 substring semantics, case-insensitive: initial, then each `any` in order, then final. */
function substringMatches(f: Extract<Term, { type: 'substring' }>, value: string): boolean {
  const v = value.toLowerCase();
  let pos = 0;
  if (f.initial) {
    if (!v.startsWith(f.initial.toLowerCase())) return false;
    pos = f.initial.length;
  }
  for (const a of f.any) {
    const i = v.indexOf(a.toLowerCase(), pos);
    if (i < 0) return false;
    pos = i + a.length;
  }
  return !f.final || (v.length - f.final.length >= pos && v.endsWith(f.final.toLowerCase()));
}

const anyOf = (terms: FilterNode[]): FilterNode => (terms.length === 0 ? FALSE : terms.length === 1 ? (terms[0] as FilterNode) : or(...terms));

function safeNorm(dn: string): string | undefined {
  try {
    return normalizeDN(dn);
  } catch {
    return undefined;
  }
}

/**
 * A term on a computed membership attribute, evaluated against the index (where the returned values come
 * from) and rewritten into exact AD terms. Groups: the DN-equality terms of the visible groups whose member
 * values satisfy the term. Users: the membership of each visible group whose virtual DN satisfies it.
 */
function membershipTerm(kind: 'memberOf' | 'members', dnAttr: string, f: Term, m: MembershipView): FilterNode | typeof UNDEFINED {
  const idx = m.index;
  // which entries (a user or group, by normalized AD DN) or which value strings satisfy the term
  let test: { kind: 'present' } | { kind: 'dn'; norm: string | undefined } | { kind: 'substring'; f: Extract<Term, { type: 'substring' }> };
  const value = equalityValue(f, DN_EQUALITY_RULES);
  if (f.type === 'present') test = { kind: 'present' };
  else if (f.type === 'substring') test = { kind: 'substring', f };
  else if (value !== undefined) {
    const ad = m.adDN(value);
    test = { kind: 'dn', norm: ad === undefined ? undefined : safeNorm(ad) };
  } else return UNDEFINED; // ordering, or a matching rule DNs do not have

  if (kind === 'members') {
    const hits: GroupRef[] = [];
    if (test.kind === 'dn') {
      const norm = test.norm;
      if (norm === undefined) return FALSE; // names no visible user or group: no member list holds it
      const asUser = idx.userGroups.get(norm);
      const asGroup = idx.groups.get(norm);
      for (const [n, g] of idx.groups) if (asUser?.has(n) || (asGroup && idx.members.get(n)?.groups.includes(asGroup))) hits.push(g);
    } else {
      for (const [n, g] of idx.groups) {
        const values = memberValues(n, m);
        if (test.kind === 'present' ? values.length > 0 : values.some((v) => substringMatches(test.f, v))) hits.push(g);
      }
    }
    return anyOf(hits.map((g) => eq(dnAttr, g.dn)));
  }

  // users: the groups whose virtual DN satisfies the term, and that have users in the index
  const groups: Array<[string, GroupRef]> = [];
  const withUsers = (n: string) => (idx.members.get(n)?.users.length ?? 0) > 0;
  if (test.kind === 'dn') {
    const g = test.norm === undefined ? undefined : idx.groups.get(test.norm);
    if (g && test.norm !== undefined && withUsers(test.norm)) groups.push([test.norm, g]);
  } else {
    for (const [n, g] of idx.groups) if (withUsers(n) && (test.kind === 'present' || substringMatches(test.f, m.groupDN(g)))) groups.push([n, g]);
  }
  // AD (flattened): equality on the direct memberOf of each such group and of the groups nested in it
  // that have users (Index.within), what AD's in-chain rule means, at the cost of an indexed look-up;
  // otherwise (OpenLDAP, whose memberOf is direct while the index may be flattened locally) the users
  // themselves are named
  if (m.flatten) {
    const dns = new Set<string>();
    for (const [n] of groups) for (const dn of idx.within.get(n) ?? []) dns.add(dn);
    return anyOf([...dns].map((dn) => eq('memberOf', dn)));
  }
  const users = new Map<string, UserRef>();
  for (const [n] of groups) for (const u of idx.members.get(n)?.users ?? []) users.set(u.dn, u);
  return anyOf([...users.values()].map((u) => eq(dnAttr, u.dn)));
}

/**
 * A term on one source attribute of a `from` rule, in AD's representation: the same test renamed (text),
 * or the transform's value converted back. UNDEFINED where no exact AD test exists.
 */
function sourceTerm(transform: TransformName, src: string, f: Term): FilterNode | typeof UNDEFINED {
  if (transform === 'text') return { ...f, attr: src };
  const present: FilterNode = { type: 'present', attr: src };
  const value = equalityValue(f);
  switch (transform) {
    case 'guid': {
      // entryUUID: objectGUID's bytes. The text form is Samba's alternative spelling of the same value
      // (Windows AD compares the bytes only; a 36-byte value never equals a 16-byte GUID there).
      if (f.type === 'present') return present;
      if (value === undefined) return UNDEFINED; // no ordering or substrings of a GUID
      const bytes = guidToBytes(value);
      if (!bytes) return UNDEFINED;
      return or(eqBytes(src, bytes), eq(src, value.toLowerCase()));
    }
    case 'sid': {
      // objectSid: AD and Samba accept the S-1-… string form in filters (String(SID) syntax)
      if (f.type === 'present') return present;
      if (value === undefined) return UNDEFINED;
      const bytes = sidToBytes(value);
      const canonical = bytes && sidToString(bytes);
      return canonical ? eq(src, canonical) : UNDEFINED;
    }
    case 'disabled': {
      // accountDisabled: TRUE/FALSE from userAccountControl's ACCOUNTDISABLE bit (0x2)
      if (f.type === 'present') return present;
      if (value === undefined) return UNDEFINED;
      const bit: FilterNode = { type: 'ext', attr: src, rule: BIT_AND, value: '2', dnAttributes: false };
      if (value.toUpperCase() === 'TRUE') return bit;
      if (value.toUpperCase() === 'FALSE') return and(present, not(bit));
      return UNDEFINED;
    }
    case 'filetime':
      return filetimeTerm(src, f, value);
  }
}

/**
 * pwdChangedTime: GeneralizedTime to the second, from a FILETIME (100 ns ticks since 1601) in
 * FILETIME_MIN..FILETIME_MAX (0 and "never" have no time). A returned second stands for the ticks of
 * that whole second, so equality and ordering become ranges of ticks.
 */
function filetimeTerm(src: string, f: Term, value: string | undefined): FilterNode | typeof UNDEFINED {
  const range = (lo: bigint, hi: bigint): FilterNode => {
    const from = lo > FILETIME_MIN ? lo : FILETIME_MIN;
    const to = hi < FILETIME_MAX ? hi : FILETIME_MAX;
    return from > to ? FALSE : and({ type: 'ge', attr: src, value: from.toString() }, { type: 'le', attr: src, value: to.toString() });
  };
  if (f.type === 'present') return range(FILETIME_MIN, FILETIME_MAX);
  const text = value ?? (f.type === 'ge' || f.type === 'le' ? f.value : undefined);
  const ms = text === undefined ? undefined : generalizedToMs(text);
  if (ms === undefined) return UNDEFINED; // substrings, other rules, a malformed time
  const seconds = ms / 1000;
  if (value !== undefined) {
    if (!Number.isInteger(seconds)) return FALSE; // returned values have whole seconds
    const s = BigInt(seconds);
    return range(filetimeOfSecond(s), filetimeOfSecond(s + 1n) - 1n);
  }
  // returned >= v  <=>  returned second >= ceil(v);  returned <= v  <=>  returned second <= floor(v)
  if (f.type === 'ge') return range(filetimeOfSecond(BigInt(Math.ceil(seconds))), FILETIME_MAX);
  return range(FILETIME_MIN, filetimeOfSecond(BigInt(Math.floor(seconds)) + 1n) - 1n);
}

/** A group's member values as returned: its users' DNs, then (direct mode) its subgroups'. */
function memberValues(norm: string, m: MembershipView): string[] {
  const mem = m.index.members.get(norm);
  if (!mem) return [];
  return [...mem.users.map((r) => m.userDN(r)), ...mem.groups.map((r) => m.groupDN(r))];
}

function computed(kind: 'memberOf' | 'members', adDn: string, m: MembershipView): string[] {
  let norm = m.index.normalized.get(adDn);
  if (norm === undefined) {
    try {
      norm = normalizeDN(adDn);
    } catch {
      return [];
    }
  }
  if (kind === 'memberOf') {
    const groups = m.index.userGroups.get(norm);
    return groups ? m.groupDNsOf(groups) : [];
  }
  return memberValues(norm, m);
}

/** Group keys -> their client-facing DNs, sorted (byte-stable across calls). */
export function sortedGroupDNs(groups: ReadonlySet<string>, m: Pick<MembershipView, 'index' | 'groupDN'>): string[] {
  const out: string[] = [];
  for (const g of groups) {
    const ref = m.index.groups.get(g);
    if (ref) out.push(m.groupDN(ref));
  }
  return out.sort();
}
