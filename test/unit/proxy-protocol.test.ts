// The PROXY protocol reader (src/server/proxy-protocol.ts): v1 and v2 headers built by hand from the
// specification (haproxy.org/download/2.6/doc/proxy-protocol.txt), fed whole, byte by byte and with the
// first LDAP bytes behind them; the refusals; the trusted-address matcher; reading off a real socket.
import t, { type Test } from 'tap';
import { createServer, connect, type Socket } from 'node:net';
import { AddressMatcher, formatIp, isAddressOrCidr, normalizeAddress, parseProxyHeader, ProxyHeaderParser, readProxyHeader, startsWithProxySignature, type ProxyParse } from '../../src/server/proxy-protocol';

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const LDAP = Buffer.from('300c020101600702010304008000', 'hex'); // an anonymous simple bind, messageID 1

function v2(verCmd: number, famProto: number, block: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(block.length);
  return Buffer.concat([SIG, Buffer.from([verCmd, famProto]), len, block]);
}
const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const ipv4Block = (src: number[], dst: number[], sport: number, dport: number) => Buffer.from([...src, ...dst, ...u16(sport), ...u16(dport)]);
const tlv = (type: number, value: Buffer) => Buffer.concat([Buffer.from([type]), u16(value.length), value]);

/** the same bytes fed in chunks of `size`: every push but the last says 'more' */
function chunked(bytes: Buffer, size: number): { results: ProxyParse[]; last: ProxyParse } {
  const p = new ProxyHeaderParser();
  const results: ProxyParse[] = [];
  for (let i = 0; i < bytes.length; i += size) {
    const r = p.push(bytes.subarray(i, i + size));
    results.push(r);
    if (r.state !== 'more') break;
  }
  return { results, last: results[results.length - 1] as ProxyParse };
}

t.test('v1 TCP4 and TCP6, with the first LDAP bytes behind the header', async (t) => {
  const r = parseProxyHeader(Buffer.concat([Buffer.from('PROXY TCP4 192.0.2.77 198.51.100.1 50123 389\r\n'), LDAP]));
  t.same(r, { state: 'done', header: { version: 1, command: 'proxy', family: 'tcp4', source: { address: '192.0.2.77', port: 50123 }, destination: { address: '198.51.100.1', port: 389 } }, rest: LDAP });
  const r6 = parseProxyHeader(Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:77 2001:db8::1 65535 636\r\n'));
  t.match(r6, { state: 'done', header: { version: 1, family: 'tcp6', source: { address: '2001:db8::77', port: 65535 }, destination: { address: '2001:db8::1', port: 636 } } }, 'IPv6 in RFC 5952 form');
  t.equal((r6 as { rest: Buffer }).rest.length, 0);
  const mapped = parseProxyHeader(Buffer.from('PROXY TCP6 ::ffff:192.0.2.9 ::1 1 2\r\n'));
  t.match(mapped, { state: 'done', header: { source: { address: '192.0.2.9' } } }, 'an IPv4-mapped source is named as IPv4');
});

t.test('v1 UNKNOWN: the peer is the client; the rest of the line is ignored', async (t) => {
  t.same(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), { state: 'done', header: { version: 1, command: 'local' }, rest: Buffer.alloc(0) });
  t.match(parseProxyHeader(Buffer.concat([Buffer.from('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n'), LDAP])), { state: 'done', header: { command: 'local' }, rest: LDAP });
});

t.test('v1 split over segments: each prefix asks for more, the last completes, leftover kept', async (t) => {
  const header = Buffer.from('PROXY TCP4 10.1.2.3 10.0.0.1 4000 1389\r\n');
  const bytes = Buffer.concat([header, LDAP]);
  const hl = header.length;
  for (const size of [1, 2, 5, 7, hl - 1, hl, hl + 1]) {
    const { results, last } = chunked(bytes, size);
    t.ok(results.slice(0, -1).every((r) => r.state === 'more'), `chunks of ${size}: 'more' until the end of the header`);
    t.match(last, { state: 'done', header: { source: { address: '10.1.2.3', port: 4000 } } }, `chunks of ${size}: done`);
    // the rest of the chunk holding the header's last byte is the leftover
    const end = Math.ceil(hl / size) * size;
    t.same((last as { rest: Buffer }).rest, bytes.subarray(hl, Math.min(end, bytes.length)), `chunks of ${size}: the LDAP bytes after the header, untouched`);
  }
});

t.test('v1 refusals: malformed, truncated, too long, wrong protocol', async (t) => {
  const bad = [
    'PROXY TCP4 10.1.2.3 10.0.0.1 4000\r\n', // a field missing
    'PROXY TCP4 10.1.2.3  10.0.0.1 4000 389\r\n', // two spaces
    'PROXY TCP4 10.1.2.256 10.0.0.1 4000 389\r\n',
    'PROXY TCP4 10.1.2.03 10.0.0.1 4000 389\r\n', // a leading zero
    'PROXY TCP4 2001:db8::1 10.0.0.1 4000 389\r\n', // family mismatch
    'PROXY TCP6 10.1.2.3 10.0.0.1 4000 389\r\n',
    'PROXY TCP4 10.1.2.3 10.0.0.1 65536 389\r\n',
    'PROXY TCP4 10.1.2.3 10.0.0.1 -1 389\r\n',
    'PROXY UDP4 10.1.2.3 10.0.0.1 4000 389\r\n',
    'PROXY TCP4 10.1.2.3 10.0.0.1 4000 389\n', // LF without CR
    'PROXY TCP4 10.1.2.3\r10.0.0.1 4000 389\r\n', // a bare CR
    'PROXY TCP4 10.1.2.3 10.0.0.1 4000 389\x00\r\n',
    'PROXYTCP4 10.1.2.3 10.0.0.1 4000 389\r\n',
  ];
  for (const b of bad) t.equal(parseProxyHeader(Buffer.from(b, 'latin1')).state, 'error', JSON.stringify(b));
  t.equal(parseProxyHeader(Buffer.from('PROXY TCP4 10.1.2.3 10.0.0.1 4000 38')).state, 'more', 'truncated: more is needed');
  const long = Buffer.from(`PROXY UNKNOWN ${'x'.repeat(93)}`); // 107 bytes, no CRLF
  t.equal(long.length, 107);
  t.match(parseProxyHeader(long), { state: 'error', reason: /107/ }, '107 bytes without CRLF');
  t.equal(parseProxyHeader(long.subarray(0, 106)).state, 'more', '106 bytes: still possible');
  const exactly = Buffer.from(`PROXY UNKNOWN ${'x'.repeat(91)}\r\n`);
  t.equal(exactly.length, 107);
  t.equal(parseProxyHeader(exactly).state, 'done', 'a 107-byte line is accepted');
});

t.test('v2 PROXY over IPv4, with TLVs skipped and LDAP bytes behind', async (t) => {
  const block = Buffer.concat([ipv4Block([127, 0, 0, 77], [127, 0, 0, 1], 40000, 1389), tlv(0x01, Buffer.from('ldap')), tlv(0x04, Buffer.alloc(4)), tlv(0x05, Buffer.from('uid-1'))]);
  const h = v2(0x21, 0x11, block);
  const r = parseProxyHeader(Buffer.concat([h, LDAP]));
  t.same(r, { state: 'done', header: { version: 2, command: 'proxy', family: 'tcp4', source: { address: '127.0.0.77', port: 40000 }, destination: { address: '127.0.0.1', port: 1389 } }, rest: LDAP });
  for (const size of [1, 3, 12, 13, 16, 17, h.length]) {
    const { results, last } = chunked(Buffer.concat([h, LDAP]), size);
    t.ok(results.slice(0, -1).every((x) => x.state === 'more'), `chunks of ${size}: more until the header is whole`);
    t.match(last, { state: 'done', header: { source: { address: '127.0.0.77' } } }, `chunks of ${size}`);
    const rest = (last as { rest: Buffer }).rest;
    t.same(rest, LDAP.subarray(0, rest.length), `chunks of ${size}: leftover is the start of the LDAP bytes`);
  }
});

t.test('v2 PROXY over IPv6 and LOCAL', async (t) => {
  const src = Buffer.from('20010db8000000000000000000000077', 'hex');
  const dst = Buffer.from('00000000000000000000000000000001', 'hex');
  const r = parseProxyHeader(v2(0x21, 0x21, Buffer.concat([src, dst, u16(5555), u16(636)])));
  t.match(r, { state: 'done', header: { version: 2, command: 'proxy', family: 'tcp6', source: { address: '2001:db8::77', port: 5555 }, destination: { address: '::1', port: 636 } } });
  const mapped = Buffer.from('00000000000000000000ffffc0000209', 'hex');
  t.match(parseProxyHeader(v2(0x21, 0x21, Buffer.concat([mapped, dst, u16(1), u16(2)]))), { state: 'done', header: { source: { address: '192.0.2.9' } } }, 'IPv4-mapped: named as IPv4');
  // LOCAL (HAProxy's health checks): no addresses, or addresses to ignore
  t.same(parseProxyHeader(Buffer.concat([v2(0x20, 0x00, Buffer.alloc(0)), LDAP])), { state: 'done', header: { version: 2, command: 'local' }, rest: LDAP });
  t.same(parseProxyHeader(v2(0x20, 0x11, ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2))), { state: 'done', header: { version: 2, command: 'local' }, rest: Buffer.alloc(0) });
  t.match(parseProxyHeader(v2(0x21, 0x00, Buffer.alloc(0))), { state: 'done', header: { command: 'local' } }, 'PROXY with AF_UNSPEC: the peer is the client');
});

t.test('v2 refusals: wrong signature, version, command, family, short blocks, oversized', async (t) => {
  const good = v2(0x21, 0x11, ipv4Block([10, 0, 0, 1], [10, 0, 0, 2], 1, 2));
  const wrongSig = Buffer.from(good);
  wrongSig[7] = 0x52; // "\r\n\r\n\0\r\nRUIT"
  t.match(parseProxyHeader(wrongSig), { state: 'error', reason: 'no PROXY header' }, 'wrong signature');
  t.match(parseProxyHeader(wrongSig.subarray(0, 8)), { state: 'error' }, 'wrong signature, seen early');
  t.match(parseProxyHeader(v2(0x11, 0x11, ipv4Block([10, 0, 0, 1], [10, 0, 0, 2], 1, 2))), { state: 'error', reason: /version 1/ }, 'version 1 in a v2 header');
  t.match(parseProxyHeader(v2(0x22, 0x11, ipv4Block([10, 0, 0, 1], [10, 0, 0, 2], 1, 2))), { state: 'error', reason: /command/ }, 'unknown command');
  t.match(parseProxyHeader(v2(0x21, 0x12, ipv4Block([10, 0, 0, 1], [10, 0, 0, 2], 1, 2))), { state: 'error', reason: /0x12/ }, 'DGRAM');
  t.match(parseProxyHeader(v2(0x21, 0x31, Buffer.alloc(216))), { state: 'error', reason: /0x31/ }, 'AF_UNIX');
  t.match(parseProxyHeader(v2(0x21, 0x11, Buffer.alloc(11))), { state: 'error', reason: /shorter/ }, 'IPv4 block too short');
  t.match(parseProxyHeader(v2(0x21, 0x21, Buffer.alloc(35))), { state: 'error', reason: /shorter/ }, 'IPv6 block too short');
  // oversized: refused from the 16 fixed bytes, before the block is buffered
  const big = Buffer.concat([SIG, Buffer.from([0x21, 0x11]), u16(4096 - 16 + 1)]);
  t.match(parseProxyHeader(big), { state: 'error', reason: /larger than 4096/ }, 'a declared length beyond 4 KiB');
  t.equal(parseProxyHeader(Buffer.concat([SIG, Buffer.from([0x21, 0x11]), u16(4096 - 16)])).state, 'more', 'exactly 4 KiB is possible');
  t.match(parseProxyHeader(v2(0x21, 0x11, Buffer.alloc(4096 - 16, 0))), { state: 'done' }, 'and accepted');
  // truncated: more is needed, at every length short of the whole
  for (let n = 1; n < good.length; n++) if (parseProxyHeader(good.subarray(0, n)).state !== 'more') t.fail(`a ${n}-byte prefix is not 'more'`);
  t.pass('every prefix of a valid header asks for more');
});

t.test('garbage and LDAP are not PROXY headers', async (t) => {
  t.match(parseProxyHeader(LDAP), { state: 'error', reason: 'no PROXY header' }, 'an LDAP bind');
  t.match(parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')), { state: 'error' });
  t.match(parseProxyHeader(Buffer.from('PROXX')), { state: 'error' });
  t.match(parseProxyHeader(Buffer.from([0x16, 0x03, 0x01])), { state: 'error' }, 'a TLS ClientHello');
  t.match(parseProxyHeader(Buffer.from('\r\n\r\nGET')), { state: 'error' });
  t.ok(startsWithProxySignature(Buffer.from('PROXY TCP4')), 'v1 signature');
  t.ok(startsWithProxySignature(Buffer.from('PRO')), 'a prefix of it (cannot be LDAP)');
  t.ok(startsWithProxySignature(SIG), 'v2 signature');
  t.ok(startsWithProxySignature(SIG.subarray(0, 5)));
  t.notOk(startsWithProxySignature(LDAP), 'LDAP');
  t.notOk(startsWithProxySignature(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])), 'TLS');
  t.notOk(startsWithProxySignature(Buffer.from('PROXX')));
  t.notOk(startsWithProxySignature(Buffer.alloc(0)));
});

t.test('addresses: formatting, normalizing, trusted addresses and CIDRs', async (t) => {
  t.equal(formatIp(Buffer.from('20010db8000000010000000000000001', 'hex')), '2001:db8:0:1::1', 'the longest zero run is compressed');
  t.equal(formatIp(Buffer.from('20010db8000000000001000000000001', 'hex')), '2001:db8::1:0:0:1', 'the first of equal runs');
  t.equal(formatIp(Buffer.from('20010db8000000000001000000000000', 'hex')), '2001:db8:0:0:1::', 'the longer of two runs');
  t.equal(formatIp(Buffer.from('20010db8000100010001000100010001', 'hex')), '2001:db8:1:1:1:1:1:1');
  t.equal(formatIp(Buffer.from('20010db8000000010001000100010001', 'hex')), '2001:db8:0:1:1:1:1:1', 'a single zero group stays');
  t.equal(formatIp(Buffer.alloc(16)), '::');
  t.equal(normalizeAddress('::ffff:127.0.0.1'), '127.0.0.1', 'a dual-stack peer');
  t.equal(normalizeAddress('::FFFF:7f00:1'), '127.0.0.1');
  t.equal(normalizeAddress('::1'), '::1');
  for (const ok of ['10.0.0.1', '10.0.0.0/8', '0.0.0.0/0', '::1', '2001:db8::/32', '::/0', '::ffff:10.0.0.0/104', 'fe80::1%eth0']) t.ok(isAddressOrCidr(ok), ok);
  for (const bad of ['', 'localhost', '10.0.0.0/33', '10.0.0/8', '2001:db8::/129', '1.2.3.4/', '1.2.3.4/x', ':::1', '1::2::3', '2001:db8:0:0:0:0:0:0:1']) t.notOk(isAddressOrCidr(bad), JSON.stringify(bad));
  const m = new AddressMatcher(['127.0.0.1', '10.20.0.0/16', '2001:db8::/48', '::ffff:192.168.1.0/120']);
  t.ok(m.has('127.0.0.1'));
  t.ok(m.has('::ffff:127.0.0.1'), 'IPv4-mapped peer matches an IPv4 entry');
  t.notOk(m.has('127.0.0.2'));
  t.ok(m.has('10.20.255.1'));
  t.notOk(m.has('10.21.0.1'));
  t.ok(m.has('2001:db8:0:ffff::1'));
  t.notOk(m.has('2001:db8:1::1'));
  t.ok(m.has('192.168.1.200'), 'an IPv4-mapped CIDR matches IPv4 peers');
  t.notOk(m.has('192.168.2.1'));
  t.notOk(m.has(''), 'no address');
  t.ok(new AddressMatcher(['10.0.0.128/25']).has('10.0.0.200'), 'a prefix that is not a whole byte');
  t.notOk(new AddressMatcher(['10.0.0.128/25']).has('10.0.0.127'));
  t.throws(() => new AddressMatcher(['10.0.0.0/40']));
});

/** a connected socket pair on loopback: [server side, client side] */
async function pair(t: Test): Promise<[Socket, Socket]> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const c = connect((srv.address() as { port: number }).port, '127.0.0.1');
  const s = await accepted;
  await new Promise<void>((r) => (c.connecting ? c.once('connect', () => r()) : r()));
  t.teardown(() => {
    c.destroy();
    s.destroy();
  });
  return [s, c];
}

t.test('readProxyHeader on a socket: segments apart, the rest of the stream intact and in order', async (t) => {
  const [s, c] = await pair(t);
  const h = v2(0x21, 0x11, ipv4Block([127, 0, 0, 77], [127, 0, 0, 1], 4321, 1389));
  const reading = readProxyHeader(s, 5000);
  // the header in three segments, the third carrying the first LDAP bytes; more LDAP after
  c.write(h.subarray(0, 5));
  await new Promise((r) => setTimeout(r, 30));
  c.write(h.subarray(5, 20));
  await new Promise((r) => setTimeout(r, 30));
  c.write(Buffer.concat([h.subarray(20), LDAP.subarray(0, 4)]));
  const r = await reading;
  t.match(r, { ok: true, header: { source: { address: '127.0.0.77', port: 4321 } } });
  t.equal(s.isPaused(), true, 'left paused for whoever takes the connection next');
  c.write(LDAP.subarray(4));
  const got: Buffer[] = [];
  const all = new Promise<void>((resolve) =>
    s.on('data', (d: Buffer) => {
      got.push(d);
      if (Buffer.concat(got).length >= LDAP.length) resolve();
    }),
  );
  s.resume();
  await all;
  t.same(Buffer.concat(got), LDAP, 'the bytes after the header, untouched, in order');
});

t.test('readProxyHeader: timeout, garbage, a peer that leaves', async (t) => {
  {
    const [s, c] = await pair(t);
    const t0 = Date.now();
    const reading = readProxyHeader(s, 300);
    c.write('PROXY TCP4 1.2.3.4'); // and nothing more
    const r = await reading;
    t.match(r, { ok: false, reason: 'timeout', bytes: 18 }, 'an unfinished header times out');
    t.ok(Date.now() - t0 >= 290, 'not before the timeout');
  }
  {
    const [s, c] = await pair(t);
    const reading = readProxyHeader(s, 5000);
    c.write(LDAP);
    t.match(await reading, { ok: false, reason: 'malformed', detail: 'no PROXY header' }, 'LDAP without a header');
  }
  {
    const [s, c] = await pair(t);
    const reading = readProxyHeader(s, 5000);
    c.write('PROXY TCP4 1.2.');
    setTimeout(() => c.end(), 20);
    t.match(await reading, { ok: false, reason: 'closed', bytes: 15 }, 'closed inside the header');
  }
  {
    const [s, c] = await pair(t);
    const reading = readProxyHeader(s, 5000);
    c.end();
    t.match(await reading, { ok: false, reason: 'closed', bytes: 0 }, 'closed before any byte');
  }
});
