// Profile options against Samba AD: groupOfNames instead of groupOfUniqueNames, nested: direct, and
// attribute overrides from config.
import t from 'tap';
import { Client } from 'ldapts';
import { CONSUMER_DN, CONSUMER_PASSWORD, sambaEnv, sambaExampleYaml, startFromYaml } from '../helpers/gateway';

const BASE = 'dc=vpn,dc=example,dc=test';

t.test('groupOfNames with member, nested groups listed directly, attributes overridden', async (t) => {
  const g = await startFromYaml(
    sambaExampleYaml()
      .replace('  groups:\n    source:\n', '  groups:\n    objectClass: groupOfNames\n    nested: direct\n    source:\n')
      .replace(
        '  users:\n    source:\n',
        `  users:
    attributes:
      mail: { from: userPrincipalName }
      employeeLogin: { from: [sAMAccountName] }
      displayName: null
    source:
`,
      ),
    sambaEnv(),
  );
  t.teardown(() => g.stop());
  const c = new Client({ url: g.url, timeout: 10_000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.bind(CONSUMER_DN, CONSUMER_PASSWORD);

  const staff = await c.search(`ou=groups,${BASE}`, { filter: '(&(objectClass=groupOfNames)(cn=Staff))', attributes: ['objectClass', 'member', 'uniqueMember'] });
  t.same(staff.searchEntries[0]?.objectClass, ['top', 'groupOfNames']);
  t.same([staff.searchEntries[0]?.member].flat().sort(), [`cn=Engineering,ou=groups,${BASE}`, `uid=carol,ou=users,${BASE}`, `uid=jmuller,ou=users,${BASE}`], 'the subgroup is a member, its users are not');
  t.same(staff.searchEntries[0]?.uniqueMember, [], 'no uniqueMember');
  const alice = await c.search(`ou=users,${BASE}`, { filter: '(uid=alice)', attributes: ['*', 'memberOf'] });
  t.same([alice.searchEntries[0]?.memberOf].flat().sort(), [`cn=BulkAll,ou=groups,${BASE}`, `cn=Engineering,ou=groups,${BASE}`], 'direct memberships only');
  t.equal(alice.searchEntries[0]?.mail, 'alice@example.test', 'mail now from the UPN');
  t.equal(alice.searchEntries[0]?.employeeLogin, 'alice', 'an added attribute');
  t.notOk('displayName' in (alice.searchEntries[0] ?? {}), 'a removed attribute');
  const byLogin = await c.search(`ou=users,${BASE}`, { filter: '(employeeLogin=bob)', attributes: ['uid'] });
  t.same(byLogin.searchEntries.map((e) => e.uid), ['bob'], 'and usable in filters');
});
