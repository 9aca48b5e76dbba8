// Regression tests for the protocol core (issue 11): each of these failed on the server layer before it
// was split into intake, dispatch and the operation writer. The upstream is the embedded demo directory
// (four users, AD-shaped) unless a test needs the Samba bed's size.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'ldapts';
import pino from 'pino';
import { ResultCode } from '../../src/ldap/protocol';
import type { Handlers } from '../../src/ldap/types';
import { LdapListeners } from '../../src/server/listener';
import { parseConfig } from '../../src/config/load';
import { bindRequest, equality, extendedRequest, modifyRequest, msg, pagedControl, controls, present, searchWith } from '../helpers/ber';
import { ROOT, startFromYaml } from '../helpers/gateway';
import { Wire } from '../helpers/wire';

const BASE = 'dc=vpn,dc=example,dc=test';
const READER = `cn=reader,${BASE}`;
const READER_PW = 'reader-Secret-0042';
const OTHER = `cn=other,${BASE}`;
const OTHER_PW = 'other-Secret-0042';

const demoYaml = (extra = '') => `demo: true
listen:
  ldap: 127.0.0.1:0
  ldaps: 127.0.0.1:0
  tls:
    cert: ../../certs/server.crt
    key: ../../certs/server.key
${extra}directory:
  baseDN: ${BASE}
consumers:
  - name: reader
    bindDN: ${READER}
    password: ${READER_PW}
  - name: other
    bindDN: ${OTHER}
    password: ${OTHER_PW}
    subtrees: [groups]
`;

const SEARCH_DONE = 0x65;
const ENTRY = 0x64;

t.test('requireTLSForBind: a refused plain bind is audited and counted, and StartTLS then succeeds', async (t) => {
  const g = await startFromYaml(demoYaml().replace('  tls:\n', '  requireTLSForBind: true\n  tls:\n'));
  t.teardown(() => g.stop());
  const c = new Client({ url: g.url, timeout: 5000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await t.rejects(c.bind('alice', 'demo-password'), { code: 13 });
  await c.startTLS({ ca: [readFileSync(join(ROOT, 'certs', 'dev-ca.pem'))], servername: 'localhost' });
  await c.bind('alice', 'demo-password');
  t.pass('StartTLS after the refused bind, then the bind succeeds');
  const audit = g.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'bind');
  t.match(audit[0], { name: 'alice', result: 'failure', reason: 'tls_required', tls: false }, 'the refusal is an audit line');
  t.match(audit[1], { name: 'alice', result: 'success', tls: true });
  const metrics = await g.gw.metrics.registry.getSingleMetricAsString('ldap_gateway_binds_total');
  t.match(metrics, /ldap_gateway_binds_total\{result="failure",reason="tls_required"\} 1/, 'and counted');
});

t.test('an empty password gets 49 before the rate limit is consulted', async (t) => {
  const g = await startFromYaml(demoYaml('protection:\n  bindRatePerIp: 1\n  bindBurstPerIp: 1\n'));
  t.teardown(() => g.stop());
  const c = new Client({ url: g.url, timeout: 5000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.bind(READER, READER_PW); // spends the burst
  await t.rejects(c.bind('alice', 'demo-password'), { code: 51 }, 'the next bind with a password is rate-limited');
  await t.rejects(c.bind('alice', ''), { code: 49, message: 'empty_password' }, 'an empty password is refused as such, first');
});

t.test('the outstanding-operations limit holds for every operation, not only searches', async (t) => {
  const g = await startFromYaml(demoYaml().replace('  tls:\n', '  maxOutstandingPerConnection: 1\n  tls:\n'));
  t.teardown(() => g.stop());
  const w = new Wire(g.gw.ldapPort as number);
  t.teardown(() => w.close());
  await w.ready();
  const dn = `uid=alice,ou=users,${BASE}`;
  w.send(msg(1, modifyRequest(dn, 'mail', 'a@b')), msg(2, modifyRequest(dn, 'mail', 'c@d'))); // one segment
  const a = await w.next();
  const b = await w.next();
  const byId = new Map([a, b].map((r) => [r?.messageId, r?.status]));
  t.equal(byId.get(1), 50, 'the first write is refused by policy (anonymous connections never write)');
  t.equal(byId.get(2), 51, 'the second, while the first is outstanding, gets busy');
});

t.test('a paged listing survives a reload and ends with the entries of the whole listing', async (t) => {
  const yaml = demoYaml();
  const g = await startFromYaml(yaml);
  t.teardown(() => g.stop());
  const w = new Wire(g.gw.ldapPort as number);
  t.teardown(() => w.close());
  await w.ready();
  w.send(msg(1, bindRequest(READER, READER_PW)));
  t.equal((await w.next())?.status, 0);
  const page = (id: number, cookie?: Buffer) => w.send(msg(id, searchWith(`ou=users,${BASE}`, 2, present('objectClass'), ['uid']), controls(pagedControl(1, cookie))));
  page(2);
  let r = await w.until(SEARCH_DONE);
  const dns = r.responses.filter((x) => x.protocolOp === ENTRY).map((x) => String(x.objectName));
  let cookie = r.last?.controls[0]?.value?.cookie;
  t.ok(cookie && cookie.length > 0, 'a cookie for the next page');
  const before = g.gw.core;
  await g.gw.reload(parseConfig(yaml.replace('directory:\n', 'log:\n  level: debug\ndirectory:\n'), join(ROOT, 'config', 'examples')));
  t.not(g.gw.core, before, 'a new core is in place');
  for (let id = 3; cookie && cookie.length > 0; id++) {
    page(id, cookie);
    r = await w.until(SEARCH_DONE);
    t.ok(r.last, `page ${id - 1} ended in a SearchResultDone`);
    t.equal(r.last?.status, 0, 'with success');
    dns.push(...r.responses.filter((x) => x.protocolOp === ENTRY).map((x) => String(x.objectName)));
    cookie = r.last?.controls[0]?.value?.cookie;
    if (id > 20) break;
  }
  t.same(dns.sort(), [`ou=users,${BASE}`, ...['uid=alice', 'uid=bob', 'uid=carol', 'uid=dave'].map((u) => `${u},ou=users,${BASE}`)].sort(), 'the container and every user, once each, across the reload');
});

t.test('a paged cookie that cannot be continued drops the connection: never a SearchResultDone', async (t) => {
  const g = await startFromYaml(demoYaml());
  t.teardown(() => g.stop());
  const search = (id: number, cookie?: Buffer) => msg(id, searchWith(`ou=users,${BASE}`, 2, present('objectClass'), ['uid']), controls(pagedControl(1, cookie)));

  await t.test('an unknown cookie', async (t) => {
    const w = new Wire(g.gw.ldapPort as number);
    t.teardown(() => w.close());
    await w.ready();
    w.send(msg(1, bindRequest(READER, READER_PW)));
    t.equal((await w.next())?.status, 0, 'bound');
    w.send(search(2, Buffer.from('0123456789abcdef01234567', 'hex')));
    const r = await w.until(SEARCH_DONE);
    t.equal(r.last, undefined, 'no SearchResultDone');
    t.ok(w.closed, 'the connection is dropped');
  });

  await t.test('a cookie opened by another identity on the same connection', async (t) => {
    const w = new Wire(g.gw.ldapPort as number);
    t.teardown(() => w.close());
    await w.ready();
    w.send(msg(1, bindRequest(READER, READER_PW)));
    t.equal((await w.next())?.status, 0);
    w.send(search(2));
    const first = await w.until(SEARCH_DONE);
    const cookie = first.last?.controls[0]?.value?.cookie as Buffer;
    t.ok(cookie.length > 0, 'the first page came with a cookie');
    w.send(msg(3, bindRequest('alice', 'demo-password')));
    t.equal((await w.next())?.status, 0, 'rebound as an end user');
    w.send(search(4, cookie));
    const r = await w.until(SEARCH_DONE);
    t.same(r.responses.filter((x) => x.protocolOp === ENTRY), [], 'no entry with the old rights');
    t.equal(r.last, undefined, 'no SearchResultDone');
    t.ok(w.closed, 'the connection is dropped');
  });

  await t.test('a cookie sent with other parameters', async (t) => {
    const w = new Wire(g.gw.ldapPort as number);
    t.teardown(() => w.close());
    await w.ready();
    w.send(msg(1, bindRequest(READER, READER_PW)));
    t.equal((await w.next())?.status, 0, 'bound');
    w.send(search(2));
    const first = await w.until(SEARCH_DONE);
    const cookie = first.last?.controls[0]?.value?.cookie as Buffer;
    w.send(msg(3, searchWith(`ou=users,${BASE}`, 2, equality('uid', 'bob'), ['uid']), controls(pagedControl(1, cookie))));
    const r = await w.until(SEARCH_DONE);
    t.equal(r.last, undefined, 'no SearchResultDone');
    t.ok(w.closed, 'the connection is dropped');
  });
});

t.test('operations during a bind in progress are refused; unknown extended operations are protocol errors', async (t) => {
  const g = await startFromYaml(demoYaml());
  t.teardown(() => g.stop());
  const w = new Wire(g.gw.ldapPort as number);
  t.teardown(() => w.close());
  await w.ready();
  w.send(msg(1, bindRequest('alice', 'demo-password')), msg(2, extendedRequest('1.3.6.1.4.1.4203.1.11.3')));
  const got = [await w.next(), await w.next()];
  const byId = new Map(got.map((r) => [r?.messageId, r]));
  t.equal(byId.get(1)?.status, 0, 'the bind succeeds');
  t.equal(byId.get(2)?.status, 1, 'WhoAmI sent before the bind response gets operationsError');
  w.send(msg(3, extendedRequest('1.2.3.4.99')));
  t.equal((await w.next())?.status, 2);
  w.send(msg(4, extendedRequest('1.3.6.1.4.1.4203.1.11.3')));
  const who = await w.next();
  t.equal(who?.status, 0, 'the connection goes on');
});

t.test('a search whose client leaves while the gateway waits for the socket to drain ends at once', async (t) => {
  // the real listener and session, with a handler that streams entries until it is stopped
  let blocked: () => void = () => undefined;
  const isBlocked = new Promise<void>((r) => (blocked = r));
  let ended: (how: string) => void = () => undefined;
  const searchEnded = new Promise<string>((r) => (ended = r));
  let closedSessions = 0;
  const refuse = async () => ({ code: ResultCode.unwillingToPerform });
  const handlers: Handlers<string> = {
    bind: async () => ({ result: { code: 0 }, identity: 'x' }),
    async search(_op, _s, sink) {
      const values = ['v'.repeat(1000)];
      try {
        for (let i = 0; i < 1_000_000; i++) {
          const wait = sink.entry({ dn: `uid=u${i},ou=users,dc=x`, attributes: [{ type: 'description', values }] });
          if (wait) {
            blocked(); // the socket is full: the writer waits for it to drain
            await wait;
          }
        }
        ended('completed');
      } catch (err) {
        ended(`stopped: ${(err as Error).message}`);
      }
      return { code: 0 };
    },
    add: refuse, modify: refuse, modifyDN: refuse, delete: refuse, compare: refuse, passwordModify: refuse,
    whoami: () => '',
    closed: () => void closedSessions++,
  };
  const listen = { ldap: '127.0.0.1:0', startTLS: false, requireTLSForBind: false, maxConnections: 10, maxConnectionsPerIp: 10, idleTimeoutMs: 0, maxPduBytes: 1 << 20, maxOutstandingPerConnection: 4 };
  const l = new LdapListeners(listen, handlers, { op: () => undefined, connection: () => undefined, rejected: () => undefined }, pino({ level: 'silent' }));
  await l.listen();
  const w = new Wire(l.addresses.ldap?.port as number);
  await w.ready();
  w.socket.pause(); // a client that stops reading
  w.send(msg(1, searchWith('dc=x', 2, present('objectClass'))));
  await isBlocked;
  w.close();
  t.match(await searchEnded, /^stopped: /, 'the search stops once the client is gone');
  const t0 = Date.now();
  await l.close(10_000);
  t.ok(Date.now() - t0 < 2000, `shutdown does not wait for the deadline (${Date.now() - t0} ms)`);
  t.equal(closedSessions, 1, 'the session was released');
});
