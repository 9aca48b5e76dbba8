// The lockout shield's questions: what each screen answers, that one screen asks its questions together
// (on Redis: one round trip), and that the known-wrong memory is shared by guards of one configuration.
import t from 'tap';
import { LockoutGuard, shieldKey } from '../../src/auth/guard';
import { memoryState } from '../../src/state/memory';
import type { StateStores } from '../../src/state/types';

const limits = { windowMs: 60_000, perAccountIp: 3, perAccount: 4, perIp: 10, bindRatePerIp: 100, bindBurstPerIp: 2 };
const dn = 'CN=Alice,OU=People,DC=example,DC=test';

/** The stores, with every call's start and end recorded: a screen's questions must all start before any ends. */
function recorded(inner: StateStores) {
  const calls: string[] = [];
  const wrap =
    <A extends unknown[], R>(name: string, fn: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      calls.push(`start ${name}`);
      try {
        return await fn(...a);
      } finally {
        calls.push(`end ${name}`);
      }
    };
  const stores: StateStores = {
    ttlMap<V>(n: string, o: Parameters<StateStores['ttlMap']>[1]) {
      const m = inner.ttlMap<V>(n, o as never);
      return { get: wrap(`${n}.get`, m.get.bind(m)), set: wrap(`${n}.set`, m.set.bind(m)), delete: wrap(`${n}.delete`, m.delete.bind(m)) };
    },
    windowCounter(n, o) {
      const w = inner.windowCounter(n, o);
      return { add: wrap(`${n}.add`, w.add.bind(w)), count: wrap(`${n}.count`, w.count.bind(w)), clear: wrap(`${n}.clear`, w.clear.bind(w)) };
    },
    rateLimiter(n, o) {
      const r = inner.rateLimiter(n, o);
      return { take: wrap(`${n}.take`, r.take.bind(r)) };
    },
    bus: inner.bus,
  };
  return { stores, calls };
}

const allStartFirst = (calls: string[]) => {
  const firstEnd = calls.findIndex((c) => c.startsWith('end'));
  return firstEnd > 0 && calls.slice(firstEnd).every((c) => c.startsWith('end'));
};

t.test('screen: the rate and the address budget, asked together', async (t) => {
  const { stores, calls } = recorded(memoryState());
  const guard = new LockoutGuard(limits, stores);
  const now = 1_000_000;
  t.equal((await guard.screen('10.0.0.1', undefined, now)).client, undefined, 'a fresh address passes');
  t.same(calls.filter((c) => c.startsWith('start')).sort(), ['start bind-rate.take', 'start lockout.count'], 'both questions asked');
  t.ok(allStartFirst(calls), 'both started before either answered');
  t.equal((await guard.screen('10.0.0.1', undefined, now)).client, undefined, 'the burst allows a second');
  t.equal((await guard.screen('10.0.0.1', undefined, now)).client, 'rate_limited', 'the third within the same instant is over the rate');
  const trips: string[] = [];
  const strict = new LockoutGuard({ ...limits, perIp: 2, bindBurstPerIp: 100 }, memoryState(), (scope) => trips.push(scope));
  await strict.otherFailure('10.0.0.2');
  t.equal((await strict.screen('10.0.0.2')).client, undefined, 'one failure is under the budget');
  await strict.otherFailure('10.0.0.2');
  t.equal((await strict.screen('10.0.0.2')).client, 'throttled', 'two failures reach it');
  t.same(trips, ['ip'], 'the trip is reported once, with its scope');
});

t.test('screenAccount: budgets first, then the known-wrong password, asked together', async (t) => {
  const { stores, calls } = recorded(memoryState());
  const guard = new LockoutGuard(limits, stores);
  t.equal(await guard.screenAccount(dn, 'Secret-1', '10.0.0.1'), undefined, 'nothing known: pass');
  t.same(calls.filter((c) => c.startsWith('start')), ['start lockout-flags.get'], 'an account with no failure: only its flag is read');

  await guard.badPassword(dn, 'Wrong-1', '10.0.0.1');
  calls.length = 0;
  t.equal(await guard.screenAccount(dn, 'Secret-1', '10.0.0.1'), undefined, 'one failure: still within every budget');
  const asked = calls.filter((c) => c.startsWith('start'));
  t.same(asked.slice(1).sort(), ['start lockout-wrong.get', 'start lockout.count', 'start lockout.count'], 'a flagged account: the two windows and the wrong-password memory are asked');
  t.ok(allStartFirst(calls.slice(calls.indexOf(asked[1] as string))), 'all three started before any answered');

  t.equal(await guard.screenAccount(dn, 'Wrong-1', '10.0.0.1'), 'known_wrong', 'the same wrong password is known');
  t.equal(await guard.screenAccount(dn.toUpperCase(), 'Wrong-1', '10.0.0.9'), 'known_wrong', 'for the account in any case, from any address');
  t.equal(await guard.screenAccount(dn, 'Secret-1', '10.0.0.1'), undefined, 'another password is not');
  await guard.badPassword(dn, 'Wrong-2', '10.0.0.1');
  await guard.badPassword(dn, 'Wrong-3', '10.0.0.1');
  t.equal(await guard.screenAccount(dn, 'Wrong-1', '10.0.0.1'), 'account_ip', 'a tripped budget comes before the known-wrong answer');
  t.equal(await guard.screenAccount(dn, 'Secret-1', '10.0.0.2'), undefined, 'another address still has its budget');
  await guard.badPassword(dn, 'Wrong-4', '10.0.0.2');
  t.equal(await guard.screenAccount(dn, 'Secret-1', '10.0.0.3'), 'account', "four failures trip the account's total");
  await guard.succeeded(dn, '10.0.0.1');
  t.equal(await guard.screenAccount(dn, 'Secret-1', '10.0.0.3'), undefined, 'a success clears the total');
  await guard.passwordChanged(dn, 'Wrong-1');
  t.equal(await guard.screenAccount(dn, 'Wrong-1', '10.0.0.3'), undefined, 'a password set through the gateway is no longer known wrong');
});

/** One store per name, whoever asks (as every replica reaches the same keys on Redis). */
function byName(inner: StateStores): StateStores {
  const maps = new Map<string, unknown>();
  const windows = new Map<string, ReturnType<StateStores['windowCounter']>>();
  return {
    ...inner,
    ttlMap<V>(n: string, o: Parameters<StateStores['ttlMap']>[1]) {
      if (!maps.has(n)) maps.set(n, inner.ttlMap<V>(n, o as never));
      return maps.get(n) as ReturnType<StateStores['ttlMap']> as never;
    },
    windowCounter(n, o) {
      if (!windows.has(n)) windows.set(n, inner.windowCounter(n, o));
      return windows.get(n) as ReturnType<StateStores['windowCounter']>;
    },
  };
}

t.test('screen with a known account: one batch for the whole shield, its verdict only once the address passed', async (t) => {
  const { stores, calls } = recorded(memoryState());
  const trips: string[] = [];
  const guard = new LockoutGuard({ ...limits, bindBurstPerIp: 1, bindRatePerIp: 1 }, stores, (scope) => trips.push(scope));
  const now = 5_000_000;
  for (const pw of ['Wrong-1', 'Wrong-2', 'Wrong-3']) await guard.badPassword(dn, pw, '10.0.0.1', now);
  calls.length = 0;
  t.same(await guard.screen('10.0.0.1', { dn, password: 'Secret-1' }, now), { account: 'account_ip' }, "the account's verdict comes back with the address's");
  t.same(
    calls.filter((c) => c.startsWith('start')).sort(),
    ['start bind-rate.take', 'start lockout-flags.get', 'start lockout-wrong.get', 'start lockout.count', 'start lockout.count', 'start lockout.count'],
    'rate, address, the flag, both account windows and the wrong-password memory asked',
  );
  // (local reads: the flag is answered before the account's questions start; on a remote backend they
  // all go in one batch, below)
  t.same(trips, ['account_ip'], 'the trip reported');
  t.same(await guard.screen('10.0.0.1', { dn, password: 'Secret-1' }, now), { client: 'rate_limited' }, 'over the rate: the rate decides');
  t.same(trips, ['account_ip'], 'and the account budget it was also asked about is not reported as a trip');
});

t.test('the known-wrong memory: shared by one configuration, apart for another, never the password', async (t) => {
  const shared = byName(memoryState());
  const a = new LockoutGuard({ ...limits, keyMaterial: 'cn=svc\0service-password' }, shared);
  const b = new LockoutGuard({ ...limits, keyMaterial: 'cn=svc\0service-password' }, shared);
  const other = new LockoutGuard({ ...limits, keyMaterial: 'cn=svc\0another-password' }, shared);
  const random1 = new LockoutGuard(limits, shared);
  const random2 = new LockoutGuard(limits, shared);
  await a.badPassword(dn, 'Wrong-1', '10.0.0.1');
  t.ok(await b.knownWrong(dn, 'Wrong-1'), 'a second process of the same configuration knows it (replicas count it once)');
  t.notOk(await other.knownWrong(dn, 'Wrong-1'), 'another service password: another key');
  await random1.badPassword(dn, 'Wrong-2', '10.0.0.1');
  t.notOk(await random2.knownWrong(dn, 'Wrong-2'), 'without key material each process keeps its own');
  t.same(shieldKey('x'), shieldKey('x'), 'the key is derived, the same every time');
  t.not(shieldKey(undefined).toString('hex'), shieldKey(undefined).toString('hex'), 'without material it is random');

  // what the store holds: keys and values, none of them the password or the key material
  const seen: string[] = [];
  // (remote, as on Redis: the account's flag is written too)
  const spy: StateStores = { ...shared, remote: true, ttlMap: <V>(n: string, o: Parameters<StateStores['ttlMap']>[1]) => {
    const m = shared.ttlMap<V>(n, o as never);
    return { ...m, get: m.get.bind(m), delete: m.delete.bind(m), set: async (k: string, v: V, ttl?: number) => (seen.push(`${n}|${k}|${JSON.stringify(v)}`), m.set(k, v, ttl)) };
  } };
  await new LockoutGuard({ ...limits, keyMaterial: 'cn=svc\0service-password' }, spy).badPassword(dn, 'Wrong-Passw0rd!', '10.0.0.1');
  t.same(seen.map((x) => x.split('|')[0]), ['lockout-wrong', 'lockout-flags'], "two entries written: the known-wrong memory's and the account's flag");
  t.notMatch(seen.join('\n'), /Wrong-Passw0rd|service-password/, 'neither the password nor the key material is stored');
});

// Two replicas on one remote backend (the same stores and bus, `remote` as Redis's state says): a clean
// account is asked about once, then answered here until a failure is recorded anywhere.
t.test('remote backend: clean accounts are not asked about again until some replica records a failure', async (t) => {
  const shared = byName(memoryState());
  const a = recorded(shared);
  const b = recorded(shared);
  // one configuration (one key for the known-wrong memory); no address budget, so only account questions count
  const o = { ...limits, perIp: 0, bindBurstPerIp: 1000, keyMaterial: 'cn=svc\0service-password' };
  const ga = new LockoutGuard(o, { ...a.stores, remote: true });
  const gb = new LockoutGuard(o, { ...b.stores, remote: true });
  t.teardown(() => (ga.stop(), gb.stop()));
  const asked = (calls: string[]) => calls.filter((c) => /^start lockout(-wrong|-flags)?\.(count|get)$/.test(c)).length;
  t.equal(await ga.screenAccount(dn, 'Secret-1', '10.0.0.1'), undefined);
  t.equal(asked(a.calls), 4, 'first bind: both windows, the known-wrong memory and the flag asked');
  a.calls.length = 0;
  t.equal(await ga.screenAccount(dn, 'Secret-1', '10.0.0.1'), undefined);
  t.same((await ga.screen('10.0.0.1', { dn, password: 'Other-2' })).account, undefined);
  t.equal(asked(a.calls), 0, 'then: nothing asked about the account, whatever the password');
  a.calls.length = 0;
  await ga.succeeded(dn, '10.0.0.1');
  t.same(a.calls, [], 'and a success has no count to clear');

  // a's own failure: its next bind asks again at once, even while the failure's writes are on their way
  const pending = ga.badPassword(dn, 'Wrong-0', '10.0.0.9');
  a.calls.length = 0;
  await ga.screenAccount(dn, 'Secret-1', '10.0.0.1');
  t.equal(asked(a.calls), 4, "a's own failure: asked about again before its writes landed");
  await pending;
  await ga.succeeded(dn, '10.0.0.9');
  a.calls.length = 0;

  // replica b: AD refused a password; a hears of it on the bus and asks again
  await gb.badPassword(dn, 'Wrong-1', '10.0.0.2');
  t.equal(await ga.screenAccount(dn, 'Wrong-1', '10.0.0.1'), 'known_wrong', "b's failure is seen by a's next bind");
  t.equal(asked(a.calls), 4, 'asked again');
  for (const pw of ['Wrong-2', 'Wrong-3', 'Wrong-4']) await gb.badPassword(dn, pw, '10.0.0.3');
  t.equal(await ga.screenAccount(dn, 'Secret-1', '10.0.0.4'), 'account', 'four failures across replicas: the account budget');
  await ga.succeeded(dn, '10.0.0.4');
  a.calls.length = 0;
  t.equal(await ga.screenAccount(dn, 'Wrong-1', '10.0.0.1'), 'known_wrong', 'after a success the counts are cleared, the known-wrong memory is not');
  t.equal(asked(a.calls), 4, 'so a flagged account stays asked about');

  // a lost subscription (the bus delivers its resync message): every clean account is asked about again
  const other = 'CN=Bob,OU=People,DC=example,DC=test';
  await ga.screenAccount(other, 'Secret-1', '10.0.0.1');
  a.calls.length = 0;
  await ga.screenAccount(other, 'Secret-1', '10.0.0.1');
  t.equal(asked(a.calls), 0, 'bob is clean');
  await shared.bus.publish('lockout-flag', '');
  await ga.screenAccount(other, 'Secret-1', '10.0.0.1');
  t.equal(asked(a.calls), 4, 'after a resync, asked again');

  // a flagged account on a remote backend: flag, windows and memory in one batch (one round trip)
  a.calls.length = 0;
  await ga.screen('10.0.0.1', { dn, password: 'Wrong-1' });
  t.ok(allStartFirst(a.calls), 'all started before any answered');

  // not remote (memory, or workers replicating through the supervisor): the flag is read each time
  // (nothing kept), and only a flagged account is asked about further
  const local = recorded(memoryState());
  const gl = new LockoutGuard({ ...limits, perIp: 0 }, local.stores);
  await gl.screenAccount(dn, 'Secret-1', '10.0.0.1');
  await gl.screenAccount(dn, 'Secret-1', '10.0.0.1');
  t.equal(asked(local.calls), 2, 'local reads: the flag each time, nothing else');
  await gl.badPassword(dn, 'Wrong-1', '10.0.0.1');
  local.calls.length = 0;
  t.equal(await gl.screenAccount(dn, 'Wrong-1', '10.0.0.1'), 'known_wrong');
  t.equal(asked(local.calls), 4, 'flagged: the windows and the memory too');
});
