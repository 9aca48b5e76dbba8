// The virtual tree clients see:  <base>  ├ ou=users  └ uid=<sAMAccountName>
//                                         └ ou=groups └ cn=<group cn>
// Every client-visible DN is derived from a stable key, so it is byte-identical on every call
// (Defguard matches users by DN string: reference/defguard-ldap.md §2.3).
import { formatDN, normalizeDN, normalizeRdns, parseDN, type Rdn } from './dn';

export type Location =
  | { kind: 'root' }
  | { kind: 'users' }
  | { kind: 'groups' }
  | { kind: 'user'; key: string }
  | { kind: 'group'; key: string }
  | { kind: 'missing' } // under our base, but no such entry
  | { kind: 'outside' }; // not in our tree at all

export class VirtualTree {
  readonly baseDN: string;
  readonly usersDN: string;
  readonly groupsDN: string;
  private readonly baseNorm: string;
  private readonly usersNorm: string;
  private readonly groupsNorm: string;

  constructor(baseDN: string, usersRdn: string, groupsRdn: string) {
    this.baseDN = formatDN(parseDN(baseDN));
    this.usersDN = `${formatDN(parseDN(usersRdn))},${this.baseDN}`;
    this.groupsDN = `${formatDN(parseDN(groupsRdn))},${this.baseDN}`;
    this.baseNorm = normalizeDN(this.baseDN);
    this.usersNorm = normalizeDN(this.usersDN);
    this.groupsNorm = normalizeDN(this.groupsDN);
  }

  userDN(key: string): string {
    return `${formatDN([[{ type: 'uid', value: key }]])},${this.usersDN}`;
  }

  groupDN(key: string): string {
    return `${formatDN([[{ type: 'cn', value: key }]])},${this.groupsDN}`;
  }

  /** Where a DN lies in the virtual tree. Throws DnSyntaxError for a malformed DN. */
  locate(dn: string): Location {
    const rdns = parseDN(dn);
    const norm = normalizeRdns(rdns);
    if (norm === this.baseNorm) return { kind: 'root' };
    if (norm === this.usersNorm) return { kind: 'users' };
    if (norm === this.groupsNorm) return { kind: 'groups' };
    const [first, ...parent] = rdns as [Rdn, ...Rdn[]];
    const parentNorm = normalizeRdns(parent);
    const ava = first?.length === 1 ? first[0] : undefined;
    if (ava && parentNorm === this.usersNorm && ava.type.toLowerCase() === 'uid') return { kind: 'user', key: ava.value };
    if (ava && parentNorm === this.groupsNorm && ava.type.toLowerCase() === 'cn') return { kind: 'group', key: ava.value };
    return norm.endsWith(`,${this.baseNorm}`) ? { kind: 'missing' } : { kind: 'outside' };
  }
}
