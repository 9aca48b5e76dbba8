// ldap-gateway test-bind NAME --config FILE
// Reads the password from a prompt (no echo) or from standard input, never from the command line, binds
// through the same flow as the gateway, and prints the decoded outcome: reason, resolved DN, DC, latency.
import type { Config } from '../config/schema';
import { offlineCore } from './offline';

/** The password: hidden at a terminal, else the first line of standard input. */
export async function readPassword(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    let data = '';
    for await (const chunk of stdin) {
      data += (chunk as Buffer).toString('utf8');
      if (data.includes('\n')) break;
    }
    return data.split(/\r?\n/)[0] ?? '';
  }
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve) => {
    let pw = '';
    const onData = (b: Buffer) => {
      for (const ch of b.toString('utf8')) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.removeListener('data', onData);
          process.stderr.write('\n');
          resolve(pw);
          return;
        }
        if (ch === '\u0003') process.exit(130);
        if (ch === '\u007f') pw = pw.slice(0, -1);
        else pw += ch;
      }
    };
    stdin.on('data', onData);
  });
}

export async function testBind(cfg: Config, name: string, password: string, out: (s: string) => void): Promise<number> {
  const core = offlineCore(cfg);
  try {
    const t0 = process.hrtime.bigint();
    const r = await core.auth.decide({ name, password }, 'test-bind');
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const ok = r.reason === 'ok';
    out(`result:   ${ok ? 'success' : 'failure'}\n`);
    out(`reason:   ${r.reason}\n`);
    if (r.entry) out(`user:     ${r.entry.dn}${r.entry.guid ? ` (objectGUID ${r.entry.guid})` : ''}\n`);
    if (r.identity) out(`appears:  ${r.identity.dn}\n`);
    if (r.dc) out(`dc:       ${r.dc}\n`);
    if (r.diagnostic) out(`AD said:  ${r.diagnostic}\n`);
    out(`latency:  ${ms.toFixed(1)} ms\n`);
    return ok ? 0 : 1;
  } finally {
    await core.retire(0);
  }
}
