// Webhook mode: bind events POSTed as signed JSON to a local receiver, with retries.
import t from 'tap';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { Client } from 'ldapts';
import { bedEnv, sambaEnv, sambaExampleYaml, startFromYaml, type TestGateway } from '../helpers/gateway';

const SECRET = 'webhook-secret-0123456789abcdef';
const metric = async (g: TestGateway, re: RegExp) => Number(re.exec(await (await fetch(`${g.httpUrl}/metrics`)).text())?.[1] ?? -1);

t.test('successes and failures arrive signed; a 500 is retried', async (t) => {
  const got: Array<{ headers: Record<string, string | string[] | undefined>; body: string }> = [];
  let failNext = 1;
  const srv = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (failNext-- > 0) return res.writeHead(500).end();
      got.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const port = (srv.address() as { port: number }).port;

  const yaml = sambaExampleYaml('', { provisioning: 'keep' })
    .replace('  mode: defguard ', `  retry: { initialMs: 100, maxMs: 500 }\n  webhook:\n    url: http://127.0.0.1:${port}/hook\n    secret: ${SECRET}\n  mode: webhook `);
  const g = await startFromYaml(yaml, sambaEnv());
  t.teardown(() => g.stop());

  const c = new Client({ url: g.url, timeout: 10_000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.bind('bob', bedEnv('SAMBA_AD_USER_PASS'));
  await t.rejects(c.bind('bob', 'Wrong-Passw0rd!'), { code: 49 });
  // the worker logs a delivery once the receiver has answered it with a 2xx
  await g.waitForLog((_l, j) => j?.msg === 'event delivered', { count: 2 });
  t.equal(await metric(g, /^ldap_gateway_outbox_events\{state="pending"\} (\d+)/m), 0, 'the outbox is empty');

  t.equal(got.length, 2);
  t.equal(g.logs.filter((l) => l.includes('delivery failed: will retry') && l.includes('HTTP 500')).length, 1, 'the 500 was retried once');
  for (const g2 of got) {
    const expected = `sha256=${createHmac('sha256', SECRET).update(g2.body).digest('hex')}`;
    t.equal(g2.headers['x-ldap-gateway-signature'], expected, 'HMAC-SHA256 over the exact body');
  }
  // the success met the 500 and was retried, so the failure may arrive first
  const bodies = got.map((g2) => JSON.parse(g2.body) as Record<string, unknown>);
  const ok = bodies.find((b) => b.kind === 'bind.success');
  const failed = bodies.find((b) => b.kind === 'bind.failure');
  t.match(ok, { kind: 'bind.success', user: { username: 'bob', email: 'bob@example.test', groups: ['AllEmployees', 'Engineering', 'Staff', 'VPN'] } });
  t.match(failed, { kind: 'bind.failure', name: 'bob', reason: 'bad_credentials' });
  t.same(got.map((g2) => g2.headers['x-ldap-gateway-event']).sort(), ['bind.failure', 'bind.success']);
  t.ok(got.every((g2) => !g2.body.includes(bedEnv('SAMBA_AD_USER_PASS')) && !g2.body.includes('Wrong-Passw0rd!')), 'no password in any event');
});
