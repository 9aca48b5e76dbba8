// DC health. After a write, reads and binds go to the DC that took it (upstream.stickyAfterWriteMs): DcSet puts the
// pinned DC first while the pin lasts and while that DC is not in back-off.
import t from 'tap';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import pino from 'pino';
import { TimeLimitExceededError } from 'ldapts';
import { startDemoDirectory } from '../../src/demo/directory';
import { DcSet, Pool, PooledConnection } from '../../src/upstream/pool';

const dcs = () => new DcSet({ urls: ['ldap://dc1', 'ldap://dc2', 'ldap://dc3'], startTLS: false, tls: { verify: true }, connectMs: 100, operationMs: 100, idleMs: 1000, failureBackoffMs: 10_000 });

t.test('the pinned DC comes first while the pin lasts', async (t) => {
  const d = dcs();
  t.same(d.candidates(), ['ldap://dc1', 'ldap://dc2', 'ldap://dc3']);
  d.pinTo('ldap://dc2', 30_000);
  t.equal(d.pinned(), 'ldap://dc2');
  t.same(d.candidates(), ['ldap://dc2', 'ldap://dc1', 'ldap://dc3']);
  t.same(d.candidates(Date.now() + 31_000), ['ldap://dc1', 'ldap://dc2', 'ldap://dc3'], 'the pin expires');
  t.equal(d.pinned(Date.now() + 31_000), undefined);
});

t.test('a pinned DC in back-off is not preferred; 0 ms pins nothing', async (t) => {
  const d = dcs();
  d.pinTo('ldap://dc3', 30_000);
  d.markDown('ldap://dc3', new Error('gone'));
  t.equal(d.pinned(), undefined);
  t.same(d.candidates(), ['ldap://dc1', 'ldap://dc2']);
  const e = dcs();
  e.pinTo('ldap://dc2', 0);
  t.equal(e.pinned(), undefined);
});

// An operation that timed out: a DC that no longer answers is down (hung, as after SIGSTOP); a DC that
// answers a rootDSE probe was only slow on that operation, which becomes timeLimitExceeded.
t.test('a timeout: the DC is probed; hung -> back-off, answering -> timeLimitExceeded and still up', async (t) => {
  const held = new Set<Socket>();
  const hung = createServer((s) => held.add(s)); // accepts, never answers (never reads either)
  await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of held) s.destroy();
    return new Promise<void>((r) => hung.close(() => r()));
  });
  const demo = await startDemoDirectory(pino({ level: 'silent' }));
  t.teardown(() => demo.close());
  const hungUrl = `ldap://127.0.0.1:${(hung.address() as AddressInfo).port}`;
  const d = new DcSet({ urls: [demo.url, hungUrl], startTLS: false, tls: { verify: true }, connectMs: 300, operationMs: 300, idleMs: 10_000, failureBackoffMs: 10_000 });
  const pool = new Pool(d, { name: 'service', size: 2, mode: 'shared', bindDN: '', bindPassword: '' });
  t.teardown(() => pool.close());
  const timedOut = () => new Error('SearchRequest: Operation timed out');

  const t0 = Date.now();
  const [a, b] = await Promise.all([d.answers(hungUrl), d.answers(hungUrl)]);
  t.same([a, b], [false, false], 'the hung DC does not answer the probe');
  t.ok(Date.now() - t0 < 2000, 'within the probe timeout');
  t.ok(await d.answers(demo.url), 'a live DC answers');

  const onHung = new PooledConnection(d.client(hungUrl), hungUrl);
  onHung.inFlight = 1;
  const e1 = timedOut();
  t.equal(await pool.fail(onHung, e1), e1, 'hung: the timeout is rethrown as it is (a connection-level failure)');
  t.notOk(d.isUp(hungUrl), 'and the DC is in back-off');
  t.ok(d.retryable(e1, 0), 'the next DC may be asked');

  const onLive = new PooledConnection(d.client(demo.url), demo.url);
  onLive.inFlight = 1;
  const e2 = await pool.fail(onLive, timedOut());
  t.ok(e2 instanceof TimeLimitExceededError, 'answering: timeLimitExceeded, an answer');
  t.match((e2 as Error).message, /Operation timed out: the domain controller answers/);
  t.ok(d.isUp(demo.url), 'the DC stays up');
  t.notOk(d.retryable(e2, 0), 'and the operation is not repeated elsewhere');
  t.ok(onLive.broken, 'the connection with an answer still pending is not reused');
});

t.test('a shared connection where one operation timed out serves the others still running on it, then goes', async (t) => {
  const demo = await startDemoDirectory(pino({ level: 'silent' }));
  t.teardown(() => demo.close());
  const d = new DcSet({ urls: [demo.url], startTLS: false, tls: { verify: true }, connectMs: 300, operationMs: 300, idleMs: 10_000, failureBackoffMs: 10_000 });
  const pool = new Pool(d, { name: 'service', size: 1, mode: 'shared', bindDN: '', bindPassword: '' });
  t.teardown(() => pool.close());
  const a = await pool.acquire();
  const b = await pool.acquire();
  t.equal(a, b, 'one connection, two operations on it');
  pool.release(a, new Error('SearchRequest: Operation timed out'));
  t.equal(pool.stats().size, 1, 'the other operation keeps it');
  t.ok(b.client.isConnected && b.broken, 'still connected, but taken for nothing new');
  const c = await pool.acquire();
  t.not(c, b, 'a new operation gets another connection');
  pool.release(b);
  t.equal(pool.stats().size, 1, 'the last operation on the timed-out connection ended: it is gone');
  pool.release(c);
});
