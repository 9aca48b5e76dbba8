import t from 'tap';
import { and, eq, escapeFilterValue, FALSE, filterSize, filterToString, not, or, simplify, TRUE } from '../../src/directory/filter';

t.test('RFC 4515 value escaping', async (t) => {
  t.equal(escapeFilterValue('a*b(c)d\\e\0f'), 'a\\2ab\\28c\\29d\\5ce\\00f');
  t.equal(escapeFilterValue('José Müller'), 'José Müller', 'UTF-8 is left as is');
  t.equal(escapeFilterValue('*)(uid=*'), '\\2a\\29\\28uid=\\2a', 'an injection attempt becomes a literal');
});

t.test('renders every filter type', async (t) => {
  t.equal(
    filterToString(and(eq('uid', 'a*'), or(eq('cn', 'x')), not({ type: 'present', attr: 'mail' }), { type: 'substring', attr: 'sn', initial: 'A(', any: ['b'], final: 'c' })),
    '(&(uid=a\\2a)(|(cn=x))(!(mail=*))(sn=A\\28*b*c))',
  );
  t.equal(filterToString({ type: 'ext', attr: 'memberOf', rule: '1.2.840.113556.1.4.1941', value: 'CN=G,DC=x', dnAttributes: false }), '(memberOf:1.2.840.113556.1.4.1941:=CN=G,DC=x)');
  t.equal(filterToString({ type: 'ext', rule: '1.2.3', value: 'v', dnAttributes: true }), '(:dn:1.2.3:=v)');
  t.equal(filterToString({ type: 'ge', attr: 'a', value: '1' }) + filterToString({ type: 'le', attr: 'a', value: '2' }) + filterToString({ type: 'approx', attr: 'a', value: '3' }), '(a>=1)(a<=2)(a~=3)');
});

t.test('folds constants', async (t) => {
  t.same(simplify(and(TRUE, eq('a', '1'))), eq('a', '1'));
  t.same(simplify(and(FALSE, eq('a', '1'))), FALSE);
  t.same(simplify(or(FALSE, eq('a', '1'))), eq('a', '1'));
  t.same(simplify(or(TRUE, eq('a', '1'))), TRUE);
  t.same(simplify(not(TRUE)), FALSE);
  t.same(simplify(and(TRUE, TRUE)), TRUE);
  t.same(simplify(and(eq('a', '1'), or(FALSE, FALSE))), FALSE);
});

t.test('measures size for input limits', async (t) => {
  t.same(filterSize(and(eq('a', '1'), not(eq('b', '2')))), { depth: 3, nodes: 4 });
});
