// Filters on virtual attributes: "a filter term on a virtual attribute matches exactly the entries whose
// returned attribute satisfies it" (src/directory/mapping.ts). Each test rewrites a client filter, runs
// the rewritten AD filter over AD-side fixtures with a small evaluator of AD's semantics, and compares
// the entries it selects with the entries whose mapped (returned) attributes satisfy the client filter.
import t from 'tap';
import { and, eq, eqBytes, filterToString, not, simplify, type FilterNode } from '../../src/directory/filter';
import { normalizeDN } from '../../src/directory/dn';
import { flavors } from '../../src/directory/flavors';
import { defguardProfile, Mapper, selection, sortedGroupDNs, withOverrides, type AdEntry, type MembershipView } from '../../src/directory/mapping';
import { buildIndex, type Index, type IndexSources } from '../../src/directory/membership';
import { generalizedToMs, guidToString, sidToString } from '../../src/directory/transforms';
import { VirtualTree } from '../../src/directory/tree';

const B = 'DC=corp,DC=example';
const G = (cn: string, ou = 'Groups') => `CN=${cn},OU=${ou},${B}`;
const U = (cn: string, ou = 'People') => `CN=${cn},OU=${ou},${B}`;
const VBASE = 'dc=vpn,dc=example';
const vu = (uid: string) => `uid=${uid},ou=users,${VBASE}`;
const vg = (cn: string) => `cn=${cn},ou=groups,${VBASE}`;
const e = (dn: string, attrs: Record<string, Array<string | Buffer>>): AdEntry => ({ dn, attrs: new Map(Object.entries(attrs).map(([k, v]) => [k.toLowerCase(), v])) });

const guid = (n: number) => Buffer.from(`${n.toString(16).padStart(2, '0')}a1b2c3d4e5f60718293a4b5c6d7e8f`.slice(0, 32), 'hex');
const sid = (rid: number) => {
  const b = Buffer.from('010500000000000515000000a065cf7e784b9b5fe77c877000000000', 'hex');
  b.writeUInt32LE(rid, 24);
  return b;
};
const FT_2024 = '133485408000000000'; // 2024-01-01T00:00:00Z
const FT_2024_HALF = '133485408005000000'; // half a second later: the same returned second

// Eng ⊂ Staff ⊂ All; Hidden (outside the groups source) ⊂ Staff; Empty has no members; Builtin only has
// a member outside the users source (like AD's built-in groups); Ops ⊂ Eng in direct mode's sense too.
const allGroups = [
  e(G('Eng'), { cn: ['Eng'], memberOf: [G('Staff')], objectGUID: [guid(0x81)] }),
  e(G('Staff'), { cn: ['Staff'], memberOf: [G('All')], objectGUID: [guid(0x82)] }),
  e(G('All'), { cn: ['All'], objectGUID: [guid(0x83)] }),
  e(G('Hidden', 'Other'), { cn: ['Hidden'], memberOf: [G('Staff')] }),
  e(G('Empty'), { cn: ['Empty'] }),
  e(G('Builtin'), { cn: ['Builtin'] }),
];
const visible = allGroups.filter((g) => !g.dn.includes('OU=Other'));
const people = [
  e(U('Alice'), { sAMAccountName: ['alice'], mail: ['alice@corp.example'], userPrincipalName: ['alice@upn.example'], memberOf: [G('Eng')], objectGUID: [guid(0x01)], objectSid: [sid(1101)], userAccountControl: ['512'], pwdLastSet: [FT_2024] }),
  e(U('Bob'), { sAMAccountName: ['bob'], userPrincipalName: ['bob@upn.example'], memberOf: [G('Eng')], objectGUID: [guid(0x02)], objectSid: [sid(1102)], userAccountControl: ['514'], pwdLastSet: [FT_2024_HALF] }),
  e(U('Carol'), { sAMAccountName: ['carol'], mail: ['carol@corp.example'], memberOf: [G('Staff')], objectGUID: [guid(0x03)], objectSid: [sid(1103)], userAccountControl: ['66048'], pwdLastSet: ['0'] }),
  e(U('Hugo'), { sAMAccountName: ['hugo'], mail: ['bob@upn.example'], memberOf: [G('Hidden', 'Other')], objectGUID: [guid(0x04)], userAccountControl: ['2'] }),
  e(U('Nobody'), { sAMAccountName: ['nobody'], pwdLastSet: ['133485408010000000'] }),
];
const outsider = e(U('svc', 'Service'), { sAMAccountName: ['svc'], memberOf: [G('Builtin')] });
// AD's own view: the member attribute of each group (the back-link of memberOf)
const byNorm = new Map([...allGroups, ...people, outsider].map((x) => [normalizeDN(x.dn), x]));

async function* pages(x: AdEntry[]) {
  yield x;
}
const sources: IndexSources = { allGroups: () => pages(allGroups), visibleGroups: () => pages(visible), users: () => pages(people), groupKeyAttr: 'cn', userKeyAttr: 'sAMAccountName' };
const tree = new VirtualTree(VBASE, 'ou=users', 'ou=groups');
const viewOf = (idx: Index, flatten: boolean): MembershipView => ({
  index: idx,
  flatten,
  userDN: (r) => tree.userDN(r.key),
  groupDN: (r) => tree.groupDN(r.key),
  groupDNsOf: (groups) => sortedGroupDNs(groups, { index: idx, groupDN: (r) => tree.groupDN(r.key) }),
  adDN: (v) => {
    const loc = tree.locate(v);
    if (loc.kind === 'user') return idx.usersByKey.get(loc.key.toLowerCase())?.dn;
    if (loc.kind === 'group') return idx.groupsByKey.get(loc.key.toLowerCase())?.dn;
    return loc.kind === 'outside' ? v : undefined;
  },
});

const profile = defguardProfile({ groupClass: 'groupOfUniqueNames' });
const users = new Mapper(profile.users, 'uid', 'distinguishedName');
const groups = new Mapper(profile.groups, 'cn', 'distinguishedName');

// --- AD's side: what the rewritten filter selects (Windows AD semantics; binary values compared as bytes)
const adValues = (x: AdEntry, attr: string): Array<string | Buffer> => (attr.toLowerCase() === 'distinguishedname' ? [x.dn] : (x.attrs.get(attr.toLowerCase()) ?? []));
const text = (v: string | Buffer) => (typeof v === 'string' ? v : v.toString('latin1'));
function inChain(x: AdEntry, target: string, seen = new Set<string>()): boolean {
  for (const v of adValues(x, 'memberOf')) {
    const n = normalizeDN(text(v));
    if (n === target) return true;
    if (seen.has(n)) continue;
    seen.add(n);
    const next = byNorm.get(n);
    if (next && inChain(next, target, seen)) return true;
  }
  return false;
}
function adMatches(f: FilterNode, x: AdEntry): boolean {
  switch (f.type) {
    case 'and':
      return f.children.every((c) => adMatches(c, x));
    case 'or':
      return f.children.some((c) => adMatches(c, x));
    case 'not':
      return !adMatches(f.child, x);
    case 'true':
      return true;
    case 'false':
      return false;
    case 'present':
      return adValues(x, f.attr).length > 0;
    case 'equal': {
      const bytes = (f as { bytes?: Buffer }).bytes;
      const a = f.attr.toLowerCase();
      return adValues(x, f.attr).some((v) => {
        if (bytes) return Buffer.isBuffer(v) && v.equals(bytes);
        if (a === 'objectsid') return Buffer.isBuffer(v) && sidToString(v) === f.value; // AD takes the S-1-… form
        if (Buffer.isBuffer(v)) return false; // a text value never equals a binary one (Windows AD)
        if (a === 'distinguishedname' || a === 'memberof') return normalizeDN(v) === normalizeDN(f.value);
        return v.toLowerCase() === f.value.toLowerCase();
      });
    }
    case 'ge':
    case 'le':
      return adValues(x, f.attr).some((v) => (f.type === 'ge' ? BigInt(text(v)) >= BigInt(f.value) : BigInt(text(v)) <= BigInt(f.value)));
    case 'substring':
      return adValues(x, f.attr).some((v) => typeof v === 'string' && substr(f, v));
    case 'ext':
      if (f.rule === '1.2.840.113556.1.4.1941') return inChain(x, normalizeDN(f.value));
      if (f.rule === '1.2.840.113556.1.4.803') return adValues(x, f.attr as string).some((v) => (Number(text(v)) & Number(f.value)) === Number(f.value));
      throw new Error(`unexpected rule ${f.rule}`);
    default:
      throw new Error(`unexpected AD term ${filterToString(f)}`);
  }
}

// --- the client's side: which returned entries satisfy the filter (RFC 4511, three-valued)
type Tri = boolean | undefined;
const DN_ATTRS = new Set(['memberof', 'uniquemember']);
const NO_SUBSTRINGS = new Set(['entryuuid', 'objectsid', 'pwdchangedtime', 'accountdisabled']);
function substr(f: Extract<FilterNode, { type: 'substring' }>, v: string): boolean {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${esc(f.initial ?? '')}.*${f.any.map((a) => `${esc(a)}.*`).join('')}${esc(f.final ?? '')}$`, 'is').test(v);
}
function clientMatches(f: FilterNode, attrs: Map<string, string[]>, view: MembershipView): Tri {
  switch (f.type) {
    case 'and': {
      const r = f.children.map((c) => clientMatches(c, attrs, view));
      return r.includes(false) ? false : r.includes(undefined) ? undefined : true;
    }
    case 'or': {
      const r = f.children.map((c) => clientMatches(c, attrs, view));
      return r.includes(true) ? true : r.includes(undefined) ? undefined : false;
    }
    case 'not': {
      const r = clientMatches(f.child, attrs, view);
      return r === undefined ? undefined : !r;
    }
    case 'true':
      return true;
    case 'false':
      return false;
    case 'ext':
      throw new Error('not used');
    default: {
      const a = f.attr.toLowerCase();
      const vs = attrs.get(a) ?? [];
      if (f.type === 'present') return vs.length > 0;
      if (f.type === 'substring') return NO_SUBSTRINGS.has(a) ? undefined : vs.some((v) => substr(f, v));
      if (a === 'pwdchangedtime') {
        // GeneralizedTime compares as instants
        const want = generalizedToMs(f.value);
        if (want === undefined) return undefined;
        const at = vs.map((v) => generalizedToMs(v) as number);
        return at.some((x) => (f.type === 'ge' ? x >= want : f.type === 'le' ? x <= want : x === want));
      }
      if (f.type === 'ge' || f.type === 'le') return undefined;
      // a DN value may also name the entry by its AD DN (view.adDN), as the gateway has always accepted
      if (DN_ATTRS.has(a)) {
        const target = view.adDN(f.value);
        return target !== undefined && vs.some((v) => normalizeDN(view.adDN(v) as string) === normalizeDN(target));
      }
      if (a === 'entryuuid' && !/^[0-9a-f-]{36}$/i.test(f.value)) return undefined;
      if (a === 'accountdisabled' && !/^(TRUE|FALSE)$/i.test(f.value)) return undefined;
      if (a === 'objectsid' && !/^S(-\d+){3,}$/i.test(f.value)) return undefined;
      return vs.some((v) => v.toLowerCase() === f.value.toLowerCase());
    }
  }
}

const sel = selection(['*', '+']);
const mapped = (m: Mapper, x: AdEntry, view: MembershipView) => new Map(m.mapAttributes(x, sel, view).map((a) => [a.type.toLowerCase(), a.values]));

/** Both sides of one filter for one kind; the returned sets must be equal. */
function both(kind: 'users' | 'groups', f: FilterNode, view: MembershipView) {
  const [mapper, entries] = kind === 'users' ? [users, people] : [groups, visible];
  const ad = simplify(mapper.rewrite(f, view));
  const key = (x: AdEntry) => mapper.keyOf(x) as string;
  return {
    got: entries.filter((x) => adMatches(ad, x)).map(key).sort(),
    want: entries.filter((x) => clientMatches(f, mapped(mapper, x, view), view) === true).map(key).sort(),
    ad: filterToString(ad),
  };
}

const sub = (attr: string, initial?: string, any: string[] = [], final?: string): FilterNode => ({ type: 'substring', attr, ...(initial ? { initial } : {}), any, ...(final ? { final } : {}) });
const has = (attr: string): FilterNode => ({ type: 'present', attr });

const userTerms: FilterNode[] = [
  has('memberOf'),
  eq('memberOf', vg('Staff')),
  eq('memberOf', vg('All')),
  eq('memberOf', vg('Eng').toUpperCase()),
  eq('memberOf', vg('Empty')),
  eq('memberOf', vg('Hidden')), // not visible: no returned value names it
  eq('memberOf', vg('NoSuchGroup')),
  eq('memberOf', G('Hidden', 'Other')), // an AD DN of a group that is not shown
  sub('memberOf', 'cn=s'),
  sub('memberOf', undefined, ['ENG']),
  sub('memberOf', undefined, [], `ou=groups,${VBASE}`),
  { type: 'ge', attr: 'memberOf', value: 'a' },
  has('mail'),
  eq('mail', 'bob@upn.example'),
  sub('mail', 'alice'),
  sub('mail', undefined, [], '@upn.example'),
  has('entryUUID'),
  eq('entryUUID', guidToString(guid(0x02)) as string),
  eq('entryUUID', (guidToString(guid(0x01)) as string).toUpperCase()),
  eq('entryUUID', 'not-a-uuid'),
  sub('entryUUID', '02'),
  has('accountDisabled'),
  eq('accountDisabled', 'TRUE'),
  eq('accountDisabled', 'false'),
  eq('accountDisabled', 'maybe'),
  has('objectSid'),
  eq('objectSid', sidToString(sid(1102)) as string),
  eq('objectSid', 'S-1-nonsense'),
  has('pwdChangedTime'),
  eq('pwdChangedTime', '20240101000000Z'),
  eq('pwdChangedTime', '20240101000000.5Z'),
  eq('pwdChangedTime', '20240101010000+0100'),
  { type: 'ge', attr: 'pwdChangedTime', value: '20240101000001Z' },
  { type: 'le', attr: 'pwdChangedTime', value: '20240101000000Z' },
  sub('pwdChangedTime', '2024'),
];
const groupTerms: FilterNode[] = [
  has('uniqueMember'),
  eq('uniqueMember', vu('alice')),
  eq('uniqueMember', vu('CAROL')),
  eq('uniqueMember', vu('hugo')),
  eq('uniqueMember', vu('svc')), // outside the users source
  eq('uniqueMember', U('Alice')), // the AD DN of a shown user
  eq('uniqueMember', vg('Eng')), // a group as member (direct mode only)
  sub('uniqueMember', 'uid=a'),
  sub('uniqueMember', undefined, ['BOB']),
  sub('uniqueMember', undefined, ['uid='], 'dc=example'),
  { type: 'le', attr: 'uniqueMember', value: 'z' },
  has('entryUUID'),
  eq('entryUUID', guidToString(guid(0x82)) as string),
  eq('cn', 'Staff'),
];

for (const mode of ['flatten', 'direct'] as const) {
  t.test(`every term kind, alone, negated and combined, selects what is returned (${mode})`, async (t) => {
    const view = viewOf(await buildIndex(sources, mode), mode === 'flatten');
    const check = (kind: 'users' | 'groups', f: FilterNode) => {
      const r = both(kind, f, view);
      t.same(r.got, r.want, `${kind} ${filterToString(f)} -> ${r.ad}`);
    };
    for (const f of userTerms) {
      check('users', f);
      check('users', not(f));
      check('users', and(f, not(eq('uid', 'nobody'))));
      check('users', not(and(f, has('uid'))));
    }
    for (const f of groupTerms) {
      check('groups', f);
      check('groups', not(f));
      check('groups', not(and(f, has('cn'))));
    }
  });
}

t.test('the rewrites, term by term', async (t) => {
  const view = viewOf(await buildIndex(sources, 'flatten'), true);
  const u = (f: FilterNode) => filterToString(simplify(users.rewrite(f, view)));
  const g = (f: FilterNode) => filterToString(simplify(groups.rewrite(f, view)));
  const dn = (x: string) => `(distinguishedName=${x})`;

  // groups: the groups whose member values satisfy the term, by DN
  t.equal(g(has('uniqueMember')), `(|${dn(G('Eng'))}${dn(G('Staff'))}${dn(G('All'))})`, "presence: only groups with members in the answer (Builtin's member is outside the users source)");
  t.equal(g(eq('uniqueMember', vu('carol'))), `(|${dn(G('Staff'))}${dn(G('All'))})`, 'equality');
  t.equal(g(sub('uniqueMember', 'uid=b')), `(|${dn(G('Eng'))}${dn(G('Staff'))}${dn(G('All'))})`, 'substring on the returned DNs');
  t.equal(g(not(has('uniqueMember'))), `(!(|${dn(G('Eng'))}${dn(G('Staff'))}${dn(G('All'))}))`, 'negation of an exact rewrite stays exact');
  t.equal(g(eq('uniqueMember', vu('svc'))), '(!(objectClass=*))', 'a user outside the users source is nobody\'s member');

  // users: direct membership (indexed equality) of the groups whose virtual DN satisfies the term and
  // of every group nested in them that has users (Hidden, outside the groups source, included): AD's
  // in-chain meaning, without asking AD to walk the chain for every entry
  const memberOfAny = (...dns: string[]) => (dns.length === 1 ? `(memberOf=${dns[0]})` : `(|${dns.map((x) => `(memberOf=${x})`).join('')})`);
  const underStaff = memberOfAny(G('Eng'), G('Staff'), G('Hidden', 'Other'));
  t.equal(u(has('memberOf')), underStaff, 'presence: membership of a shown group with users');
  t.equal(u(eq('memberOf', vg('Staff'))), underStaff, 'equality: Staff, and Eng and Hidden nested in it');
  t.equal(u(eq('memberOf', vg('Eng'))), memberOfAny(G('Eng')), 'equality: a group with no subgroup');
  t.equal(u(eq('memberOf', vg('All'))), underStaff, 'equality: two levels of nesting, All itself has no user');
  t.equal(u(eq('memberOf', vg('Empty'))), '(!(objectClass=*))', 'a shown group without users');
  t.equal(u(eq('memberOf', G('Hidden', 'Other'))), '(!(objectClass=*))', 'an AD group that is not shown, even by its AD DN');
  t.equal(u(sub('memberOf', undefined, ['staff'])), underStaff, 'substring, case-insensitive');
  t.equal(u(not(eq('memberOf', vg('All')))), `(!${underStaff})`, 'negation');

  // without in-chain (OpenLDAP), the users themselves are named, by the flavor's DN attribute
  const ol = flavors.openldap.profile({ groupClass: 'groupOfNames' });
  const olUsers = new Mapper(ol.users, 'uid', flavors.openldap.dnAttr);
  const direct = viewOf(await buildIndex(sources, 'flatten'), false);
  t.equal(filterToString(simplify(olUsers.rewrite(eq('memberOf', vg('Staff')), direct))), `(|(entryDN=${U('Alice')})(entryDN=${U('Bob')})(entryDN=${U('Carol')})(entryDN=${U('Hugo')}))`);
  t.equal(new Mapper(ol.groups, 'cn', flavors.openldap.dnAttr).rewrite(eq('member', vu('alice')), direct).type, 'or', 'OpenLDAP groups are named by entryDN');
  t.equal(flavors.openldap.dnAttr, 'entryDN');
  const overridden = new Mapper(withOverrides(ol.groups, { member: { computed: 'members' } }), 'cn', flavors.openldap.dnAttr);
  t.match(filterToString(simplify(overridden.rewrite(eq('member', vu('alice')), direct))), /^\(\|?\(?entryDN=/, "a computed rule from config still names entries by the flavor's DN attribute");
  t.equal(flavors.ad.dnAttr, 'distinguishedName');

  // fallback chain
  t.equal(u(eq('mail', 'a@b')), '(|(mail=a@b)(&(!(mail=*))(userPrincipalName=a@b)))');
  t.equal(u(has('mail')), '(|(mail=*)(&(!(mail=*))(userPrincipalName=*)))');
  t.equal(u(sub('mail', 'al')), '(|(mail=al*)(&(!(mail=*))(userPrincipalName=al*)))');

  // transforms
  t.equal(u(eq('entryUUID', '12345678-9abc-def0-0123-456789abcdef')), '(|(objectGUID=\\78\\56\\34\\12\\bc\\9a\\f0\\de\\01\\23\\45\\67\\89\\ab\\cd\\ef)(objectGUID=12345678-9abc-def0-0123-456789abcdef))', 'the GUID as AD stores it (and as Samba also accepts it)');
  t.equal(u(has('entryUUID')), '(objectGUID=*)');
  t.equal(u(sub('entryUUID', '1234')), '(!(objectClass=*))', 'no substrings of a GUID');
  t.equal(u(not(sub('entryUUID', '1234'))), '(!(objectClass=*))', 'Undefined, and so is its negation');
  t.equal(u(not(and(sub('entryUUID', '1234'), eq('uid', 'a')))), '(!(sAMAccountName=a))', 'an Undefined term under and/not: De Morgan');
  t.equal(u(eq('accountDisabled', 'TRUE')), '(userAccountControl:1.2.840.113556.1.4.803:=2)');
  t.equal(u(eq('accountDisabled', 'FALSE')), '(&(userAccountControl=*)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))');
  t.equal(u(has('accountDisabled')), '(userAccountControl=*)');
  t.equal(u(eq('objectSid', 's-1-5-21-1-2-3-500')), '(objectSid=S-1-5-21-1-2-3-500)');
  t.equal(u(has('pwdChangedTime')), '(&(pwdLastSet>=1)(pwdLastSet<=9223372036854775806))', 'pwdLastSet 0 and "never" have no time');
  t.equal(u(eq('pwdChangedTime', '20240101000000Z')), '(&(pwdLastSet>=133485408000000000)(pwdLastSet<=133485408009999999))', 'the whole second');
  t.equal(u(eq('pwdChangedTime', 'yesterday')), '(!(objectClass=*))');
});

t.test('GeneralizedTime values as instants', async (t) => {
  t.equal(generalizedToMs('20240101000000Z'), Date.UTC(2024, 0, 1));
  t.equal(generalizedToMs('20240101010000+0100'), Date.UTC(2024, 0, 1));
  t.equal(generalizedToMs('2024010100Z'), Date.UTC(2024, 0, 1));
  t.equal(generalizedToMs('202401010030.5Z'), Date.UTC(2024, 0, 1, 0, 30, 30));
  t.equal(generalizedToMs('20240231000000Z'), undefined, '31 February');
  t.equal(generalizedToMs('20240101000000'), undefined, 'a zone is required');
});

t.test('raw bytes in a filter are written as escapes, one per byte', async (t) => {
  t.equal(filterToString(eqBytes('objectGUID', Buffer.from([0x00, 0x2a, 0x5c, 0xff]))), '(objectGUID=\\00\\2a\\5c\\ff)');
  t.equal(filterToString(not(eqBytes('x', Buffer.from('A')))), '(!(x=\\41))');
});
