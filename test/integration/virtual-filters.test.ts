// Filters on virtual attributes against the real Samba AD DC: a filter term on a virtual attribute
// matches exactly the entries whose returned attribute satisfies it (src/directory/mapping.ts). Term by
// term, on users and groups, the entries a filter selects are compared with the entries of an unfiltered
// listing whose returned attribute satisfies the term; and AD's built-in groups stay out of the examples.
import t, { type Test } from 'tap';
import type { Client, Entry } from 'ldapts';
import { normalizeDN } from '../../src/directory/dn';
import { sambaExampleYaml, startConsumerSession } from '../helpers/gateway';

const BASE = 'dc=vpn,dc=example,dc=test';
const USERS = `ou=users,${BASE}`;
const GROUPS = `ou=groups,${BASE}`;
const vg = (cn: string) => `cn=${cn},${GROUPS}`;
const vu = (uid: string) => `uid=${uid},${USERS}`;
const BUILTIN = ['Administrators', 'Domain Admins', 'Schema Admins', 'Enterprise Admins', 'Domain Users', 'Users', 'Guests'];
const TESTBED_GROUPS = ['AllEmployees', 'BulkAll', 'Engineering', 'Ingeniería', 'Remote', 'Staff', 'VPN'];
// the 1,500 bulk users make every listing slow: terms are checked on the others (BulkAll once in full)
const NOT_BULK = '(!(uid=bulk*))';
const USER_ATTRS = ['uid', 'mail', 'memberOf', 'entryUUID', 'objectSid', 'accountDisabled', 'pwdChangedTime'];
const GROUP_ATTRS = ['cn', 'uniqueMember', 'entryUUID'];

const values = (e: Entry, attr: string): string[] => [e[attr]].flat().filter((v): v is string => typeof v === 'string');
const lower = (s: string) => s.toLowerCase();

async function list(c: Client, base: string, filter: string, attributes: string[]): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const page of c.searchPaginated(base, { scope: 'sub', filter, attributes, paged: { pageSize: 500 } })) out.push(...page.searchEntries);
  return out;
}
const names = (es: Entry[], key: string) => es.map((e) => values(e, key)[0] as string).sort();

/** A term, and whether one listed entry's returned attributes satisfy it. */
interface Term {
  filter: string;
  holds: (e: Entry) => boolean;
}
const dnIn = (attr: string, dn: string) => (e: Entry) => values(e, attr).some((v) => normalizeDN(v) === normalizeDN(dn));
const some = (attr: string, p: (v: string) => boolean) => (e: Entry) => values(e, attr).some(p);

/** For each term and its negation: the entries selected equal the listed entries that satisfy it. */
async function checkTerms(t: Test, c: Client, o: { base: string; cls: string; scope: string; key: string; attrs: string[]; terms: Term[] }) {
  const listed = await list(c, o.base, `(&${o.cls}${o.scope})`, o.attrs);
  t.ok(listed.length > 5, `${listed.length} entries listed`);
  for (const term of o.terms) {
    const want = names(listed.filter(term.holds), o.key);
    const wantNot = names(listed.filter((e) => !term.holds(e)), o.key);
    t.same(names(await list(c, o.base, `(&${o.cls}${o.scope}${term.filter})`, [o.key]), o.key), want, `${term.filter}: ${want.length} entries`);
    t.same(names(await list(c, o.base, `(&${o.cls}${o.scope}(!${term.filter}))`, [o.key]), o.key), wantNot, `(!${term.filter}): ${wantNot.length} entries`);
  }
  return listed;
}

/** The group terms, some of them built from what the listing returned. */
const groupTerms = (listed: Entry[]): Term[] => {
  const staff = listed.find((e) => e.cn === 'Staff') as Entry;
  const uuid = values(staff, 'entryUUID')[0] as string;
  return [
    { filter: '(uniqueMember=*)', holds: (e) => values(e, 'uniqueMember').length > 0 },
    { filter: `(uniqueMember=${vu('alice')})`, holds: dnIn('uniqueMember', vu('alice')) },
    { filter: `(uniqueMember=${vu('CAROL').toUpperCase()})`, holds: dnIn('uniqueMember', vu('carol')) },
    { filter: `(uniqueMember=${vu('jdoe')})`, holds: dnIn('uniqueMember', vu('jdoe')) },
    { filter: `(uniqueMember=${vu('Administrator')})`, holds: dnIn('uniqueMember', vu('Administrator')) }, // not in the users source
    { filter: `(uniqueMember=${vu('nobody-at-all')})`, holds: () => false },
    { filter: '(uniqueMember=uid=j*)', holds: some('uniqueMember', (v) => lower(v).startsWith('uid=j')) },
    { filter: '(uniqueMember=*BULK0007*)', holds: some('uniqueMember', (v) => lower(v).includes('bulk0007')) },
    { filter: `(uniqueMember=*,${USERS})`, holds: some('uniqueMember', (v) => lower(v).endsWith(`,${USERS}`)) },
    { filter: '(entryUUID=*)', holds: (e) => values(e, 'entryUUID').length > 0 },
    { filter: `(entryUUID=${uuid})`, holds: some('entryUUID', (v) => v === uuid) },
    { filter: `(entryUUID=${uuid.toUpperCase()})`, holds: some('entryUUID', (v) => v === uuid) },
  ];
};

t.test('with the samba-ad example: users, term by term', async (t) => {
  const { c, stop } = await startConsumerSession(sambaExampleYaml());
  t.teardown(stop);
  const listed = await list(c, USERS, `(&(objectClass=inetOrgPerson)${NOT_BULK})`, USER_ATTRS);
  const by = (uid: string) => listed.find((e) => e.uid === uid) as Entry;
  const aliceUUID = values(by('alice'), 'entryUUID')[0] as string;
  const bobSid = values(by('bob'), 'objectSid')[0] as string;
  const expiredpwTime = values(by('expiredpw'), 'pwdChangedTime')[0] as string;
  const aliceTime = values(by('alice'), 'pwdChangedTime')[0] as string;
  t.ok(aliceUUID && bobSid && expiredpwTime && aliceTime, 'the listing returns the transformed values');
  const terms: Term[] = [
    { filter: '(memberOf=*)', holds: (e) => values(e, 'memberOf').length > 0 },
    { filter: `(memberOf=${vg('Staff')})`, holds: dnIn('memberOf', vg('Staff')) },
    { filter: `(memberOf=${vg('AllEmployees')})`, holds: dnIn('memberOf', vg('AllEmployees')) }, // three levels of nesting
    { filter: `(memberOf=${vg('VPN').toUpperCase()})`, holds: dnIn('memberOf', vg('VPN')) },
    { filter: `(memberOf=${vg('Domain Users')})`, holds: dnIn('memberOf', vg('Domain Users')) }, // not shown
    { filter: '(memberOf=cn=ing*)', holds: some('memberOf', (v) => lower(v).startsWith('cn=ing')) },
    { filter: '(memberOf=*engineer*)', holds: some('memberOf', (v) => lower(v).includes('engineer')) },
    { filter: `(memberOf=*,${GROUPS})`, holds: some('memberOf', (v) => lower(v).endsWith(`,${GROUPS}`)) },
    { filter: '(mail=*)', holds: (e) => values(e, 'mail').length > 0 },
    { filter: '(mail=nomail@example.test)', holds: some('mail', (v) => lower(v) === 'nomail@example.test') }, // from the UPN
    { filter: '(mail=*@example.test)', holds: some('mail', (v) => lower(v).endsWith('@example.test')) },
    { filter: '(entryUUID=*)', holds: (e) => values(e, 'entryUUID').length > 0 },
    { filter: `(entryUUID=${aliceUUID})`, holds: some('entryUUID', (v) => v === aliceUUID) },
    { filter: '(accountDisabled=*)', holds: (e) => values(e, 'accountDisabled').length > 0 },
    { filter: '(accountDisabled=TRUE)', holds: some('accountDisabled', (v) => v === 'TRUE') },
    { filter: '(accountDisabled=FALSE)', holds: some('accountDisabled', (v) => v === 'FALSE') },
    { filter: '(objectSid=*)', holds: (e) => values(e, 'objectSid').length > 0 },
    { filter: `(objectSid=${bobSid})`, holds: some('objectSid', (v) => v === bobSid) },
    { filter: '(pwdChangedTime=*)', holds: (e) => values(e, 'pwdChangedTime').length > 0 },
    { filter: `(pwdChangedTime=${expiredpwTime})`, holds: some('pwdChangedTime', (v) => v === expiredpwTime) },
    // GeneralizedTime to the second, all in the same format: string order is time order
    { filter: `(pwdChangedTime>=${aliceTime})`, holds: some('pwdChangedTime', (v) => v >= aliceTime) },
    { filter: `(pwdChangedTime<=${aliceTime})`, holds: some('pwdChangedTime', (v) => v <= aliceTime) },
  ];
  await checkTerms(t, c, { base: USERS, cls: '(objectClass=inetOrgPerson)', scope: NOT_BULK, key: 'uid', attrs: USER_ATTRS, terms });
  t.same(values(by('dave'), 'accountDisabled'), ['TRUE'], 'the test bed has a disabled user');

  // a term the attribute cannot answer is Undefined: it matches nothing, and neither does its negation
  for (const f of ['(entryUUID=*a*)', `(memberOf>=${vg('A')})`, '(accountDisabled=maybe)']) {
    t.same(await list(c, USERS, `(&(objectClass=inetOrgPerson)${NOT_BULK}${f})`, ['uid']), [], f);
    t.same(await list(c, USERS, `(&(objectClass=inetOrgPerson)${NOT_BULK}(!${f}))`, ['uid']), [], `(!${f})`);
  }

  // the whole directory once, for presence of memberOf and the group of 1,501
  const all = await list(c, USERS, '(objectClass=inetOrgPerson)', ['uid', 'memberOf']);
  t.ok(all.length > 1510);
  for (const term of [
    { filter: '(memberOf=*)', holds: (e: Entry) => values(e, 'memberOf').length > 0 },
    { filter: `(memberOf=${vg('BulkAll')})`, holds: dnIn('memberOf', vg('BulkAll')) },
  ]) {
    const want = names(all.filter(term.holds), 'uid');
    t.same(names(await list(c, USERS, `(&(objectClass=inetOrgPerson)${term.filter})`, ['uid']), 'uid'), want, `${term.filter} over every user: ${want.length}`);
    t.same(names(await list(c, USERS, `(&(objectClass=inetOrgPerson)(!${term.filter}))`, ['uid']), 'uid'), names(all.filter((e) => !term.holds(e)), 'uid'), `(!${term.filter}) over every user`);
  }
});

t.test('with the samba-ad example: groups, term by term, and no built-in group', async (t) => {
  const { c, stop } = await startConsumerSession(sambaExampleYaml());
  t.teardown(stop);
  const listed = await list(c, GROUPS, '(objectClass=groupOfUniqueNames)', GROUP_ATTRS);
  const cns = names(listed, 'cn');
  for (const g of BUILTIN) t.notOk(cns.includes(g), `built-in group ${g} is not listed`);
  for (const g of TESTBED_GROUPS) t.ok(cns.includes(g), `${g} is listed`);
  await checkTerms(t, c, { base: GROUPS, cls: '(objectClass=groupOfUniqueNames)', scope: '', key: 'cn', attrs: GROUP_ATTRS, terms: groupTerms(listed) });

  // Defguard's S11 list_group_memberships: only groups that have members in the answer
  const s11 = await list(c, GROUPS, '(&(objectClass=groupOfUniqueNames)(uniqueMember=*))', ['cn', 'uniqueMember']);
  t.ok(s11.length > 0);
  t.ok(s11.every((e) => values(e, 'uniqueMember').length > 0), `every one of ${s11.length} groups has a uniqueMember`);
  t.same(names(s11, 'cn'), names(listed.filter((e) => values(e, 'uniqueMember').length > 0), 'cn'));
});

t.test("without the example's groups filter: built-in groups are listed, but never as groups with members", async (t) => {
  const yaml = sambaExampleYaml().replace(/^ {2}groups:\n {4}source:\n(?: {6}#.*\n)* {6}filter: .*\n/m, '');
  t.notMatch(yaml, /^ {2}groups:/m, 'the groups source is the whole domain');
  const { c, stop } = await startConsumerSession(yaml);
  t.teardown(stop);
  const listed = await list(c, GROUPS, '(objectClass=groupOfUniqueNames)', GROUP_ATTRS);
  const cns = names(listed, 'cn');
  t.ok(cns.includes('Domain Admins') && cns.includes('Schema Admins'), 'built-in groups are shown');
  t.notOk(listed.find((e) => e.cn === 'Schema Admins')?.uniqueMember?.length, 'Schema Admins has no member in the users source');
  const s11 = await list(c, GROUPS, '(&(objectClass=groupOfUniqueNames)(uniqueMember=*))', ['cn', 'uniqueMember']);
  t.ok(s11.every((e) => values(e, 'uniqueMember').length > 0), 'every group of (uniqueMember=*) has a uniqueMember in the answer');
  t.notOk(names(s11, 'cn').includes('Schema Admins'));
  await checkTerms(t, c, { base: GROUPS, cls: '(objectClass=groupOfUniqueNames)', scope: '', key: 'cn', attrs: GROUP_ATTRS, terms: groupTerms(listed) });
});
