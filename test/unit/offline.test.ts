// The offline verifier store (src/auth/offline.ts): scrypt verifiers, the encrypted file, the store's
// bounds and ages, the binder's decisions, the periodic check, the offline look-up; nothing secret logged.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { InvalidCredentialsError } from 'ldapts';
import { checkVerifier, fromStored, guidBytes, makeVerifier, matches, OfflineBinder, OfflineStore, openRecords, parseFilter, sealRecords, SCRYPT, toStored, type OfflineResult } from '../../src/auth/offline';
import { LockoutGuard } from '../../src/auth/guard';
import type { AdEntry } from '../../src/directory/mapping';
import type { AdQuery } from '../../src/directory/search';
import { eq, filterToString } from '../../src/directory/filter';
import { guidToString } from '../../src/directory/transforms';
import { DcSet, isTimeout, UpstreamUnavailableError } from '../../src/upstream/pool';
import { memoryState } from '../../src/state/memory';

const PW = 'Offl1ne-Secret-pw!';
const base = 'OU=People,DC=example,DC=test';

function capture() {
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }));
  return { log, lines };
}

function user(name: string, extra: Record<string, string> = {}): AdEntry {
  const guid = randomBytes(16);
  return {
    dn: `CN=${name},${base}`,
    attrs: new Map<string, Array<string | Buffer>>([
      ['samaccountname', [name]],
      ['userprincipalname', [`${name}@example.test`]],
      ['objectguid', [guid]],
      ['objectclass', ['top', 'person', 'user']],
      ['pwdlastset', ['100']],
      ['useraccountcontrol', ['512']],
      ...Object.entries(extra).map(([k, v]) => [k.toLowerCase(), [v]] as [string, string[]]),
    ]),
  };
}

/** A directory of entries, reachable or not; searches answered by a predicate over the filter text. */
function fakeDirectory(entries: AdEntry[]) {
  const d = { up: true, usn: 10, queries: [] as AdQuery[], entries, groupChanged: false };
  const source = {
    async *search(q: AdQuery): AsyncGenerator<AdEntry[]> {
      d.queries.push(q);
      if (!d.up) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      if (q.base === '') {
        yield [{ dn: '', attrs: new Map([['highestcommittedusn', [String(d.usn)]], ['dsservicename', ['CN=NTDS Settings,CN=DC1']]]) }];
        return;
      }
      if (q.filter.includes('uSNChanged')) {
        yield q.filter.includes('objectClass=group') ? (d.groupChanged ? [{ dn: 'CN=VPN', attrs: new Map() }] : []) : d.entries;
        return;
      }
      // the batched check: entries whose name or DN the filter names
      yield d.entries.filter((e) => q.filter.includes(`(sAMAccountName=${String(e.attrs.get('samaccountname')?.[0])})`) || q.filter.includes(filterToString(eq('distinguishedName', e.dn))));
    },
  };
  return { d, source };
}

function setup(entries: AdEntry[], o: Partial<ConstructorParameters<typeof OfflineStore>[0]> = {}, groupsOf?: (ad: AdEntry) => Promise<string[]>) {
  const { log, lines } = capture();
  const counted: OfflineResult[] = [];
  const state = memoryState();
  const store = new OfflineStore({ enabled: true, maxAgeMs: 3_600_000, maxAccounts: 100, checkIntervalMs: 60_000, ...o }, state, log, (r) => counted.push(r));
  const { d, source } = fakeDirectory(entries);
  const guard = new LockoutGuard({ windowMs: 60_000, perAccountIp: 5, perAccount: 20, perIp: 100, bindRatePerIp: 0, bindBurstPerIp: 0 }, state);
  const binder = new OfflineBinder({
    store,
    usersSource: { base },
    userClass: '(objectClass=user)',
    keyAttr: 'sAMAccountName',
    upnAttr: 'userPrincipalName',
    mail: false,
    snapshotAttributes: ['sAMAccountName', 'userPrincipalName', 'objectGUID', 'objectClass', 'pwdLastSet', 'userAccountControl', 'lockoutTime', 'accountExpires'],
    source,
    read: async (dn) => d.entries.find((e) => e.dn === dn),
    allDown: () => !d.up,
    guard: () => guard,
    ...(groupsOf ? { groupsOf } : {}),
  });
  return { store, binder, d, lines, counted, guard };
}

const guidOf = (e: AdEntry) => guidToString(e.attrs.get('objectguid')?.[0] as Buffer) as string;

/** Bounded poll: the verifier is computed in the background (there is no event to wait on). */
async function until(fn: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('scrypt verifier: parameters, salt per verifier, right and wrong password', async (t) => {
  t.same([SCRYPT.N, SCRYPT.r, SCRYPT.p, SCRYPT.saltBytes], [32768, 8, 1, 32]);
  const a = await makeVerifier(PW);
  const b = await makeVerifier(PW);
  t.not(a.s, b.s, 'a fresh salt each time');
  t.not(a.v, b.v);
  t.equal(Buffer.from(a.s, 'base64').length, 32);
  t.ok(await checkVerifier(PW, a));
  t.notOk(await checkVerifier(`${PW}x`, a));
  t.notOk(JSON.stringify(a).includes(PW));
});

t.test('the encrypted file: round trip, wrong key refused, nothing readable in it', async (t) => {
  const e = user('alice');
  const v = await makeVerifier(PW);
  const text = sealRecords({ g: { ...v, at: 1, pls: '100', entry: toStored(e) } }, 'the-right-key-0123456789');
  t.notOk(text.includes(v.v) || text.includes(v.s) || text.includes('alice'), 'verifier, salt and entry are encrypted');
  const back = openRecords(text, 'the-right-key-0123456789');
  t.equal(back.g?.v, v.v);
  t.same(fromStored(back.g?.entry as never).attrs.get('objectguid'), e.attrs.get('objectguid'), 'binary values survive');
  t.throws(() => openRecords(text, 'a-wrong-key-0123456789'));
  const tampered = JSON.parse(text) as { data: string };
  tampered.data = Buffer.from(Buffer.from(tampered.data, 'base64').map((x, i) => (i === 0 ? x ^ 1 : x))).toString('base64');
  t.throws(() => openRecords(JSON.stringify(tampered), 'the-right-key-0123456789'), 'GCM detects a changed byte');
});

t.test('online binds: a verifier once, not again while fresh; again when pwdLastSet moves', async (t) => {
  const alice = user('alice');
  const { store, binder } = setup([alice]);
  const g = guidOf(alice);
  binder.accepted(alice, PW);
  await until(async () => (await store.records.get(g)) !== undefined);
  const first = await store.records.get(g);
  binder.accepted(alice, PW);
  await new Promise((r) => setTimeout(r, 300)); // long enough for a computation (~100 ms) to have happened
  t.equal((await store.records.get(g))?.s, first?.s, 'a fresh verifier is not recomputed');
  alice.attrs.set('pwdlastset', ['200']);
  binder.accepted(alice, 'N3w-password!');
  await until(async () => (await store.records.get(g))?.s !== first?.s);
  t.equal((await store.records.get(g))?.pls, '200');
});

t.test('offline decisions: success, wrong password (counted by the shield), no verifier, past the maximum age', async (t) => {
  const alice = user('alice');
  const bob = user('bob');
  const { store, binder, d, counted, guard, lines } = setup([alice, bob], { maxAgeMs: 60_000 });
  binder.accepted(alice, PW);
  await until(async () => (await store.records.get(guidOf(alice))) !== undefined);
  d.up = false;
  t.ok(binder.applies(new Error('ECONNREFUSED')), 'every DC down and a connection error: offline');
  t.notOk(binder.applies(new InvalidCredentialsError('invalid credentials')), 'a DC that answered is never offline');
  t.equal((await binder.bind(alice, PW, '10.0.0.1')).reason, 'ok');
  t.equal((await binder.bind(alice, 'Wrong-Passw0rd!', '10.0.0.1')).reason, 'bad_credentials');
  t.ok(await guard.knownWrong(alice.dn, 'Wrong-Passw0rd!'), 'the shield saw the wrong password');
  t.equal((await binder.bind(bob, PW, '10.0.0.1')).reason, 'upstream_unavailable', 'never seen: 52');
  const r = await store.records.get(guidOf(alice));
  await store.records.set(guidOf(alice), { ...(r as NonNullable<typeof r>), at: Date.now() - 61_000 });
  t.equal((await binder.bind(alice, PW, '10.0.0.1')).reason, 'upstream_unavailable', 'past the maximum age: 52');
  t.same(counted, ['success', 'wrong_password', 'no_verifier', 'expired']);
  t.ok(lines.some((l) => l.includes('"offline":true')), 'entering offline is logged');
  const secrets = [PW, r?.v as string, r?.s as string];
  t.notOk(lines.some((l) => secrets.some((s) => l.includes(s))), 'no password, verifier or salt in a log line');
});

t.test('offline, the name bound with must still lead to the account as last read', async (t) => {
  const alice = user('alice');
  const { store, binder, d, counted } = setup([alice]);
  binder.accepted(alice, PW);
  await until(async () => (await store.records.get(guidOf(alice))) !== undefined);
  d.up = false;
  t.ok(binder.applies(new Error('ECONNREFUSED')));
  const as = (username: string) => ({ form: 'username', username }) as const;
  t.equal((await binder.bind(alice, PW, '10.0.0.1', as('alice'))).reason, 'ok', 'her own name: decided by her verifier');
  t.equal((await binder.bind(alice, PW, '10.0.0.1', { form: 'upn', upn: 'ALICE@example.test' })).reason, 'ok', 'her UPN, in any case');
  t.equal((await binder.bind(alice, PW, '10.0.0.1', { form: 'ad-dn', dn: alice.dn.toLowerCase() })).reason, 'ok', 'her DN');
  // a resolution remembered from before a rename (the entry handed in still says alice) under a name
  // the kept entry no longer has
  await store.names.delete('k:alice');
  t.equal((await binder.bind(alice, PW, '10.0.0.1', as('alice'))).reason, 'upstream_unavailable', 'a name that leads nowhere now: 52, her password not even tried');
  t.same(counted, ['success', 'success', 'success', 'no_verifier']);
});

t.test('refusals by AD drop the verifier; a password set through the gateway replaces it', async (t) => {
  const alice = user('alice');
  const { store, binder } = setup([alice]);
  const g = guidOf(alice);
  binder.accepted(alice, PW);
  await until(async () => (await store.records.get(g)) !== undefined);
  await binder.refused(alice, 'upstream_error');
  t.ok(await store.records.get(g), 'not about the account: kept');
  await binder.refused(alice, 'account_disabled');
  t.equal(await store.records.get(g), undefined, 'disabled: dropped');
  binder.accepted(alice, PW);
  await until(async () => (await store.records.get(g)) !== undefined);
  await binder.passwordSet(alice.dn, 'N3w-password!');
  await until(async () => (await store.records.get(g)) !== undefined);
  t.ok(await checkVerifier('N3w-password!', (await store.records.get(g)) as never), 'the new password is the verifier now');
});

t.test('the periodic check: unchanged USN reads nothing; a changed state, or leaving the source, drops', async (t) => {
  const alice = user('alice');
  const bob = user('bob');
  const { store, binder, d } = setup([alice, bob]);
  for (const u of [alice, bob]) binder.accepted(u, PW);
  await until(async () => (await store.records.get(guidOf(alice))) !== undefined && (await store.records.get(guidOf(bob))) !== undefined);
  t.same(await binder.check(), { checked: 2, dropped: 0 }, 'the first check looks at every known account');
  const n = d.queries.length;
  t.same(await binder.check(), { checked: 0, dropped: 0 });
  t.equal(d.queries.length, n + 1, 'an unchanged highestCommittedUSN: one rootDSE read, nothing else');
  alice.attrs.set('useraccountcontrol', ['514']);
  d.usn = 20;
  t.same(await binder.check(), { checked: 2, dropped: 1 });
  t.equal(await store.records.get(guidOf(alice)), undefined, 'disabled in AD: dropped');
  d.entries = [alice];
  d.groupChanged = true; // removed from the group the source filter names: the group changed
  d.usn = 30;
  await binder.check();
  t.equal(await store.records.get(guidOf(bob)), undefined, 'no longer in the users source: dropped');
});

t.test('offline look-up: one user by name from the kept entry; anything else fails', async (t) => {
  const alice = user('alice');
  const { store, binder, d } = setup([alice]);
  binder.accepted(alice, PW);
  await until(async () => (await store.records.get(guidOf(alice))) !== undefined);
  d.up = false;
  const src = binder.source();
  const get = async (q: AdQuery) => {
    const out: AdEntry[] = [];
    for await (const p of src.search(q)) out.push(...p);
    return out;
  };
  t.same((await get({ base, scope: 'sub', filter: '(&(objectClass=user)(sAMAccountName=ALICE))', attributes: [] })).map((e) => e.dn), [alice.dn]);
  t.same((await get({ base, scope: 'sub', filter: '(&(objectClass=user)(&(userPrincipalName=alice@example.test)(objectClass=person)))', attributes: [] })).map((e) => e.dn), [alice.dn]);
  t.same((await get({ base: alice.dn, scope: 'base', filter: '(&(objectClass=user))', attributes: [] })).map((e) => e.dn), [alice.dn]);
  await t.rejects(get({ base, scope: 'sub', filter: '(&(objectClass=user)(sAMAccountName=bob))', attributes: [] }), /ECONNREFUSED/, 'an unknown name: unavailable');
  await t.rejects(get({ base, scope: 'sub', filter: '(&(objectClass=user))', attributes: [] }), /ECONNREFUSED/, 'a listing: unavailable');
  await t.rejects(get({ base, scope: 'sub', filter: '(&(objectClass=user)(sAMAccountName=alice)(cn=al*))', attributes: [] }), /ECONNREFUSED/, 'a term it cannot decide: unavailable');
  t.equal(matches(parseFilter('(&(sAMAccountName=alice)(!(userAccountControl=514)))'), alice, new Set(['samaccountname', 'useraccountcontrol'])), true);
  t.same(guidToString(guidBytes(guidOf(alice))), guidOf(alice), 'GUID bytes round trip');
});

t.test('the file: saved encrypted, loaded after a restart; a wrong key loads nothing and says so', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'gw-offline-')), 'verifiers');
  const alice = user('alice');
  const a = setup([alice], { file, key: 'file-key-0123456789abcdef' });
  a.binder.accepted(alice, PW);
  await until(async () => (await a.store.records.get(guidOf(alice))) !== undefined);
  await a.store.close();
  await a.store.save();
  t.notOk(readFileSync(file, 'utf8').includes('alice'));
  const b = setup([alice], { file, key: 'file-key-0123456789abcdef' });
  await b.store.load((e) => b.binder.keysOf(e));
  b.d.up = false;
  t.equal((await b.binder.bind(alice, PW, '10.0.0.2')).reason, 'ok', 'kept across the restart');
  const c = setup([alice], { file, key: 'another-key-0123456789abc' });
  await c.store.load((e) => c.binder.keysOf(e));
  c.d.up = false;
  t.equal((await c.binder.bind(alice, PW, '10.0.0.2')).reason, 'upstream_unavailable', 'a wrong key: none used');
  t.ok(c.lines.some((l) => l.includes('cannot be decrypted')), 'a clear log line');
});

t.test('a renamed account keeps its verifier: the check finds it by DN or name, matched by objectGUID, and moves its names', async (t) => {
  const alice = user('alice');
  const { store, binder, d, lines } = setup([alice]);
  const g = guidOf(alice);
  binder.accepted(alice, PW);
  await until(async () => (await store.records.get(g)) !== undefined);
  await binder.check();
  // sAMAccountName and UPN renamed (samba-tool user rename): the DN is the same
  alice.attrs.set('samaccountname', ['alicia']);
  alice.attrs.set('userprincipalname', ['alicia@example.test']);
  d.usn = 20;
  t.same(await binder.check(), { checked: 1, dropped: 0 }, 'kept');
  t.equal(await store.names.get('k:alicia'), g, 'the new name leads to it');
  t.equal(await store.names.get('u:alicia@example.test'), g);
  t.equal(await store.names.get('k:alice'), undefined, 'the old one no longer does');
  t.ok(lines.some((l) => l.includes('"renamed":true')), 'logged');
  // then the DN too (a new CN): found by its name
  alice.dn = `CN=Alicia,${base}`;
  d.usn = 30;
  t.same(await binder.check(), { checked: 1, dropped: 0 });
  t.equal(await store.names.get(`d:cn=alicia,${base.toLowerCase()}`), g);
  // name and DN at once: the uSNChanged read says where it is now
  alice.dn = `CN=Alicia2,${base}`;
  alice.attrs.set('samaccountname', ['alicia2']);
  d.usn = 40;
  t.same(await binder.check(), { checked: 1, dropped: 0 });
  t.equal(await store.names.get('k:alicia2'), g);
  // offline: the new name binds, the old one is unknown
  d.up = false;
  const src = binder.source();
  const get = async (f: string) => {
    const out: AdEntry[] = [];
    for await (const p of src.search({ base, scope: 'sub', filter: `(&(objectClass=user)${f})`, attributes: [] })) out.push(...p);
    return out;
  };
  t.same((await get('(sAMAccountName=alicia2)')).map((e) => e.dn), [alice.dn]);
  await t.rejects(get('(sAMAccountName=alice)'), /ECONNREFUSED/, 'the old name: unavailable');
  t.equal((await binder.bind(alice, PW, '10.0.0.3')).reason, 'ok');
});

t.test('with provisioning on, the groups are kept with the verifier, refreshed by the check, and returned offline', async (t) => {
  const alice = user('alice');
  let groups = ['Engineering', 'Staff'];
  const { store, binder, d } = setup([alice], {}, async () => groups);
  const g = guidOf(alice);
  binder.accepted(alice, PW);
  await until(async () => (await store.records.get(g)) !== undefined);
  t.same((await store.records.get(g))?.groups, ['Engineering', 'Staff']);
  await binder.check();
  groups = ['Engineering'];
  d.groupChanged = true;
  d.usn = 20;
  await binder.check();
  t.same((await store.records.get(g))?.groups, ['Engineering'], 'a group changed: read again');
  d.up = false;
  t.same(await binder.bind(alice, PW, '10.0.0.4'), { reason: 'ok', result: 'success', ad: fromStored((await store.records.get(g))?.entry as never), groups: ['Engineering'] });
  t.same((await binder.bind(alice, 'Wrong-Passw0rd!', '10.0.0.4')).groups, undefined, 'only with a success');
});

t.test('a DC that does not answer in time is in back-off; an operation is tried on the next DC, once per DC', async (t) => {
  const timeout = new Error('SearchRequest: Operation timed out');
  t.ok(isTimeout(timeout));
  t.notOk(isTimeout(new Error('Connection timeout')), 'a connect timeout is handled where connections open');
  t.notOk(isTimeout(new InvalidCredentialsError('x')));
  const d = new DcSet({ urls: ['ldap://dc1', 'ldap://dc2'], startTLS: false, tls: { verify: true }, connectMs: 100, operationMs: 100, idleMs: 1000, failureBackoffMs: 10_000 });
  t.ok(d.retryable(timeout, 0), 'a first failure: the next DC');
  d.markDown('ldap://dc1', timeout);
  t.notOk(d.isUp('ldap://dc1'));
  t.ok(d.retryable(timeout, 0));
  t.notOk(d.retryable(timeout, 1), 'at most once per DC');
  d.markDown('ldap://dc2', timeout);
  t.notOk(d.retryable(timeout, 0), 'every DC failed: no retry (offline binds apply)');
  t.notOk(d.retryable(new UpstreamUnavailableError('none'), 0), 'none reachable already tried them all');
  t.notOk(d.retryable(new InvalidCredentialsError('x'), 0), 'an answer is never retried');
  const one = new DcSet({ urls: ['ldap://dc1'], startTLS: false, tls: { verify: true }, connectMs: 100, operationMs: 100, idleMs: 1000, failureBackoffMs: 10_000 });
  t.ok(one.retryable(new Error('socket closed'), 0), 'one DC: a dead pooled connection is retried once');
  t.notOk(one.retryable(new Error('socket closed'), 1));
});
