// Hostile input, bounded in time and count: thousands of malformed, truncated and random messages,
// unknown operations, unsupported critical controls, SASL binds, huge and deeply nested filters. The
// gateway runs as its own process (so its RSS can be read), in front of the embedded demo directory.
// Throughout, a well-behaved client on another connection must be served, and the gateway must live.
import t from 'tap';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'ldapts';
import { bindRequest, control, controls, equality, int, len, msg, present, searchRequest, str, tlv } from '../helpers/ber';
import { spawnGateway, type GatewayProcess } from '../helpers/process';

const SECONDS = Number(process.env.FUZZ_SECONDS ?? 20);
const MAX_CASES = 20_000;
const BASE = 'dc=vpn,dc=example,dc=test';

let gw: GatewayProcess;
let port = 0;

const rssMiB = () => {
  if (!gw.running()) throw new Error(`the gateway died (${gw.child.exitCode ?? gw.child.signalCode}):\n${gw.lines.tail()}`);
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gw.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
};

t.before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-fuzz-'));
  const cfg = join(dir, 'fuzz.yaml');
  // level info: the listening line (with the port) is logged at info; the hostile input itself is logged at debug
  writeFileSync(cfg, `demo: true\nlisten:\n  ldap: 127.0.0.1:0\n  maxPduBytes: 1048576\nlog:\n  level: info\ndirectory:\n  baseDN: ${BASE}\n`);
  gw = await spawnGateway({ args: ['--config', cfg] });
  port = gw.ldapPort as number;
});
t.teardown(async () => {
  await gw?.stop();
});

// deterministic pseudo-random numbers, so a failure can be replayed
let seed = 0x5eed;
const rnd = (n: number) => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
};
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => rnd(256)));

const valid = (): Buffer[] => [
  msg(1, bindRequest('alice@demo.example', 'demo-password')),
  msg(2, searchRequest(`ou=users,${BASE}`, equality('uid', 'alice'), ['mail'])),
  msg(3, searchRequest('', present('objectClass'), ['+'])),
  msg(4, tlv(0x77, str(0x80, '1.3.6.1.4.1.4203.1.11.3'))),
  msg(5, tlv(0x66, str(0x04, `uid=alice,ou=users,${BASE}`), tlv(0x30))),
];

function nested(depth: number): Buffer {
  let f = equality('uid', 'x');
  for (let i = 0; i < depth; i++) f = tlv(0xa0 + rnd(3), f);
  return f;
}

/** one hostile payload */
function hostile(): Buffer {
  const v = valid();
  const base = v[rnd(v.length)] as Buffer;
  switch (rnd(12)) {
    case 0: // flip bytes
      return Buffer.from(base.map((b) => (rnd(10) === 0 ? rnd(256) : b)));
    case 1: // truncate
      return base.subarray(0, rnd(base.length));
    case 2: // corrupt the outer length
      return Buffer.concat([Buffer.from([0x30]), len(rnd(2_000_000)), base.subarray(2)]);
    case 3: // random bytes, maybe behind a plausible header
      return rnd(2) ? bytes(1 + rnd(300)) : Buffer.concat([Buffer.from([0x30, 0x81, 0xff]), bytes(255)]);
    case 4: // unknown operation tags
      return msg(7, tlv([0x45, 0x7f, 0x5f, 0x61, 0x7e, 0x20][rnd(6)] as number, bytes(rnd(20))));
    case 5: // unsupported critical controls on a search
      return msg(8, searchRequest(`ou=users,${BASE}`, present('uid')), controls(control(`1.2.3.${rnd(1000)}`, true, bytes(rnd(10)))));
    case 6: // SASL binds
      return msg(9, tlv(0x60, int(0x02, 3), str(0x04, ''), tlv(0xa3, str(0x04, ['EXTERNAL', 'GSSAPI', 'PLAIN', 'X'][rnd(4)] as string), bytes(rnd(50)))));
    case 7: // deeply nested filter
      return msg(10, searchRequest(`ou=users,${BASE}`, nested(20 + rnd(400))));
    case 8: // a huge filter (many terms)
      return msg(11, searchRequest(`ou=users,${BASE}`, tlv(0xa1, ...Array.from({ length: 500 + rnd(5000) }, (_, i) => equality('uid', `u${i}`)))));
    case 9: // odd controls: paged results with garbage, ppolicy without a value
      return msg(12, searchRequest(`ou=users,${BASE}`, present('uid')), controls(rnd(2) ? control('1.2.840.113556.1.4.319', false, bytes(rnd(12))) : control('1.3.6.1.4.1.42.2.27.8.5.1', false)));
    case 10: // many messages at once, some broken
      return Buffer.concat(Array.from({ length: 2 + rnd(30) }, () => (rnd(3) ? (v[rnd(v.length)] as Buffer) : bytes(rnd(40)))));
    default: // a bind with an absurd name and password
      return msg(13, bindRequest(`${'x'.repeat(rnd(5000))}\u0000(*)`, 'y'.repeat(rnd(5000))));
  }
}

function fire(payload: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const done = () => {
      s.destroy();
      resolve();
    };
    s.on('error', done);
    s.on('close', done);
    s.on('data', () => undefined);
    s.on('connect', () => {
      s.write(payload);
      // a bounded wait is the only option here: a truncated payload is (rightly) answered by nothing,
      // the server waits for the rest; so the client gives up after a short random while
      setTimeout(done, 20 + rnd(60));
    });
  });
}

t.test(`the gateway survives ${SECONDS} s of hostile input and keeps serving`, async (t) => {
  const rss0 = rssMiB();
  const end = Date.now() + SECONDS * 1000;
  let cases = 0;
  let probes = 0;
  const probeFailures: string[] = [];
  let peak = rss0;

  const prober = (async () => {
    while (Date.now() < end) {
      const c = new Client({ url: `ldap://127.0.0.1:${port}`, timeout: 3000, connectTimeout: 3000 });
      try {
        await c.bind('bob@demo.example', 'demo-password');
        const r = await c.search(`ou=users,${BASE}`, { filter: '(uid=bob)', attributes: ['mail'] });
        if (r.searchEntries[0]?.mail !== 'bob@demo.example') probeFailures.push('wrong answer');
      } catch (err) {
        probeFailures.push((err as Error).message);
      } finally {
        await c.unbind().catch(() => undefined);
      }
      probes++;
      peak = Math.max(peak, rssMiB());
      await new Promise((r) => setTimeout(r, 100)); // pacing of the probes, not a wait for anything
    }
  })();

  const workers = Array.from({ length: 8 }, async () => {
    while (Date.now() < end && cases < MAX_CASES) {
      cases++;
      await fire(hostile());
    }
  });
  await Promise.all([...workers, prober]);

  t.comment(`${cases} hostile payloads, ${probes} well-behaved probes; RSS ${rss0.toFixed(0)} MiB at start, ${peak.toFixed(0)} MiB peak, ${rssMiB().toFixed(0)} MiB at end`);
  t.ok(cases > 1000, 'thousands of payloads');
  t.same(probeFailures, [], 'every well-behaved request was answered correctly');
  t.ok(gw.running(), 'the gateway is still running');
  t.ok(peak < rss0 + 200, `RSS stayed bounded (${peak.toFixed(0)} MiB peak)`);
});
