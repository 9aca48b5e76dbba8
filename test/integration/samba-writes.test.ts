// Write-through in virtual mode against a real Samba AD DC (issue 12): Defguard's writes W1–W11 as
// reference/defguard-ldap.md §2.5 and §8 transcribe them (exact attributes and order, empty Replace sets,
// binary unicodePwd), sent with ldapts as Defguard would send them with the settings the README
// recommends (UBASE=ou=users, GBASE=ou=groups, UOC=inetOrgPerson, UA=RA=uid, MA=memberOf, GNA=cn,
// GOC=groupOfUniqueNames, GMA=uniqueMember, "LDAP server is Active Directory" on); then OpenLDAP's
// ldapadd/ldapmodify/ldapdelete/ldappasswd; then the refusals. After each write AD's object is read on a
// direct admin connection to the DC, and Defguard's own read-back searches go through the gateway.
// This file owns its DC (127.0.0.15, cloned from the test bed's template): its writes disturb no other
// test. The subtests run in order and build on each other (newbie is created, renamed to freshman, …).
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Attribute, Change, Client, type Entry } from 'ldapts';
import YAML from 'yaml';
import { allSecrets, bedEnv, CONSUMER_DN, CONSUMER_PASSWORD, ROOT, run, sambaEnv, sambaExampleYaml, startFromYaml, type TestGateway } from '../helpers/gateway';
import { parseLine } from '../helpers/lines';

const SCRIPT = join(ROOT, 'test', 'testbed', 'samba-ad-testbed.sh');
const IP = '127.0.0.15';
const DIR = join(mkdtempSync(join(tmpdir(), 'gw-writes-')), 'dc');
const LDAPS = `ldaps://${IP}:636`;
const CA = join(DIR, 'tls', 'ca.pem'); // the clone's certificate is issued for 127.0.0.15 by the test bed's CA
const BASE = bedEnv('SAMBA_AD_BASE_DN');
const PEOPLE = `OU=People,${BASE}`;
const GROUPS = `OU=Groups,${BASE}`;
const PW = bedEnv('SAMBA_AD_USER_PASS');

// Defguard's settings (reference §2): what it sends is built from these
const UBASE = 'ou=users,dc=vpn,dc=example,dc=test';
const GBASE = 'ou=groups,dc=vpn,dc=example,dc=test';
const UA = 'uid';
const RA = 'uid';
const UOC = 'inetOrgPerson';
const MA = 'memberOf';
const GNA = 'cn';
const GOC = 'groupOfUniqueNames';
const GMA = 'uniqueMember';
const userDN = (u: string) => `${RA}=${u},${UBASE}`;
const groupDN = (g: string) => `${GNA}=${g},${GBASE}`;

const USERSONLY_DN = 'cn=usersonly,dc=vpn,dc=example,dc=test';
const DRYRUN_DN = 'cn=dryrun,dc=vpn,dc=example,dc=test';

// every password this file sets or tries (none may appear in a log, in any encoding)
const NEWBIE_PW = 'Zt8#Quartz-Lamp';
const SHORT_PW = 'Qz9!wv'; // under AD's 7-character minimum
const CLI_PW = 'Cli-Orbit7!add';
const CLI_RESET_PW = 'Cli-Reset8!pwd';
const CAROL_PW = 'Kestrel-Self9!chg';
const BOB_PW = 'Heron-Own5!change';
const PLAIN_PW = 'Plain-Upstr3am!';
const DRY_PW = 'Dry-Run-Pw!9x';
const NODC_PW = 'NoDc-Pw!77xq';
const OTHER_PW = 'Someone-Else1!z';
const PASSWORDS = [NEWBIE_PW, SHORT_PW, CLI_PW, CLI_RESET_PW, CAROL_PW, BOB_PW, PLAIN_PW, DRY_PW, NODC_PW, OTHER_PW];

const env = (): NodeJS.ProcessEnv => ({ ...sambaEnv(), SAMBA_AD_LDAPS_URL: LDAPS, SAMBA_AD_URL: `ldap://${IP}:389`, SAMBA_AD_CA_FILE: CA });

/**
 * config/examples/samba-ad.yaml as shipped (ephemeral ports), its defguard consumer with the write policy
 * the example ships (the protective defaults), plus two consumers for the refusals: one that may write users only, one
 * in dry-run mode; end users may change their own password. `urls` replaces the upstream.
 */
function gatewayYaml(o: { urls?: string[] } = {}): string {
  const cfg = YAML.parse(sambaExampleYaml()) as { upstream: Record<string, unknown>; auth?: Record<string, unknown>; consumers: Array<Record<string, unknown>> };
  cfg.auth = { ...(cfg.auth ?? {}), passwordChange: 'self' };
  const dg = cfg.consumers.find((c) => c.name === 'defguard');
  if (!dg) throw new Error('config/examples/samba-ad.yaml has no defguard consumer');
  // the example's own policy, as shipped: writes to the test bed's People and Groups OUs
  if (JSON.stringify(dg.writes) !== JSON.stringify({ dryRun: false, users: { ou: 'OU=People,${env:SAMBA_AD_BASE_DN}', delete: 'disable' }, groups: { ou: 'OU=Groups,${env:SAMBA_AD_BASE_DN}', members: 'managed', lastMember: 'keep' } }))
    throw new Error(`config/examples/samba-ad.yaml: the defguard consumer's writes are not the documented protective policy: ${JSON.stringify(dg.writes)}`);
  cfg.consumers.push(
    { name: 'usersonly', bindDN: USERSONLY_DN, password: CONSUMER_PASSWORD, writes: { users: { ou: PEOPLE } } },
    { name: 'dryrun', bindDN: DRYRUN_DN, password: CONSUMER_PASSWORD, writes: { dryRun: true, users: { ou: PEOPLE }, groups: { ou: GROUPS } } },
  );
  if (o.urls) {
    cfg.upstream.urls = o.urls;
    cfg.upstream.timeouts = { connectMs: 1000, operationMs: 3000 };
  }
  return YAML.stringify(cfg);
}

let g: TestGateway;
let c: Client; // Defguard, bound as the consumer
let admin: Client; // the domain admin, directly on the DC
t.before(async () => {
  const cl = await run('bash', [SCRIPT, 'clone', bedEnv('SAMBA_AD_TEMPLATE'), DIR], { ...process.env, SAMBA_IP: IP }, 60_000);
  if (cl.code !== 0) throw new Error(`clone failed: ${cl.stderr}`);
  const up = await run('bash', [SCRIPT, 'up', DIR], { ...process.env, SAMBA_IP: IP }, 60_000);
  if (up.code !== 0) throw new Error(`samba up failed: ${up.stderr}`);
  admin = new Client({ url: LDAPS, timeout: 10_000, tlsOptions: { ca: [readFileSync(CA)] } });
  await admin.bind(bedEnv('SAMBA_AD_ADMIN_DN'), bedEnv('SAMBA_AD_ADMIN_PASS'));
  g = await startFromYaml(gatewayYaml(), env());
  c = new Client({ url: g.url, timeout: 15_000 });
  await c.bind(CONSUMER_DN, CONSUMER_PASSWORD); // B1
});
t.teardown(async () => {
  await c?.unbind().catch(() => undefined);
  await admin?.unbind().catch(() => undefined);
  await g?.stop();
  await run('bash', [SCRIPT, 'down', DIR], process.env, 60_000); // signals only the PID its 'up' recorded
  rmSync(dirname(DIR), { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------
// helpers

const attr = (type: string, values: Array<string | Buffer>) => new Attribute({ type, values: values as string[] });
const change = (operation: 'add' | 'delete' | 'replace', type: string, values: Array<string | Buffer>) => new Change({ operation, modification: attr(type, values) });
/** Defguard's W3 value (hash.rs:40): UTF-16LE of the password in double quotes */
const unicodePwd = (pw: string) => Buffer.from(`"${pw}"`, 'utf16le');

/** an attribute's values, looked up case-insensitively, as text */
function vals(e: Entry | undefined, name: string): string[] {
  if (!e) return [];
  const k = Object.keys(e).find((x) => x.toLowerCase() === name.toLowerCase());
  const v = k === undefined ? undefined : e[k];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : String(x)));
}
const one = (e: Entry | undefined, name: string) => vals(e, name)[0];
const lower = (xs: string[]) => xs.map((x) => x.toLowerCase()).sort();

/** AD's object, read directly on the DC as the domain admin; undefined when it does not exist */
async function ad(dn: string, attributes: string[] = ['*']): Promise<Entry | undefined> {
  try {
    return (await admin.search(dn, { scope: 'base', filter: '(objectClass=*)', attributes })).searchEntries[0];
  } catch (err) {
    if ((err as { code?: number }).code === 32) return undefined;
    throw err;
  }
}
const uac = async (dn: string) => Number(one(await ad(dn, ['userAccountControl']), 'userAccountControl'));

/** a simple bind straight to the DC over LDAPS: 0, or the result code */
async function adBind(name: string, pw: string): Promise<number> {
  const u = new Client({ url: LDAPS, timeout: 10_000, tlsOptions: { ca: [readFileSync(CA)] } });
  try {
    await u.bind(name, pw);
    return 0;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  } finally {
    await u.unbind().catch(() => undefined);
  }
}

/** a bind through the gateway: code 0, or the result code and diagnostic message */
async function gwBind(name: string, pw: string, url = g.url): Promise<{ code: number; message?: string }> {
  const u = new Client({ url, timeout: 10_000 });
  try {
    await u.bind(name, pw);
    return { code: 0 };
  } catch (err) {
    const e = err as { code?: number; message?: string };
    return { code: e.code ?? -1, message: e.message };
  } finally {
    await u.unbind().catch(() => undefined);
  }
}

async function bound(t: Test, name: string, pw: string, url = g.url): Promise<Client> {
  const u = new Client({ url, timeout: 15_000 });
  await u.bind(name, pw);
  t.teardown(() => u.unbind().catch(() => undefined));
  return u;
}

interface WriteLine {
  msg: string;
  consumer?: string;
  user?: string;
  op: string;
  dn: string;
  adDn?: string;
  attributes?: string[];
  result: number;
  reason?: string;
  dc?: string;
  ms?: number;
}
const isWrite = (j: Record<string, unknown> | undefined): boolean => j?.msg === 'write';
/** every audit line of the main gateway, with what the test sent and got, for the audit test at the end */
const sent: Array<{ line: WriteLine; code: number }> = [];

/**
 * Send one request (or `n`, for a CLI tool) and return what the server answered, after asserting that it
 * logged exactly one 'write' line per request (the line is written before the answer goes out).
 */
async function write(t: Test, f: () => Promise<unknown>, o: { gw?: TestGateway; n?: number } = {}): Promise<{ code: number; message: string; lines: WriteLine[] }> {
  const gw = o.gw ?? g;
  const n = o.n ?? 1;
  const from = gw.logs.length;
  let code = 0;
  let message = '';
  try {
    await f();
  } catch (err) {
    const e = err as { code?: unknown; message?: string };
    code = typeof e.code === 'number' ? e.code : -1;
    message = e.message ?? String(err);
  }
  await gw.waitForLog((_l, j) => isWrite(j), { from, count: n, timeoutMs: 5000 }).catch(() => undefined);
  const lines = gw.logs.slice(from).map(parseLine).filter(isWrite) as unknown as WriteLine[];
  t.equal(lines.length, n, `${n} audit line(s) for ${n} write(s)`);
  if (gw === g) for (const line of lines) sent.push({ line, code });
  return { code, message, lines };
}

async function search(cl: Client, base: string, scope: 'base' | 'sub', filter: string, attributes: string[]): Promise<Entry[]> {
  return (await cl.search(base, { scope, filter, attributes })).searchEntries;
}
/** S5 (client.rs:64): base read; any non-success answer means "does not exist" */
async function s5(dn: string): Promise<Entry | undefined> {
  try {
    return (await search(c, dn, 'base', '(objectClass=*)', ['*']))[0];
  } catch {
    return undefined;
  }
}
/** S9 (client.rs:293): paged, 500 per page, first entry's members */
async function s9(name: string): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const page of c.searchPaginated(GBASE, { scope: 'sub', filter: `(&(objectClass=${GOC})(${GNA}=${name}))`, attributes: [GMA], paged: { pageSize: 500 } })) out.push(...page.searchEntries);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Defguard's writes

t.test('W1 + W3 + W4: newbie is created disabled in OU=People, gets the password Defguard set, is enabled and binds', async (t) => {
  // the pre-checks of add_user: S2 (is the name free?) and S5 on the target DN
  t.same(await search(c, UBASE, 'sub', `(&(${UA}=newbie)(|(objectClass=${UOC})))`, ['*', MA]), [], 'S2: the name is free');
  t.equal(await s5(userDN('newbie')), undefined, 'S5: no entry at the target DN');

  // W1: user_as_ldap_attrs in order: RA, sn, givenName, mail, cn, (uid: already there as RA), mobile, sAMAccountName, objectClass
  const add = await write(t, () =>
    c.add(userDN('newbie'), [
      attr('uid', ['newbie']),
      attr('sn', ['Newbie']),
      attr('givenName', ['Nova']),
      attr('mail', ['newbie@example.test']),
      attr('cn', ['newbie']),
      attr('mobile', ['+1 555 0142']),
      attr('sAMAccountName', ['newbie']),
      attr('objectClass', [UOC]),
    ]),
  );
  t.equal(add.code, 0, `Add answered 0 (${add.message})`);
  const adDn = `CN=newbie,${PEOPLE}`;
  const created = await ad(adDn);
  t.ok(created, 'AD has CN=newbie in OU=People');
  t.ok(lower(vals(created, 'objectClass')).includes('user'), 'of class user');
  t.match(
    { sAMAccountName: one(created, 'sAMAccountName'), userPrincipalName: one(created, 'userPrincipalName'), mail: one(created, 'mail'), sn: one(created, 'sn'), givenName: one(created, 'givenName'), mobile: one(created, 'mobile') },
    { sAMAccountName: 'newbie', userPrincipalName: 'newbie@example.test', mail: 'newbie@example.test', sn: 'Newbie', givenName: 'Nova', mobile: '+1 555 0142' },
  );
  t.ok(one(created, 'displayName'), `a displayName (${one(created, 'displayName')})`);
  t.equal(Number(one(created, 'userAccountControl')) & 2, 2, 'created disabled: it has no password yet');
  t.match(add.lines[0], { consumer: 'defguard', op: 'add', dn: userDN('newbie'), result: 0, dc: LDAPS });
  t.equal(add.lines[0]?.adDn?.toLowerCase(), adDn.toLowerCase(), 'the audit line names the AD DN');

  // W3: set_password, an admin reset
  const w3 = await write(t, () => c.modify(userDN('newbie'), [change('replace', 'unicodePwd', [unicodePwd(NEWBIE_PW)])]));
  t.equal(w3.code, 0, `W3 answered 0 (${w3.message})`);
  t.equal((await uac(adDn)) & 2, 2, 'still disabled until W4');
  // W4: activate_ad_user
  const w4 = await write(t, () => c.modify(userDN('newbie'), [change('replace', 'userAccountControl', ['512']), change('replace', 'pwdLastSet', ['-1'])]));
  t.equal(w4.code, 0, `W4 answered 0 (${w4.message})`);
  const enabled = await ad(adDn, ['userAccountControl', 'pwdLastSet']);
  t.equal(Number(one(enabled, 'userAccountControl')), 512, 'AD: a normal, enabled account');
  t.not(one(enabled, 'pwdLastSet'), '0', 'AD: the password is not marked must-change');

  t.equal(await adBind('newbie@example.test', NEWBIE_PW), 0, 'binds directly on AD with the password Defguard set');
  t.same(await gwBind(userDN('newbie'), NEWBIE_PW), { code: 0 }, 'and through the gateway (B2, the virtual DN)');

  // Defguard's read-back at once: S2 finds the name taken, S5 the entry with what Defguard reads
  const s2 = await search(c, UBASE, 'sub', `(&(${UA}=newbie)(|(objectClass=${UOC})))`, ['*', MA]);
  t.equal(s2.length, 1, 'S2 finds the new user at once');
  const e = await s5(userDN('newbie'));
  t.match(e, { dn: userDN('newbie'), uid: 'newbie', sn: 'Newbie', givenName: 'Nova', mail: 'newbie@example.test', mobile: '+1 555 0142' }, 'S5 reads it back');
});

t.test('W2: Defguard replaces the attributes; an empty Replace deletes mobile', async (t) => {
  t.equal((await search(c, UBASE, 'sub', `(${RA}=newbie)`, ['*', MA])).length, 1, 'S4 before the Modify');
  // user_as_ldap_mod, all Replace: sn, givenName, mail, cn (RA≠cn), mobile (empty: delete), sAMAccountName (AD, RA≠sAMAccountName)
  const r = await write(t, () =>
    c.modify(userDN('newbie'), [
      change('replace', 'sn', ['Newbie-Smith']),
      change('replace', 'givenName', ['Novella']),
      change('replace', 'mail', ['nova.smith@example.test']),
      change('replace', 'cn', ['newbie']),
      change('replace', 'mobile', []),
      change('replace', 'sAMAccountName', ['newbie']),
    ]),
  );
  t.equal(r.code, 0, `answered 0 (${r.message})`);
  const e = await ad(`CN=newbie,${PEOPLE}`, ['sn', 'givenName', 'mail', 'mobile', 'sAMAccountName', 'cn']);
  t.same({ sn: vals(e, 'sn'), givenName: vals(e, 'givenName'), mail: vals(e, 'mail'), mobile: vals(e, 'mobile'), sam: vals(e, 'sAMAccountName') }, { sn: ['Newbie-Smith'], givenName: ['Novella'], mail: ['nova.smith@example.test'], mobile: [], sam: ['newbie'] }, 'AD has the new values and no mobile');
  const back = await s5(userDN('newbie'));
  t.match(back, { sn: 'Newbie-Smith', givenName: 'Novella', mail: 'nova.smith@example.test' }, 'the gateway reads the new values at once');
  t.notOk(back && Object.hasOwn(back, 'mobile'), 'and no mobile');
});

t.test('W2 rename: Modify with the new name, then ModifyDN uid=<new>: sAMAccountName, UPN and CN follow, the old DN is gone', async (t) => {
  // a username change in Defguard: user_as_ldap_mod with the new username, then ModifyDN (newrdn, deleteoldrdn, no newSuperior)
  const m = await write(t, () =>
    c.modify(userDN('newbie'), [
      change('replace', 'sn', ['Newbie-Smith']),
      change('replace', 'givenName', ['Novella']),
      change('replace', 'mail', ['nova.smith@example.test']),
      change('replace', 'cn', ['freshman']),
      change('replace', 'sAMAccountName', ['freshman']),
    ]),
  );
  t.equal(m.code, 0, `the Modify answered 0 (${m.message})`);
  const d = await write(t, () => c.modifyDN(userDN('newbie'), `${RA}=freshman`));
  t.equal(d.code, 0, `the ModifyDN answered 0 (${d.message})`);

  t.equal(await ad(`CN=newbie,${PEOPLE}`), undefined, 'AD: CN=newbie is gone');
  const e = await ad(`CN=freshman,${PEOPLE}`, ['sAMAccountName', 'userPrincipalName', 'cn']);
  t.same({ sam: one(e, 'sAMAccountName'), upn: one(e, 'userPrincipalName'), cn: one(e, 'cn') }, { sam: 'freshman', upn: 'freshman@example.test', cn: 'freshman' }, 'AD: the account name, UPN and CN followed');
  t.equal(await adBind('freshman@example.test', NEWBIE_PW), 0, 'the new UPN binds on AD');
  t.same(await gwBind(userDN('freshman'), NEWBIE_PW), { code: 0 }, 'the new virtual DN binds through the gateway');
  t.equal(await s5(userDN('newbie')), undefined, 'S5: the old virtual DN is gone');
  t.match(await s5(userDN('freshman')), { dn: userDN('freshman'), uid: 'freshman' }, 'S5: the new one is there');
  t.same(await search(c, UBASE, 'sub', `(&(${UA}=newbie)(objectClass=${UOC}))`, ['*', MA]), [], 'S1 no longer finds the old name');
});

t.test('W4/W11 account status: only the ACCOUNTDISABLE bit of AD\'s value changes; disabled → 49 account_disabled; enabled → binds', async (t) => {
  const adDn = `CN=freshman,${PEOPLE}`;
  // another bit that must survive: DONT_EXPIRE_PASSWORD (0x10000), set directly on AD
  await admin.modify(adDn, [change('replace', 'userAccountControl', [String(512 | 0x10000)])]);
  // W4 as 2.0.1 always sends it (activate_ad_user): 512 clears ACCOUNTDISABLE only
  const w4 = await write(t, () => c.modify(userDN('freshman'), [change('replace', 'userAccountControl', ['512']), change('replace', 'pwdLastSet', ['-1'])]));
  t.equal(w4.code, 0, `W4 answered 0 (${w4.message})`);
  t.equal(await uac(adDn), 512 | 0x10000, 'W4 512 on an enabled account: DONT_EXPIRE_PASSWORD kept');
  // W11: set_ad_account_status reads the user with '*' ...
  const cur = await s5(userDN('freshman'));
  t.equal(one(cur, 'userAccountControl'), String(512 | 0x10000), 'a base read with * returns userAccountControl as AD has it');
  const value = Number(one(cur, 'userAccountControl') ?? 512);
  // ... and replaces it with the disable bit set
  const off = await write(t, () => c.modify(userDN('freshman'), [change('replace', 'userAccountControl', [String(value | 2)])]));
  t.equal(off.code, 0, `disable answered 0 (${off.message})`);
  t.equal(await uac(adDn), 512 | 0x10000 | 2, 'AD: ACCOUNTDISABLE set, every other bit as it was');
  const from = g.logs.length;
  t.match(await gwBind(userDN('freshman'), NEWBIE_PW), { code: 49 }, 'a disabled account does not bind');
  const line = parseLine(await g.waitForLog((_l, j) => j?.event === 'bind' && j.result === 'failure', { from }));
  t.equal(line?.reason, 'account_disabled', 'the bind audit line says why');
  const disabled = await s5(userDN('freshman'));
  t.equal(Number(one(disabled, 'userAccountControl')) & 2, 2, 'the gateway shows the account disabled at once');

  // enable: current & ~2
  const on = await write(t, () => c.modify(userDN('freshman'), [change('replace', 'userAccountControl', [String((512 | 0x10000 | 2) & ~2)])]));
  t.equal(on.code, 0, `enable answered 0 (${on.message})`);
  t.equal(await uac(adDn), 512 | 0x10000, 'AD: enabled again, DONT_EXPIRE_PASSWORD kept');
  t.same(await gwBind(userDN('freshman'), NEWBIE_PW), { code: 0 }, 'binds again');

  // W4 as 2.0.2+ sends it for an inactive user (514), then as 2.0.1 always does (512): still one bit only
  const w4off = await write(t, () => c.modify(userDN('freshman'), [change('replace', 'userAccountControl', ['514']), change('replace', 'pwdLastSet', ['-1'])]));
  t.equal(w4off.code, 0, `W4 514 answered 0 (${w4off.message})`);
  t.equal(await uac(adDn), 512 | 0x10000 | 2, 'W4 514: disabled, DONT_EXPIRE_PASSWORD kept');
  const w4on = await write(t, () => c.modify(userDN('freshman'), [change('replace', 'userAccountControl', ['512']), change('replace', 'pwdLastSet', ['-1'])]));
  t.equal(w4on.code, 0, `W4 512 answered 0 (${w4on.message})`);
  t.equal(await uac(adDn), 512 | 0x10000, 'W4 512: enabled, DONT_EXPIRE_PASSWORD kept');
  t.same(await gwBind(userDN('freshman'), NEWBIE_PW), { code: 0 }, 'and binds');
});

const members = async (adDn: string) => lower(vals(await ad(adDn, ['member']), 'member'));

t.test('W6: a group with its members in one multi-valued uniqueMember (2.0.2+) is created in OU=Groups with a real sAMAccountName', async (t) => {
  const r = await write(t, () => c.add(groupDN('vpn-team'), [attr('objectClass', [GOC]), attr(GNA, ['vpn-team']), attr(GMA, [userDN('freshman'), userDN('alice')])]));
  t.equal(r.code, 0, `answered 0 (${r.message})`);
  const e = await ad(`CN=vpn-team,${GROUPS}`, ['objectClass', 'sAMAccountName', 'groupType', 'member', 'adminDescription']);
  t.ok(e, 'AD has CN=vpn-team in OU=Groups');
  t.ok(lower(vals(e, 'objectClass')).includes('group'), 'of class group');
  t.equal(one(e, 'sAMAccountName'), 'vpn-team', 'sAMAccountName is the name, not an invented $… one (Defguard issue #3670)');
  t.equal(one(e, 'groupType'), '-2147483646', 'a global security group');
  t.equal(one(e, 'adminDescription'), 'ldap-gateway:managed', 'marked managed');
  t.same(lower(vals(e, 'member')), lower([`CN=freshman,${PEOPLE}`, `CN=alice,${PEOPLE}`]), 'members are the AD DNs');
  t.match(r.lines[0], { consumer: 'defguard', op: 'add', dn: groupDN('vpn-team'), result: 0 });

  // Defguard's read-back: S7 (group_exists) and S9 (get_group_members)
  t.equal((await search(c, GBASE, 'sub', `(${GNA}=vpn-team)`, [UA, GMA])).length, 1, 'S7 finds the group at once');
  const s9e = await s9('vpn-team');
  t.equal(s9e.length, 1, 'S9 finds it');
  t.same(lower(vals(s9e[0], GMA)), lower([userDN('freshman'), userDN('alice')]), 'S9 lists its members as virtual DNs');
  const user = await search(c, UBASE, 'sub', `(&(${UA}=freshman)(objectClass=${UOC}))`, ['*', MA]);
  t.ok(lower(vals(user[0], MA)).includes(groupDN('vpn-team')), 'S1: memberOf shows the new group at once');
});

t.test('W6 as 2.0.1 sends it: the uniqueMember attribute repeated, one value each', async (t) => {
  const r = await write(t, () => c.add(groupDN('ops-team'), [attr('objectClass', [GOC]), attr(GNA, ['ops-team']), attr(GMA, [userDN('bob')]), attr(GMA, [userDN('carol')])]));
  t.equal(r.code, 0, `answered 0 (${r.message})`);
  const e = await ad(`CN=ops-team,${GROUPS}`, ['sAMAccountName', 'member']);
  t.equal(one(e, 'sAMAccountName'), 'ops-team');
  t.same(lower(vals(e, 'member')), lower([`CN=bob,${PEOPLE}`, `CN=carol,${PEOPLE}`]), 'both members');
  t.same(lower(vals((await s9('ops-team'))[0], GMA)), lower([userDN('bob'), userDN('carol')]), 'S9 lists both');
});

t.test('W7: Modify add uniqueMember on a managed group', async (t) => {
  const s8 = `(&(objectClass=${GOC})(${GNA}=vpn-team)(${GMA}=${userDN('bob')}))`;
  t.same(await search(c, GBASE, 'sub', s8, ['*']), [], 'S8: not yet a member');
  const r = await write(t, () => c.modify(groupDN('vpn-team'), [change('add', GMA, [userDN('bob')])]));
  t.equal(r.code, 0, `answered 0 (${r.message})`);
  t.same(await members(`CN=vpn-team,${GROUPS}`), lower([`CN=freshman,${PEOPLE}`, `CN=alice,${PEOPLE}`, `CN=bob,${PEOPLE}`]), 'AD: bob added');
  t.equal((await search(c, GBASE, 'sub', s8, ['*'])).length, 1, 'S8 finds the membership at once');
});

t.test('W8: Modify replace cn, then ModifyDN: AD\'s cn and sAMAccountName are renamed together', async (t) => {
  const m = await write(t, () => c.modify(groupDN('ops-team'), [change('replace', GNA, ['ops-crew'])]));
  t.equal(m.code, 0, `the Modify answered 0 (${m.message})`);
  const d = await write(t, () => c.modifyDN(groupDN('ops-team'), `${GNA}=ops-crew`));
  t.equal(d.code, 0, `the ModifyDN answered 0 (${d.message})`);
  t.equal(await ad(`CN=ops-team,${GROUPS}`), undefined, 'AD: the old DN is gone');
  const e = await ad(`CN=ops-crew,${GROUPS}`, ['cn', 'sAMAccountName', 'member']);
  t.same({ cn: one(e, 'cn'), sam: one(e, 'sAMAccountName') }, { cn: 'ops-crew', sam: 'ops-crew' }, 'AD: cn and a real sAMAccountName, renamed');
  t.same(lower(vals(e, 'member')), lower([`CN=bob,${PEOPLE}`, `CN=carol,${PEOPLE}`]), 'members kept');
  t.equal((await search(c, GBASE, 'sub', `(${GNA}=ops-crew)`, [UA, GMA])).length, 1, 'S7 finds the new name');
  t.same(await search(c, GBASE, 'sub', `(${GNA}=ops-team)`, [UA, GMA]), [], 'S7 no longer finds the old one');
});

t.test('W9: Modify delete uniqueMember; at the last member Defguard deletes the group: the member goes, the group stays', async (t) => {
  const r = await write(t, () => c.modify(groupDN('vpn-team'), [change('delete', GMA, [userDN('bob')])]));
  t.equal(r.code, 0, `answered 0 (${r.message})`);
  t.same(await members(`CN=vpn-team,${GROUPS}`), lower([`CN=freshman,${PEOPLE}`, `CN=alice,${PEOPLE}`]), 'AD: bob removed');

  // remove_user_from_group on ops-crew {bob, carol}: S9 says 2 members → Modify delete carol
  t.equal(vals((await s9('ops-crew'))[0], GMA).length, 2);
  const r2 = await write(t, () => c.modify(groupDN('ops-crew'), [change('delete', GMA, [userDN('carol')])]));
  t.equal(r2.code, 0, `answered 0 (${r2.message})`);
  // then bob: S9 says 1 member → Defguard deletes the whole group
  t.equal(vals((await s9('ops-crew'))[0], GMA).length, 1, 'S9: one member left');
  const del = await write(t, () => c.del(groupDN('ops-crew')));
  t.equal(del.code, 0, `the Delete answered 0 (${del.message})`);
  const kept = await ad(`CN=ops-crew,${GROUPS}`, ['sAMAccountName', 'member']);
  t.ok(kept, 'AD: the group is kept');
  t.same(vals(kept, 'member'), [], 'without its last member');
  t.equal(one(kept, 'sAMAccountName'), 'ops-crew');
  const s9e = await s9('ops-crew');
  t.equal(s9e.length, 1, 'the gateway still shows the group');
  t.same(vals(s9e[0], GMA), [], 'with no members');
});

t.test('W10: a group the gateway created is deleted; a pre-existing AD group is refused (50) and keeps its members', async (t) => {
  const a = await write(t, () => c.add(groupDN('tmp-team'), [attr('objectClass', [GOC]), attr(GNA, ['tmp-team']), attr(GMA, [userDN('alice'), userDN('bob')])]));
  t.equal(a.code, 0, `created (${a.message})`);
  const d = await write(t, () => c.del(groupDN('tmp-team')));
  t.equal(d.code, 0, `the Delete answered 0 (${d.message})`);
  t.equal(await ad(`CN=tmp-team,${GROUPS}`), undefined, 'AD: deleted');
  t.same(await search(c, GBASE, 'sub', `(${GNA}=tmp-team)`, [UA, GMA]), [], 'S7: gone through the gateway too');

  const engBefore = await members(`CN=Engineering,${GROUPS}`);
  t.ok(engBefore.length >= 2, 'Engineering has members in AD');
  const e = await write(t, () => c.del(groupDN('Engineering')));
  t.equal(e.code, 50, `Delete of Engineering: insufficientAccessRights (${e.message})`);
  t.ok(e.message.length > 0, 'with the reason in the diagnostic message');
  t.match(e.lines[0], { consumer: 'defguard', op: 'delete', dn: groupDN('Engineering'), result: 50 });
  // Defguard's W9 on the same group (a member removed, or its "last member" Delete) must not empty it either
  const m = await write(t, () => c.modify(groupDN('Engineering'), [change('delete', GMA, [userDN('alice')])]));
  t.equal(m.code, 50, `removing a member of an unmanaged group: 50 (${m.message})`);
  const eng = await ad(`CN=Engineering,${GROUPS}`, ['member', 'sAMAccountName']);
  t.ok(eng, 'AD: Engineering is still there');
  t.same(lower(vals(eng, 'member')), engBefore, 'with all its members');
});

t.test('W5: a Delete of the user disables the account and keeps it in AD (users.delete: disable)', async (t) => {
  // delete_user: S6 for the user's groups, W9 for each, then Delete
  const groups = await search(c, GBASE, 'sub', `(${GMA}=${userDN('freshman')})`, [GNA]);
  t.same(groups.map((x) => one(x, GNA)), ['vpn-team'], 'S6: freshman is in vpn-team');
  t.equal(vals((await s9('vpn-team'))[0], GMA).length, 2, 'S9: two members, so W9 is a Modify delete');
  const w9 = await write(t, () => c.modify(groupDN('vpn-team'), [change('delete', GMA, [userDN('freshman')])]));
  t.equal(w9.code, 0, `W9 answered 0 (${w9.message})`);
  const d = await write(t, () => c.del(userDN('freshman')));
  t.equal(d.code, 0, `the Delete answered 0 (${d.message})`);
  const e = await ad(`CN=freshman,${PEOPLE}`, ['userAccountControl', 'sAMAccountName']);
  t.ok(e, 'AD: the account is still there');
  t.equal(Number(one(e, 'userAccountControl')) & 2, 2, 'disabled');
  t.equal(Number(one(e, 'userAccountControl')) & 0x10000, 0x10000, 'its other bits kept');
  t.same(await members(`CN=vpn-team,${GROUPS}`), lower([`CN=alice,${PEOPLE}`]), 'and out of vpn-team');
  t.match(await gwBind(userDN('freshman'), NEWBIE_PW), { code: 49, message: /account_disabled/ }, 'it no longer binds');
});

// ---------------------------------------------------------------------------------------------------
// OpenLDAP's tools through the gateway

/** an OpenLDAP tool against the gateway; a non-zero exit throws with the LDAP result code it printed ("… (50)") */
async function cli(tool: string, args: string[], input?: string): Promise<void> {
  const r = await run(tool, ['-x', '-H', g.url, ...args], process.env, 15_000, input);
  if (r.code !== 0) throw Object.assign(new Error(`${r.stdout}${r.stderr}`), { code: Number(/\((\d+)\)/.exec(r.stderr + r.stdout)?.[1] ?? -1) });
}

t.test('ldapadd: a user with a clear userPassword and a group; ldapmodify; both checked on AD', async (t) => {
  const ldif = `dn: ${userDN('cliuser')}
objectClass: inetOrgPerson
uid: cliuser
cn: cliuser
sn: Client
givenName: Cli
mail: cliuser@example.test
userPassword: ${CLI_PW}

dn: ${groupDN('cli-group')}
objectClass: groupOfUniqueNames
cn: cli-group
uniqueMember: ${userDN('cliuser')}
uniqueMember: ${userDN('alice')}
`;
  const add = await write(t, () => cli('ldapadd', ['-D', CONSUMER_DN, '-w', CONSUMER_PASSWORD], ldif), { n: 2 });
  t.equal(add.code, 0, `ldapadd exited 0 (${add.message})`);
  t.same(add.lines.map((l) => [l.op, l.result]), [['add', 0], ['add', 0]]);
  const u = await ad(`CN=cliuser,${PEOPLE}`, ['sAMAccountName', 'userPrincipalName', 'userAccountControl', 'sn']);
  t.match({ sam: one(u, 'sAMAccountName'), upn: one(u, 'userPrincipalName'), sn: one(u, 'sn') }, { sam: 'cliuser', upn: 'cliuser@example.test', sn: 'Client' }, 'AD: the user');
  t.equal(Number(one(u, 'userAccountControl')) & 2, 0, 'enabled, since it came with a password');
  t.equal(await adBind('cliuser@example.test', CLI_PW), 0, 'the clear userPassword became its AD password');
  const grp = await ad(`CN=cli-group,${GROUPS}`, ['sAMAccountName', 'member']);
  t.equal(one(grp, 'sAMAccountName'), 'cli-group');
  t.same(lower(vals(grp, 'member')), lower([`CN=cliuser,${PEOPLE}`, `CN=alice,${PEOPLE}`]));

  const mod = await write(t, () =>
    cli('ldapmodify', ['-D', CONSUMER_DN, '-w', CONSUMER_PASSWORD], `dn: ${userDN('cliuser')}
changetype: modify
replace: sn
sn: Client-Renamed
-
add: mobile
mobile: +1 555 0177
`),
  );
  t.equal(mod.code, 0, `ldapmodify exited 0 (${mod.message})`);
  const after = await ad(`CN=cliuser,${PEOPLE}`, ['sn', 'mobile']);
  t.same({ sn: vals(after, 'sn'), mobile: vals(after, 'mobile') }, { sn: ['Client-Renamed'], mobile: ['+1 555 0177'] }, 'AD: modified');
});

t.test('ldappasswd: the consumer resets a user\'s password (RFC 3062); on AD the new one binds and the old one does not', async (t) => {
  const r = await write(t, () => cli('ldappasswd', ['-D', CONSUMER_DN, '-w', CONSUMER_PASSWORD, '-s', CLI_RESET_PW, userDN('cliuser')]));
  t.equal(r.code, 0, `ldappasswd exited 0 (${r.message})`);
  t.match(r.lines[0], { consumer: 'defguard', op: 'passwordModify', result: 0 });
  t.equal(await adBind('cliuser@example.test', CLI_RESET_PW), 0, 'AD: the new password binds');
  t.equal(await adBind('cliuser@example.test', CLI_PW), 49, 'AD: the old one does not (old password allowed period = 0)');
  t.same(await gwBind(userDN('cliuser'), CLI_RESET_PW), { code: 0 }, 'through the gateway too');
});

t.test('ldappasswd -a old -s new: an end user changes their own password (auth.passwordChange: self)', async (t) => {
  const r = await write(t, () => cli('ldappasswd', ['-D', userDN('carol'), '-w', PW, '-a', PW, '-s', CAROL_PW]));
  t.equal(r.code, 0, `ldappasswd exited 0 (${r.message})`);
  t.match(r.lines[0], { op: 'passwordModify', result: 0 });
  t.equal(await adBind('carol@example.test', CAROL_PW), 0, 'AD: the new password binds');
  t.equal(await adBind('carol@example.test', PW), 49, 'AD: the old one does not');

  // the same with a Modify deleting the old and adding the new unicodePwd on one's own entry
  const bob = await bound(t, userDN('bob'), PW);
  const m = await write(t, () => bob.modify(userDN('bob'), [change('delete', 'unicodePwd', [unicodePwd(PW)]), change('add', 'unicodePwd', [unicodePwd(BOB_PW)])]));
  t.equal(m.code, 0, `bob's own change answered 0 (${m.message})`);
  t.equal(await adBind('bob@example.test', BOB_PW), 0, 'AD: bob\'s new password binds');
  t.equal(await adBind('bob@example.test', PW), 49, 'AD: the old one does not');

  // nobody else's: carol may not set alice's
  const other = await write(t, () => cli('ldappasswd', ['-D', userDN('carol'), '-w', CAROL_PW, '-a', CAROL_PW, '-s', OTHER_PW, userDN('alice')]));
  t.equal(other.code, 50, `another user's password: insufficientAccessRights (${other.message.trim()})`);
  t.equal(await adBind('alice@example.test', PW), 0, 'AD: alice\'s password is unchanged');
});

t.test('ldapdelete: the user is disabled and kept, the group (gateway-made, two members) deleted', async (t) => {
  const r = await write(t, () => cli('ldapdelete', ['-D', CONSUMER_DN, '-w', CONSUMER_PASSWORD, userDN('cliuser'), groupDN('cli-group')]), { n: 2 });
  t.equal(r.code, 0, `ldapdelete exited 0 (${r.message})`);
  t.equal((await uac(`CN=cliuser,${PEOPLE}`)) & 2, 2, 'AD: cliuser kept, disabled');
  t.equal(await ad(`CN=cli-group,${GROUPS}`), undefined, 'AD: cli-group deleted');
});

// ---------------------------------------------------------------------------------------------------
// refusals: the exact code, and nothing changed on AD

const bobState = async () => ad(`CN=bob,${PEOPLE}`, ['sn', 'mail', 'pwdLastSet', 'userAccountControl', 'memberOf', 'mobile']);

t.test('a password over a plain upstream (ldap://, no StartTLS): 53, nothing sent to AD', async (t) => {
  const plain = await startFromYaml(gatewayYaml({ urls: [`ldap://${IP}:389`] }), env());
  t.teardown(() => plain.stop());
  const p = await bound(t, CONSUMER_DN, CONSUMER_PASSWORD, plain.url);
  const before = await bobState();
  const r = await write(t, () => p.modify(userDN('bob'), [change('replace', 'unicodePwd', [unicodePwd(PLAIN_PW)])]), { gw: plain });
  t.equal(r.code, 53, `unwillingToPerform (${r.message})`);
  t.match(r.lines[0], { op: 'modify', result: 53 });
  t.same(await bobState(), before, 'AD: bob unchanged (pwdLastSet too)');
  t.equal(await adBind('bob@example.test', PLAIN_PW), 49, 'AD: that password does not bind');
  t.equal(await adBind('bob@example.test', BOB_PW), 0, 'AD: bob\'s password is what it was');
  const plainLogs = plain.logs.join('\n');
  for (const s of secretForms([PLAIN_PW])) t.notOk(plainLogs.includes(s), 'no password in that gateway\'s log');
});

t.test('a hashed userPassword ({SSHA}…): 53, naming Defguard\'s "LDAP server is Active Directory" setting', async (t) => {
  const before = await bobState();
  const r = await write(t, () => c.modify(userDN('bob'), [change('replace', 'userPassword', ['{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g4qVmU'])]));
  t.equal(r.code, 53, 'unwillingToPerform');
  t.match(r.message, /LDAP server is Active Directory/, r.message);
  t.same(await bobState(), before, 'AD: bob unchanged');
});

t.test('an end user (alice) writing bob\'s entry: 50, AD unchanged', async (t) => {
  const alice = await bound(t, userDN('alice'), PW);
  const before = await bobState();
  const m = await write(t, () => alice.modify(userDN('bob'), [change('replace', 'sn', ['Hijacked'])]));
  t.equal(m.code, 50, `insufficientAccessRights (${m.message})`);
  const p = await write(t, () => alice.modify(userDN('bob'), [change('replace', 'unicodePwd', [unicodePwd(OTHER_PW)])]));
  t.equal(p.code, 50, `a password reset of bob: 50 (${p.message})`);
  t.same(await bobState(), before, 'AD: bob unchanged');
  t.equal(await adBind('bob@example.test', OTHER_PW), 49);
});

t.test('no DC reachable: 52, nothing half-done', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const dead = await startFromYaml(gatewayYaml({ urls: [`ldaps://127.0.0.1:${port}`] }), env());
  t.teardown(() => dead.stop());
  const d = await bound(t, CONSUMER_DN, CONSUMER_PASSWORD, dead.url);
  const add = await write(t, () => d.add(userDN('nodc'), [attr('uid', ['nodc']), attr('sn', ['Nodc']), attr('givenName', ['No']), attr('mail', ['nodc@example.test']), attr('cn', ['nodc']), attr('sAMAccountName', ['nodc']), attr('objectClass', [UOC])]), { gw: dead });
  t.equal(add.code, 52, `Add: unavailable (${add.message})`);
  const mod = await write(t, () => d.modify(userDN('bob'), [change('replace', 'unicodePwd', [unicodePwd(NODC_PW)])]), { gw: dead });
  t.equal(mod.code, 52, `Modify: unavailable (${mod.message})`);
  t.equal(await ad(`CN=nodc,${PEOPLE}`), undefined, 'AD: no nodc');
  t.equal(await adBind('bob@example.test', NODC_PW), 49, 'AD: bob\'s password unchanged');
});

t.test('policy: a consumer whose writes have no groups section writing a group: 50', async (t) => {
  const u = await bound(t, USERSONLY_DN, CONSUMER_PASSWORD);
  const r = await write(t, () => u.add(groupDN('sneaky'), [attr('objectClass', [GOC]), attr(GNA, ['sneaky']), attr(GMA, [userDN('alice')])]));
  t.equal(r.code, 50, `insufficientAccessRights (${r.message})`);
  t.ok(r.message.length > 0, 'with the reason in the diagnostic message');
  t.match(r.lines[0], { consumer: 'usersonly', op: 'add', result: 50 });
  t.equal(await ad(`CN=sneaky,${GROUPS}`), undefined, 'AD: no such group');
  const m = await write(t, () => u.modify(groupDN('vpn-team'), [change('add', GMA, [userDN('bob')])]));
  t.equal(m.code, 50, `a member change too (${m.message})`);
  t.same(await members(`CN=vpn-team,${GROUPS}`), lower([`CN=alice,${PEOPLE}`]), 'AD: vpn-team unchanged');
});

t.test('attributes with no inverse (memberOf, entryUUID): 53, AD unchanged', async (t) => {
  const before = await ad(`CN=alice,${PEOPLE}`, ['memberOf', 'sn', 'objectGUID']);
  const r = await write(t, () => c.modify(userDN('alice'), [change('replace', MA, [groupDN('vpn-team')])]));
  t.equal(r.code, 53, `memberOf: unwillingToPerform (${r.message})`);
  const r2 = await write(t, () => c.modify(userDN('alice'), [change('replace', 'entryUUID', ['4a1e7c4e-0000-4000-8000-000000000001'])]));
  t.equal(r2.code, 53, `entryUUID: unwillingToPerform (${r2.message})`);
  t.same(await ad(`CN=alice,${PEOPLE}`, ['memberOf', 'sn', 'objectGUID']), before, 'AD: alice unchanged');
});

t.test('a Modify of a DN that does not exist: 32; an Add of a user that exists: 68', async (t) => {
  const m = await write(t, () => c.modify(userDN('nobody-here'), [change('replace', 'sn', ['X'])]));
  t.equal(m.code, 32, `noSuchObject (${m.message})`);
  t.equal(await ad(`CN=nobody-here,${PEOPLE}`), undefined);
  const before = await ad(`CN=alice,${PEOPLE}`, ['sn', 'givenName', 'mail', 'whenChanged']);
  const a = await write(t, () => c.add(userDN('alice'), [attr('uid', ['alice']), attr('sn', ['Other']), attr('givenName', ['Alice']), attr('mail', ['other@example.test']), attr('cn', ['alice']), attr('sAMAccountName', ['alice']), attr('objectClass', [UOC])]));
  t.equal(a.code, 68, `entryAlreadyExists (${a.message})`);
  t.same(await ad(`CN=alice,${PEOPLE}`, ['sn', 'givenName', 'mail', 'whenChanged']), before, 'AD: alice unchanged');
});

t.test('AD\'s own refusal: a password too short is 19 with a decoded reason', async (t) => {
  const r = await write(t, () => c.modify(userDN('alice'), [change('replace', 'unicodePwd', [unicodePwd(SHORT_PW)])]));
  t.equal(r.code, 19, `constraintViolation (${r.message})`);
  t.match(r.message, /password_policy|password policy|too short/i);
  t.match(r.lines[0], { op: 'modify', result: 19, reason: 'password_policy' });
  t.equal(await adBind('alice@example.test', PW), 0, 'AD: alice\'s password unchanged');
});

t.test('dryRun: 53, one "dry run" line naming the AD operation, AD unchanged', async (t) => {
  const d = await bound(t, DRYRUN_DN, CONSUMER_PASSWORD);
  const from = g.logs.length;
  const r = await write(t, () => d.add(userDN('dryuser'), [attr('uid', ['dryuser']), attr('sn', ['Dry']), attr('givenName', ['Run']), attr('mail', ['dryuser@example.test']), attr('cn', ['dryuser']), attr('sAMAccountName', ['dryuser']), attr('objectClass', [UOC])]));
  t.equal(r.code, 53, `unwillingToPerform (${r.message})`);
  t.match(r.lines[0], { consumer: 'dryrun', op: 'add', result: 53 });
  const dry = g.logs.slice(from).map(parseLine).filter((j) => j?.msg === 'dry run');
  t.equal(dry.length, 1, 'one dry-run line');
  const text = JSON.stringify(dry[0]?.operations);
  t.match(text, /"add"/, 'naming the AD operation');
  t.match(text.toLowerCase(), `cn=dryuser,${PEOPLE}`.toLowerCase(), 'and its AD DN');
  t.equal(await ad(`CN=dryuser,${PEOPLE}`), undefined, 'AD: nothing created');

  const p = await write(t, () => d.modify(userDN('alice'), [change('replace', 'sn', ['Dry-Changed']), change('replace', 'unicodePwd', [unicodePwd(DRY_PW)])]));
  t.equal(p.code, 53, 'a Modify with a password: 53 too');
  t.equal(one(await ad(`CN=alice,${PEOPLE}`, ['sn']), 'sn'), 'Anderson', 'AD: alice unchanged');
  t.equal(await adBind('alice@example.test', DRY_PW), 49, 'AD: that password does not bind');
});

// ---------------------------------------------------------------------------------------------------
// audit and metrics

/** a password as it could leak: plain, as Defguard's unicodePwd bytes (JSON-escaped text, base64, hex, a Buffer's JSON) */
function secretForms(pws: string[]): string[] {
  return pws.flatMap((pw) => {
    const u = unicodePwd(pw);
    return [pw, JSON.stringify(u.toString('latin1')).slice(1, -1), u.toString('base64'), u.toString('hex'), JSON.stringify([...u]).slice(1, -1), Buffer.from(pw).toString('base64')];
  });
}

t.test('audit: one line per write with consumer, op, dn, adDn, attribute names, result, reason, dc, ms; no password anywhere', async (t) => {
  t.ok(sent.length >= 40, `${sent.length} writes logged`);
  for (const { line, code } of sent) {
    const what = `${line.op} ${line.dn} → ${line.result}`;
    t.equal(line.result, code, `${what}: the logged result is the answer`);
    t.ok(line.consumer ?? line.user, `${what}: who`);
    t.ok(['add', 'modify', 'modifyDN', 'delete', 'passwordModify'].includes(line.op), `${what}: op`);
    t.type(line.dn, 'string', `${what}: virtual dn`);
    t.type(line.reason, 'string', `${what}: reason`);
    t.type(line.ms, 'number', `${what}: ms`);
    if (line.result === 0) {
      t.type(line.adDn, 'string', `${what}: adDn`);
      // Defguard's ModifyDN after a renaming Modify (W2, W8) is answered from that Modify: no DC is asked
      if (line.op !== 'modifyDN') t.equal(line.dc, LDAPS, `${what}: dc`);
      t.ok(Array.isArray(line.attributes), `${what}: attributes`);
    }
  }
  const w1 = sent.find((s) => s.line.op === 'add' && s.line.dn === userDN('newbie'))?.line;
  const names = (w1?.attributes ?? []).map((a) => a.replace(/^[a-z]+:/, ''));
  t.same(names, ['uid', 'sn', 'givenName', 'mail', 'cn', 'mobile', 'sAMAccountName', 'objectClass'], 'W1: the attribute names, in order, as names only');
  const w3 = sent.find((s) => s.line.op === 'modify' && s.line.dn === userDN('newbie') && (s.line.attributes ?? []).some((a) => /unicodePwd$/.test(a)))?.line;
  t.ok(w3, 'W3 is logged by attribute name');
  t.ok((w3?.attributes ?? []).every((a) => /^([a-z]+:)?[A-Za-z][A-Za-z0-9-]*$/.test(a)), 'names, never values');

  const logs = g.logs.join('\n');
  for (const s of secretForms([...PASSWORDS, ...allSecrets()])) t.notOk(logs.includes(s), `no password in the log (${s.length} characters)`);
});

t.test('metrics: ldap_gateway_writes_total{op,result} and ldap_gateway_write_duration_seconds{op}', async (t) => {
  const text = await (await fetch(`${g.httpUrl}/metrics`)).text();
  const count = (op: string, result: string) => Number(new RegExp(`^ldap_gateway_writes_total\\{(?=[^}]*op="${op}")(?=[^}]*result="${result}")[^}]*\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  const expect = (op: string, result: string) => sent.filter((s) => s.line.op === op && (result === 'success' ? s.code === 0 : s.code !== 0)).length;
  for (const op of ['add', 'modify', 'modifyDN', 'delete', 'passwordModify']) {
    t.equal(count(op, 'success'), expect(op, 'success'), `${op} success`);
    t.ok(count(op, 'success') > 0, `${op}: successes counted`);
  }
  const failedOrRefused = (op: string) => count(op, 'refused') + count(op, 'failed');
  t.equal(failedOrRefused('modify'), expect('modify', 'other'), 'modify refusals and failures');
  t.equal(failedOrRefused('add'), expect('add', 'other'), 'add refusals and failures');
  t.ok(count('modify', 'failed') >= 1, 'AD\'s own refusal counts as failed');
  t.ok(count('delete', 'refused') >= 1, 'a policy refusal counts as refused');
  t.match(text, /^ldap_gateway_write_duration_seconds_count\{op="add"\} [1-9]\d*$/m, 'the latency histogram');
  t.match(text, /^ldap_gateway_write_duration_seconds_bucket\{(?=[^}]*op="modify")[^}]*le="\+Inf"[^}]*\} [1-9]\d*$/m, 'with buckets per op');
});
