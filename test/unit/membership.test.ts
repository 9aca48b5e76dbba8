import t from 'tap';
import { eq, filterToString, simplify } from '../../src/directory/filter';
import { defguardProfile, Mapper, selection, sortedGroupDNs, type AdEntry, type MembershipView } from '../../src/directory/mapping';
import { buildIndex, MembershipCache, type IndexSources } from '../../src/directory/membership';
import { VirtualTree } from '../../src/directory/tree';

const B = 'DC=corp,DC=example';
const e = (dn: string, attrs: Record<string, string[]>): AdEntry => ({ dn, attrs: new Map(Object.entries(attrs).map(([k, v]) => [k.toLowerCase(), v])) });
const G = (cn: string, ou = 'Groups') => `CN=${cn},OU=${ou},${B}`;

// Eng ⊂ Staff ⊂ All; Hidden (outside the groups source) ⊂ Staff; a cycle Loop1 <-> Loop2
const allGroups = [
  e(G('Eng'), { cn: ['Eng'], memberOf: [G('Staff')] }),
  e(G('Staff'), { cn: ['Staff'], memberOf: [G('All')] }),
  e(G('All'), { cn: ['All'] }),
  e(G('Hidden', 'Other'), { cn: ['Hidden'], memberOf: [G('Staff')] }),
  e(G('Loop1'), { cn: ['Loop1'], memberOf: [G('Loop2')] }),
  e(G('Loop2'), { cn: ['Loop2'], memberOf: [G('Loop1')] }),
];
const visible = allGroups.filter((g) => !g.dn.includes('OU=Other'));
const users = [
  e(`CN=Alice,OU=People,${B}`, { sAMAccountName: ['alice'], memberOf: [G('Eng')] }),
  e(`CN=Hugo,OU=People,${B}`, { sAMAccountName: ['hugo'], memberOf: [G('Hidden', 'Other')] }),
  e(`CN=Lou,OU=People,${B}`, { sAMAccountName: ['lou'], memberOf: [G('Loop1')] }),
  e(`CN=Nobody,OU=People,${B}`, { sAMAccountName: ['nobody'] }),
];
async function* pages(x: AdEntry[]) {
  yield x;
}
const sources: IndexSources = { allGroups: () => pages(allGroups), visibleGroups: () => pages(visible), users: () => pages(users), groupKeyAttr: 'cn', userKeyAttr: 'sAMAccountName' };
const norm = (dn: string) => dn.toLowerCase().replace(/ /g, '');

t.test('nested groups are flattened, through groups that are not themselves shown', async (t) => {
  const idx = await buildIndex(sources, 'flatten');
  const groupsOf = (dn: string) => [...(idx.userGroups.get(norm(dn)) ?? [])].map((g) => idx.groups.get(g)?.key).sort();
  t.same(groupsOf(`CN=Alice,OU=People,${B}`), ['All', 'Eng', 'Staff']);
  t.same(groupsOf(`CN=Hugo,OU=People,${B}`), ['All', 'Staff'], 'Hidden is not shown, but its parents are');
  t.same(groupsOf(`CN=Lou,OU=People,${B}`), ['Loop1', 'Loop2'], 'a nesting cycle terminates');
  t.same(groupsOf(`CN=Nobody,OU=People,${B}`), []);
  const within = (g: string) => idx.within.get(norm(g))?.slice().sort();
  t.same(within(G('All')), [G('Eng'), G('Hidden', 'Other')].sort(), 'within All: the groups users name directly, at any depth below it');
  t.same(within(G('Eng')), [G('Eng')]);
  t.same(within(G('Loop2')), [G('Loop1')], 'through a cycle');
  t.same(within(G('Loop1')), [G('Loop1')], 'once, though the cycle leads back to it');
  t.equal(idx.within.get(norm(G('Hidden', 'Other'))), undefined, 'only shown groups are keys');
  const keys = (g: string) => idx.members.get(norm(g))?.users.map((u) => u.key);
  t.same(keys(G('Staff')), ['alice', 'hugo']);
  t.same(keys(G('All')), ['alice', 'hugo']);
  t.notOk(idx.groups.has(norm(G('Hidden', 'Other'))));
  t.same(idx.shadowed, []);
});

t.test('a second group with the same cn is reported, not silently merged', async (t) => {
  const twin = e(G('Eng', 'Other'), { cn: ['Eng'] });
  const idx = await buildIndex({ ...sources, allGroups: () => pages([...allGroups, twin]), visibleGroups: () => pages([...visible, twin]) }, 'flatten');
  t.same(idx.shadowed, [twin.dn]);
  t.equal(idx.groupsByKey.get('eng')?.dn, G('Eng'), 'the first one keeps the virtual DN');
});

t.test('direct mode lists subgroups as members instead of flattening', async (t) => {
  const idx = await buildIndex(sources, 'direct');
  const keys = (g: string) => { const m = idx.members.get(norm(g)); return { users: m?.users.map((u) => u.key), groups: m?.groups.map((x) => x.key) }; };
  t.same(keys(G('Staff')), { users: [], groups: ['Eng'] });
  t.same(keys(G('Eng')), { users: ['alice'], groups: [] });
});

t.test('membership values and filters through the mapper', async (t) => {
  const idx = await buildIndex(sources, 'flatten');
  const tree = new VirtualTree('dc=vpn,dc=example', 'ou=users', 'ou=groups');
  const view: MembershipView = {
    index: idx,
    flatten: true,
    userDN: (r) => tree.userDN(r.key),
    groupDN: (r) => tree.groupDN(r.key),
    groupDNsOf: (groups) => sortedGroupDNs(groups, { index: idx, groupDN: (r) => tree.groupDN(r.key) }),
    adDN: (v) => {
      const loc = tree.locate(v);
      if (loc.kind === 'user') return idx.usersByKey.get(loc.key.toLowerCase())?.dn;
      if (loc.kind === 'group') return idx.groupsByKey.get(loc.key.toLowerCase())?.dn;
      return undefined;
    },
  };
  const profile = defguardProfile({ groupClass: 'groupOfUniqueNames' });
  const users = new Mapper(profile.users, 'uid', 'distinguishedName');
  const groups = new Mapper(profile.groups, 'cn', 'distinguishedName');
  const alice = users.mapAttributes(e(`CN=Alice,OU=People,${B}`, { sAMAccountName: ['alice'] }), selection(['memberOf']), view);
  t.same(alice, [{ type: 'memberOf', values: ['cn=All,ou=groups,dc=vpn,dc=example', 'cn=Eng,ou=groups,dc=vpn,dc=example', 'cn=Staff,ou=groups,dc=vpn,dc=example'] }]);
  const staff = groups.mapAttributes(e(G('Staff'), { cn: ['Staff'] }), selection(['uniqueMember']), view);
  t.same(staff, [{ type: 'uniqueMember', values: ['uid=alice,ou=users,dc=vpn,dc=example', 'uid=hugo,ou=users,dc=vpn,dc=example'] }]);

  t.equal(filterToString(simplify(users.rewrite(eq('memberOf', 'cn=Staff,ou=groups,dc=vpn,dc=example'), view))), `(|(memberOf=${G('Eng')})(memberOf=${G('Hidden', 'Other')}))`, 'Staff: the groups nested in it that users name directly');
  const dnIs = (...cns: string[]) => `(|${cns.map((cn) => `(distinguishedName=${G(cn)})`).join('')})`;
  t.equal(filterToString(simplify(groups.rewrite(eq('uniqueMember', 'uid=alice,ou=users,dc=vpn,dc=example'), view))), dnIs('Eng', 'Staff', 'All'), 'the groups whose members include alice, from the index');
  t.equal(filterToString(simplify(groups.rewrite({ type: 'present', attr: 'uniqueMember' }, view))), dnIs('Eng', 'Staff', 'All', 'Loop1', 'Loop2'), 'the groups with members in the answer, not AD\'s (member=*)');
  t.equal(simplify(users.rewrite(eq('memberOf', 'cn=NoSuchGroup,ou=groups,dc=vpn,dc=example'), view)).type, 'false', 'an unknown group matches nothing');
  t.ok(users.filterNeedsIndex(eq('MEMBEROF', 'x')) && users.filterNeedsIndex({ type: 'present', attr: 'memberOf' }) && !users.filterNeedsIndex(eq('uid', 'x')));
});

t.test('in use, the index is rebuilt in the background before it expires; unused, it is left to expire', async (t) => {
  const ttl = 300;
  const built: number[] = [];
  const waiting: Array<{ n: number; done: () => void }> = [];
  /** until build number n has finished */
  const builds = (n: number) => new Promise<void>((done) => waiting.push({ n, done }));
  let slow = false;
  let started = 0;
  const startedAt: number[] = [];
  const cache = new MembershipCache(
    async () => {
      started++;
      startedAt.push(Date.now());
      if (slow) await new Promise((r) => setTimeout(r, 200));
      built.push(Date.now());
      const idx = await buildIndex(sources, 'flatten');
      setImmediate(() => waiting.filter((w) => w.n <= built.length).forEach((w) => w.done()));
      return idx;
    },
    ttl,
    () => false,
    1_000,
  );
  const alive = setInterval(() => undefined, 1000); // the cache's own timer does not hold the process
  t.teardown(() => (cache.stop(), clearInterval(alive)));
  const first = await cache.get();
  t.equal(built.length, 1);
  // the refresh comes on its own, before the first index expires
  await builds(2);
  t.equal(built.length, 2, 'rebuilt without being asked');
  t.ok((built[1] as number) - (built[0] as number) < ttl, `before the index expired (${(built[1] as number) - (built[0] as number)} ms after the first build)`);
  const second = await cache.get();
  t.not(second, first, 'the fresh index is served');
  t.ok(Date.now() - second.builtAt < ttl);
  // a slow build: asked for while it runs, the index still valid is answered at once
  slow = true;
  const next = builds(3);
  for (let i = 0; i < 200 && started < 3; i++) await new Promise((r) => setTimeout(r, 5)); // until the refresh is under way
  t.equal(started, 3, 'a background build started');
  const t0 = Date.now();
  const lastUse = t0;
  const during = await cache.get();
  t.ok(Date.now() - t0 < 50, 'a request during a background build does not wait for it');
  t.ok(Date.now() - during.builtAt < ttl, 'and gets an index within its time to live');
  await next;
  slow = false;
  // unused for longer than keepWarmMs: no more rebuilds
  await new Promise((r) => setTimeout(r, 1_000 + 2 * ttl));
  const late = startedAt.filter((at) => at > lastUse + 1_000 + 20);
  t.same(late, [], 'no rebuild starts later than keepWarmMs after the last use');
  const gaps = startedAt.slice(1).map((at, i) => at - (startedAt[i] as number));
  t.ok(gaps.every((g) => g >= ttl / 2 - 20), `rebuilds at most every ttl/2 (${gaps.join(', ')} ms apart)`);
  const quiet = built.length;
  await new Promise((r) => setTimeout(r, 2 * ttl));
  t.equal(built.length, quiet, 'none while unused');
  await cache.get();
  t.equal(built.length, quiet + 1, 'asked for again: built on demand');
});

t.test('the cache shares one build between concurrent callers and honours its TTL', async (t) => {
  let builds = 0;
  const cache = new MembershipCache(async () => {
    builds++;
    await new Promise((r) => setTimeout(r, 20));
    return buildIndex(sources, 'flatten');
  }, 60_000);
  await Promise.all([cache.get(), cache.get(), cache.get()]);
  await cache.get();
  t.equal(builds, 1);
  const zero = new MembershipCache(async () => {
    builds++;
    return buildIndex(sources, 'flatten');
  }, 0);
  await zero.get();
  await new Promise((r) => setTimeout(r, 2));
  await zero.get();
  t.equal(builds, 3);
});
