import t from 'tap';
import { DnSyntaxError, escapeDNValue, firstRdnValue, formatDN, isWithin, normalizeDN, parseDN } from '../../src/directory/dn';

t.test('parses and re-formats RFC 4514 DNs', async (t) => {
  t.same(parseDN('CN=Doe\\, John,OU=Contractors,DC=example,DC=test')[0], [{ type: 'CN', value: 'Doe, John' }]);
  t.same(parseDN('cn=José Müller,ou=People'), [[{ type: 'cn', value: 'José Müller' }], [{ type: 'ou', value: 'People' }]]);
  t.same(parseDN('cn=Jos\\c3\\a9'), [[{ type: 'cn', value: 'José' }]], 'hex pairs form UTF-8');
  t.same(parseDN('cn=a+sn=b,dc=x'), [[{ type: 'cn', value: 'a' }, { type: 'sn', value: 'b' }], [{ type: 'dc', value: 'x' }]]);
  t.same(parseDN(' cn = x , dc = y '), [[{ type: 'cn', value: 'x' }], [{ type: 'dc', value: 'y' }]], 'spaces around separators are insignificant');
  t.same(parseDN('cn=\\ lead and trail\\ ,dc=y')[0], [{ type: 'cn', value: ' lead and trail ' }], 'escaped spaces are kept');
  t.same(parseDN(''), []);
  t.equal(formatDN(parseDN('CN=Doe\\, John,OU=X')), 'CN=Doe\\, John,OU=X');
});

t.test('rejects malformed DNs', async (t) => {
  for (const bad of ['alice', 'cn=a,', 'cn=a\\', '=x', 'cn=a=b', 'c n=x', 'cn=#04', 'cn="unterminated']) {
    t.throws(() => parseDN(bad), DnSyntaxError, bad);
  }
});

t.test('escapes values for DNs', async (t) => {
  t.equal(escapeDNValue('Doe, John'), 'Doe\\, John');
  t.equal(escapeDNValue(' #x+y;z<>"\\ '), '\\ #x\\+y\\;z\\<\\>\\"\\\\\\ ');
  t.equal(escapeDNValue('#x'), '\\#x', 'a leading # is escaped');
  t.equal(escapeDNValue('a\0b'), 'a\\00b');
  t.equal(escapeDNValue('José'), 'José', 'UTF-8 stays readable');
});

t.test('normalizes for case- and spacing-insensitive comparison', async (t) => {
  t.equal(normalizeDN('CN=Alice, OU=People,DC=Example'), normalizeDN('cn=alice,ou=people,dc=example'));
  t.equal(normalizeDN('cn=Doe\\2c John,dc=x'), normalizeDN('CN=Doe\\, John,DC=x'));
  t.not(normalizeDN('cn=a,dc=x'), normalizeDN('cn=b,dc=x'));
  t.ok(isWithin(normalizeDN('cn=a,ou=b,dc=x'), normalizeDN('dc=x')));
  t.notOk(isWithin(normalizeDN('cn=a,dc=xx'), normalizeDN('dc=x')), 'suffix match is on RDN boundaries');
  t.equal(firstRdnValue('CN=Doe\\, John,OU=x', 'cn'), 'Doe, John');
  t.equal(firstRdnValue('OU=x,DC=y', 'cn'), undefined);
});
