// Rebind throughput with offline binds off and on, side by side (issue 14, item 6): two gateways in
// front of the embedded demo directory (loopback), the same clients rebinding as three users, measured
// in alternation (off, on, off, on, ...) so a noisy machine affects both alike. Prints the ratio only.
// usage: node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/offline-rebind.ts [secs=3] [reps=3] [clients=4]
import { Writable } from 'node:stream';
import { Client } from 'ldapts';
import { startGateway, type Gateway } from '../src/app';
import { parseConfig } from '../src/config/load';
import { createLogger } from '../src/observability/logger';

const [secs = 3, reps = 3, clients = 4] = process.argv.slice(2).map(Number);
const yaml = (offline: boolean) => `demo: true
listen:
  ldap: 127.0.0.1:0
directory:
  baseDN: dc=demo,dc=example
protection:
  bindRatePerIp: 0
auth:
  resolveCacheMs: 60000
  offline:
    enabled: ${offline}
    maxAgeMs: 86400000
    checkIntervalMs: 3600000
log:
  level: warn
`;

async function start(offline: boolean): Promise<Gateway> {
  const log = createLogger({ level: 'warn', pretty: false }, new Writable({ write: (_c, _e, cb) => cb() }));
  return startGateway(parseConfig(yaml(offline), process.cwd(), process.env), log);
}

async function rebinds(port: number, ms: number): Promise<number> {
  const users = ['alice', 'bob', 'carol'];
  const end = Date.now() + ms;
  const counts = await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const c = new Client({ url: `ldap://127.0.0.1:${port}`, timeout: 10_000 });
      let n = 0;
      while (Date.now() < end) {
        await c.bind(users[i % users.length] as string, 'demo-password');
        n++;
      }
      await c.unbind();
      return n;
    }),
  );
  return counts.reduce((a, b) => a + b, 0) / (ms / 1000);
}

async function main(): Promise<void> {
  const off = await start(false);
  const on = await start(true);
  // warm-up: connections, JIT, and the first verifiers (computed once per account, in the background)
  await rebinds(off.ldapPort as number, 1000);
  await rebinds(on.ldapPort as number, 1000);
  const r: Array<{ off: number; on: number }> = [];
  for (let i = 0; i < reps; i++) {
    // the order alternates, so neither side always runs second
    if (i % 2 === 0) {
      const a = await rebinds(off.ldapPort as number, secs * 1000);
      r.push({ off: a, on: await rebinds(on.ldapPort as number, secs * 1000) });
    } else {
      const b = await rebinds(on.ldapPort as number, secs * 1000);
      r.push({ on: b, off: await rebinds(off.ldapPort as number, secs * 1000) });
    }
  }
  await Promise.all([off.stop(1000), on.stop(1000)]);
  for (const [i, x] of r.entries()) process.stdout.write(`rep ${i + 1}: on/off = ${(x.on / x.off).toFixed(3)}\n`);
  const sum = (k: 'on' | 'off') => r.reduce((a, x) => a + x[k], 0);
  const ratios = r.map((x) => x.on / x.off).sort((a, b) => a - b);
  const median = ratios[Math.floor(ratios.length / 2)] as number;
  process.stdout.write(`offline on / off, rebind throughput: median ${median.toFixed(3)}, total ${(sum('on') / sum('off')).toFixed(3)} (${reps} x ${secs} s each, ${clients} clients, loopback, demo directory)\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`offline-rebind: ${(err as Error).message}\n`);
  process.exit(1);
});
