// The attribute map read backwards (directory/reverse.ts): one table serves both directions, so a value
// written to a virtual attribute through its inverse reads back as the same value: read(write(x)) = x.
import t from 'tap';
import { defguardProfile, Mapper, selection, type AdEntry, type AdValue } from '../../src/directory/mapping';
import { checkAccountName, classKind, fromUnicodePwd, inverse, isHashedPassword, unicodePwd, withDisableBit } from '../../src/directory/reverse';

const profile = defguardProfile({ groupClass: 'groupOfUniqueNames' });
const users = new Mapper(profile.users, 'uid', 'distinguishedName');
const groups = new Mapper(profile.groups, 'cn', 'distinguishedName');

/** Apply writes through their inverses to an AD entry, then read the virtual attributes back. */
function roundTrip(m: Mapper, kind: 'user' | 'group', start: Record<string, string[]>, writes: Record<string, string[]>): Record<string, string[]> {
  const attrs = new Map<string, AdValue[]>(Object.entries(start).map(([k, v]) => [k.toLowerCase(), v]));
  for (const [name, values] of Object.entries(writes)) {
    const inv = inverse(m, kind, name);
    if (inv.kind === 'attr' || inv.kind === 'key') attrs.set(inv.ad.toLowerCase(), values);
    else if (inv.kind === 'rdn') attrs.set('cn', values);
    else throw new Error(`${name} has no plain inverse (${inv.kind})`);
  }
  const e: AdEntry = { dn: 'CN=x,OU=People,DC=example,DC=test', attrs };
  return Object.fromEntries(m.mapAttributes(e, selection(['*'])).map((a) => [a.type, a.values]));
}

t.test('users: every attribute Defguard writes reads back as written', async (t) => {
  const writes = { uid: ['newbie'], sn: ['Bie'], givenName: ['New'], mail: ['new@example.test'], cn: ['New Bie'], mobile: ['+1 555 0000'], displayName: ['New B.'], telephoneNumber: ['+1 555 1111'] };
  const out = roundTrip(users, 'user', { userPrincipalName: ['newbie@example.test'] }, writes);
  for (const [k, v] of Object.entries(writes)) t.same(out[k], v, k);
});

t.test('users: a fallback chain is written to its primary source, so it reads back even when the fallback has a value', async (t) => {
  t.same(inverse(users, 'user', 'mail'), { kind: 'attr', ad: 'mail' });
  t.same(inverse(users, 'user', 'mobile'), { kind: 'attr', ad: 'mobile' });
  const out = roundTrip(users, 'user', { userPrincipalName: ['upn@example.test'], telephoneNumber: ['+1 1'], sAMAccountName: ['x'] }, { mail: ['real@example.test'], mobile: ['+1 2'] });
  t.same(out.mail, ['real@example.test']);
  t.same(out.mobile, ['+1 2']);
});

t.test('AD names of 1:1 rules are accepted as those rules; the key and the RDN are renames', async (t) => {
  t.same(inverse(users, 'user', 'sAMAccountName'), { kind: 'key', ad: 'sAMAccountName' });
  t.same(inverse(users, 'user', 'UID'), { kind: 'key', ad: 'sAMAccountName' });
  t.same(inverse(users, 'user', 'cn'), { kind: 'rdn' });
  t.same(inverse(groups, 'group', 'cn'), { kind: 'key', ad: 'cn' });
  t.same(inverse(users, 'user', 'unicodePwd'), { kind: 'password', form: 'unicodePwd' });
  t.same(inverse(users, 'user', 'userPassword'), { kind: 'password', form: 'userPassword' });
  t.same(inverse(users, 'user', 'userAccountControl'), { kind: 'disabled', form: 'uac' });
  t.same(inverse(users, 'user', 'accountDisabled'), { kind: 'disabled', form: 'boolean' });
  t.same(inverse(users, 'user', 'pwdLastSet'), { kind: 'passthrough', ad: 'pwdLastSet' });
});

t.test('rules without an inverse are read-only; unknown names are unmapped', async (t) => {
  for (const name of ['memberOf', 'entryUUID', 'objectSid', 'pwdChangedTime']) t.equal(inverse(users, 'user', name).kind, 'readOnly', name);
  t.equal(inverse(groups, 'group', 'entryUUID').kind, 'readOnly');
  t.same(inverse(groups, 'group', 'uniqueMember'), { kind: 'members' });
  t.same(inverse(groups, 'group', 'member'), { kind: 'members' }, "AD's name for the members, whatever the group class");
  t.same(inverse(users, 'user', 'objectClass'), { kind: 'objectClass' });
  t.same(inverse(users, 'user', 'homeDirectory'), { kind: 'unknown' });
  t.same(inverse(groups, 'group', 'unicodePwd'), { kind: 'unknown' }, 'groups have no password');
});

t.test('object classes: what Defguard and the OpenLDAP tools send is recognised', async (t) => {
  t.equal(classKind(['inetOrgPerson']), 'user');
  t.equal(classKind(['top', 'person', 'organizationalPerson', 'inetOrgPerson']), 'user');
  t.equal(classKind(['user']), 'user');
  t.equal(classKind(['groupOfUniqueNames']), 'group');
  t.equal(classKind(['top', 'groupOfNames']), 'group');
  t.type(classKind(['device']), 'object');
  t.type(classKind([]), 'object');
});

t.test('userAccountControl: only ACCOUNTDISABLE changes, every other bit is kept', async (t) => {
  t.equal(withDisableBit(0x10200, true), 0x10202);
  t.equal(withDisableBit(0x10202, false), 0x10200);
  t.equal(withDisableBit(0x202, true), 0x202);
  t.equal(withDisableBit(0x220, false), 0x220, 'PASSWD_NOTREQD kept');
});

t.test('passwords: unicodePwd both ways, hashed userPassword recognised', async (t) => {
  t.equal(fromUnicodePwd(unicodePwd('Pässwörd "1"')), 'Pässwörd "1"');
  t.same(unicodePwd('ab'), Buffer.from([0x22, 0, 0x61, 0, 0x62, 0, 0x22, 0]));
  t.equal(fromUnicodePwd(Buffer.from('"plain utf8"')), undefined, 'UTF-8 is not UTF-16LE');
  t.equal(fromUnicodePwd(Buffer.from('no quotes', 'utf16le')), undefined);
  t.ok(isHashedPassword('{SSHA}abcd'));
  t.ok(isHashedPassword('{CRYPT}$6$x'));
  t.notOk(isHashedPassword('plain {SSHA} inside'));
});

t.test('sAMAccountName rules: 20 characters for users, no forbidden characters', async (t) => {
  t.equal(checkAccountName('newbie', 'user'), undefined);
  t.match(checkAccountName('a'.repeat(21), 'user'), /at most 20/);
  t.equal(checkAccountName('a'.repeat(21), 'group'), undefined);
  t.match(checkAccountName('a@b', 'user'), /"@"/);
  t.match(checkAccountName('x.', 'user'), /end with a dot/);
  t.match(checkAccountName('', 'user'), /empty/);
});
