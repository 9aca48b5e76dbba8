// The lockout shield against Samba AD with a real lockout policy: AD locks 'guarded' after 5 bad
// passwords (a fine-grained password policy); the shield stops at 3 per (account, address).
import t from 'tap';
import { connect } from 'node:net';
import { Client } from 'ldapts';
import { bedEnv, run, sambaEnv, sambaExampleYaml, startFromYaml, type TestGateway } from '../helpers/gateway';

const PW = bedEnv('SAMBA_AD_USER_PASS');
const USER_DN = `CN=guarded,OU=People,${bedEnv('SAMBA_AD_BASE_DN')}`;
let g: TestGateway;

t.before(async () => {
  g = await startFromYaml(sambaExampleYaml(), sambaEnv());
});
t.teardown(() => g.stop());

/** a bind from a chosen loopback source address */
async function bindFrom(source: string, name: string, password: string): Promise<{ ok: boolean; code?: number; message?: string }> {
  // ldapts calls createConnection(port, host)
  const c = new Client({ url: g.url, timeout: 10_000, createConnection: ((port: number, host: string) => connect({ port, host, localAddress: source })) as unknown as typeof connect });
  try {
    await c.bind(name, password);
    return { ok: true };
  } catch (err) {
    const e = err as { code?: number; message: string };
    return { ok: false, code: e.code, message: e.message.replace(/ Code: 0x[0-9a-f]+$/, '') }; // ldapts appends the code
  } finally {
    await c.unbind().catch(() => undefined);
  }
}

/** what AD itself counts for the account */
async function adState(): Promise<{ badPwdCount: number; lockoutTime: number }> {
  const r = await run('ldapsearch', ['-x', '-LLL', '-H', bedEnv('SAMBA_AD_URL'), '-D', bedEnv('SAMBA_AD_ADMIN_DN'), '-w', bedEnv('SAMBA_AD_ADMIN_PASS'), '-b', USER_DN, '-s', 'base', '(objectClass=*)', 'badPwdCount', 'lockoutTime']);
  const num = (a: string) => Number(new RegExp(`^${a}: (\\d+)$`, 'm').exec(r.stdout)?.[1] ?? 0);
  return { badPwdCount: num('badPwdCount'), lockoutTime: num('lockoutTime') };
}

t.test('the same wrong password retried counts once and reaches AD once', async (t) => {
  for (let i = 0; i < 10; i++) t.match(await bindFrom('127.0.0.3', 'guarded', 'Same-Wrong-1'), { ok: false, code: 49, message: 'bad_credentials' });
  t.equal((await adState()).badPwdCount, 1, 'AD saw one bad password');
  t.match(await bindFrom('127.0.0.3', 'guarded', PW), { ok: true }, 'the right password still works from there');
  t.equal((await adState()).badPwdCount, 0, "AD's own count was reset by the success");
});

t.test('20 wrong binds leave the AD account unlocked; the user still binds from another address', async (t) => {
  const answers = [];
  for (let i = 0; i < 20; i++) answers.push((await bindFrom('127.0.0.1', i % 2 ? 'guarded' : 'EXAMPLE\\guarded', `Wrong-${i}`)).message);
  t.same(answers.slice(0, 3), ['bad_credentials', 'bad_credentials', 'bad_credentials'], 'the first three reach AD');
  t.ok(answers.slice(3).every((m) => m === 'throttled'), 'the rest are refused by the shield');
  const ad = await adState();
  t.equal(ad.badPwdCount, 3, 'AD counted three');
  t.equal(ad.lockoutTime, 0, 'and did not lock the account (its threshold is 5)');
  t.match(await bindFrom('127.0.0.2', 'guarded@example.test', PW), { ok: true }, 'the real user, elsewhere, logs in');
  t.match(await bindFrom('127.0.0.1', 'guarded', PW), { ok: false, code: 49, message: 'throttled' }, "the attacking address stays blocked for this account, without asking AD");
  const metrics = await (await fetch(`${g.httpUrl}/metrics`)).text();
  t.match(metrics, /^ldap_gateway_lockout_trips_total\{scope="account_ip"\} 18$/m);
  t.match(metrics, /^ldap_gateway_binds_total\{result="failure",reason="throttled"\} 18$/m);
  t.equal(g.logs.filter((l) => l.includes('"event":"lockout"')).length, 1, 'one audit line for the trip, not one per refused bind');
});
