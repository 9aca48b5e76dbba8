// The attribute map: a declarative table (virtual attribute -> AD source + transform), interpreted by
// three small functions: which AD attributes to fetch, how to map an AD entry, how to rewrite a filter.
// In the spirit of slapo-rwm's `rwm-map attribute uid sAMAccountName`: data, not `if (name === 'uid')`.
import { and, FALSE, not, or, TRUE, type FilterNode } from './filter';
import { transforms, type MapContext, type TransformName } from './transforms';

export type { MapContext } from './transforms';

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
  | { const: string[]; aliases?: string[] };

export type RuleTable = Record<string, Rule>;

export interface Profile {
  users: RuleTable;
  groups: RuleTable;
}

/** The profile Defguard needs (reference/defguard-ldap.md §2.2): exact-case sn/givenName/mail/mobile. */
export const defguardProfile: Profile = {
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
    memberOf: { from: ['memberOf'], transform: 'groupDn' },
    entryUUID: { from: ['objectGUID'], transform: 'guid', operational: true },
    objectSid: { from: ['objectSid'], transform: 'sid', operational: true },
    pwdChangedTime: { from: ['pwdLastSet'], transform: 'filetime', operational: true },
    accountDisabled: { from: ['userAccountControl'], transform: 'disabled', operational: true },
  },
  groups: {
    objectClass: { const: ['top', 'groupOfUniqueNames'], aliases: ['group', 'groupOfNames'] },
    cn: { from: ['cn'] },
    description: { from: ['description'] },
    mail: { from: ['mail'] },
    entryUUID: { from: ['objectGUID'], transform: 'guid', operational: true },
  },
};

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
  rule: Rule;
}

/** A rule table indexed by lower-case name; built once per profile, not per request. */
export class Mapper {
  private readonly byLower = new Map<string, CompiledRule>();
  readonly dnSource: string;

  constructor(
    readonly rules: RuleTable,
    readonly keyAttr: string, // virtual attribute that names the entry (uid / cn)
    readonly ctx: MapContext,
  ) {
    for (const [name, rule] of Object.entries(rules)) this.byLower.set(name.toLowerCase(), { name, rule });
    const key = rules[keyAttr];
    if (!key || !('from' in key)) throw new Error(`mapping: ${keyAttr} must map from an AD attribute`);
    this.dnSource = key.from[0] as string;
  }

  rule(name: string): CompiledRule | undefined {
    return this.byLower.get(name.toLowerCase());
  }

  private wanted(sel: Selection): CompiledRule[] {
    const out: CompiledRule[] = [];
    for (const [lower, c] of this.byLower) {
      if (!mayRead(sel, lower)) continue;
      const operational = 'from' in c.rule && c.rule.operational === true;
      if (sel.names.has(lower) || (sel.all && !operational) || (sel.operational && operational)) out.push(c);
    }
    return out;
  }

  /** AD attributes to request upstream for this selection (always the naming attribute). */
  sourceAttributes(sel: Selection): string[] {
    const set = new Set<string>([this.dnSource]);
    for (const c of this.wanted(sel)) if ('from' in c.rule) for (const a of c.rule.from) set.add(a);
    return [...set];
  }

  /** The naming value of an AD entry, or undefined when it lacks one (such entries are skipped). */
  keyOf(ad: AdEntry): string | undefined {
    const v = ad.attrs.get(this.dnSource.toLowerCase())?.[0];
    if (v === undefined) return undefined;
    return typeof v === 'string' ? v : v.toString('utf8');
  }

  /** Map one AD entry's attributes; names in the case the client asked for, else the configured case. */
  mapAttributes(ad: AdEntry, sel: Selection): Array<{ type: string; values: string[] }> {
    const out: Array<{ type: string; values: string[] }> = [];
    for (const c of this.wanted(sel)) {
      const type = sel.names.get(c.name.toLowerCase()) ?? c.name;
      let values: string[] = [];
      if ('const' in c.rule) values = c.rule.const;
      else {
        for (const src of c.rule.from) {
          const raw = ad.attrs.get(src.toLowerCase());
          if (raw && raw.length > 0) {
            values = transforms[c.rule.transform ?? 'text'](raw, this.ctx);
            break;
          }
        }
      }
      if (values.length > 0) out.push({ type, values });
    }
    return out;
  }

  /** Rewrite a client filter into AD terms for this entry kind. Unknown attributes pass through as AD names. */
  rewrite(f: FilterNode): FilterNode {
    switch (f.type) {
      case 'and':
        return and(...f.children.map((c) => this.rewrite(c)));
      case 'or':
        return or(...f.children.map((c) => this.rewrite(c)));
      case 'not':
        return not(this.rewrite(f.child));
      case 'true':
      case 'false':
        return f;
      case 'ext':
        if (!f.attr) return f;
        return this.rewriteTerm(f.attr, f, (attr) => ({ ...f, attr }));
      default:
        return this.rewriteTerm(f.attr, f, (attr) => ({ ...f, attr }));
    }
  }

  private rewriteTerm(attr: string, f: FilterNode, rename: (attr: string) => FilterNode): FilterNode {
    const c = this.rule(attr);
    if (!c) return f;
    const rule = c.rule;
    if ('const' in rule) {
      if (f.type === 'present') return TRUE;
      if (f.type !== 'equal') return FALSE;
      const v = f.value.toLowerCase();
      return [...rule.const, ...(rule.aliases ?? [])].some((x) => x.toLowerCase() === v) ? TRUE : FALSE;
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
