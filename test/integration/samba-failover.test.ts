// Failover across two real Samba AD DCs (127.0.0.13 and 127.0.0.14, clones of the same populated domain:
// same users, same passwords). One DC is stopped under a steady bind load; binds must keep succeeding.
// This file owns its DCs (cloned from the test bed's template), so stopping them disturbs no other test.
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'ldapts';
import { bedEnv, CONSUMER_PASSWORD, ROOT, run, startFromYaml, type TestGateway } from '../helpers/gateway';

const SCRIPT = join(ROOT, 'test', 'testbed', 'samba-ad-testbed.sh');
const PW = bedEnv('SAMBA_AD_USER_PASS');
const dir = mkdtempSync(join(tmpdir(), 'gw-failover-'));
const DCS = [
  { ip: '127.0.0.13', dir: join(dir, 'dc1') },
  { ip: '127.0.0.14', dir: join(dir, 'dc2') },
];

async function bed(cmd: 'up' | 'down', dc: (typeof DCS)[number]): Promise<void> {
  const r = await run('bash', [SCRIPT, cmd, dc.dir], { ...process.env, SAMBA_IP: dc.ip }, 60_000);
  if (r.code !== 0) throw new Error(`samba ${cmd} ${dc.ip} failed: ${r.stderr}`);
}

let g: TestGateway;
t.before(async () => {
  for (const dc of DCS) {
    const c = await run('bash', [SCRIPT, 'clone', bedEnv('SAMBA_AD_TEMPLATE'), dc.dir], { ...process.env, SAMBA_IP: dc.ip }, 60_000);
    if (c.code !== 0) throw new Error(`clone failed: ${c.stderr}`);
  }
  await Promise.all(DCS.map((dc) => bed('up', dc)));
  g = await startFromYaml(
    `listen:
  ldap: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
upstream:
  urls:
    - ldaps://${DCS[0]?.ip}:636
    - ldaps://${DCS[1]?.ip}:636
  tls:
    ca: \${env:SAMBA_AD_CA_FILE}
  bind:
    dn: \${env:SAMBA_AD_SERVICE_DN}
    password: \${env:SAMBA_AD_USER_PASS}
  baseDN: \${env:SAMBA_AD_BASE_DN}
  timeouts:
    connectMs: 1000
    operationMs: 3000
  failureBackoffMs: 1500
directory:
  baseDN: dc=vpn,dc=example,dc=test
consumers:
  - name: defguard
    bindDN: cn=defguard,dc=vpn,dc=example,dc=test
    password: ${CONSUMER_PASSWORD}
`,
  );
});
t.teardown(async () => {
  await g?.stop();
  for (const dc of DCS) await bed('down', dc).catch(() => undefined);
});

interface Sample {
  at: number;
  ok: boolean;
  code?: number;
}

/** n clients re-binding as users on their own connections until `until`. */
async function load(n: number, until: () => boolean, samples: Sample[]): Promise<void> {
  const users = ['alice', 'bob', 'carol', 'jmuller'];
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const c = new Client({ url: g.url, timeout: 10_000 });
      try {
        while (!until()) {
          try {
            await c.bind(users[i % users.length] as string, PW);
            samples.push({ at: Date.now(), ok: true });
          } catch (err) {
            samples.push({ at: Date.now(), ok: false, code: (err as { code?: number }).code });
          }
        }
      } finally {
        await c.unbind().catch(() => undefined);
      }
    }),
  );
}

const dcOf = (line: string) => (JSON.parse(line) as { dc?: string }).dc;

t.test('a DC stopped under steady bind load: binds keep succeeding on the other', async (t) => {
  const samples: Sample[] = [];
  let stop = false;
  const running = load(4, () => stop, samples);
  let stoppedAt = 0;
  let downAt = 0;
  try {
    const from = g.logs.length;
    await g.waitForLog((_l, j) => j?.event === 'bind' && j.result === 'success', { from, count: 21 });
    const before = g.logs.slice(from).filter((l) => l.includes('"event":"bind"') && l.includes('"result":"success"'));
    t.ok(before.length > 20, `${before.length} binds before the stop`);
    t.ok(before.every((l) => dcOf(l) === `ldaps://${DCS[0]?.ip}:636`), 'all on the first DC while it is up');

    stoppedAt = Date.now();
    await bed('down', DCS[0] as (typeof DCS)[number]);
    downAt = Date.now();
    // the load goes on until 25 binds have succeeded on the second DC since the first one is down
    // (bounded: with no failover, this times out and the test fails)
    await g.waitForLog((_l, j) => j?.event === 'bind' && j.result === 'success' && j.dc === `ldaps://${DCS[1]?.ip}:636`, { from: g.logs.length, count: 25, timeoutMs: 10_000 });
  } finally {
    stop = true;
    await running;
  }

  const after = samples.filter((s) => s.at > downAt);
  const failures = samples.filter((s) => !s.ok);
  const firstOkOnDc2 = g.logs.map((l) => JSON.parse(l) as { event?: string; result?: string; dc?: string; time: string }).find((l) => l.event === 'bind' && l.result === 'success' && l.dc === `ldaps://${DCS[1]?.ip}:636`);
  const failover = firstOkOnDc2 ? Date.parse(firstOkOnDc2.time) - stoppedAt : Infinity;
  t.comment(`binds: ${samples.length} total, ${failures.length} failed (codes ${[...new Set(failures.map((f) => f.code))].join(',') || '-'}), ${after.filter((s) => s.ok).length} succeeded after the DC was down; first success on the second DC ${failover} ms after 'down' began (samba takes ~1.5 s to stop)`);
  t.ok(after.filter((s) => s.ok).length > 20, 'binds go on succeeding after the stop');
  t.ok(failures.length <= 8, `only operations in flight at that moment fail (${failures.length})`);
  t.ok(failover < 5000, `failover within 5 s (${failover} ms)`);
  const metrics = await (await fetch(`${g.httpUrl}/metrics`)).text();
  t.match(metrics, new RegExp(`^ldap_gateway_upstream_dc_up\\{dc="ldaps://${DCS[0]?.ip.replace(/\./g, '\\.')}:636"\\} 0$`, 'm'), 'the stopped DC is reported down');
});

t.test('with every DC down, binds fail fast with unavailable (52) and /readyz says so; then recover', async (t) => {
  await bed('down', DCS[1] as (typeof DCS)[number]);
  const c = new Client({ url: g.url, timeout: 10_000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  const t0 = Date.now();
  await t.rejects(c.bind('alice', PW), { code: 52 });
  t.ok(Date.now() - t0 < 4000, `answered in ${Date.now() - t0} ms`);
  t.equal((await fetch(`${g.httpUrl}/readyz`)).status, 503);

  await bed('up', DCS[0] as (typeof DCS)[number]);
  // a bounded wait is the only option: the back-off (failureBackoffMs: 1500) is a duration, and nothing
  // observable marks its end (the DC stays reported down until a connection to it succeeds)
  await new Promise((r) => setTimeout(r, 1600));
  await c.bind('alice', PW);
  t.pass('binds succeed again once a DC is back');
  t.equal((await fetch(`${g.httpUrl}/readyz`)).status, 200);
  const d = new Client({ url: g.url, timeout: 10_000 });
  t.teardown(() => d.unbind().catch(() => undefined));
  await d.bind('cn=defguard,dc=vpn,dc=example,dc=test', CONSUMER_PASSWORD);
  const r = await d.search('ou=users,dc=vpn,dc=example,dc=test', { filter: '(uid=bob)', attributes: ['uid'] });
  t.equal(r.searchEntries.length, 1, 'and searches too (the service pool reconnected)');
});

t.test('a DC that dies in the middle of a paged listing: the connection is dropped, no SearchResultDone', async (t) => {
  // only DCS[0] is up now (the previous test brought it back); DCS[1] is down
  const c = new Client({ url: g.url, timeout: 10_000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.bind('cn=defguard,dc=vpn,dc=example,dc=test', CONSUMER_PASSWORD);
  const pages = c.searchPaginated('ou=users,dc=vpn,dc=example,dc=test', { filter: '(objectClass=inetOrgPerson)', attributes: ['uid'], paged: { pageSize: 200 } });
  const first = await pages.next();
  t.equal(first.value?.searchEntries.length, 200, 'the first page arrived');
  await bed('down', DCS[0] as (typeof DCS)[number]);
  let got = 200;
  let err: unknown;
  try {
    for (;;) {
      const p = await pages.next();
      if (p.done) break;
      got += p.value.searchEntries.length;
    }
  } catch (e) {
    err = e;
  }
  t.ok(err, `the listing failed instead of ending (${got} entries seen of ~1518)`);
  t.notOk((err as { code?: number } | undefined)?.code, 'by a closed connection, not by an LDAP result a client could take as the end');
  t.ok(g.logs.some((l) => l.includes('dropping the connection')), 'logged');
});
