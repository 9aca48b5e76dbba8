// Write-through in transparent mode (clients see AD's own DNs) against a real Samba AD DC: Defguard's
// writes as it sends them with the settings for AD's tree (UBASE=OU=People, UA=sAMAccountName, RA=cn,
// UOC=user, GMA=member), the OpenLDAP tools' Password Modify, a dry run and a plain upstream.
// This file owns its DC (127.0.0.16, cloned from the test bed's template): its writes disturb no other test.
// What AD holds afterwards is read on a direct admin connection to the DC, not through the gateway.
import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Attribute, Change, Client } from 'ldapts';
import { allSecrets, bedEnv, CONSUMER_PASSWORD, ROOT, run, startFromYaml, type TestGateway } from '../helpers/gateway';

const SCRIPT = join(ROOT, 'test', 'testbed', 'samba-ad-testbed.sh');
const IP = '127.0.0.16';
const DIR = join(mkdtempSync(join(tmpdir(), 'gw-writes-t-')), 'dc');
const BASE = bedEnv('SAMBA_AD_BASE_DN');
const PEOPLE = `OU=People,${BASE}`;
const GROUPS = `OU=Groups,${BASE}`;
const CONSUMER = `CN=defguard-gw,${BASE}`;
const NEW_PW = 'Tr4nsparent-Pw!1';
const NEXT_PW = 'Tr4nsparent-Pw!2';
const OWN_PW = 'Tr4nsparent-Pw!3';

const yaml = (o: { url?: string; dryRun?: boolean; passwordChange?: 'self' } = {}) => `listen:
  ldap: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
upstream:
  urls:
    - ${o.url ?? `ldaps://${IP}:636`}
  tls:
    ca: \${env:SAMBA_AD_CA_FILE}
  bind:
    dn: \${env:SAMBA_AD_SERVICE_DN}
    password: \${env:SAMBA_AD_USER_PASS}
  baseDN: \${env:SAMBA_AD_BASE_DN}
  timeouts:
    connectMs: 1000
    operationMs: 5000
directory:
  mode: transparent
  users:
    source:
      base: ${PEOPLE}
  groups:
    source:
      base: ${GROUPS}
auth:
  passwordChange: ${o.passwordChange ?? 'off'}
cache:
  ttlMs: 0
consumers:
  - name: defguard
    bindDN: ${CONSUMER}
    password: ${CONSUMER_PASSWORD}
    writes:
      dryRun: ${o.dryRun ?? false}
      users:
        ou: ${PEOPLE}
      groups:
        ou: ${GROUPS}
`;

let g: TestGateway;
let c: Client;
let admin: Client;
t.before(async () => {
  const cl = await run('bash', [SCRIPT, 'clone', bedEnv('SAMBA_AD_TEMPLATE'), DIR], { ...process.env, SAMBA_IP: IP }, 60_000);
  if (cl.code !== 0) throw new Error(`clone failed: ${cl.stderr}`);
  const up = await run('bash', [SCRIPT, 'up', DIR], { ...process.env, SAMBA_IP: IP }, 60_000);
  if (up.code !== 0) throw new Error(`samba up failed: ${up.stderr}`);
  g = await startFromYaml(yaml());
  c = new Client({ url: g.url, timeout: 10_000 });
  await c.bind(CONSUMER, CONSUMER_PASSWORD);
  admin = new Client({ url: `ldaps://${IP}:636`, tlsOptions: { ca: [readFileSync(bedEnv('SAMBA_AD_CA_FILE'))] } });
  await admin.bind(bedEnv('SAMBA_AD_ADMIN_DN'), bedEnv('SAMBA_AD_ADMIN_PASS'));
});
t.teardown(async () => {
  await c?.unbind().catch(() => undefined);
  await admin?.unbind().catch(() => undefined);
  await g?.stop();
  await run('bash', [SCRIPT, 'down', DIR], { ...process.env, SAMBA_IP: IP }, 60_000);
});

/** AD's object, read directly on the DC as the domain admin */
async function ad(dn: string, attributes: string[] = ['*']): Promise<Record<string, unknown> | undefined> {
  try {
    const r = await admin.search(dn, { scope: 'base', attributes });
    return r.searchEntries[0];
  } catch (err) {
    if ((err as { code?: number }).code === 32) return undefined;
    throw err;
  }
}

async function binds(dn: string, pw: string): Promise<boolean> {
  const u = new Client({ url: g.url, timeout: 10_000 });
  try {
    await u.bind(dn, pw);
    return true;
  } catch {
    return false;
  } finally {
    await u.unbind().catch(() => undefined);
  }
}

const replace = (type: string, values: Array<string | Buffer>) => new Change({ operation: 'replace', modification: new Attribute({ type, values: values as string[] }) });
const utf16 = (pw: string) => Buffer.from(`"${pw}"`, 'utf16le');

t.test('W1 + W3 + W4 with AD DNs: the user is created where Defguard put it, then gets its password and is enabled', async (t) => {
  const dn = `CN=tnew,${PEOPLE}`;
  await c.add(dn, [
    new Attribute({ type: 'cn', values: ['tnew'] }),
    new Attribute({ type: 'sn', values: ['New'] }),
    new Attribute({ type: 'givenName', values: ['Trans'] }),
    new Attribute({ type: 'mail', values: ['tnew@example.test'] }),
    new Attribute({ type: 'uid', values: ['tnew'] }),
    new Attribute({ type: 'sAMAccountName', values: ['tnew'] }),
    new Attribute({ type: 'objectClass', values: ['user'] }),
  ]);
  const created = await ad(dn, ['sAMAccountName', 'userPrincipalName', 'userAccountControl', 'mail']);
  t.match(created, { sAMAccountName: 'tnew', userPrincipalName: 'tnew@example.test', mail: 'tnew@example.test' });
  t.equal(Number(created?.userAccountControl) & 2, 2, 'created disabled: it has no password yet');
  await c.modify(dn, [replace('unicodePwd', [utf16(NEW_PW)])]);
  await c.modify(dn, [replace('userAccountControl', ['512']), replace('pwdLastSet', ['-1'])]);
  t.equal(Number((await ad(dn, ['userAccountControl']))?.userAccountControl) & 2, 0, 'enabled');
  t.ok(await binds(dn, NEW_PW), 'binds through the gateway with the password Defguard set');
  t.ok(await binds('tnew@example.test', NEW_PW), 'and by UPN');
});

t.test('ModifyDN of an AD DN renames the CN; the account name follows a Modify of sAMAccountName', async (t) => {
  await c.modify(`CN=tnew,${PEOPLE}`, [replace('sAMAccountName', ['tnew2'])]);
  await c.modifyDN(`CN=tnew,${PEOPLE}`, 'cn=tnew2');
  t.equal(await ad(`CN=tnew,${PEOPLE}`), undefined, 'the old DN is gone');
  t.match(await ad(`CN=tnew2,${PEOPLE}`, ['sAMAccountName', 'userPrincipalName']), { sAMAccountName: 'tnew2', userPrincipalName: 'tnew2@example.test' }, 'the UPN followed the name');
  t.ok(await binds(`CN=tnew2,${PEOPLE}`, NEW_PW));
});

t.test('W6 with member values as AD DNs; Defguard\'s last-member Delete keeps the group', async (t) => {
  const dn = `CN=tgrp,${GROUPS}`;
  await c.add(dn, [new Attribute({ type: 'objectClass', values: ['group'] }), new Attribute({ type: 'cn', values: ['tgrp'] }), new Attribute({ type: 'member', values: [`CN=tnew2,${PEOPLE}`] })]);
  const grp = await ad(dn, ['sAMAccountName', 'member', 'groupType']);
  t.match(grp, { sAMAccountName: 'tgrp', groupType: '-2147483646' });
  t.same([grp?.member].flat(), [`CN=tnew2,${PEOPLE}`]);
  await c.del(dn);
  const kept = await ad(dn, ['member', 'sAMAccountName']);
  t.ok(kept, 'the group is still there');
  t.same([kept?.member ?? []].flat(), [], 'without its member');
  await c.del(dn);
  t.equal(await ad(dn), undefined, 'a Delete of the now empty managed group deletes it');
});

t.test('a group the gateway does not manage is never deleted', async (t) => {
  await t.rejects(c.del(`CN=Engineering,${GROUPS}`), { code: 50, message: /not managed/ });
  const eng = await ad(`CN=Engineering,${GROUPS}`, ['member']);
  t.ok(eng, 'still there');
  t.ok([eng?.member].flat().length >= 2, 'with its members');
});

t.test("ldappasswd: the consumer resets a password (RFC 3062); the old one stops working", async (t) => {
  const r = await run('ldappasswd', ['-x', '-H', g.url, '-D', CONSUMER, '-w', CONSUMER_PASSWORD, '-s', NEXT_PW, `CN=tnew2,${PEOPLE}`]);
  t.equal(r.code, 0, r.stderr);
  t.ok(await binds(`CN=tnew2,${PEOPLE}`, NEXT_PW), 'the new password binds');
  t.notOk(await binds(`CN=tnew2,${PEOPLE}`, NEW_PW), 'the old one does not');
});

t.test('an end user changes their own password with the old one when auth.passwordChange is self, and nobody else\'s', async (t) => {
  const self = await startFromYaml(yaml({ passwordChange: 'self' }));
  t.teardown(() => self.stop());
  const mine = await run('ldappasswd', ['-x', '-H', self.url, '-D', `CN=tnew2,${PEOPLE}`, '-w', NEXT_PW, '-a', NEXT_PW, '-s', OWN_PW]);
  t.equal(mine.code, 0, `${mine.stdout} ${mine.stderr}`);
  const u = new Client({ url: self.url });
  await u.bind(`CN=tnew2,${PEOPLE}`, OWN_PW);
  await t.rejects(u.modify(`CN=alice,${PEOPLE}`, [replace('mail', ['x@example.test'])]), { code: 50 });
  await u.unbind();
  const other = await run('ldappasswd', ['-x', '-H', self.url, '-D', `CN=tnew2,${PEOPLE}`, '-w', OWN_PW, '-a', OWN_PW, '-s', 'Someone-Else1!', `CN=alice,${PEOPLE}`]);
  t.not(other.code, 0, 'another user\'s password: refused');
  t.match(other.stdout + other.stderr, /Insufficient access/i);
  t.ok(await binds(`CN=alice,${PEOPLE}`, bedEnv('SAMBA_AD_USER_PASS')), 'alice still binds with her own password');
});

t.test('dry run: 53, the AD operations logged, nothing written', async (t) => {
  const dry = await startFromYaml(yaml({ dryRun: true }));
  t.teardown(() => dry.stop());
  const d = new Client({ url: dry.url });
  await d.bind(CONSUMER, CONSUMER_PASSWORD);
  t.teardown(() => d.unbind());
  await t.rejects(d.modify(`CN=alice,${PEOPLE}`, [replace('sn', ['Changed']), replace('unicodePwd', [utf16('Dry-Run-Pw!9')])]), { code: 53, message: /dry run/ });
  const line = JSON.parse(await dry.waitForLog((_l, j) => j?.msg === 'dry run')) as { operations: Array<{ op: string; dn: string; changes: Array<{ type: string; values: string[] }> }> };
  t.equal(line.operations[0]?.op, 'modify');
  t.equal(line.operations[0]?.dn.toLowerCase(), `cn=alice,${PEOPLE}`.toLowerCase());
  t.same(line.operations[0]?.changes.map((x) => x.type), ['unicodePwd', 'sn'], 'the exact AD changes, password first');
  t.same(line.operations[0]?.changes[0]?.values, ['<password>']);
  t.match(await ad(`CN=alice,${PEOPLE}`, ['sn']), { sn: 'Anderson' }, 'AD unchanged');
  t.notOk(dry.logs.join('\n').includes('Dry-Run-Pw!9'));
});

t.test('a password is never sent over a plain upstream: 53, and AD unchanged', async (t) => {
  const plain = await startFromYaml(yaml({ url: `ldap://${IP}:389` }));
  t.teardown(() => plain.stop());
  const p = new Client({ url: plain.url });
  await p.bind(CONSUMER, CONSUMER_PASSWORD);
  t.teardown(() => p.unbind());
  await t.rejects(p.modify(`CN=tnew2,${PEOPLE}`, [replace('unicodePwd', [utf16('Plain-Upstream1!')])]), { code: 53, message: /encrypted upstream/ });
  t.ok(await binds(`CN=tnew2,${PEOPLE}`, OWN_PW), 'the password is what it was');
});

t.test('AD\'s password policy refusal is decoded; no password in any log line', async (t) => {
  await t.rejects(c.modify(`CN=tnew2,${PEOPLE}`, [replace('unicodePwd', [utf16('x')])]), { code: 19, message: /password_policy/ });
  const logs = g.logs.join('\n');
  for (const s of [...allSecrets(), NEW_PW, NEXT_PW, OWN_PW, 'x"', utf16(NEW_PW).toString('base64'), utf16(NEXT_PW).toString('base64'), utf16(OWN_PW).toString('base64')]) t.notOk(logs.includes(s), `no ${s.length}-character secret in the log`);
  const writes = g.logs.filter((l) => l.includes('"msg":"write"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(writes.length >= 8, 'one audit line per write');
  t.match(writes.find((w) => w.result === 19), { consumer: 'defguard', op: 'modify', reason: 'password_policy', attributes: ['replace:unicodePwd'] });
  const metrics = await (await fetch(`${g.httpUrl}/metrics`)).text();
  t.match(metrics, /^ldap_gateway_writes_total\{op="add",result="success"\} 2$/m);
  t.match(metrics, /^ldap_gateway_writes_total\{op="delete",result="refused"\} 1$/m);
  t.match(metrics, /^ldap_gateway_writes_total\{op="modify",result="failed"\} 1$/m);
});

// regressions from the review of the write path
t.test('a managed group whose only member is a nested group is kept, with its member, when Defguard deletes it', async (t) => {
  const dn = `CN=tnested,${GROUPS}`;
  await c.add(dn, [new Attribute({ type: 'objectClass', values: ['group'] }), new Attribute({ type: 'cn', values: ['tnested'] }), new Attribute({ type: 'member', values: [`CN=Engineering,${GROUPS}`] })]);
  await t.rejects(c.del(dn), { code: 50, message: /kept/ });
  t.same([(await ad(dn, ['member']))?.member].flat(), [`CN=Engineering,${GROUPS}`], 'the group and its member are still there');
});

t.test('renames back and forth: each ModifyDN is carried out (a remembered rename is used once, and only when AD agrees)', async (t) => {
  // Defguard's pattern: a Modify that renames (cn mirrors the account name), then the ModifyDN
  await c.modify(`CN=tnew2,${PEOPLE}`, [replace('cn', ['tnew3'])]);
  await c.modifyDN(`CN=tnew2,${PEOPLE}`, 'cn=tnew3');
  t.ok(await ad(`CN=tnew3,${PEOPLE}`), 'renamed by the Modify');
  await c.modifyDN(`CN=tnew3,${PEOPLE}`, 'cn=tnew2');
  t.ok(await ad(`CN=tnew2,${PEOPLE}`), 'and back by a ModifyDN');
  await c.modifyDN(`CN=tnew2,${PEOPLE}`, 'cn=tnew3');
  t.ok(await ad(`CN=tnew3,${PEOPLE}`), 'AD has the last name');
  t.equal(await ad(`CN=tnew2,${PEOPLE}`), undefined);
  await c.modifyDN(`CN=tnew3,${PEOPLE}`, 'cn=tnew2');
  t.ok(await ad(`CN=tnew2,${PEOPLE}`));
});

t.test('a userAccountControl that is not an integer is refused (21), the account unchanged', async (t) => {
  const before = Number((await ad(`CN=tnew2,${PEOPLE}`, ['userAccountControl']))?.userAccountControl);
  await t.rejects(c.modify(`CN=tnew2,${PEOPLE}`, [replace('userAccountControl', ['abc'])]), { code: 21 });
  t.equal(Number((await ad(`CN=tnew2,${PEOPLE}`, ['userAccountControl']))?.userAccountControl), before);
});

t.test('an old password value is never sent over a plain upstream either (a delete of unicodePwd alone): 53', async (t) => {
  const plain = await startFromYaml(yaml({ url: `ldap://${IP}:389` }));
  t.teardown(() => plain.stop());
  const p = new Client({ url: plain.url });
  await p.bind(CONSUMER, CONSUMER_PASSWORD);
  t.teardown(() => p.unbind());
  await t.rejects(p.modify(`CN=tnew2,${PEOPLE}`, [new Change({ operation: 'delete', modification: new Attribute({ type: 'unicodePwd', values: [utf16(OWN_PW)] as unknown as string[] }) })]), { code: 53, message: /encrypted upstream/ });
});
