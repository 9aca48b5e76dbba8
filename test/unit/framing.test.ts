import t from 'tap';
import { encodeSearchEntryBody, envelope, integer, octets, tlv as el, wellFormed } from '../../src/ldap/ber';
import { peekEnvelope } from '../../src/server/decode';
import { PduFramer } from '../../src/server/framing';
import { encodeEntry, encodeResult } from '../../src/server/ldapjs';

// ldapjs's own parser, as an independent decoder of what we encode
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Parser } = require('ldapjs') as { Parser: new () => { on(ev: string, fn: (x: unknown) => void): void; write(b: Buffer): void } };
import { equality, msg, present, searchRequest, tlv } from '../helpers/ber';

// an UnbindRequest (messageID 5) and a 200-byte dummy PDU with long-form length
const unbind = Buffer.from('30050201054200', 'hex');
const long = Buffer.concat([Buffer.from([0x30, 0x81, 0xc5, 0x02, 0x01, 0x07, 0x63, 0x81, 0xbf]), Buffer.alloc(0xbf, 0x41)]);

t.test('splits a stream into whole PDUs however it is chunked', async (t) => {
  const stream = Buffer.concat([unbind, long, unbind]);
  for (const size of [1, 2, 3, 7, 64, stream.length]) {
    const f = new PduFramer(1024);
    const got: Buffer[] = [];
    for (let i = 0; i < stream.length; i += size) {
      const r = f.push(stream.subarray(i, i + size));
      t.equal(r.error, undefined);
      got.push(...r.pdus);
    }
    t.same(got.map((b) => b.length), [7, 200, 7], `chunks of ${size}`);
  }
});

t.test('refuses an oversized PDU from its header, before buffering it', async (t) => {
  const f = new PduFramer(1024);
  t.same(f.push(Buffer.from([0x30, 0x84, 0x0c, 0x80, 0x00, 0x00])), { pdus: [], error: 'too_large' }, '200 MiB declared');
  t.same(new PduFramer(1024).push(Buffer.from([0x30, 0x85, 1, 1, 1, 1, 1])).error, 'too_large');
});

t.test('refuses what is not an LDAPMessage', async (t) => {
  t.equal(new PduFramer(1024).push(Buffer.from('GET / HTTP/1.1\r\n')).error, 'malformed');
  t.equal(new PduFramer(1024).push(Buffer.from([0x30, 0x80, 0, 0])).error, 'malformed', 'indefinite length');
});

t.test('reads the envelope of a PDU that cannot be decoded', async (t) => {
  t.same(peekEnvelope(unbind), { messageId: 5, opTag: 0x42 });
  t.same(peekEnvelope(long), { messageId: 7, opTag: 0x63 });
  t.equal(peekEnvelope(Buffer.from([0x30, 0x03, 0x04, 0x01, 0x00])), undefined);
});

t.test('search entries are encoded byte-exactly: the DN as given, non-ASCII as UTF-8', async (t) => {
  for (const [dn, values] of [
    ['CN=Doe\\, José,OU=x', ['Müller']],
    ['uid=a,ou=users,dc=x', Array.from({ length: 300 }, (_, i) => `value-${i}`)],
  ] as Array<[string, string[]]>) {
    const pdu = encodeEntry(300, dn, [{ type: 'givenName', values }, { type: 'empty', values: [] }]);
    t.ok(pdu.includes(Buffer.from(dn, 'utf8')), 'the DN bytes appear exactly');
    const p = new Parser();
    const got = await new Promise<{ messageId: number; objectName: unknown; attributes: Array<{ type: string; values: string[] }> }>((resolve, reject) => {
      p.on('message', (m: unknown) => resolve(m as never));
      p.on('error', reject);
      p.write(pdu);
    });
    t.equal(got.messageId, 300, 'ldapjs decodes our encoding');
    t.same(got.attributes.map((a) => [a.type, a.values]), [['givenName', values], ['empty', []]]);
  }
});

t.test('BER well-formedness: inner lengths must fit, all the way down', async (t) => {
  t.ok(wellFormed(unbind, 10));
  t.ok(wellFormed(msg(2, searchRequest('ou=users,dc=x', tlv(0xa0, equality('uid', 'a'), present('mail')), ['mail', 'uid'])), 10), 'a real search');
  t.notOk(wellFormed(long, 10), 'filler bytes inside a constructed element');
  // the payload the fuzz test found: an attributes SEQUENCE of 6 bytes holding an OCTET STRING of 121
  const bad = Buffer.from('304e020102634904226f754675736572732cb8633d76706e2c64d03d6578616d706cbc2c64633d746573ee0a01020a0100020100020100010100a30c04037569640405616c691565300604796d61696c', 'hex');
  t.notOk(wellFormed(bad, 10));
  t.notOk(wellFormed(Buffer.from([0x30, 0x03, 0x30, 0x05, 0x00]), 10), 'child longer than parent');
  t.notOk(wellFormed(Buffer.from([0x30, 0x04, 0x30, 0x02, 0x30, 0x00]), 1), 'too deep');
  t.notOk(wellFormed(Buffer.from([0x1f, 0x01, 0x00]), 10), 'multi-byte tag');
});

t.test('the one-pass entry encoder writes the same bytes as element-by-element BER, at every length form', async (t) => {
  const reference = (id: number, dn: string, attrs: Array<{ type: string; values: string[] }>) =>
    el(0x30, integer(0x02, id), el(0x64, octets(0x04, dn), el(0x30, ...attrs.map((a) => el(0x30, octets(0x04, a.type), el(0x31, ...a.values.map((v) => octets(0x04, v))))))));
  const attrs = [
    { type: 'member', values: Array.from({ length: 300 }, (_, i) => `uid=u${i},ou=users,dc=x-é`) },
    { type: 'empty', values: [] },
    { type: 'x'.repeat(200), values: ['y'.repeat(70_000)] },
  ];
  for (const id of [0, 1, 127, 128, 255, 256, 70_000, 2 ** 31 - 1]) {
    t.ok(encodeEntry(id, 'CN=Doe\\, José,OU=x', attrs).equals(reference(id, 'CN=Doe\\, José,OU=x', attrs)), `messageID ${id}`);
  }
  t.ok(encodeEntry(5, 'uid=a', [{ type: 'uid', values: ['a'] }]).equals(reference(5, 'uid=a', [{ type: 'uid', values: ['a'] }])), 'a short entry');
  // an entry encoded ahead (a paged listing's next page), its envelope added when the request is known
  for (const id of [0, 127, 128, 70_000]) {
    for (const a of [attrs, [{ type: 'uid', values: ['a'] }]]) {
      const body = encodeSearchEntryBody('CN=Doe\\, José,OU=x', a);
      t.ok(Buffer.concat([envelope(id, body.length), body]).equals(reference(id, 'CN=Doe\\, José,OU=x', a)), `envelope + body, messageID ${id}, ${a.length} attributes`);
    }
  }
});

t.test('results without controls are written as ldapjs writes them', async (t) => {
  // ldapjs's own encoder, as the independent reference
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { LDAPResult } = require('ldapjs') as { LDAPResult: new (o: object) => { toBer(): { buffer: Buffer } } };
  const long = 'é'.repeat(200);
  for (const [op, id, code, message, matched] of [
    [0x61, 1, 0, '', ''],
    [0x61, 300, 49, '80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 52e', ''],
    [0x65, 2 ** 31 - 1, 32, 'no such entry', 'ou=people,dc=x'],
    [0x67, 128, 53, long, long],
    [0x69, 70_000, 255, 'x'.repeat(70_000), ''],
  ] as Array<[number, number, number, string, string]>) {
    const ours = encodeResult(op, id, code, message, undefined, matched);
    const theirs = new LDAPResult({ messageId: id, status: code, diagnosticMessage: message, matchedDN: matched, protocolOp: op }).toBer().buffer;
    t.ok(ours.equals(theirs), `op 0x${op.toString(16)}, messageID ${id}, code ${code}`);
  }
});
