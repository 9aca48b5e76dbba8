// Hostile input, bounded in time and count: thousands of malformed, truncated and random messages,
// unknown operations, unsupported critical controls, SASL binds, huge and deeply nested filters. The
// gateway runs as its own process (so its RSS can be read), in front of the embedded demo directory.
// Throughout, a well-behaved client on another connection must be served, and the gateway must live.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'ldapts';
import { bindRequest, control, controls, equality, int, len, msg, present, searchRequest, str, tlv } from '../helpers/ber';
import { ROOT } from '../helpers/gateway';

const SECONDS = Number(process.env.FUZZ_SECONDS ?? 20);
const MAX_CASES = 20_000;
const BASE = 'dc=vpn,dc=example,dc=test';

let child: ChildProcess;
let port = 0;
let stderr = '';

const rssMiB = () => {
  if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the gateway died (${child.exitCode ?? child.signalCode}):\n${stderr.slice(-3000)}`);
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
};

t.before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gw-fuzz-'));
  const cfg = join(dir, 'fuzz.yaml');
  writeFileSync(cfg, `demo: true\nlisten:\n  ldap: 127.0.0.1:0\n  maxPduBytes: 1048576\nlog:\n  level: error\ndirectory:\n  baseDN: ${BASE}\n`);
  child = spawn(process.execPath, [join(ROOT, 'bin', 'ldap-gateway.js'), '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout?.on('data', (d: Buffer) => (stderr += d.toString()));
  // the listening line is logged at info; with level error we poll the port from /proc instead
  for (let i = 0; i < 100 && !port; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const tcp = readFileSync('/proc/net/tcp', 'utf8');
    const inode = new Set<string>();
    try {
      const { readdirSync, readlinkSync } = await import('node:fs');
      for (const fd of readdirSync(`/proc/${child.pid}/fd`)) {
        const m = /socket:\[(\d+)\]/.exec(readlinkSync(`/proc/${child.pid}/fd/${fd}`));
        if (m) inode.add(m[1] as string);
      }
    } catch {
      continue;
    }
    // listening sockets (state 0A) owned by the gateway; the demo directory listens too: take both, try each
    const candidates = tcp
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[3] === '0A' && inode.has(f[9] as string))
      .map((f) => parseInt((f[1] as string).split(':')[1] as string, 16));
    for (const p of candidates) {
      const c = new Client({ url: `ldap://127.0.0.1:${p}`, timeout: 2000 });
      try {
        const r = await c.search('', { scope: 'base', attributes: ['vendorName'] });
        if (r.searchEntries[0]?.vendorName === 'ldap-gateway') port = p;
      } catch {
        // the demo directory, or not ready yet
      } finally {
        await c.unbind().catch(() => undefined);
      }
    }
  }
  if (!port) throw new Error(`gateway did not start: ${stderr}`);
});
t.teardown(() => {
  child.kill('SIGTERM');
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
      await new Promise((r) => setTimeout(r, 100));
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
  t.ok(child.exitCode === null && child.signalCode === null, 'the gateway is still running');
  t.ok(peak < rss0 + 200, `RSS stayed bounded (${peak.toFixed(0)} MiB peak)`);
});
