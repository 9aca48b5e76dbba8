// Operating the gateway: the metrics exposition (parsed with an independent parser), SIGHUP reloads
// (valid, invalid, under load, without dropping connections), and the administrator tools, against
// Samba AD. The gateway runs as its own process, as an operator runs it.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'ldapts';
import parsePrometheus from 'parse-prometheus-text-format';
import { allSecrets, bedEnv, CONSUMER_DN, CONSUMER_PASSWORD, ROOT, run, sambaEnv, sambaExampleYaml } from '../helpers/gateway';
import { spawnGateway, type GatewayProcess } from '../helpers/process';

const PW = bedEnv('SAMBA_AD_USER_PASS');
const BIN = join(ROOT, 'bin', 'ldap-gateway.js');
const dir = mkdtempSync(join(tmpdir(), 'gw-ops-'));
const cfgFile = join(dir, 'gateway.yaml');
// one config text (one outbox folder) that the reload tests vary
const base = sambaExampleYaml().replace(/\.\.\/\.\.\/certs\//g, `${ROOT}/certs/`);
const yaml = () => base;

let gw: GatewayProcess;

t.before(async () => {
  writeFileSync(cfgFile, yaml());
  gw = await spawnGateway({ args: ['--config', cfgFile], env: sambaEnv() });
  if (!gw.httpPort) throw new Error(`the gateway logged no HTTP port:\n${gw.output()}`);
});
t.teardown(async () => {
  await gw?.stop();
});

const url = () => gw.url;
const metricsText = async () => (await fetch(`${gw.httpUrl}/metrics`)).text();

/** SIGHUP, and the reload's outcome line (only lines logged after the signal count) */
async function reload(expect: RegExp): Promise<string> {
  const from = gw.lines.all.length;
  gw.child.kill('SIGHUP');
  return gw.waitFor((_l, j) => j?.event === 'reload', { from }).then((line) => {
    if (!expect.test(line)) throw new Error(`after SIGHUP: ${line}, expected ${expect}`);
    return line;
  });
}

t.test('metrics follow Prometheus conventions and parse with an independent parser', async (t) => {
  const c = new Client({ url: url(), timeout: 10_000 });
  await c.bind('alice', PW);
  await c.bind('alice', 'Wrong-Passw0rd!').catch(() => undefined);
  await c.bind(CONSUMER_DN, CONSUMER_PASSWORD);
  await c.search('ou=users,dc=vpn,dc=example,dc=test', { filter: '(uid=alice)' });
  await c.search('ou=users,dc=vpn,dc=example,dc=test', { filter: '(uid=alice)' });
  await c.unbind();

  const text = await metricsText();
  const families = parsePrometheus(text) as Array<{ name: string; type: string; metrics: Array<{ labels?: Record<string, string> }> }>;
  const byName = new Map(families.map((f) => [f.name, f]));
  const ours = families.filter((f) => f.name.startsWith('ldap_gateway_'));
  t.ok(ours.length >= 14, `${ours.length} ldap_gateway_ families`);
  for (const f of ours) {
    if (f.type === 'COUNTER') t.match(f.name, /_total$/, `${f.name}: a counter ends in _total`);
    else t.notMatch(f.name, /_total$/, `${f.name}: only counters end in _total`);
    if (f.type === 'HISTOGRAM') t.match(f.name, /_seconds$/, `${f.name}: durations in seconds`);
    for (const m of f.metrics) for (const v of Object.values(m.labels ?? {})) t.notMatch(v, /alice|example\.test|CN=/i, `${f.name}: no user or DN in labels`);
  }
  const expected: Record<string, string> = {
    ldap_gateway_operations_total: 'COUNTER',
    ldap_gateway_operation_duration_seconds: 'HISTOGRAM',
    ldap_gateway_binds_total: 'COUNTER',
    ldap_gateway_client_connections: 'GAUGE',
    ldap_gateway_upstream_duration_seconds: 'HISTOGRAM',
    ldap_gateway_upstream_pool_connections: 'GAUGE',
    ldap_gateway_upstream_dc_up: 'GAUGE',
    ldap_gateway_cache_requests_total: 'COUNTER',
    ldap_gateway_cache_evictions_total: 'COUNTER',
    ldap_gateway_config_reloads_total: 'COUNTER',
    ldap_gateway_lockout_trips_total: 'COUNTER',
    ldap_gateway_rejected_total: 'COUNTER',
    process_resident_memory_bytes: 'GAUGE',
  };
  for (const [name, type] of Object.entries(expected)) t.equal(byName.get(name)?.type, type, `${name} is a ${type}`);
  t.match(text, /^ldap_gateway_cache_requests_total\{result="hit"\} 1$/m, 'the repeated search was a cache hit');
  t.match(text, /^ldap_gateway_upstream_pool_connections\{pool="bind",dc="ldaps:\/\/127\.0\.0\.11:636",state="idle"\} \d+$/m, 'pool connections per DC');

  // every metric the shipped alert rules and dashboard use exists
  const used = new Set<string>();
  for (const f of ['deploy/prometheus/alerts.yml', 'deploy/grafana/ldap-gateway.json']) {
    for (const m of readFileSync(join(ROOT, f), 'utf8').matchAll(/\b(ldap_gateway_[a-z_]+)/g)) used.add((m[1] as string).replace(/_(bucket|count|sum)$/, ''));
  }
  const provisioningOnly = new Set(['ldap_gateway_outbox_events', 'ldap_gateway_outbox_oldest_pending_age_seconds']); // exist with a durable outbox (tested in provisioning.test.ts)
  for (const name of used) if (!provisioningOnly.has(name)) t.ok(byName.has(name), `${name} (used by alerts or dashboard) is exported`);
});

t.test('SIGHUP: a valid config is swapped in without dropping connections', async (t) => {
  const kept = new Client({ url: url(), timeout: 10_000 });
  t.teardown(() => kept.unbind().catch(() => undefined));
  await kept.bind(CONSUMER_DN, CONSUMER_PASSWORD);

  const NEW = 'consumer-Rotated-9182';
  writeFileSync(cfgFile, yaml().replace(`password: \${env:GATEWAY_DEFGUARD_PASSWORD}`, `password: ${NEW}`).replace('  users:\n', '  users:\n    attributes:\n      mail: { from: userPrincipalName }\n'));
  await reload(/"event":"reload","result":"success"/);

  const r = await kept.search('ou=users,dc=vpn,dc=example,dc=test', { filter: '(uid=jdoe)', attributes: ['mail'] });
  t.equal(r.searchEntries[0]?.mail, 'jdoe@example.test', 'the connection from before the reload stays open, and sees the new attribute map');
  const c = new Client({ url: url(), timeout: 10_000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await t.rejects(c.bind(CONSUMER_DN, CONSUMER_PASSWORD), { code: 49 }, 'the old consumer password no longer works');
  await c.bind(CONSUMER_DN, NEW);

  writeFileSync(cfgFile, yaml().replace('  ldap: 127.0.0.1:0', '  ldap: 127.0.0.1:1'));
  await reload(/"restartNeeded":\["listen"\]/);
  t.pass('a listener change is reported as needing a restart (and not applied)');
  const still = new Client({ url: url(), timeout: 10_000 });
  await still.bind('bob', PW);
  await still.unbind();
});

t.test('SIGHUP: an invalid config is refused, the running one stays, and it is counted', async (t) => {
  writeFileSync(cfgFile, yaml().replace('    - ${env:SAMBA_AD_LDAPS_URL}', '    - https://not-ldap.example'));
  await reload(/"event":"reload","result":"failure"/);
  t.match(gw.output(), /"problems":\["upstream\.urls\[0\]: must be an ldap:\/\/ or ldaps:\/\/ URL"\]/);
  t.match(await metricsText(), /^ldap_gateway_config_reloads_total\{result="failure"\} 1$/m);
  const c = new Client({ url: url(), timeout: 10_000 });
  await c.bind('carol', PW);
  await c.unbind();
  t.pass('binds go on with the previous configuration');
});

t.test('reloads under load, paged listings included: no client sees an error or a short listing', async (t) => {
  writeFileSync(cfgFile, yaml());
  // the whole users listing, paged as Defguard pages it: each listing under load must have exactly this many
  const lister = new Client({ url: url(), timeout: 10_000 });
  await lister.bind(CONSUMER_DN, CONSUMER_PASSWORD);
  const listing = async (c: Client) => (await c.search('ou=users,dc=vpn,dc=example,dc=test', { scope: 'one', filter: '(objectClass=inetOrgPerson)', attributes: ['uid'], paged: { pageSize: 100 } })).searchEntries.length;
  const full = await listing(lister);
  await lister.unbind();
  t.ok(full > 1000, `a reference listing of ${full} users, paged at 100`);
  let listings = 0;
  let stop = false;
  const errors: string[] = [];
  const rounds = [0, 0, 0, 0, 0, 0]; // per worker: four bind+search, two paged listers
  const progress = new EventEmitter();
  /** resolves once every worker has completed n more rounds than now (bounded: the load must really run) */
  const eachWorker = (n: number, timeoutMs = 15_000) => {
    const target = rounds.map((r) => r + n);
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!rounds.every((r, i) => r >= (target[i] as number))) return;
        clearTimeout(timer);
        progress.off('round', check);
        resolve();
      };
      const timer = setTimeout(() => {
        progress.off('round', check);
        reject(new Error(`the workers did not complete ${n} more rounds each within ${timeoutMs} ms (${rounds.join(',')}; errors: ${errors.slice(0, 3).join('; ')})`));
      }, timeoutMs);
      progress.on('round', check);
      check();
    });
  };
  const listers = [4, 5].map(async (i) => {
    const c = new Client({ url: url(), timeout: 10_000 });
    try {
      await c.bind(CONSUMER_DN, CONSUMER_PASSWORD);
      while (!stop) {
        try {
          const n = await listing(c);
          if (n !== full) errors.push(`a paged listing returned ${n} of ${full} users`);
          listings++;
        } catch (err) {
          errors.push(`paged listing: ${(err as Error).message}`);
          await c.bind(CONSUMER_DN, CONSUMER_PASSWORD).catch(() => undefined);
        }
        rounds[i] = (rounds[i] as number) + 1;
        progress.emit('round');
      }
    } finally {
      await c.unbind().catch(() => undefined);
    }
  });
  const workers = Array.from({ length: 4 }, async (_, i) => {
    const c = new Client({ url: url(), timeout: 10_000 });
    try {
      while (!stop) {
        try {
          await c.bind(['alice', 'bob', 'carol', 'jmuller'][i] as string, PW);
          const r = await c.search('ou=users,dc=vpn,dc=example,dc=test', { filter: '(objectClass=*)', attributes: ['uid'] });
          if (r.searchEntries.length < 1) errors.push('empty answer');
        } catch (err) {
          errors.push((err as Error).message);
        }
        rounds[i] = (rounds[i] as number) + 1;
        progress.emit('round');
      }
    } finally {
      await c.unbind().catch(() => undefined);
    }
  });
  try {
    // every worker is busy before, between and after the reloads
    for (let i = 0; i < 3; i++) {
      await eachWorker(3);
      await reload(/"event":"reload","result":"success"/);
    }
    await eachWorker(3);
  } finally {
    stop = true;
    await Promise.all([...workers, ...listers]);
  }
  const ops = rounds.slice(0, 4).reduce((a, b) => a + b, 0);
  t.ok(listings >= 8, `${listings} whole paged listings ran across the reloads`);
  t.same(errors, [], `${ops} bind+search rounds and ${listings} paged listings of ${full} users across 3 reloads, none failed or came up short`);
});

t.test('ldap-gateway map shows the entry the gateway returns, with the rule behind each attribute', async (t) => {
  writeFileSync(cfgFile, yaml());
  const r = await run(process.execPath, [BIN, 'map', '--user', 'EXAMPLE\\jdoe', '--config', cfgFile], sambaEnv());
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^# AD entry: CN=Doe\\(2c|,) John,OU=Contractors,DC=example,DC=test$/m);
  t.match(r.stdout, /^dn: uid=jdoe,ou=users,dc=vpn,dc=example,dc=test$/m);
  t.match(r.stdout, /^uid: jdoe +# <- from sAMAccountName$/m);
  t.match(r.stdout, /^mail: john\.doe@example\.test +# <- from mail \(first of mail, userPrincipalName\)$/m);
  t.match(r.stdout, /^memberOf: cn=VPN,ou=groups,dc=vpn,dc=example,dc=test +# <- computed: the user's groups from the membership index, nested groups flattened$/m);
  t.match(r.stdout, /^entryUUID: [0-9a-f-]{36} +# <- from objectGUID via guid$/m);
  const none = await run(process.execPath, [BIN, 'map', '--user', 'nobody-here', '--config', cfgFile], sambaEnv());
  t.equal(none.code, 1);
  t.match(none.stdout, /no user found/);
});

t.test('ldap-gateway test-bind reads the password from stdin and decodes the outcome', async (t) => {
  const bind = (name: string, password: string) => run(process.execPath, [BIN, 'test-bind', name, '--config', cfgFile], sambaEnv(), 15_000, `${password}\n`);
  const ok = await bind('alice@example.test', PW);
  t.equal(ok.code, 0);
  t.match(ok.stdout, /^result: +success$/m);
  t.match(ok.stdout, /^user: +CN=alice,OU=People,DC=example,DC=test \(objectGUID [0-9a-f-]{36}\)$/m);
  t.match(ok.stdout, /^dc: +ldaps:\/\/127\.0\.0\.11:636$/m);
  t.match(ok.stdout, /^latency: +[\d.]+ ms$/m);
  const dis = await bind('dave', PW);
  t.equal(dis.code, 1);
  t.match(dis.stdout, /^reason: +account_disabled$/m);
  t.match(dis.stdout, /^AD said: .*data 533/m);
  const bad = await bind('EXAMPLE\\bob', 'Wrong-Passw0rd!');
  t.match(bad.stdout, /^reason: +bad_credentials$/m);
  for (const s of allSecrets()) t.notOk(ok.stdout.includes(s) || bad.stdout.includes(s), 'no password in the output');
  const noArg = await run(process.execPath, [BIN, 'test-bind', '--config', cfgFile], sambaEnv());
  t.equal(noArg.code, 2, 'a name is required; the password is never an argument');
});

t.test('nothing secret in the process output', async (t) => {
  const out = gw.output();
  for (const s of allSecrets()) t.notOk(out.includes(s));
});
