// Searches through the gateway against a real Samba AD DC: the virtual tree, the first attribute map,
// paging through the whole bulk set, and who may see what.
import t from 'tap';
import { Client, type Entry } from 'ldapts';
import { bedEnv, CONSUMER_DN, CONSUMER_PASSWORD, run, sambaExampleYaml, startConsumerSession, type TestGateway } from '../helpers/gateway';

const PW = bedEnv('SAMBA_AD_USER_PASS');
const BASE = 'dc=vpn,dc=example,dc=test';
const USERS = `ou=users,${BASE}`;
let g: TestGateway;
let c: Client;
let stop: () => Promise<void>;
t.before(async () => {
  ({ g, c, stop } = await startConsumerSession(sambaExampleYaml()));
});
t.teardown(() => stop());

t.test('a user comes back under the client-facing base with the first attribute map', async (t) => {
  // Defguard's S1: (&(UA=<v>)(objectClass=UOC)) with ["*", MA]
  const { searchEntries } = await c.search(USERS, { scope: 'sub', filter: '(&(uid=alice)(objectClass=inetOrgPerson))', attributes: ['*', 'memberOf'] });
  t.equal(searchEntries.length, 1);
  const e = searchEntries[0] as Entry;
  t.equal(e.dn, `uid=alice,${USERS}`);
  t.equal(e.uid, 'alice');
  t.equal(e.givenName, 'Alice');
  t.equal(e.sn, 'Anderson');
  t.equal(e.mail, 'alice@example.test');
  t.equal(e.mobile, '+1 555 1101');
  t.same(e.objectClass, ['top', 'person', 'organizationalPerson', 'inetOrgPerson']);
  // Engineering ⊂ Staff ⊂ AllEmployees, Staff ⊂ VPN: nested groups are flattened
  t.same([e.memberOf].flat(), ['AllEmployees', 'BulkAll', 'Engineering', 'Staff', 'VPN'].map((g) => `cn=${g},ou=groups,${BASE}`));
  t.notOk('sAMAccountName' in e, 'AD attribute names do not leak through the map');
});

t.test('attribute names come back in exactly the case the client asked for', async (t) => {
  const { searchEntries } = await c.search(USERS, { filter: '(uid=bob)', attributes: ['GIVENNAME', 'Mail', 'sn', 'mobile', 'UID'] });
  t.same(Object.keys(searchEntries[0] as Entry).sort(), ['GIVENNAME', 'Mail', 'UID', 'dn', 'mobile', 'sn']);
});

t.test('DNs are clean and byte-identical across calls: escaped comma, non-ASCII, second OU', async (t) => {
  const filter = '(|(uid=jdoe)(uid=jmuller)(uid=pobrien)(uid=ann.contractor))';
  const a = await c.search(USERS, { filter, attributes: ['cn'] });
  const b = await c.search(USERS, { filter, attributes: ['cn'] });
  const dns = a.searchEntries.map((e) => e.dn).sort();
  t.same(dns, [`uid=ann.contractor,${USERS}`, `uid=jdoe,${USERS}`, `uid=jmuller,${USERS}`, `uid=pobrien,${USERS}`]);
  t.same(b.searchEntries.map((e) => e.dn).sort(), dns);
  t.same(a.searchEntries.map((e) => e.cn).sort(), ['Ann (Contractor) Star*', 'Doe, John', 'José Müller', "O'Brien, Pat"]);
});

t.test('a non-ASCII group name comes out as clean UTF-8 in DNs, and works in filters', async (t) => {
  const r = await c.search(USERS, { filter: '(uid=jmuller)', attributes: ['memberOf'] });
  t.ok([r.searchEntries[0]?.memberOf].flat().includes(`cn=Ingeniería,ou=groups,${BASE}`), 'memberOf holds the UTF-8 DN');
  const g2 = await c.search(`ou=groups,${BASE}`, { filter: '(cn=Ingeniería)', attributes: ['uniqueMember'] });
  t.equal(g2.searchEntries[0]?.dn, `cn=Ingeniería,ou=groups,${BASE}`);
  t.same(g2.searchEntries[0]?.uniqueMember, `uid=jmuller,${USERS}`);
  const back = await c.search(USERS, { filter: `(memberOf=cn=Ingeniería,ou=groups,${BASE})`, attributes: ['uid'] });
  t.same(back.searchEntries.map((e) => e.uid), ['jmuller']);
  const base = await c.search(`cn=Ingeniería,ou=groups,${BASE}`, { scope: 'base', attributes: ['cn'] });
  t.equal(base.searchEntries[0]?.cn, 'Ingeniería');
});

t.test('non-ASCII and special characters in filter values reach AD intact', async (t) => {
  const r1 = await c.search(USERS, { filter: '(givenName=José)', attributes: ['uid'] });
  t.same(r1.searchEntries.map((e) => e.uid), ['jmuller']);
  const r2 = await c.search(USERS, { filter: '(sn=Star\\2a)', attributes: ['uid'] });
  t.same(r2.searchEntries.map((e) => e.uid), ['ann.contractor'], 'an escaped * matches the literal character');
  const r3 = await c.search(USERS, { filter: '(cn=Doe\\2c John)', attributes: ['uid'] });
  t.same(r3.searchEntries.map((e) => e.uid), ['jdoe']);
});

t.test('mail falls back to the UPN when AD has none', async (t) => {
  const r = await c.search(USERS, { filter: '(uid=nomail)', attributes: ['mail'] });
  t.equal((r.searchEntries[0] as Entry).mail, 'nomail@example.test');
  const byMail = await c.search(USERS, { filter: '(mail=nomail@example.test)', attributes: ['uid'] });
  t.same(byMail.searchEntries.map((e) => e.uid), ['nomail'], 'and a filter on mail finds it the same way');
});

t.test('a paged listing returns every one of the 1,500 bulk users, and no references', async (t) => {
  const seen = new Set<string>();
  let refs = 0;
  for await (const page of c.searchPaginated(BASE, { scope: 'sub', filter: '(objectClass=inetOrgPerson)', attributes: ['uid'], paged: { pageSize: 500 } })) {
    for (const e of page.searchEntries) seen.add(e.dn);
    refs += page.searchReferences.length;
  }
  let bulk = 0;
  for (let i = 1; i <= 1500; i++) if (seen.has(`uid=bulk${String(i).padStart(4, '0')},${USERS}`)) bulk++;
  t.equal(bulk, 1500);
  t.equal(refs, 0);
  t.ok(seen.size >= 1510, `${seen.size} users`);
});

t.test("OpenLDAP's ldapsearch -E pr=200/noprompt lists the whole virtual tree", async (t) => {
  const r = await run('ldapsearch', ['-x', '-LLL', '-H', g.url, '-D', CONSUMER_DN, '-w', CONSUMER_PASSWORD, '-b', BASE, '-E', 'pr=200/noprompt', '(objectClass=*)', '1.1'], process.env, 60_000);
  t.equal(r.code, 0, r.stderr);
  const dns = r.stdout.split('\n').filter((l) => l.startsWith('dn: '));
  t.ok(dns.includes(`dn: ${BASE}`) && dns.includes(`dn: ${USERS}`) && dns.includes(`dn: ou=groups,${BASE}`));
  t.ok(dns.includes(`dn: cn=Engineering,ou=groups,${BASE}`) && dns.includes(`dn: uid=bulk1500,${USERS}`));
  t.ok(dns.length > 1515, `${dns.length} entries`);
  t.notMatch(r.stdout, /^ref:|^# ref/m, 'no continuation references');
});

t.test('base, one-level and subtree scopes on the virtual tree', async (t) => {
  const base = await c.search(`uid=carol,${USERS}`, { scope: 'base', filter: '(objectClass=*)', attributes: ['uid'] });
  t.same(base.searchEntries.map((e) => e.dn), [`uid=carol,${USERS}`]);
  const group = await c.search(`cn=Engineering,ou=groups,${BASE}`, { scope: 'base', attributes: ['cn', 'objectClass'] });
  t.match(group.searchEntries[0], { dn: `cn=Engineering,ou=groups,${BASE}`, cn: 'Engineering', objectClass: ['top', 'groupOfUniqueNames'] });
  const one = await c.search(BASE, { scope: 'one', filter: '(objectClass=*)', attributes: ['1.1'] });
  t.same(one.searchEntries.map((e) => e.dn).sort(), [`ou=groups,${BASE}`, USERS]);
  await t.rejects(c.search(`uid=nobody,${USERS}`, { scope: 'base' }), { code: 32 }, 'a missing entry is noSuchObject');
  const filtered = await c.search(`uid=carol,${USERS}`, { scope: 'base', filter: '(uid=someone-else)' });
  t.equal(filtered.searchEntries.length, 0, 'an existing entry that does not match the filter is simply not returned');
  await t.rejects(c.search('dc=elsewhere', { scope: 'sub' }), { code: 32 });
  const none = await c.search(USERS, { filter: '(uid=nobody-here)' });
  t.equal(none.searchEntries.length, 0);
});

t.test('an end user sees their own entry; anonymous clients see only the rootDSE', async (t) => {
  const u = new Client({ url: g.url, timeout: 10_000 });
  t.teardown(() => u.unbind().catch(() => undefined));
  await u.bind('alice', PW);
  const r = await u.search(USERS, { filter: '(objectClass=*)', attributes: ['uid'] });
  t.same(r.searchEntries.map((e) => e.dn).filter((dn) => dn.startsWith('uid=')), [`uid=alice,${USERS}`], 'the only user entry is their own');
  await t.rejects(u.search(`uid=bob,${USERS}`, { scope: 'base' }), { code: 32 }, "another user's entry does not exist for them");

  const anon = new Client({ url: g.url, timeout: 10_000 });
  t.teardown(() => anon.unbind().catch(() => undefined));
  await t.rejects(anon.search(USERS, { filter: '(uid=alice)' }), { code: 50 });
  const dse = await anon.search('', { scope: 'base', attributes: ['namingContexts', 'supportedExtension', 'supportedControl', 'vendorName'] });
  t.match(dse.searchEntries[0], { namingContexts: BASE, supportedControl: '1.2.840.113556.1.4.319', vendorName: 'ldap-gateway' });
  t.same([(dse.searchEntries[0] as Entry).supportedExtension].flat().sort(), ['1.3.6.1.4.1.1466.20037', '1.3.6.1.4.1.4203.1.11.3']);
});

t.test('a size limit ends the search with sizeLimitExceeded after that many entries', async (t) => {
  const r = await run('ldapsearch', ['-x', '-LLL', '-z', '5', '-H', g.url, '-D', CONSUMER_DN, '-w', CONSUMER_PASSWORD, '-b', USERS, '(uid=bulk*)', '1.1']);
  t.equal(r.code, 4, 'ldapsearch exits with the result code');
  t.equal(r.stdout.split('\n').filter((l) => l.startsWith('dn: ')).length, 5);
});

t.test('repeated searches are served from the cache, never across identities', async (t) => {
  const count = async (result: string) => {
    const text = await (await fetch(`${g.httpUrl}/metrics`)).text();
    return Number(new RegExp(`^ldap_gateway_cache_requests_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  };
  const filter = '(|(uid=alice)(uid=bob))';
  const hits0 = await count('hit');
  const a = await c.search(USERS, { filter, attributes: ['uid', 'mail'] });
  const b = await c.search(USERS, { filter, attributes: ['uid', 'mail'] });
  t.same(b.searchEntries, a.searchEntries);
  t.equal(a.searchEntries.length, 2);
  t.equal((await count('hit')) - hits0, 1, 'the second identical search was a hit');

  const u = new Client({ url: g.url, timeout: 10_000 });
  t.teardown(() => u.unbind().catch(() => undefined));
  await u.bind('alice', PW);
  const mine = await u.search(USERS, { filter, attributes: ['uid', 'mail'] });
  t.same(mine.searchEntries.map((e) => e.uid), ['alice'], "alice does not get the consumer's cached answer");
  t.equal((await count('hit')) - hits0, 1, 'that was a miss');
});

t.test('paging cookies survive other operations on the same connection in between', async (t) => {
  const q = { filter: '(objectClass=inetOrgPerson)', attributes: ['uid'] };
  const a = c.searchPaginated(USERS, { ...q, paged: { pageSize: 300 } });
  const seen: string[] = [];
  let other = 0;
  for (;;) {
    const p = await a.next();
    if (p.done) break;
    seen.push(...p.value.searchEntries.map((e) => e.dn));
    // between pages: a plain search, a second paged search run to its end, and a bind check
    other += (await c.search(USERS, { filter: '(uid=bob)', attributes: ['uid'] })).searchEntries.length;
    for await (const q2 of c.searchPaginated(`ou=groups,${BASE}`, { filter: '(cn=Eng*)', attributes: ['cn'], paged: { pageSize: 1 } })) other += q2.searchEntries.length;
  }
  t.ok(seen.length > 1510 && new Set(seen).size === seen.length, `${seen.length} users, none twice`);
  t.ok(other > 10);
});

t.test("values transformed from AD's representations", async (t) => {
  const r = await c.search(USERS, { filter: '(|(uid=dave)(uid=alice))', attributes: ['uid', 'entryUUID', 'objectSid', 'accountDisabled', 'pwdChangedTime'] });
  const by = new Map(r.searchEntries.map((e) => [e.uid, e]));
  t.match(by.get('alice')?.entryUUID, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  t.match(by.get('alice')?.objectSid, /^S-1-5-21-\d+-\d+-\d+-\d+$/);
  t.equal(by.get('alice')?.accountDisabled, 'FALSE');
  t.equal(by.get('dave')?.accountDisabled, 'TRUE');
  t.match(by.get('alice')?.pwdChangedTime, /^20\d{12}Z$/);
  const star = await c.search(USERS, { filter: '(uid=alice)', attributes: ['*'] });
  t.notOk('entryUUID' in (star.searchEntries[0] ?? {}), 'operational attributes only on request');
  const plus = await c.search(USERS, { filter: '(uid=alice)', attributes: ['+'] });
  t.ok('entryUUID' in (plus.searchEntries[0] ?? {}));
});
