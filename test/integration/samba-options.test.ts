// Options that change how binds and searches are answered, each against the real Samba AD DC.
import t from 'tap';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Client } from 'ldapts';
import { peekEnvelope } from '../../src/server/decode';
import { PduFramer } from '../../src/server/framing';
import { int, msg, str, tlv } from '../helpers/ber';
import { bedEnv, CONSUMER_DN, CONSUMER_PASSWORD, ROOT, run, sambaEnv, sambaExampleYaml, startFromYaml } from '../helpers/gateway';

const PW = bedEnv('SAMBA_AD_USER_PASS');
const TLS_ENV = { ...process.env, LDAPTLS_CACERT: join(ROOT, 'certs', 'dev-ca.pem') };

/** the Samba example with its `upstream:` block replaced (for upstream transport variants) */
function withUpstream(upstream: string, extra = ''): string {
  const base = sambaExampleYaml(extra);
  return base.replace(/^upstream:\n(?: {2}.*\n)+/m, `${upstream.trim()}\n`);
}

t.test('requireTLSForBind: a plain-text bind gets confidentialityRequired (13); TLS binds work', async (t) => {
  const g = await startFromYaml(sambaExampleYaml().replace('  tls:\n    cert:', '  requireTLSForBind: true\n  tls:\n    cert:'), sambaEnv());
  t.teardown(() => g.stop());
  const plain = new Client({ url: g.url, timeout: 5000 });
  t.teardown(() => plain.unbind().catch(() => undefined));
  await t.rejects(plain.bind('alice', PW), { code: 13 });
  await plain.bind('', '');
  t.pass('an anonymous bind carries no credential and is not refused');
  const r = await run('ldapwhoami', ['-x', '-ZZ', '-H', g.url, '-D', 'alice', '-w', PW], TLS_ENV);
  t.equal(r.stdout.trim(), 'dn:uid=alice,ou=users,dc=vpn,dc=example,dc=test', r.stderr);
  const s = await run('ldapwhoami', ['-x', '-H', g.ldapsUrl as string, '-D', 'alice', '-w', PW], TLS_ENV);
  t.equal(s.code, 0, s.stderr);
});

t.test("diagnostics: AD's raw text, or nothing", async (t) => {
  const raw = await startFromYaml(sambaExampleYaml('auth:\n  diagnostics: raw\n'), sambaEnv());
  t.teardown(() => raw.stop());
  const c = new Client({ url: raw.url, timeout: 5000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await t.rejects(c.bind('dave', PW), { code: 49, message: /AcceptSecurityContext error, data 533/ });
  await t.rejects(c.bind('nobody-at-all', PW), { code: 49, message: 'unknown_user' }, "the gateway's own reasons stay short");

  const none = await startFromYaml(sambaExampleYaml('auth:\n  diagnostics: none\n'), sambaEnv());
  t.teardown(() => none.stop());
  const d = new Client({ url: none.url, timeout: 5000 });
  t.teardown(() => d.unbind().catch(() => undefined));
  const err = await d.bind('dave', PW).then(() => undefined, (e: { code: number; message: string }) => e);
  t.equal(err?.code, 49);
  t.notMatch(err?.message ?? '', /disabled|533/, 'no reason given');
});

t.test('upstream StartTLS and certificate verification', async (t) => {
  const url = bedEnv('SAMBA_AD_URL');
  const upstream = (opts: string) => `upstream:
  urls:
    - ${url}
${opts}
  bind:
    dn: \${env:SAMBA_AD_SERVICE_DN}
    password: \${env:SAMBA_AD_USER_PASS}
  baseDN: \${env:SAMBA_AD_BASE_DN}
  timeouts:
    connectMs: 2000
    operationMs: 3000`;
  const good = await startFromYaml(withUpstream(upstream('  startTLS: true\n  tls:\n    ca: ${env:SAMBA_AD_CA_FILE}')), sambaEnv());
  t.teardown(() => good.stop());
  const c = new Client({ url: good.url, timeout: 5000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.bind('bob', PW);
  t.pass('StartTLS upstream, verified against the test bed CA');

  // a CA that did not sign the DC's certificate: the TLS handshake must fail, so nothing is sent
  const wrongCa = await startFromYaml(withUpstream(upstream(`  startTLS: true\n  tls:\n    ca: ${join(ROOT, 'certs', 'dev-ca.pem')}`)), sambaEnv());
  t.teardown(() => wrongCa.stop());
  const w = new Client({ url: wrongCa.url, timeout: 8000 });
  t.teardown(() => w.unbind().catch(() => undefined));
  await t.rejects(w.bind('bob', PW), { code: 52 }, 'unverifiable DC certificate: unavailable');
  t.ok(wrongCa.logs.some((l) => /"reason":"upstream_unavailable"/.test(l)));

  const ldapsWrong = await startFromYaml(withUpstream(upstream(`  tls:\n    ca: ${join(ROOT, 'certs', 'dev-ca.pem')}`).replace(url, bedEnv('SAMBA_AD_LDAPS_URL'))), sambaEnv());
  t.teardown(() => ldapsWrong.stop());
  const l = new Client({ url: ldapsWrong.url, timeout: 8000 });
  t.teardown(() => l.unbind().catch(() => undefined));
  await t.rejects(l.bind('bob', PW), { code: 52 }, 'LDAPS with the wrong CA: unavailable');
});

t.test('anonymous: deny refuses the bind; allow lets anonymous clients read the tree', async (t) => {
  const deny = await startFromYaml(sambaExampleYaml('auth:\n  anonymous: deny\n'), sambaEnv());
  t.teardown(() => deny.stop());
  const c = new Client({ url: deny.url, timeout: 5000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await t.rejects(c.bind('', ''), { code: 48 });
  const allow = await startFromYaml(sambaExampleYaml('auth:\n  anonymous: allow\n'), sambaEnv());
  t.teardown(() => allow.stop());
  const a = new Client({ url: allow.url, timeout: 5000 });
  t.teardown(() => a.unbind().catch(() => undefined));
  const r = await a.search('ou=users,dc=vpn,dc=example,dc=test', { filter: '(uid=carol)', attributes: ['uid'] });
  t.equal(r.searchEntries.length, 1);
});

t.test('per consumer, config says what it may do', async (t) => {
  const g = await startFromYaml(
    sambaExampleYaml().replace(
      'consumers:\n',
      `consumers:
  - name: radius
    bindDN: cn=radius,dc=vpn,dc=example,dc=test
    password: radius-Secret-5521
    subtrees: [users]
    attributes: [uid, mail]
  - name: binder
    bindDN: cn=binder,dc=vpn,dc=example,dc=test
    password: binder-Secret-5521
    search: false
`,
    ),
    sambaEnv(),
  );
  t.teardown(() => g.stop());
  const r = new Client({ url: g.url, timeout: 5000 });
  t.teardown(() => r.unbind().catch(() => undefined));
  await r.bind('cn=radius,dc=vpn,dc=example,dc=test', 'radius-Secret-5521');
  const users = await r.search('ou=users,dc=vpn,dc=example,dc=test', { filter: '(uid=alice)' });
  t.same(Object.keys(users.searchEntries[0] ?? {}).sort(), ['dn', 'mail', 'objectClass', 'uid'], 'only the allowed attributes');
  const probe = await r.search('ou=users,dc=vpn,dc=example,dc=test', { filter: '(givenName=Alice)' });
  t.equal(probe.searchEntries.length, 0, 'a hidden attribute cannot be probed through the filter');
  await t.rejects(r.search('ou=groups,dc=vpn,dc=example,dc=test', { filter: '(cn=*)' }), { code: 32 }, 'the groups subtree does not exist for it');
  const root = await r.search('dc=vpn,dc=example,dc=test', { filter: '(objectClass=*)', attributes: ['1.1'], paged: { pageSize: 500 } });
  t.notOk(root.searchEntries.some((e) => e.dn.includes('ou=groups')), 'nor in a subtree search from the root');

  const b = new Client({ url: g.url, timeout: 5000 });
  t.teardown(() => b.unbind().catch(() => undefined));
  await b.bind('cn=binder,dc=vpn,dc=example,dc=test', 'binder-Secret-5521');
  await t.rejects(b.search('ou=users,dc=vpn,dc=example,dc=test', { filter: '(uid=alice)' }), { code: 50 });
  await b.bind('carol', PW);
  t.pass('it may still authenticate users on its connection');
});

t.test('abandon stops a running search: no more entries, no SearchResultDone, connection usable', async (t) => {
  const g = await startFromYaml(sambaExampleYaml(), sambaEnv());
  t.teardown(() => g.stop());
  const sock = connect(g.gw.ldapPort as number, '127.0.0.1');
  t.teardown(() => sock.destroy());
  const framer = new PduFramer(1 << 20);
  const seen: Array<{ id: number; op: number }> = [];
  let abandoned = false;
  let bound: () => void = () => undefined;
  const bindDone = new Promise<void>((r) => (bound = r));
  const done = new Promise<void>((resolve) => {
    sock.on('data', (d) => {
      for (const pdu of framer.push(d).pdus) {
        const env = peekEnvelope(pdu);
        if (!env) continue;
        seen.push({ id: env.messageId, op: env.opTag });
        if (env.messageId === 1) bound();
        if (env.messageId === 2 && env.opTag === 0x64 && !abandoned) {
          abandoned = true;
          sock.write(msg(3, int(0x50, 2))); // AbandonRequest for message 2
          setTimeout(() => sock.write(msg(4, tlv(0x77, str(0x80, '1.3.6.1.4.1.4203.1.11.3')))), 300);
        }
        if (env.messageId === 4) resolve();
      }
    });
  });
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write(msg(1, tlv(0x60, int(0x02, 3), str(0x04, CONSUMER_DN), str(0x80, CONSUMER_PASSWORD))));
  await bindDone; // a client must wait for the bind response before anything else (RFC 4511 §4.2.1)
  const search = tlv(0x63, str(0x04, 'ou=users,dc=vpn,dc=example,dc=test'), int(0x0a, 2), int(0x0a, 0), int(0x02, 0), int(0x02, 0), tlv(0x01, Buffer.from([0])), str(0x87, 'objectClass'), tlv(0x30, str(0x04, 'uid')));
  sock.write(msg(2, search));
  await done;
  const entries = seen.filter((s) => s.id === 2 && s.op === 0x64).length;
  t.ok(entries < 1500, `${entries} entries arrived before the abandon took effect (of ~1518)`);
  t.notOk(seen.some((s) => s.id === 2 && s.op === 0x65), 'no SearchResultDone for the abandoned search');
  t.notOk(seen.some((s) => s.id === 3), 'no response to the abandon itself');
  t.ok(seen.some((s) => s.id === 4 && s.op === 0x78), 'the connection answers the next request');
});
