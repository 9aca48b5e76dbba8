// Every search Defguard sends (reference/defguard-ldap.md §2.2, S1–S11), with its exact filters,
// attribute lists and paging (500 per page), through the gateway against Samba AD. The Defguard
// settings are the ones the README recommends: username and RDN attribute uid, user class inetOrgPerson,
// member attribute memberOf, group class groupOfUniqueNames with uniqueMember, groups named by cn.
// What is checked is what Defguard checks: exact attribute-name case, stable DNs, complete listings.
import t from 'tap';
import { Client, type Entry, type SearchOptions } from 'ldapts';
import { sambaExampleYaml, startConsumerSession } from '../helpers/gateway';

const UA = 'uid';
const RA = 'uid';
const UOC = 'inetOrgPerson';
const MA = 'memberOf';
const GOC = 'groupOfUniqueNames';
const GMA = 'uniqueMember';
const GNA = 'cn';
const UBASE = 'ou=users,dc=vpn,dc=example,dc=test';
const GBASE = 'ou=groups,dc=vpn,dc=example,dc=test';
const userDN = (u: string) => `${RA}=${u},${UBASE}`;
const groupDN = (g: string) => `${GNA}=${g},${GBASE}`;
/** ldap3::ldap_escape: only \ * ( ) NUL */
const ldapEscape = (s: string) => s.replace(/[\\*()\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

let c: Client;
let stop: () => Promise<void>;
t.before(async () => {
  ({ c, stop } = await startConsumerSession(sambaExampleYaml(), 30_000)); // B1
});
t.teardown(() => stop());

async function plain(base: string, scope: 'base' | 'sub', filter: string, attributes: string[]): Promise<{ entries: Entry[]; refs: number }> {
  const r = await c.search(base, { scope, filter, attributes });
  return { entries: r.searchEntries, refs: r.searchReferences.length };
}

/** streaming_search_with(PagedResults::new(500)): all pages, references counted */
async function paged(base: string, filter: string, attributes: string[]): Promise<{ entries: Entry[]; refs: number; pages: number }> {
  const out: Entry[] = [];
  let refs = 0;
  let pages = 0;
  const opts: SearchOptions = { scope: 'sub', filter, attributes, paged: { pageSize: 500 } };
  for await (const page of c.searchPaginated(base, opts)) {
    pages++;
    out.push(...page.searchEntries);
    refs += page.searchReferences.length;
  }
  return { entries: out, refs, pages };
}

t.test('S1 get_user_by_username: exactly one entry with sn, givenName, mail, mobile in exactly that case', async (t) => {
  const { entries, refs } = await plain(UBASE, 'sub', `(&(${UA}=${ldapEscape('alice')})(objectClass=${UOC}))`, ['*', MA]);
  t.equal(entries.length, 1);
  t.equal(refs, 0);
  const e = entries[0] as Entry;
  for (const k of ['sn', 'givenName', 'mail', 'mobile', UA]) t.ok(Object.hasOwn(e, k), `key '${k}' present with that exact case`);
  t.match(e, { dn: userDN('alice'), sn: 'Anderson', givenName: 'Alice', mail: 'alice@example.test', mobile: '+1 555 1101' });
  t.ok([e[MA]].flat().includes(groupDN('Engineering')));
  const again = await plain(UBASE, 'sub', `(&(${UA}=alice)(objectClass=${UOC}))`, ['*', MA]);
  t.equal(again.entries[0]?.dn, e.dn, 'the DN is byte-identical on the next call');
});

t.test('S1 for the awkward users: escaped comma in AD, non-ASCII, no mail in AD', async (t) => {
  const cases: Array<[string, string]> = [['jdoe', 'john.doe@example.test'], ['jmuller', 'jmuller@example.test'], ['nomail', 'nomail@example.test'], ['pobrien', 'pat.obrien@example.test']];
  for (const [u, mail] of cases) {
    const { entries } = await plain(UBASE, 'sub', `(&(${UA}=${ldapEscape(u)})(objectClass=${UOC}))`, ['*', MA]);
    t.match(entries, [{ dn: userDN(u), mail }], u);
    // Defguard derives ldap_rdn / ldap_user_path by splitting the DN at the first '=' and ','
    const dn = entries[0]?.dn as string;
    t.equal(dn.slice(dn.indexOf('=') + 1, dn.indexOf(',')), u, 'the RDN value splits cleanly');
  }
});

t.test('S2 is_username_available (single-element OR), S3 user_exists_by_username, S4 user_exists_by_rdn', async (t) => {
  t.equal((await plain(UBASE, 'sub', `(&(${UA}=bob)(|(objectClass=${UOC})))`, ['*', MA])).entries.length, 1);
  t.equal((await plain(UBASE, 'sub', `(&(${UA}=not-a-user)(|(objectClass=${UOC})))`, ['*', MA])).entries.length, 0);
  t.equal((await plain(UBASE, 'sub', `(${UA}=carol)`, ['*', MA])).entries.length, 1);
  t.equal((await plain(UBASE, 'sub', `(${RA}=carol)`, ['*', MA])).entries.length, 1);
});

t.test('S5 get by DN: base scope; a missing DN is a non-success result', async (t) => {
  const { entries } = await plain(userDN('bob'), 'base', '(objectClass=*)', ['*']);
  t.match(entries, [{ dn: userDN('bob'), uid: 'bob' }]);
  await t.rejects(c.search(userDN('no-such-user'), { scope: 'base', filter: '(objectClass=*)', attributes: ['*'] }), { code: 32 });
});

t.test("S6 get_user_groups: groups holding the user's DN, nested groups included", async (t) => {
  const { entries } = await plain(GBASE, 'sub', `(${GMA}=${ldapEscape(userDN('alice'))})`, [GNA]);
  // Defguard collects values whose key matches GNA case-insensitively
  const names = entries.map((e) => e[Object.keys(e).find((k) => k.toLowerCase() === GNA) as string]).sort();
  t.same(names, ['AllEmployees', 'BulkAll', 'Engineering', 'Staff', 'VPN']);
});

t.test('S7 group_exists, S8 is_member_of', async (t) => {
  const s7 = await plain(GBASE, 'sub', `(${GNA}=Engineering)`, [UA, GMA]);
  t.equal(s7.entries.length, 1);
  t.same([s7.entries[0]?.[GMA]].flat().sort(), [userDN('alice'), userDN('bob')]);
  const s8 = (user: string, group: string) => plain(GBASE, 'sub', `(&(objectClass=${GOC})(${GNA}=${group})(${GMA}=${userDN(user)}))`, ['*']);
  t.equal((await s8('alice', 'Engineering')).entries.length, 1);
  t.equal((await s8('alice', 'AllEmployees')).entries.length, 1, 'membership through two levels of nesting');
  t.equal((await s8('carol', 'Engineering')).entries.length, 0);
});

t.test('S9 get_group_members (paged): the 1,501-member group comes back complete in one attribute', async (t) => {
  const { entries, refs } = await paged(GBASE, `(&(objectClass=${GOC})(${GNA}=BulkAll))`, [GMA]);
  t.equal(refs, 0);
  t.equal(entries.length, 1);
  const members = entries[0]?.[GMA] as string[];
  t.equal(members.length, 1501);
  t.notOk(Object.keys(entries[0] as Entry).some((k) => k.includes(';range=')), 'no ranged attribute');
  t.ok(members.includes(userDN('bulk1500')) && members.includes(userDN('alice')));
});

t.test('S10 list_users (paged): every user, the 1,500 bulk users included; DNs stable across two runs', async (t) => {
  const first = await paged(UBASE, `(objectClass=${UOC})`, ['*', MA]);
  t.equal(first.refs, 0, 'no references');
  t.ok(first.pages >= 4, `${first.pages} pages of at most 500`);
  const dns = first.entries.map((e) => e.dn);
  for (let i = 1; i <= 1500; i++) if (!dns.includes(userDN(`bulk${String(i).padStart(4, '0')}`))) t.fail(`bulk user ${i} missing`);
  t.equal(new Set(dns).size, dns.length, 'no entry twice');
  const incomplete = first.entries.filter((e) => typeof e.mail !== 'string' || typeof e.sn !== 'string' || typeof e.givenName !== 'string').map((e) => e.dn);
  t.same(incomplete, [], 'every user has sn, givenName and mail (Defguard requires them)');
  const second = await paged(UBASE, `(objectClass=${UOC})`, ['*', MA]);
  t.same(second.entries.map((e) => e.dn), dns, 'byte-identical DNs in the same order');
});

t.test('S10 with sync groups: the constructed group DN filter finds its transitive members', async (t) => {
  const dnEscape = (s: string) => s; // "VPN" needs no DN escaping
  const filter = `(&(objectClass=${UOC})(|(${MA}=${ldapEscape(`${GNA}=${dnEscape('VPN')},${GBASE}`)})))`;
  const { entries } = await paged(UBASE, filter, ['*', MA]);
  t.same(entries.map((e) => e.uid).sort(), ['alice', 'bob', 'carol', 'jdoe', 'jmuller']);
});

t.test('S11 list_group_memberships (paged): groups with members, complete', async (t) => {
  const { entries, refs } = await paged(GBASE, `(&(objectClass=${GOC})(${GMA}=*))`, [GNA, GMA]);
  t.equal(refs, 0);
  const byName = new Map(entries.map((e) => [e[GNA] as string, [e[GMA]].flat() as string[]]));
  t.same(byName.get('Engineering')?.sort(), [userDN('alice'), userDN('bob')]);
  t.same(byName.get('VPN')?.sort(), ['alice', 'bob', 'carol', 'jdoe', 'jmuller'].map(userDN));
  t.equal(byName.get('BulkAll')?.length, 1501);
  t.ok(entries.every((e) => [e[GMA]].flat().every((m) => typeof m === 'string' && (m as string).endsWith(`,${UBASE}`))), 'members are user DNs of the virtual tree');
});
