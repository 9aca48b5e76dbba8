// The attribute map: a declarative table (virtual attribute -> AD source + transform), interpreted by
// three small functions: which AD attributes to fetch, how to map an AD entry, how to rewrite a filter.
// In the spirit of slapo-rwm's `rwm-map attribute uid sAMAccountName`: data, not `if (name === 'uid')`.
import { and, FALSE, not, or, TRUE, type FilterNode } from './filter';
import { normalizeDN } from './dn';
import type { GroupRef, Index, UserRef } from './membership';
import { transforms, type TransformName } from './transforms';

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

/** A rule table with config overrides applied, name by name (case-insensitive); null removes a rule. */
export function withOverrides(table: RuleTable, overrides: Record<string, Rule | null> | undefined): RuleTable {
  if (!overrides) return table;
  const out: RuleTable = { ...table };
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
  /** a virtual (or AD) DN in a filter value -> the AD DN it stands for; undefined if unknown */
  adDN(value: string): string | undefined;
}

/** A rule table indexed by lower-case name; built once per profile, not per request. */
export class Mapper {
  private readonly byLower = new Map<string, CompiledRule>();
  /** the rules a selection wants, worked out once per search rather than once per entry */
  private readonly wantedBy = new WeakMap<Selection, CompiledRule[]>();
  readonly dnSource: string;

  constructor(
    readonly rules: RuleTable,
    readonly keyAttr: string, // virtual attribute that names the entry (uid / cn)
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

  /** Whether rewriting this filter needs the membership index (a membership term). */
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
        return r !== undefined && 'computed' in r && f.type !== 'present';
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
   * Rewrite a client filter into AD terms for this entry kind. Unknown attributes pass through as AD
   * names; membership terms become AD's in-chain matching rule on the resolved AD DN.
   */
  rewrite(f: FilterNode, m?: MembershipView): FilterNode {
    switch (f.type) {
      case 'and':
        return and(...f.children.map((c) => this.rewrite(c, m)));
      case 'or':
        return or(...f.children.map((c) => this.rewrite(c, m)));
      case 'not':
        return not(this.rewrite(f.child, m));
      case 'true':
      case 'false':
        return f;
      default:
        return this.rewriteTerm(f, m);
    }
  }

  /** One attribute term (an extensible match without an attribute passes as it is). */
  private rewriteTerm(f: Exclude<FilterNode, { type: 'and' | 'or' | 'not' | 'true' | 'false' }>, m?: MembershipView): FilterNode {
    const c = f.attr ? this.rule(f.attr) : undefined;
    if (!c) return f;
    const rename = (attr: string): FilterNode => ({ ...f, attr });
    const rule = c.rule;
    if ('const' in rule) {
      if (f.type === 'present') return TRUE;
      if (f.type !== 'equal') return FALSE;
      const v = f.value.toLowerCase();
      return [...rule.const, ...(rule.aliases ?? [])].some((x) => x.toLowerCase() === v) ? TRUE : FALSE;
    }
    if ('computed' in rule) {
      // users: memberOf holds group DNs; groups: member holds user (or, direct, group) DNs
      const adAttr = rule.computed === 'memberOf' ? 'memberOf' : 'member';
      if (f.type === 'present') return { type: 'present', attr: adAttr };
      if ((f.type !== 'equal' && f.type !== 'ext') || !m) return FALSE;
      const dn = m.adDN(f.value);
      if (dn === undefined) return FALSE;
      return m.flatten ? { type: 'ext', attr: adAttr, rule: '1.2.840.113556.1.4.1941', value: dn, dnAttributes: false } : { type: 'equal', attr: adAttr, value: dn };
    }
    const [first, ...rest] = rule.from as [string, ...string[]];
    if (rest.length === 0) return rename(first);
    // fallback chain a, b, c: (a matches) | (!a & b matches) | (!a & !b & c matches)
    const alts: FilterNode[] = [];
    const absent: FilterNode[] = [];
    for (const src of rule.from) {
      alts.push(absent.length ? and(...absent, rename(src)) : rename(src));
      absent.push(not({ type: 'present', attr: src }));
    }
    return or(...alts);
  }
}

function computed(kind: 'memberOf' | 'members', adDn: string, m: MembershipView): string[] {
  let norm: string;
  try {
    norm = normalizeDN(adDn);
  } catch {
    return [];
  }
  if (kind === 'memberOf') {
    const out: string[] = [];
    for (const g of m.index.userGroups.get(norm) ?? []) {
      const ref = m.index.groups.get(g);
      if (ref) out.push(m.groupDN(ref));
    }
    return out.sort(); // byte-stable across calls
  }
  const mem = m.index.members.get(norm);
  if (!mem) return [];
  return [...mem.users.map((r) => m.userDN(r)), ...mem.groups.map((r) => m.groupDN(r))];
}
