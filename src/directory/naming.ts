// How clients name entries: the one difference between the two directory modes, as a strategy object.
//   virtual      a clean tree of our own (tree.ts): uid=<key>,ou=users,<base> and cn=<key>,ou=groups,<base>,
//                with synthetic root and container entries
//   transparent  AD's own DNs under AD's base; only attributes are mapped
// The search planner, the membership view and the bind flow ask the strategy; none of them tests a mode.
import { isWithin, normalizeDN } from './dn';
import type { GroupRef, Index, UserRef } from './membership';
import type { VirtualTree } from './tree';
import type { Entry, Scope, SearchOp } from '../ldap/types';

/** Which entries of one kind a search covers: one virtual key, or an AD base and scope. */
export interface KindPlan {
  key?: string;
  at?: { base: string; scope: Scope };
}

export interface Plan {
  /** entries the gateway owns (root, containers) that the search covers */
  synthetic: Entry[];
  users?: KindPlan;
  groups?: KindPlan;
}

/** Where a client's base lies, as far as subtree rights are concerned. */
export type Region = 'users' | 'groups' | 'other';

export interface Naming {
  /** the namingContexts value of the rootDSE */
  readonly namingContext: string;
  /** the virtual tree bind names are recognised in (virtual mode); undefined: every DN is AD's */
  readonly bindTree: VirtualTree | undefined;
  userDN(ref: UserRef): string;
  groupDN(ref: GroupRef): string;
  /** a client DN in a filter value -> the AD DN it stands for; undefined if it names nothing known */
  adDN(value: string, index: Index): string | undefined;
  /** the entries of each kind a search covers. Throws DnSyntaxError for a malformed base. */
  plan(op: SearchOp): Plan | 'noSuchObject';
  /** the subtree a base lies in (a subtree the identity may not see does not exist for it) */
  region(base: string): Region;
  /** the users and groups containers, which a restricted identity must not see either */
  containers(): { users?: Entry; groups?: Entry };
  /** two AD groups with one cn share a virtual DN: only the first is shown (virtual mode) */
  readonly oneEntryPerDN: boolean;
  /**
   * A search that found nothing: whether its base must be checked upstream (transparent mode: a base AD
   * does not have is noSuchObject; the virtual tree knows its own entries)
   */
  readonly checkBaseUpstream: boolean;
  /** the base to report as matchedDN for a missing entry */
  readonly matchedDN: string;
}

const container = (dn: string): Entry => ({ dn, attributes: [{ type: 'objectClass', values: ['top', 'organizationalUnit'] }, { type: 'ou', values: [dn.slice(dn.indexOf('=') + 1, dn.indexOf(','))] }] });

export function virtualNaming(tree: VirtualTree): Naming {
  const root: Entry = { dn: tree.baseDN, attributes: [{ type: 'objectClass', values: ['top', 'domain'] }] };
  const users = container(tree.usersDN);
  const groups = container(tree.groupsDN);
  return {
    namingContext: tree.baseDN,
    bindTree: tree,
    userDN: (r) => tree.userDN(r.key),
    groupDN: (r) => tree.groupDN(r.key),
    adDN(value, index) {
      let loc;
      try {
        loc = tree.locate(value);
      } catch {
        return undefined;
      }
      if (loc.kind === 'user') return index.usersByKey.get(loc.key.toLowerCase())?.dn;
      if (loc.kind === 'group') return index.groupsByKey.get(loc.key.toLowerCase())?.dn;
      return loc.kind === 'outside' ? value : undefined; // an AD DN passes through as it is
    },
    plan(op) {
      const loc = tree.locate(op.base);
      const below = op.scope !== 'base';
      const sub = op.scope === 'sub';
      switch (loc.kind) {
        case 'root':
          if (op.scope === 'base') return { synthetic: [root] };
          return { synthetic: sub ? [root, users, groups] : [users, groups], ...(sub ? { users: {}, groups: {} } : {}) };
        case 'users':
          return { synthetic: op.scope === 'one' ? [] : [users], ...(below ? { users: {} } : {}) };
        case 'groups':
          return { synthetic: op.scope === 'one' ? [] : [groups], ...(below ? { groups: {} } : {}) };
        case 'user':
          return op.scope === 'one' ? { synthetic: [] } : { synthetic: [], users: { key: loc.key } };
        case 'group':
          return op.scope === 'one' ? { synthetic: [] } : { synthetic: [], groups: { key: loc.key } };
        default:
          return 'noSuchObject';
      }
    },
    region(base) {
      const kind = tree.locate(base).kind;
      return kind === 'users' || kind === 'user' ? 'users' : kind === 'groups' || kind === 'group' ? 'groups' : 'other';
    },
    containers: () => ({ users, groups }),
    oneEntryPerDN: true,
    checkBaseUpstream: false,
    matchedDN: tree.baseDN,
  };
}

export function transparentNaming(adBaseDN: string, sources: { users: { base: string }; groups: { base: string } }): Naming {
  const baseNorm = normalizeDN(adBaseDN);
  return {
    namingContext: adBaseDN,
    bindTree: undefined,
    userDN: (r) => r.dn,
    groupDN: (r) => r.dn,
    adDN: (value) => value,
    plan(op) {
      const base = normalizeDN(op.base);
      if (!isWithin(base, baseNorm)) return 'noSuchObject';
      // the client's base and scope, intersected with each kind's source in AD
      const at = (src: { base: string }): KindPlan | undefined => {
        const s = normalizeDN(src.base);
        if (isWithin(base, s)) return { at: { base: op.base, scope: op.scope } };
        if (op.scope === 'sub' && isWithin(s, base)) return { at: { base: src.base, scope: 'sub' } };
        return undefined; // the source lies elsewhere, or deeper than one level can reach
      };
      const users = at(sources.users);
      const groups = at(sources.groups);
      return { synthetic: [], ...(users ? { users } : {}), ...(groups ? { groups } : {}) };
    },
    region: () => 'other',
    containers: () => ({}),
    oneEntryPerDN: false,
    checkBaseUpstream: true,
    matchedDN: adBaseDN,
  };
}
