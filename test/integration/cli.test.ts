// The command line as a user meets it: flags, --check-config, the README's demo (config/default.yaml
// on 127.0.0.1:1389 / 9090), the Samba example config unchanged on its real ports, and SIGTERM.
// These are the only tests on fixed ports; they run one after another in this file.
import t from 'tap';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DefguardStandin } from '../standins/defguard-api';
import { allSecrets, bedEnv, CONSUMER_PASSWORD, DEFGUARD_TOKEN, ROOT, run, sambaEnv } from '../helpers/gateway';
import { spawnGateway } from '../helpers/process';

const BIN = join(ROOT, 'bin', 'ldap-gateway.js');
const cli = (args: string[], env: NodeJS.ProcessEnv = process.env) => run(process.execPath, [BIN, ...args], env);

t.test('--version, --help, and unknown flags', async (t) => {
  const v = await cli(['--version']);
  t.equal(v.code, 0);
  t.equal(v.stdout.trim(), `ldap-gateway ${(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version}`);
  const h = await cli(['--help']);
  t.equal(h.code, 0);
  t.match(h.stdout, /--check-config FILE/);
  const bad = await cli(['--bogus']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /Unknown option '--bogus'[\s\S]*usage: ldap-gateway/);
  t.equal((await cli([])).code, 2, 'no --config');
  t.equal((await cli(['--config', '/nonexistent/file.yaml'])).code, 1);
});

t.test('--check-config: the Samba example is valid with the test bed variables; mistakes are named', async (t) => {
  const env = sambaEnv();
  const ok = await cli(['--check-config', join(ROOT, 'config', 'examples', 'samba-ad.yaml')], env);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, /configuration is valid/);
  const missing = await cli(['--check-config', join(ROOT, 'config', 'examples', 'samba-ad.yaml')], { PATH: process.env.PATH });
  t.equal(missing.code, 1);
  t.match(missing.stderr, /upstream\.urls\[0\]: environment variable SAMBA_AD_LDAPS_URL is not set/);

  const dir = mkdtempSync(join(tmpdir(), 'gw-cli-'));
  const file = join(dir, 'bad.yaml');
  const text = readFileSync(join(ROOT, 'config', 'examples', 'samba-ad.yaml'), 'utf8')
    .replace('upstream:\n', 'upstrem: {}\nupstream:\n')
    .replace('    - ${env:SAMBA_AD_LDAPS_URL}', '    - ${env:SAMBA_AD_LDAPS_URL}\n    - https://dc2.example.test');
  writeFileSync(file, text);
  const bad = await cli(['--check-config', file], env);
  t.equal(bad.code, 1);
  t.same(bad.stderr.trim().split('\n').sort(), ["unknown key 'upstrem'", 'upstream.urls[1]: must be an ldap:// or ldaps:// URL']);
  for (const s of allSecrets()) t.notOk(bad.stderr.includes(s) || ok.stdout.includes(s), 'no secret echoed');
});

t.test("the README's demo: npm start's command, the documented ldapsearch, the documented output", async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const command = /^ldapsearch -x -LLL -H ldap:\/\/127\.0\.0\.1:1389 .*$/m.exec(readme)?.[0];
  const expected = /<!-- demo-output[^\n]*\n```\n([\s\S]*?)```\n<!-- \/demo-output -->/.exec(readme)?.[1];
  t.ok(command && expected, 'the README documents a command and its output');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.equal(pkg.scripts.start, 'node --max-semi-space-size=64 bin/ldap-gateway.js --config config/default.yaml', 'what npm start runs (after its prestart build)');

  const gw = await spawnGateway({ args: ['--config', join(ROOT, 'config', 'default.yaml')] });
  t.same([gw.ldapPort, gw.httpPort], [1389, 9090], 'the ports the README documents');
  try {
    const r = await run('bash', ['-c', command as string]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, `${expected}\n`, 'output exactly as documented');
    const metrics = await (await fetch('http://127.0.0.1:9090/metrics')).text();
    t.match(metrics, /^ldap_gateway_binds_total\{result="success",reason="ok"\} 1$/m, 'the bind is counted');
  } finally {
    const stop = await gw.stop();
    t.equal(stop.code, 0, 'SIGTERM: exit 0');
    t.ok(stop.ms < 5000, `stopped in ${stop.ms} ms`);
  }
});

t.test('SIGTERM right after start, and with an idle client connected: the gateway drains and exits', async (t) => {
  // a shutdown used to hang: the listener awaited its close callback before disconnecting clients, and a
  // service connection opened by the start-up probe outlived the closed pool (so the demo never closed)
  const early = await spawnGateway({ args: ['--config', join(ROOT, 'config', 'default.yaml')] });
  const a = await early.stop(8000);
  t.equal(a.code, 0, `right after the listening line: exit 0 in ${a.ms} ms`);
  const gw = await spawnGateway({ args: ['--config', join(ROOT, 'config', 'default.yaml')] });
  const { connect } = await import('node:net');
  const idle = connect(gw.ldapPort as number, '127.0.0.1');
  idle.on('error', () => undefined);
  idle.resume(); // read what the server sends (its Notice of Disconnection), so its close is seen
  await new Promise<void>((r) => idle.once('connect', () => r()));
  const closedByServer = new Promise<void>((r) => idle.once('close', () => r()));
  const b = await gw.stop(8000);
  t.equal(b.code, 0, `with an idle client: exit 0 in ${b.ms} ms`);
  await closedByServer;
  t.pass('the idle client was disconnected');
});

t.test('config/examples/samba-ad.yaml runs unchanged against the test bed', async (t) => {
  const dg = new DefguardStandin(DEFGUARD_TOKEN);
  dg.groups.add('remote-users');
  await dg.up();
  t.teardown(() => dg.down());
  const env = sambaEnv(dg.url);
  const gw = await spawnGateway({ args: ['--config', join(ROOT, 'config', 'examples', 'samba-ad.yaml')], env });
  try {
    const tlsEnv = { ...process.env, LDAPTLS_CACERT: join(ROOT, 'certs', 'dev-ca.pem') };
    const w = await run('ldapwhoami', ['-x', '-H', 'ldaps://127.0.0.1:1636', '-D', 'alice@example.test', '-w', bedEnv('SAMBA_AD_USER_PASS')], tlsEnv);
    t.equal(w.stdout.trim(), 'dn:uid=alice,ou=users,dc=vpn,dc=example,dc=test', w.stderr);
    const d = await run('ldapwhoami', ['-x', '-H', 'ldap://127.0.0.1:1389', '-D', 'cn=defguard,dc=vpn,dc=example,dc=test', '-w', CONSUMER_PASSWORD]);
    t.equal(d.stdout.trim(), 'dn:cn=defguard,dc=vpn,dc=example,dc=test', d.stderr);
    const ready = await fetch('http://127.0.0.1:9090/readyz');
    t.equal(ready.status, 200, '/readyz: a DC answers');
    t.equal((await fetch('http://127.0.0.1:9090/healthz')).status, 200);
    const metrics = await (await fetch('http://127.0.0.1:9090/metrics')).text();
    t.match(metrics, /^ldap_gateway_binds_total\{result="success",reason="ok"\} 2$/m);
    t.match(metrics, /^ldap_gateway_client_connections\{tls="true"\} 0$/m);
    // the gateway logs each delivery once the outbox has handed the event over
    await gw.waitFor((_l, j) => j?.msg === 'event delivered' && j.subject === 'alice');
    t.match(dg.users.get('alice'), { email: 'alice@example.test', first_name: 'Alice' }, 'alice was provisioned into Defguard through the outbox in var/outbox');
  } finally {
    const stop = await gw.stop();
    t.equal(stop.code, 0);
  }
  const joined = gw.output();
  t.match(joined, /"event":"bind".*"name":"alice@example.test".*"result":"success"/);
  for (const s of allSecrets()) t.notOk(joined.includes(s), 'no secret in the process output');
});
