// PROXY protocol (issue 13, item 4) with a real HAProxy (test/helpers/haproxy.ts) in front of a gateway
// whose upstream is the embedded demo directory. Clients connect from distinct loopback sources
// (127.0.0.7x); HAProxy connects to the gateway from 127.0.0.1, the one trusted address. What is asserted is
// what the gateway did with the header: the client address in its bind audit lines, the lockout windows and
// the per-address connection cap keyed by it; and the refusals, counted in
// ldap_gateway_rejected_total{reason="proxy_protocol"}. The shipped deploy/haproxy/haproxy.cfg is run too.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Client } from 'ldapts';
import { PROXY_HEADER_TIMEOUT_MS } from '../../src/server/listener';
import { bindRequest, msg } from '../helpers/ber';
import { ROOT, startFromYaml, type TestGateway } from '../helpers/gateway';
import { freePort, startHaproxy, tcpConfig, waitHealthy, type Haproxy } from '../helpers/haproxy';
import { parseLine } from '../helpers/lines';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const ldap = require('ldapjs') as { Parser: new () => { on(ev: string, fn: (x: never) => void): void; write(b: Buffer): void } };

const BASE = 'dc=vpn,dc=example,dc=test';
const CA = readFileSync(join(ROOT, 'certs', 'dev-ca.pem'));
const BIND_RESPONSE = 0x61;
const EXTENDED_RESPONSE = 0x78;

const demoYaml = `demo: true
listen:
  ldap: 127.0.0.1:0
  ldaps: 127.0.0.1:0
  tls:
    cert: ../../certs/server.crt
    key: ../../certs/server.key
  proxyProtocol:
    trusted: [127.0.0.1]
directory:
  baseDN: ${BASE}
protection:
  lockout:
    perAccountIp: 2
    perAccount: 10
`;

let g: TestGateway;
let hp: Haproxy;
/** HAProxy's frontends: v2 to the LDAP port, v1 to the LDAP port, v2 to the LDAPS port */
const fe = { v2: 0, v1: 0, ldaps: 0 };

t.before(async () => {
  g = await startFromYaml(demoYaml);
  const [a, b, c] = [await freePort(), await freePort(), await freePort()];
  Object.assign(fe, { v2: a, v1: b, ldaps: c });
  const gw = (port: number | undefined) => [{ host: '127.0.0.1', port: port as number }];
  hp = await startHaproxy(
    tcpConfig([
      { name: 'v2', bind: { host: '127.0.0.1', port: a }, servers: gw(g.gw.ldapPort), proxyProtocol: 'v2', check: 'ldap' },
      { name: 'v1', bind: { host: '127.0.0.1', port: b }, servers: gw(g.gw.ldapPort), proxyProtocol: 'v1' },
      { name: 'ldaps', bind: { host: '127.0.0.1', port: c }, servers: gw(g.gw.ldapsPort), proxyProtocol: 'v2', check: 'ldaps' },
    ]),
  );
  await waitHealthy(hp, ['be_v2', 'be_ldaps']);
});
t.teardown(async () => {
  await hp?.stop();
  await g?.stop();
});

/** an ldapts client to 127.0.0.1:port from a chosen loopback source */
function clientFrom(source: string, port: number, tls = false): Client {
  const tcp = (p: number, host: string) => netConnect({ port: p, host, localAddress: source });
  if (tls) return new Client({ url: `ldaps://127.0.0.1:${port}`, timeout: 5000, tlsOptions: { ca: [CA], servername: 'localhost' }, createSecureConnection: ((p: number, host: string, o: object) => tlsConnect({ ...o, socket: tcp(p, host) })) as unknown as typeof tlsConnect });
  return new Client({ url: `ldap://127.0.0.1:${port}`, timeout: 5000, createConnection: tcp as unknown as typeof netConnect });
}

async function bindFrom(source: string, port: number, name: string, password: string, tls = false): Promise<{ ok: boolean; code?: number; message?: string }> {
  const c = clientFrom(source, port, tls);
  try {
    await c.bind(name, password);
    return { ok: true };
  } catch (err) {
    const e = err as { code?: number; message: string };
    return { ok: false, code: e.code, message: e.message.replace(/ Code: 0x[0-9a-f]+$/, '') };
  } finally {
    await c.unbind().catch(() => undefined);
  }
}

/** the bind audit line for this name from this index on */
async function auditLine(name: string, from: number): Promise<Record<string, unknown>> {
  const line = await g.waitForLog((_l, j) => j?.event === 'bind' && j.name === name, { from, timeoutMs: 5000 });
  return parseLine(line) as Record<string, unknown>;
}

async function rejected(): Promise<number> {
  const text = await g.gw.metrics.registry.getSingleMetricAsString('ldap_gateway_rejected_total');
  return Number(/ldap_gateway_rejected_total\{reason="proxy_protocol"\} (\d+)/.exec(text)?.[1] ?? 0);
}

/** a raw connection straight to the gateway: what it answers (ldapjs's parser) and when it closes */
class Raw {
  readonly responses: Array<{ messageId: number; protocolOp: number; status?: number; responseName?: string; diagnosticMessage?: string }> = [];
  bytes = 0;
  readonly closed: Promise<number>;
  private arrived?: () => void;
  /** the first response (waits for it, bounded), undefined if the connection closes first */
  async first(timeoutMs = 5000): Promise<Raw['responses'][number] | undefined> {
    if (!this.responses.length) {
      await Promise.race([new Promise<void>((r) => (this.arrived = r)), this.closed, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    }
    return this.responses[0];
  }
  private readonly t0 = Date.now();
  constructor(readonly socket: Socket) {
    socket.on('error', () => undefined);
    const parser = new ldap.Parser();
    parser.on('message', (m: never) => {
      this.responses.push(m);
      this.arrived?.();
    });
    parser.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      this.bytes += d.length;
      parser.write(d);
    });
    this.closed = new Promise((r) => socket.once('close', () => r(Date.now() - this.t0)));
  }
  static async open(source: string, port: number): Promise<Raw> {
    const s = netConnect({ host: '127.0.0.1', port, localAddress: source });
    await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j));
    return new Raw(s);
  }
}

const v2Header = (src: number[], sport: number, verCmd = 0x21): Buffer =>
  Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a', 'hex'), Buffer.from([verCmd, 0x11, 0x00, 0x0c]), Buffer.from([...src, 127, 0, 0, 1]), Buffer.from([sport >> 8, sport & 0xff, 0x05, 0x6d])]);

async function waitClosed(t: Test, r: Raw, what: string, ms = 3000): Promise<number> {
  const timer = new Promise<'open'>((res) => setTimeout(() => res('open'), ms).unref());
  const got = await Promise.race([r.closed, timer]);
  t.not(got, 'open', `${what}: the gateway closed the connection`);
  return typeof got === 'number' ? got : -1;
}

t.test('through HAProxy (send-proxy-v2): the bind audit line names the client, not HAProxy', async (t) => {
  const from = g.logs.length;
  t.match(await bindFrom('127.0.0.77', fe.v2, 'alice', 'demo-password'), { ok: true });
  t.match(await auditLine('alice', from), { client: '127.0.0.77', result: 'success', tls: false }, 'client 127.0.0.77 as HAProxy saw it');
  t.notOk(g.logs.slice(from).some((l) => parseLine(l)?.name === 'alice' && parseLine(l)?.client === '127.0.0.1'), 'never HAProxy’s 127.0.0.1');
});

t.test('send-proxy (v1) too; StartTLS through HAProxy keeps the client address', async (t) => {
  let from = g.logs.length;
  t.match(await bindFrom('127.0.0.79', fe.v1, 'bob', 'demo-password'), { ok: true });
  t.match(await auditLine('bob', from), { client: '127.0.0.79', result: 'success' }, 'v1 header: client 127.0.0.79');
  from = g.logs.length;
  const c = clientFrom('127.0.0.80', fe.v2);
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.startTLS({ ca: [CA], servername: 'localhost' });
  await c.bind('carol', 'demo-password');
  t.match(await auditLine('carol', from), { client: '127.0.0.80', result: 'success', tls: true }, 'StartTLS after the header, then a bind over TLS');
});

t.test('LDAPS through HAProxy: the header before the TLS handshake', async (t) => {
  const from = g.logs.length;
  t.match(await bindFrom('127.0.0.78', fe.ldaps, 'carol', 'demo-password', true), { ok: true });
  t.match(await auditLine('carol', from), { client: '127.0.0.78', result: 'success', tls: true }, 'client 127.0.0.78 over LDAPS');
});

t.test('the lockout shield counts per real client behind one HAProxy', async (t) => {
  const answers = [];
  for (let i = 0; i < 4; i++) answers.push((await bindFrom('127.0.0.91', fe.v2, 'alice', `Wrong-${i}`)).message);
  t.same(answers, ['bad_credentials', 'bad_credentials', 'throttled', 'throttled'], 'perAccountIp 2: the third wrong bind from 127.0.0.91 is refused by the shield');
  t.match(await bindFrom('127.0.0.92', fe.v2, 'alice', 'Wrong-x'), { ok: false, code: 49, message: 'bad_credentials' }, 'another client through the same HAProxy has its own (account, address) window');
  t.match(await bindFrom('127.0.0.92', fe.v2, 'alice', 'demo-password'), { ok: true }, 'and logs in');
  t.match(await bindFrom('127.0.0.91', fe.v1, 'alice', 'demo-password'), { ok: false, code: 49, message: 'throttled' }, '127.0.0.91 stays blocked for alice, through the other frontend too');
  const trips = await g.gw.metrics.registry.getSingleMetricAsString('ldap_gateway_lockout_trips_total');
  t.match(trips, /ldap_gateway_lockout_trips_total\{scope="account_ip"\} 3/, 'three trips, all for 127.0.0.91');
});

t.test('maxConnectionsPerIp counts the real client: two from one address, a third refused, another address served', async (t) => {
  // its own gateway and HAProxy (no health checks: they would count against HAProxy's own address)
  const g2 = await startFromYaml(demoYaml.replace('  proxyProtocol:', '  maxConnectionsPerIp: 2\n  proxyProtocol:'));
  t.teardown(() => g2.stop());
  const port = await freePort();
  const h = await startHaproxy(tcpConfig([{ name: 'ldap', bind: { host: '127.0.0.1', port }, servers: [{ host: '127.0.0.1', port: g2.gw.ldapPort as number }] }]));
  t.teardown(() => h.stop());
  const open: Client[] = [];
  t.teardown(() => Promise.all(open.map((c) => c.unbind().catch(() => undefined))));
  for (let i = 0; i < 2; i++) {
    const c = clientFrom('127.0.0.93', port);
    open.push(c);
    await c.bind('bob', 'demo-password');
  }
  const third = clientFrom('127.0.0.93', port);
  open.push(third);
  await t.rejects(third.bind('bob', 'demo-password'), 'a third connection from 127.0.0.93 is refused (busy notice, then closed)');
  const other = clientFrom('127.0.0.94', port);
  open.push(other);
  await other.bind('bob', 'demo-password');
  t.pass('127.0.0.94, also through HAProxy (127.0.0.1), is served');
  const m = await g2.gw.metrics.registry.getSingleMetricAsString('ldap_gateway_rejected_total');
  t.match(m, /ldap_gateway_rejected_total\{reason="max_connections_per_ip"\} 1/);
});

t.test('a trusted peer: header and LDAP in one segment, or split, are read; a header naming IPv6', async (t) => {
  let from = g.logs.length;
  let r = await Raw.open('127.0.0.1', g.gw.ldapPort as number);
  r.socket.write(Buffer.concat([v2Header([203, 0, 113, 9], 40001), msg(1, bindRequest('alice', 'demo-password'))]));
  t.match(await auditLine('alice', from), { client: '203.0.113.9' }, 'one segment: header and bind');
  r.socket.destroy();
  from = g.logs.length;
  r = await Raw.open('127.0.0.1', g.gw.ldapPort as number);
  const h = Buffer.from('PROXY TCP6 2001:db8::9 ::1 40002 1389\r\n');
  r.socket.write(h.subarray(0, 9));
  await new Promise((res) => setTimeout(res, 50)); // separate segments, on purpose
  r.socket.write(Buffer.concat([h.subarray(9), msg(1, bindRequest('bob', 'demo-password')).subarray(0, 5)]));
  await new Promise((res) => setTimeout(res, 50));
  r.socket.write(msg(1, bindRequest('bob', 'demo-password')).subarray(5));
  t.match(await auditLine('bob', from), { client: '2001:db8::9' }, 'split header, bind split across the end of it');
  t.match(await r.first(), { protocolOp: BIND_RESPONSE, status: 0 }, 'the bind was answered: success');
  r.socket.destroy();
});

t.test('refusals: each closes the connection and is counted', async (t) => {
  const port = g.gw.ldapPort as number;
  let before = await rejected();
  const from = g.logs.length;

  // an untrusted peer sending a PROXY header: refused before anything is decoded
  let r = await Raw.open('127.0.0.66', port);
  r.socket.write(Buffer.concat([Buffer.from('PROXY TCP4 198.51.100.1 127.0.0.1 5000 1389\r\n'), msg(1, bindRequest('alice', 'demo-password'))]));
  await waitClosed(t, r, 'untrusted peer with a v1 header');
  t.notOk(r.responses.some((x) => x.protocolOp === BIND_RESPONSE), 'its bind was never answered');
  t.match(r.responses[0], { protocolOp: EXTENDED_RESPONSE, messageId: 0, status: 2 }, 'a Notice of Disconnection (protocolError)');
  t.equal(await rejected(), ++before, 'counted');
  r = await Raw.open('127.0.0.66', port);
  r.socket.write(v2Header([198, 51, 100, 1], 5000));
  await waitClosed(t, r, 'untrusted peer with a v2 header');
  t.equal(await rejected(), ++before, 'counted');

  // the same peer without a header is served normally
  const served = await bindFrom('127.0.0.66', port, 'carol', 'demo-password');
  t.match(served, { ok: true }, 'an untrusted peer without a header is served');
  t.match(await auditLine('carol', from), { client: '127.0.0.66' });
  t.equal(await rejected(), before, 'not counted');

  // an untrusted peer on LDAPS: the header is refused before any TLS; without one, TLS as usual
  r = await Raw.open('127.0.0.66', g.gw.ldapsPort as number);
  r.socket.write(v2Header([198, 51, 100, 1], 5000));
  await waitClosed(t, r, 'untrusted peer with a header on LDAPS');
  t.equal(r.bytes, 0, 'nothing is sent before TLS');
  t.equal(await rejected(), ++before, 'counted');
  t.match(await bindFrom('127.0.0.66', g.gw.ldapsPort as number, 'bob', 'demo-password', true), { ok: true }, 'an untrusted LDAPS client without a header is served');

  // a trusted peer (127.0.0.1) sending LDAP without a header
  r = await Raw.open('127.0.0.1', port);
  r.socket.write(msg(1, bindRequest('alice', 'demo-password')));
  await waitClosed(t, r, 'trusted peer without a header');
  t.notOk(r.responses.some((x) => x.protocolOp === BIND_RESPONSE), 'its bind was never answered');
  t.match(r.responses[0], { protocolOp: EXTENDED_RESPONSE, status: 2, diagnosticMessage: /PROXY protocol: no PROXY header/ }, 'the notice says why');
  t.equal(await rejected(), ++before, 'counted');
  const tlsClosed = await new Promise<string>((res) => {
    const s = tlsConnect({ socket: netConnect({ host: '127.0.0.1', port: g.gw.ldapsPort as number, localAddress: '127.0.0.1' }), ca: [CA], servername: 'localhost' });
    s.once('secureConnect', () => res('handshake completed'));
    s.once('error', () => res('closed'));
    s.once('close', () => res('closed'));
  });
  t.equal(tlsClosed, 'closed', 'a trusted peer starting TLS without a header: closed, no handshake');
  t.equal(await rejected(), ++before, 'counted');

  // malformed headers from the trusted peer
  for (const [what, bytes] of [
    ['v1 with a bad address', Buffer.from('PROXY TCP4 999.0.0.1 127.0.0.1 5000 1389\r\n')],
    ['v1 without CRLF within 107 bytes', Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`)],
    ['v2 with version 1', v2Header([198, 51, 100, 1], 5000, 0x11)],
    ['v2 oversized', Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a', 'hex'), Buffer.from([0x21, 0x11, 0xff, 0xff])])],
    ['garbage', Buffer.from('GET / HTTP/1.0\r\n\r\n')],
  ] as const) {
    r = await Raw.open('127.0.0.1', port);
    r.socket.write(bytes);
    await waitClosed(t, r, what);
    t.equal(await rejected(), ++before, `${what}: counted`);
  }
  t.notOk(g.logs.slice(from).some((l) => parseLine(l)?.client === '198.51.100.1'), 'no address from a refused header was ever used');
});

t.test('a trusted peer whose header does not complete in time is closed', async (t) => {
  const before = await rejected();
  const r = await Raw.open('127.0.0.1', g.gw.ldapPort as number);
  r.socket.write('PROXY TCP4 192.0.2.1 '); // and nothing more
  const ms = await waitClosed(t, r, 'unfinished header', PROXY_HEADER_TIMEOUT_MS + 3000);
  t.ok(ms >= PROXY_HEADER_TIMEOUT_MS - 100, `closed after ${ms} ms, not before the ${PROXY_HEADER_TIMEOUT_MS} ms bound`);
  t.equal(await rejected(), before + 1, 'counted');
});

t.test('deploy/haproxy/haproxy.cfg as shipped: its ldap-check passes against the gateway, both frontends carry the client', async (t) => {
  let cfg = readFileSync(join(ROOT, 'deploy', 'haproxy', 'haproxy.cfg'), 'utf8');
  const [p389, p636] = [await freePort(), await freePort()];
  const sock = join(mkdtempSync(join(tmpdir(), 'gw-haproxy-sock-')), 'stats.sock'); // removed by stop()
  // only what cannot run here changes: no chroot/user/daemon (the suite is not HAProxy's service), the log
  // to stdout, loopback ports, the two replicas both this test's gateway; each must be found
  const replace = (re: RegExp, to: string) => {
    t.match(cfg, re, `the shipped config has ${re}`);
    cfg = cfg.replace(re, to);
  };
  replace(/^\s*chroot .*\n/m, '');
  replace(/^\s*user haproxy\n/m, '');
  replace(/^\s*group haproxy\n/m, '');
  replace(/^\s*daemon\n/m, '');
  replace(/^(\s*maxconn )\d+$/m, '$14096'); // this machine's file-descriptor limit is below what 20000 needs
  replace(/^(\s*)log \/dev\/log (.*)$/m, '$1log stdout format raw $2');
  replace(/^(\s*stats socket )\S+/m, `$1${sock}`);
  replace(/^(\s*bind ):389$/m, `$1127.0.0.1:${p389}`);
  replace(/^(\s*bind ):636$/m, `$1127.0.0.1:${p636}`);
  replace(/10\.0\.0\.11:1389/, `127.0.0.1:${g.gw.ldapPort}`);
  replace(/10\.0\.0\.12:1389/, `127.0.0.1:${g.gw.ldapPort}`);
  replace(/10\.0\.0\.11:1636/, `127.0.0.1:${g.gw.ldapsPort}`);
  replace(/10\.0\.0\.12:1636/, `127.0.0.1:${g.gw.ldapsPort}`);
  const h = await startHaproxy(cfg);
  t.teardown(() => h.stop());
  const states = await waitHealthy(h, ['gateway_ldap', 'gateway_ldaps']);
  t.same(states.map((s) => `${s.backend}/${s.server} ${s.checkStatus}`).sort(), ['gateway_ldap/gw1 L7OK', 'gateway_ldap/gw2 L7OK', 'gateway_ldaps/gw1 L7OK', 'gateway_ldaps/gw2 L7OK'], 'every replica passes the LDAP check (plain and over TLS)');
  let from = g.logs.length;
  t.match(await bindFrom('127.0.0.95', p389, 'alice', 'demo-password'), { ok: true });
  t.match(await auditLine('alice', from), { client: '127.0.0.95', tls: false }, 'port 389: the client address');
  from = g.logs.length;
  t.match(await bindFrom('127.0.0.96', p636, 'bob', 'demo-password', true), { ok: true });
  t.match(await auditLine('bob', from), { client: '127.0.0.96', tls: true }, 'port 636: the client address');
});
