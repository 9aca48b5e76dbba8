// Log redaction: a field named like a secret is removed at any depth, whatever the caller logs, and the
// caller's object is left as it was. Lines are read back from the logger's own output.
import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger, scrub } from '../../src/observability/logger';

function capture(): { lines: Array<Record<string, unknown>>; stream: Writable } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, stream };
}

t.test('secret-named fields are removed at every depth; the rest is kept', async (t) => {
  const { lines, stream } = capture();
  const log = createLogger({ level: 'info', pretty: false }, stream);
  const logged = {
    event: 'bind',
    name: 'alice',
    password: 'pw-top',
    Token: 'tok-top',
    nested: { credentials: 'cred-1', ok: 1, deeper: { secret: 's-2', kept: 'k' } },
    config: { upstream: { bind: { dn: 'cn=svc', password: 'svc-pw' } }, consumers: [{ name: 'defguard', password: 'c-pw' }, { name: 'vpn', Password: 'c-pw-2' }] },
    headers: { authorization: 'Bearer abc', accept: 'json' },
  };
  const before = JSON.stringify(logged);
  log.info(logged, 'a line');
  log.child({ worker: 1, secret: 'child-secret' }).warn({ err: Object.assign(new Error('boom'), { password: 'in-error' }) }, 'x');
  class Client {
    constructor(
      readonly url: string,
      readonly password: string,
    ) {}
  }
  log.child({ worker: 2 }).child({ component: 'demo', token: 'grandchild-token' }).info({ upstream: new Client('ldap://dc1', 'instance-pw') }, 'y');
  await new Promise((r) => setImmediate(r));
  const text = JSON.stringify(lines);
  for (const s of ['pw-top', 'tok-top', 'cred-1', 's-2', 'svc-pw', 'c-pw', 'c-pw-2', 'Bearer abc', 'child-secret', 'in-error', 'grandchild-token', 'instance-pw']) t.notOk(text.includes(s), `${s} is not in the output`);
  const first = lines[0] as Record<string, any>;
  t.equal(first.name, 'alice');
  t.equal(first.nested.ok, 1);
  t.equal(first.nested.deeper.kept, 'k');
  t.equal(first.config.upstream.bind.dn, 'cn=svc');
  t.same(first.config.consumers.map((c: { name: string }) => c.name), ['defguard', 'vpn']);
  t.equal(first.headers.accept, 'json');
  t.equal((lines[1] as Record<string, any>).worker, 1, "a child's other bindings are kept");
  t.match((lines[1] as Record<string, any>).err, { message: 'boom' }, 'the error itself is kept');
  t.match(lines[2], { worker: 2, component: 'demo', upstream: { url: 'ldap://dc1' } }, "a grandchild keeps every ancestor's bindings; an instance's other fields are kept");
  t.equal(JSON.stringify(logged), before, "the caller's object is not changed");
});

t.test('an object without secrets is passed through as it is (nothing copied)', async (t) => {
  const o = { event: 'bind', client: '10.0.0.1', nested: { a: [1, { b: 2 }] } };
  t.equal(scrub(o), o);
  const withSecret = { a: { b: [{ c: 1 }, { password: 'x' }] }, other: { d: 1 } };
  const s = scrub(withSecret) as typeof withSecret;
  t.not(s, withSecret);
  t.equal(s.other, withSecret.other, 'branches without a secret are shared, not copied');
  t.same(s.a.b, [{ c: 1 }, {}]);
});
