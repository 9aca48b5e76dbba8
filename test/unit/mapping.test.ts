import t from 'tap';
import { and, eq, filterToString, simplify } from '../../src/directory/filter';
import { Mapper, defguardProfile, selection, type AdEntry } from '../../src/directory/mapping';
import { filetimeToGeneralized, guidToString, sidToString } from '../../src/directory/transforms';

const profile = defguardProfile({ groupClass: 'groupOfUniqueNames' });
const users = new Mapper(profile.users, 'uid', 'distinguishedName');

const ad = (attrs: Record<string, Array<string | Buffer>>): AdEntry => ({ dn: 'CN=x,DC=corp,DC=example', attrs: new Map(Object.entries(attrs).map(([k, v]) => [k.toLowerCase(), v])) });

t.test('maps an AD user to the inetOrgPerson shape Defguard reads', async (t) => {
  const e = ad({ sAMAccountName: ['alice'], givenName: ['Alice'], sn: ['A'], userPrincipalName: ['alice@corp.example'], telephoneNumber: ['+1'] });
  const out = Object.fromEntries(users.mapAttributes(e, selection(['*'])).map((a) => [a.type, a.values]));
  t.same(out.uid, ['alice']);
  t.same(out.mail, ['alice@corp.example'], 'mail falls back to the UPN');
  t.same(out.mobile, ['+1'], 'mobile falls back to telephoneNumber');
  t.same(out.objectClass, ['top', 'person', 'organizationalPerson', 'inetOrgPerson']);
  t.notOk('entryUUID' in out, 'operational attributes only when asked for');
  t.equal(users.keyOf(e), 'alice');
});

t.test('returns the attribute names in the case the client asked for', async (t) => {
  const e = ad({ sAMAccountName: ['bob'], mail: ['bob@x'] });
  t.same(users.mapAttributes(e, selection(['MAIL', 'Uid'])), [{ type: 'Uid', values: ['bob'] }, { type: 'MAIL', values: ['bob@x'] }]);
  t.same(users.mapAttributes(e, selection(['1.1'])), []);
  t.same(users.sourceAttributes(selection(['mail'])).sort(), ['mail', 'sAMAccountName', 'userPrincipalName']);
});

t.test('rewrites filters into AD terms, never evaluating them', async (t) => {
  const f = (s: Parameters<Mapper['rewrite']>[0]) => filterToString(simplify(users.rewrite(s)));
  t.equal(f(and(eq('uid', 'alice'), eq('objectClass', 'inetOrgPerson'))), '(sAMAccountName=alice)');
  t.equal(f(eq('objectClass', 'groupOfNames')), '(!(objectClass=*))', 'a group class never matches a user');
  t.equal(f(eq('MAIL', 'a@b')), '(|(mail=a@b)(&(!(mail=*))(userPrincipalName=a@b)))', 'fallback attributes keep their meaning in filters');
  t.equal(f({ type: 'ext', attr: 'userAccountControl', rule: '1.2.840.113556.1.4.803', value: '2', dnAttributes: false }), '(userAccountControl:1.2.840.113556.1.4.803:=2)', 'matching rules pass through');
  t.equal(f(eq('memberOf', 'cn=VPN,ou=groups,dc=vpn')), '(!(objectClass=*))', 'a membership term without the index to resolve it matches nothing');
  t.equal(f(eq('sAMAccountName', 'x')), '(sAMAccountName=x)', 'unmapped names pass through as AD names');
});

t.test('value transforms', async (t) => {
  const guid = Buffer.from('78563412bc9af0de0123456789abcdef', 'hex');
  t.equal(guidToString(guid), '12345678-9abc-def0-0123-456789abcdef');
  t.equal(guidToString(Buffer.alloc(3)), undefined);
  const sid = Buffer.from('010500000000000515000000a065cf7e784b9b5fe77c8770f4010000', 'hex');
  t.equal(sidToString(sid), 'S-1-5-21-2127521184-1604012920-1887927527-500');
  t.equal(filetimeToGeneralized('125911584000000000'), '20000101000000Z');
  t.equal(filetimeToGeneralized('0'), undefined);
  t.equal(filetimeToGeneralized('9223372036854775807'), undefined);
  const dis = users.mapAttributes(ad({ sAMAccountName: ['d'], userAccountControl: ['514'] }), selection(['accountDisabled']));
  t.same(dis, [{ type: 'accountDisabled', values: ['TRUE'] }]);
});
