// The gateway as its own process, as an operator runs it: `node bin/ldap-gateway.js ARGS`. Its output
// is collected line by line (pino JSON lines); spawnGateway resolves when the gateway logs
// "ldap-gateway listening" (that line carries the actual ports, see src/app.ts), and rejects with the
// captured output if the process exits first or the line does not come in time. Every wait here is on
// a line or on the exit, bounded in time: nothing polls.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ROOT } from './gateway';
import { Lines, type LineMatch, type LogRecord, type WaitOptions, parseLine } from './lines';

export const GATEWAY_BIN = join(ROOT, 'bin', 'ldap-gateway.js');
export const LISTENING = 'ldap-gateway listening';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** arguments after bin/ldap-gateway.js, e.g. ['--config', file] */
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** how long to wait for the listening line (default 20 s) */
  timeoutMs?: number;
}

export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** the parsed "ldap-gateway listening" line */
  readonly listening: LogRecord;
  readonly ldapPort?: number;
  readonly ldapsPort?: number;
  readonly httpPort?: number;
  /** ldap://host:port of the plain listener (throws if there is none) */
  readonly url: string;
  readonly httpUrl?: string;
  /** every line so far, stdout and stderr, in arrival order */
  readonly lines: Lines;
  /** all output so far as one string */
  output(): string;
  /** not exited yet */
  running(): boolean;
  /** resolves once the process has exited and its output is read to the end */
  readonly exited: Promise<Exit>;
  /** a line matching, from opts.from on (see Lines.waitFor); rejects if the process exits first */
  waitFor(match: LineMatch, opts?: WaitOptions): Promise<string>;
  /** SIGTERM, then await the exit; SIGKILL and reject if it takes longer than timeoutMs (default 15 s) */
  stop(timeoutMs?: number): Promise<Exit & { ms: number }>;
  /** send a terminating signal (default SIGKILL) and await the exit; for SIGHUP use child.kill */
  kill(signal?: NodeJS.Signals): Promise<Exit>;
}

// a test that fails half-way must not leave a gateway behind on the test bed's ports
const alive = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of alive) c.kill('SIGKILL');
});

function collect(stream: Readable | null, lines: Lines): Promise<void> {
  if (!stream) return Promise.resolve();
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() as string;
    for (const p of parts) lines.push(p.replace(/\r$/, ''));
  });
  return new Promise((resolve) =>
    stream.once('close', () => {
      if (partial) lines.push(partial);
      partial = '';
      resolve();
    }),
  );
}

const hostOf = (a: unknown): { host: string; port: number } | undefined => {
  const x = a as { host?: unknown; port?: unknown } | undefined;
  return x && typeof x.port === 'number' ? { host: typeof x.host === 'string' ? x.host : '127.0.0.1', port: x.port } : undefined;
};
const urlHost = (h: string) => (h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h.includes(':') ? `[${h}]` : h);

export async function spawnGateway(o: SpawnOptions): Promise<GatewayProcess> {
  const child = spawn(process.execPath, [GATEWAY_BIN, ...o.args], { env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  alive.add(child);
  const lines = new Lines();
  const streams = Promise.all([collect(child.stdout, lines), collect(child.stderr, lines)]);
  const exitEvent = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  spawnError.catch(() => undefined);
  const exited = Promise.race([Promise.all([exitEvent, streams]).then(([e]) => e), spawnError]).then(
    (e) => {
      alive.delete(child);
      lines.end(`the gateway exited (code ${e.code}, signal ${e.signal})`);
      return e;
    },
    (err: Error) => {
      alive.delete(child);
      lines.end(`the gateway could not be started (${err.message})`);
      throw err;
    },
  );
  exited.catch(() => undefined);

  let listeningLine: string;
  try {
    listeningLine = await lines.waitFor((_l, j) => j?.msg === LISTENING, { timeoutMs: o.timeoutMs ?? 20_000 });
  } catch (err) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited.catch(() => undefined);
    throw new Error(`the gateway did not start: ${(err as Error).message.split('\n')[0]}\n${lines.all.join('\n')}`);
  }
  const listening = parseLine(listeningLine) as LogRecord;
  const ldap = hostOf(listening.ldap);
  const ldaps = hostOf(listening.ldaps);
  const http = hostOf(listening.http);
  const running = () => child.exitCode === null && child.signalCode === null;

  return {
    child,
    pid: child.pid as number,
    listening,
    ldapPort: ldap?.port,
    ldapsPort: ldaps?.port,
    httpPort: http?.port,
    get url() {
      if (!ldap) throw new Error('the gateway has no plain LDAP listener');
      return `ldap://${urlHost(ldap.host)}:${ldap.port}`;
    },
    httpUrl: http ? `http://127.0.0.1:${http.port}` : undefined,
    lines,
    output: () => lines.all.join('\n'),
    running,
    exited,
    waitFor: (match, opts) => lines.waitFor(match, opts),
    async stop(timeoutMs = 15_000) {
      const t0 = Date.now();
      if (running()) child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), timeoutMs)));
      const e = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (e === 'late') {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`the gateway did not exit within ${timeoutMs} ms of SIGTERM:\n${lines.tail()}`);
      }
      return { ...e, ms: Date.now() - t0 };
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (running()) child.kill(signal);
      return exited;
    },
  };
}
