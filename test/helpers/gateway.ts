// Test helpers: the test beds' settings (from test/testbed/with-servers.sh) and in-process gateways
// whose logs are captured, so that tests can assert on them (and search them for secrets).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Client } from 'ldapts';
import { startGateway, type Gateway } from '../../src/app';
import { parseConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { Lines, type LineMatch, type WaitOptions } from './lines';

export const ROOT = join(__dirname, '..', '..');

/** A test-bed variable. Missing means the suite was not started through `npm test`: that fails, never skips. */
export function bedEnv(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the suite with 'npm test' (test/testbed/with-servers.sh starts Samba AD and OpenLDAP)`);
  return v;
}

export const CONSUMER_PASSWORD = 'consumer-Secret-7731';
export const CONSUMER_DN = 'cn=defguard,dc=vpn,dc=example,dc=test';

/** Every password and secret the tests use; logs must contain none of them. */
export function allSecrets(): string[] {
  return [bedEnv('SAMBA_AD_USER_PASS'), bedEnv('SAMBA_AD_ADMIN_PASS'), bedEnv('OPENLDAP_USER_PASS'), CONSUMER_PASSWORD, 'Wrong-Passw0rd!', 'demo-password', DEFGUARD_TOKEN];
}

export interface TestGateway {
  gw: Gateway;
  url: string;
  ldapsUrl?: string;
  httpUrl?: string;
  logs: string[];
  /** a log line matching, from opts.from on (driven by the line being logged, bounded in time) */
  waitForLog(match: LineMatch, opts?: WaitOptions): Promise<string>;
  stop(): Promise<void>;
}

/** Start a gateway from YAML text (paths relative to config/examples), listening on ephemeral ports. */
export async function startFromYaml(yaml: string, env: NodeJS.ProcessEnv = process.env): Promise<TestGateway> {
  const cfg = parseConfig(yaml, join(ROOT, 'config', 'examples'), env);
  const lines = new Lines();
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(l);
      cb();
    },
  });
  const log = createLogger({ level: 'debug', pretty: false }, sink);
  const gw = await startGateway(cfg, log);
  return {
    gw,
    url: `ldap://127.0.0.1:${gw.ldapPort}`,
    ldapsUrl: gw.ldapsPort ? `ldaps://127.0.0.1:${gw.ldapsPort}` : undefined,
    httpUrl: gw.httpPort ? `http://127.0.0.1:${gw.httpPort}` : undefined,
    logs: lines.all,
    waitForLog: (match, opts) => lines.waitFor(match, opts),
    stop: () => gw.stop(2000),
  };
}

/** A gateway from YAML (with the Samba test bed's settings) and a client bound as the consumer account. */
export async function startConsumerSession(yaml: string, timeoutMs = 20_000): Promise<{ g: TestGateway; c: Client; stop(): Promise<void> }> {
  const g = await startFromYaml(yaml, sambaEnv());
  const c = new Client({ url: g.url, timeout: timeoutMs });
  try {
    await c.bind(CONSUMER_DN, CONSUMER_PASSWORD);
  } catch (err) {
    await g.stop();
    throw err;
  }
  return {
    g,
    c,
    async stop() {
      await c.unbind().catch(() => undefined);
      await g.stop();
    },
  };
}

/**
 * config/examples/samba-ad.yaml as shipped, moved to ephemeral ports (tests run in parallel) and to its
 * own outbox folder; provisioning becomes log-only unless the test asks to keep delivering to Defguard.
 */
export function sambaExampleYaml(extra = '', o: { provisioning?: 'keep' } = {}): string {
  let text = readFileSync(join(ROOT, 'config', 'examples', 'samba-ad.yaml'), 'utf8');
  if (o.provisioning !== 'keep') text = text.replace('  mode: defguard ', '  mode: log-only ');
  text = text
    .replace(/^( {2}outbox): .*$/m, `$1: ${mkdtempSync(join(tmpdir(), 'gw-outbox-'))}`)
    .replace(/^( {2}ldap): 127\.0\.0\.1:1389$/m, '$1: 127.0.0.1:0')
    .replace(/^( {2}ldaps): 127\.0\.0\.1:1636$/m, '$1: 127.0.0.1:0')
    .replace(/^( {2}listen): 127\.0\.0\.1:9090$/m, '$1: 127.0.0.1:0');
  // the example has an auth: block (offline binds): an extra auth: block's settings join it
  const auth = /^auth:\n((?: {2}.*\n)+)/m.exec(extra);
  if (auth) {
    text = text.replace(/^auth:\n/m, `auth:\n${auth[1]}`);
    extra = extra.replace(auth[0], '');
  }
  return text + extra;
}

export const DEFGUARD_TOKEN = 'dg-test-token-5e1f0c9a';

export function sambaEnv(defguardUrl = 'http://127.0.0.1:9'): NodeJS.ProcessEnv {
  return { ...process.env, GATEWAY_DEFGUARD_PASSWORD: CONSUMER_PASSWORD, DEFGUARD_URL: defguardUrl, DEFGUARD_API_TOKEN: DEFGUARD_TOKEN };
}

/** Run a command (OpenLDAP's CLI tools, the gateway's tools), resolving with its exit code and output; input goes to its stdin. */
export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 15_000, input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) {
      child.stdin?.on('error', () => undefined); // a command that exits without reading its input
      child.stdin?.end(input);
    }
  });
}
