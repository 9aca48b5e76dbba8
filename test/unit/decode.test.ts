// The intake decoder: every request kind from hand-built PDUs (test/helpers/ber.ts), byte-exact values,
// the answers to what cannot be decoded, and a bounded mutation fuzz of the decoder itself.
import t from 'tap';
import { decodePdu } from '../../src/server/intake';
import { bindRequest, control, controls, equality, extendedRequest, int, modifyRequest, msg, pagedControl, present, searchWith, str, tlv } from '../helpers/ber';

const LIM = { maxFilterDepth: 32, maxFilterNodes: 512 };
const op = (pdu: Buffer) => {
  const r = decodePdu(pdu, LIM);
  if (r.kind !== 'message') throw new Error(`not decoded: ${JSON.stringify(r)}`);
  return r.message;
};

t.test('bind, abandon and unbind, with our envelope and controls', async (t) => {
  const m = op(msg(7, bindRequest('alice@example.test', 'pässword'), controls(control('1.3.6.1.4.1.42.2.27.8.5.1', false))));
  t.same(m.operation, { op: 'bind', messageId: 7, name: 'alice@example.test', password: 'pässword' });
  t.same(m.controls, [{ oid: '1.3.6.1.4.1.42.2.27.8.5.1', critical: false }], 'a control without a value (ldapjs #956) is read');
  t.same(op(msg(8, int(0x50, 3))).operation, { op: 'abandon', messageId: 8, abandonId: 3 });
  t.same(op(Buffer.from('30050201024200', 'hex')).operation, { op: 'unbind', messageId: 2 });
  t.same(op(msg(9, bindRequest('CN=Doe\\, José,OU=x', ''))).operation, { op: 'bind', messageId: 9, name: 'CN=Doe\\, José,OU=x', password: '' }, 'a bind name byte-exact, an empty password kept empty');
  const refused = (pdu: Buffer) => decodePdu(pdu, LIM) as { kind: string; code?: number };
  t.not(refused(msg(3, tlv(0x60, int(0x02, 2), str(0x04, 'a'), str(0x80, 'pw')))).kind, 'message', 'LDAPv2 is not decoded');
  t.not(refused(msg(3, tlv(0x60, int(0x02, 3), str(0x04, 'a')))).kind, 'message', 'a bind without authentication is not decoded');
  t.not(refused(msg(3, tlv(0x60, int(0x02, 3), str(0x04, 'a'), str(0x81, 'krb')))).kind, 'message', 'an unknown authentication choice is not decoded');
  t.not(refused(Buffer.from('3006020102420100', 'hex')).kind, 'message', 'an UnbindRequest with content is not decoded');
});

t.test('search: base and filter byte-exact, scope, attributes, the paged control', async (t) => {
  const base = 'CN=Doe\\, José,OU=Straße,DC=x';
  const filter = tlv(0xa0, equality('cn', 'José'), present('mail'), tlv(0xa4, str(0x04, 'sn'), tlv(0x30, str(0x80, 'Mü'), str(0x81, 'l'), str(0x82, 'er'))));
  const m = op(msg(3, searchWith(base, 1, filter, ['uid', 'mail']), controls(pagedControl(200, Buffer.from('abc')))));
  t.match(m.operation, { op: 'search', base, scope: 'one', attributes: ['uid', 'mail'], sizeLimit: 0, typesOnly: false, paged: { size: 200, cookie: Buffer.from('abc') } });
  t.same((m.operation as { filter: unknown }).filter, {
    type: 'and',
    children: [{ type: 'equal', attr: 'cn', value: 'José' }, { type: 'present', attr: 'mail' }, { type: 'substring', attr: 'sn', initial: 'Mü', any: ['l'], final: 'er' }],
  });
});

t.test('writes and compare: DNs as sent, values as bytes', async (t) => {
  const pwd = Buffer.from('"Secret-1"', 'utf16le'); // unicodePwd: not UTF-8
  const add = tlv(0x68, str(0x04, 'uid=josé,ou=users,dc=x'), tlv(0x30, tlv(0x30, str(0x04, 'unicodePwd'), tlv(0x31, tlv(0x04, pwd))), tlv(0x30, str(0x04, 'objectClass'), tlv(0x31, str(0x04, 'top'), str(0x04, 'inetOrgPerson')))));
  const a = op(msg(4, add)).operation;
  t.match(a, { op: 'add', dn: 'uid=josé,ou=users,dc=x' });
  t.same((a as { attributes: Array<{ values: Buffer[] }> }).attributes[0]?.values[0], pwd, 'the password bytes are kept exactly');
  const m = op(msg(5, modifyRequest('uid=a,dc=x', 'mail', 'a@b'))).operation;
  t.same(m, { op: 'modify', messageId: 5, dn: 'uid=a,dc=x', changes: [{ operation: 'replace', attribute: { type: 'mail', values: [Buffer.from('a@b')] } }] });
  const rename = tlv(0x6c, str(0x04, 'cn=old,ou=groups,dc=x'), str(0x04, 'cn=new'), tlv(0x01, Buffer.from([0xff])), str(0x80, 'ou=other,dc=x'));
  t.same(op(msg(6, rename)).operation, { op: 'modifyDN', messageId: 6, dn: 'cn=old,ou=groups,dc=x', newRdn: 'cn=new', deleteOldRdn: true, newSuperior: 'ou=other,dc=x' });
  t.same(op(msg(9, str(0x4a, 'uid=a,dc=x'))).operation, { op: 'delete', messageId: 9, dn: 'uid=a,dc=x' });
  const cmp = tlv(0x6e, str(0x04, 'uid=a,dc=x'), tlv(0x30, str(0x04, 'uid'), str(0x04, 'a')));
  t.same(op(msg(10, cmp)).operation, { op: 'compare', messageId: 10, dn: 'uid=a,dc=x', attribute: 'uid', value: Buffer.from('a') });
});

t.test('extended: Password Modify fields, other OIDs with their value', async (t) => {
  const value = tlv(0x30, str(0x80, 'uid=a,dc=x'), str(0x81, 'old'), str(0x82, 'new'));
  t.same(op(msg(11, extendedRequest('1.3.6.1.4.1.4203.1.11.1', value))).operation, { op: 'passwordModify', messageId: 11, userIdentity: 'uid=a,dc=x', oldPassword: Buffer.from('old'), newPassword: Buffer.from('new') });
  t.same(op(msg(12, extendedRequest('1.3.6.1.4.1.4203.1.11.1'))).operation, { op: 'passwordModify', messageId: 12 }, 'ldappasswd without a value: a generated password is asked for');
  t.same(op(msg(13, extendedRequest('1.2.3.4', Buffer.from([0, 1])))).operation, { op: 'extended', messageId: 13, oid: '1.2.3.4', value: Buffer.from([0, 1]) });
});

t.test('what cannot be decoded: answered when the operation is known, else the connection ends', async (t) => {
  const sasl = tlv(0x60, int(0x02, 3), str(0x04, ''), tlv(0xa3, str(0x04, 'EXTERNAL')));
  t.match(decodePdu(msg(1, sasl), LIM), { kind: 'answer', messageId: 1, opTag: 0x60, code: 7 });
  t.notOk((decodePdu(msg(1, sasl), LIM) as { rejected?: string }).rejected, 'a SASL bind is not counted as malformed');
  const badScope = tlv(0x63, str(0x04, 'dc=x'), int(0x0a, 7), int(0x0a, 0), int(0x02, 0), int(0x02, 0), tlv(0x01, Buffer.from([0])), present('cn'), tlv(0x30));
  t.match(decodePdu(msg(2, badScope), LIM), { kind: 'answer', messageId: 2, opTag: 0x63, code: 2, rejected: 'malformed' });
  const v2 = tlv(0x60, int(0x02, 2), str(0x04, 'cn=x'), str(0x80, 'pw'));
  t.match(decodePdu(msg(3, v2), LIM), { kind: 'answer', code: 2, text: 'only LDAPv3 is supported' });
  const deep = tlv(0xa0, ...Array.from({ length: 600 }, () => present('cn')));
  t.match(decodePdu(msg(4, searchWith('dc=x', 2, deep)), LIM), { kind: 'answer', code: 2, text: /too many terms/ });
  t.match(decodePdu(msg(5, tlv(0x7f & 0x5f, str(0x04, 'x'))), LIM), { kind: 'fatal' }, 'an unknown operation');
  t.match(decodePdu(Buffer.from([0x30, 0x05, 0x04, 0x01, 0x01, 0x42, 0x00]), LIM), { kind: 'fatal' }, 'a messageID that is not an INTEGER');
  t.match(decodePdu(Buffer.from('304e020102634904226f754675736572732cb8633d76706e2c64d03d6578616d706cbc2c64633d746573ee0a01020a0100020100020100010100a30c04037569640405616c691565300604796d61696c', 'hex'), LIM), { kind: 'answer', messageId: 2, opTag: 0x63, code: 2, rejected: 'malformed' }, 'the payload the fuzz suite found (inner lengths overflow): answered, never decoded');
});

t.test('mutation fuzz: no input makes the decoder throw, and it stays fast', async (t) => {
  const seeds = [
    msg(1, bindRequest('alice', 'pw'), controls(control('1.2.3', true, Buffer.from('v')))),
    msg(2, searchWith('ou=users,dc=x', 2, tlv(0xa1, equality('uid', 'a'), tlv(0xa2, present('mail'))), ['uid']), controls(pagedControl(5, Buffer.from('c')))),
    msg(3, modifyRequest('uid=a,dc=x', 'mail', 'x')),
    msg(4, extendedRequest('1.3.6.1.4.1.4203.1.11.1', tlv(0x30, str(0x82, 'n')))),
    msg(5, tlv(0x6c, str(0x04, 'cn=a,dc=x'), str(0x04, 'cn=b'), tlv(0x01, Buffer.from([0])))),
  ];
  let seed = 7;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
  const kinds = { message: 0, answer: 0, fatal: 0 };
  const started = process.hrtime.bigint();
  for (let i = 0; i < 20_000; i++) {
    const pdu = Buffer.from(seeds[rnd(seeds.length)] as Buffer);
    for (let k = 1 + rnd(4); k > 0; k--) pdu[rnd(pdu.length)] = rnd(256);
    const r = decodePdu(pdu, LIM); // must not throw
    kinds[r.kind]++;
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.ok(kinds.message > 0 && kinds.answer > 0 && kinds.fatal > 0, `every outcome occurs (${JSON.stringify(kinds)})`);
  t.ok(ms < 10_000, `20,000 mutated PDUs decoded in ${Math.round(ms)} ms`);
});
