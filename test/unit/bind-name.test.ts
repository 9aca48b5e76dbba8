import t from 'tap';
import { classifyBindName, lookupTerm } from '../../src/auth/bind-name';
import { filterToString } from '../../src/directory/filter';
import { VirtualTree } from '../../src/directory/tree';
import { decodeBindFailure } from '../../src/upstream/ad-errors';

const tree = new VirtualTree('dc=vpn,dc=example', 'ou=users', 'ou=groups');

t.test('classifies every bind-name form people type', async (t) => {
  t.same(classifyBindName('alice', tree), { form: 'username', username: 'alice' });
  t.same(classifyBindName('alice@corp.example', tree), { form: 'upn', upn: 'alice@corp.example' });
  t.same(classifyBindName('CORP\\alice', tree), { form: 'down-level', domain: 'CORP', username: 'alice' });
  t.same(classifyBindName('UID=alice,OU=Users,DC=VPN,DC=example', tree), { form: 'virtual-dn', username: 'alice' });
  t.same(classifyBindName('CN=Alice,OU=Staff,DC=corp', tree), { form: 'ad-dn', dn: 'CN=Alice,OU=Staff,DC=corp' });
  t.match(classifyBindName('cn=x,ou=groups,dc=vpn,dc=example', tree), { form: 'invalid' });
  t.match(classifyBindName('cn=a=b', tree), { form: 'invalid' });
  t.match(classifyBindName('two words', tree), { form: 'invalid' });
});

t.test('lookups escape the value (RFC 4515)', async (t) => {
  const term = (n: string) => filterToString(lookupTerm(classifyBindName(n, tree), { key: 'sAMAccountName', upn: 'userPrincipalName', mail: false })!);
  t.equal(term('a*'), '(sAMAccountName=a\\2a)');
  t.equal(term('x)(|(mail*'), '(sAMAccountName=x\\29\\28|\\28mail\\2a)');
  t.match(classifyBindName('x)(|(cn=*', tree), { form: 'invalid' }, 'an injection with = is not even a name');
  t.equal(term('*@corp'), '(userPrincipalName=\\2a@corp)');
  t.equal(term('CORP\\a\\5c'), '(sAMAccountName=a\\5c5c)');
  t.equal(filterToString(lookupTerm({ form: 'upn', upn: 'a@b' }, { key: 'uid', upn: 'userPrincipalName', mail: true })!), '(|(userPrincipalName=a@b)(mail=a@b))');
});

t.test("decodes AD's data codes into reasons", async (t) => {
  const msg = (d: string) => `80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data ${d}, v1db1`;
  const table: Record<string, string> = { '52e': 'bad_credentials', '525': 'no_such_user', '530': 'logon_hours', '531': 'workstation', '532': 'password_expired', '533': 'account_disabled', '701': 'account_expired', '773': 'must_change_password', '775': 'account_locked' };
  for (const [code, reason] of Object.entries(table)) t.equal(decodeBindFailure(msg(code)), reason, code);
  t.equal(decodeBindFailure(msg('52E').replace('52E', '52E')), 'bad_credentials', 'case-insensitive');
  t.equal(decodeBindFailure('Invalid Credentials'), 'bad_credentials', 'non-AD servers');
});
