// A real HAProxy (Debian's /usr/sbin/haproxy) for tests: started in the foreground from a config text,
// ready once every `bind` of the config is listening (a bounded poll of /proc/net/tcp*, which connects to
// nothing, so no backend sees a stray connection), stopped by its PID. A missing binary is an error (the
// suite installs haproxy from Debian), never a skip. tcpConfig() writes a TCP-mode config for N backends
// with send-proxy-v2 (the shape of deploy/haproxy/haproxy.cfg); serverStates() reads what HAProxy's
// health checks concluded, through the stats socket that tcpConfig() puts in every config.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const HAPROXY_BIN = process.env.HAPROXY_BIN ?? '/usr/sbin/haproxy';

export interface Haproxy {
  readonly pid: number;
  readonly child: ChildProcess;
  /** the config file it runs from (in its own temporary folder) */
  readonly cfgPath: string;
  /** the stats socket, if the config declares `stats socket <path>` */
  readonly statsSocket?: string;
  /** everything HAProxy wrote so far (its log goes to stdout with `log stdout`) */
  output(): string;
  /** SIGTERM by PID, then await the exit (SIGKILL after timeoutMs); the temporary folder is removed */
  stop(timeoutMs?: number): Promise<void>;
}

// a test that fails half-way must not leave an HAProxy behind
const alive = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of alive) c.kill('SIGKILL');
});

/** loopback `bind` addresses of a config (`bind 127.0.0.1:1234`, `bind [::1]:1234`, options after) */
export function bindAddresses(cfg: string): Array<{ host: string; port: number }> {
  const out: Array<{ host: string; port: number }> = [];
  for (const m of cfg.matchAll(/^\s*bind\s+(\[[^\]]+\]|[^\s:]+):(\d+)/gm)) out.push({ host: (m[1] as string).replace(/^\[|\]$/g, ''), port: Number(m[2]) });
  return out;
}

/** is a TCP port in LISTEN state on this machine (any address)? */
function listening(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    // "  sl  local_address rem_address   st ..." : local address is field 1, state field 3 (0A = LISTEN)
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1] && `${f[1]} `.endsWith(hex) && f[3] === '0A') return true;
    }
  }
  return false;
}

/**
 * Start HAProxy with this config (validated first with `haproxy -c`), resolve once every `bind` port
 * listens; reject with HAProxy's output if the config is refused, the process exits, or the ports do not
 * listen within timeoutMs.
 */
export async function startHaproxy(cfg: string, o: { timeoutMs?: number } = {}): Promise<Haproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'gw-haproxy-'));
  const cfgPath = join(dir, 'haproxy.cfg');
  writeFileSync(cfgPath, cfg);
  const binds = bindAddresses(cfg);
  if (binds.length === 0) throw new Error('the HAProxy config has no bind line');
  const check = await runOnce([HAPROXY_BIN, '-c', '-q', '-f', cfgPath]);
  if (check.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`haproxy -c refused the config (exit ${check.code}): ${check.output}\n${cfg}`);
  }
  // -db: foreground, no daemon; -W would add a master process, which is not wanted: the PID is HAProxy
  const child = spawn(HAPROXY_BIN, ['-db', '-f', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  alive.add(child);
  void exited.then(() => alive.delete(child));
  const statsSocket = /^\s*stats socket\s+(\S+)/m.exec(cfg)?.[1];
  const h: Haproxy = {
    get pid() {
      return child.pid as number;
    },
    child,
    cfgPath,
    statsSocket,
    output: () => out,
    async stop(timeoutMs = 5000) {
      if (child.exitCode === null && child.signalCode === null && child.pid) {
        process.kill(child.pid, 'SIGTERM');
        const killer = setTimeout(() => child.pid && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), timeoutMs);
        await exited;
        clearTimeout(killer);
      }
      rmSync(dir, { recursive: true, force: true });
      if (statsSocket && /gw-haproxy-sock-[^/]+\/stats\.sock$/.test(statsSocket)) rmSync(join(statsSocket, '..'), { recursive: true, force: true });
    },
  };
  const timeoutMs = o.timeoutMs ?? 10_000;
  const until = Date.now() + timeoutMs;
  let failure: string | undefined;
  const gone = Promise.race([exited.then(() => 'exited'), spawnError.then((e) => `could not be started: ${e.message}`)]).then((why) => (failure = why));
  void gone;
  while (!failure && !binds.every((b) => listening(b.port))) {
    if (Date.now() > until) {
      await h.stop();
      throw new Error(`HAProxy did not listen on ${binds.map((b) => `${b.host}:${b.port}`).join(', ')} within ${timeoutMs} ms:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  if (failure) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`HAProxy ${failure} (${HAPROXY_BIN}): ${out}`);
  }
  return h;
}

function runOnce(argv: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const c = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    c.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    c.once('error', (e) => resolve({ code: -1, output: `${argv[0]}: ${e.message}` }));
    c.once('close', (code) => resolve({ code: code ?? -1, output }));
  });
}

/** a TCP port free on 127.0.0.1 right now (HAProxy needs fixed ports: it cannot report an ephemeral one) */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface HaproxyFrontend {
  /** frontend/backend names: fe_<name>, be_<name> */
  name: string;
  bind: { host: string; port: number };
  servers: Array<{ host: string; port: number }>;
  /** PROXY protocol to the servers: 'v2' (send-proxy-v2, the default), 'v1' (send-proxy), 'none' */
  proxyProtocol?: 'v1' | 'v2' | 'none';
  /** health checks: 'ldap' (option ldap-check: an anonymous bind), 'ldaps' (the same over TLS), or none */
  check?: 'ldap' | 'ldaps';
  /** check interval, ms (default 500) */
  checkIntervalMs?: number;
  balance?: 'roundrobin' | 'leastconn' | 'first';
}

/**
 * A TCP-mode config: one frontend and one backend per entry, the servers named s1…sN, a stats socket in a
 * temporary folder (serverStates), HAProxy's log on stdout (Haproxy.output()).
 */
export function tcpConfig(frontends: HaproxyFrontend[], o: { statsSocket?: string; timeoutClient?: string } = {}): string {
  const sock = o.statsSocket ?? join(mkdtempSync(join(tmpdir(), 'gw-haproxy-sock-')), 'stats.sock');
  const parts = [
    'global',
    '  log stdout format raw local0 info',
    '  maxconn 4096',
    `  stats socket ${sock} mode 600 level admin`,
    '',
    'defaults',
    '  mode tcp',
    '  log global',
    '  option tcplog',
    '  timeout connect 2s',
    `  timeout client ${o.timeoutClient ?? '5m'}`,
    `  timeout server ${o.timeoutClient ?? '5m'}`,
    '  timeout check 2s',
    '',
  ];
  for (const f of frontends) {
    const pp = f.proxyProtocol ?? 'v2';
    const send = pp === 'v2' ? ' send-proxy-v2' : pp === 'v1' ? ' send-proxy' : '';
    const check = f.check ? ` check inter ${f.checkIntervalMs ?? 500} fall 2 rise 1${f.check === 'ldaps' ? ' check-ssl verify none' : ''}` : '';
    parts.push(
      `frontend fe_${f.name}`,
      `  bind ${f.bind.host.includes(':') ? `[${f.bind.host}]` : f.bind.host}:${f.bind.port}`,
      `  default_backend be_${f.name}`,
      '',
      `backend be_${f.name}`,
      `  balance ${f.balance ?? 'roundrobin'}`,
      ...(f.check ? ['  option ldap-check'] : []),
      ...f.servers.map((s, i) => `  server s${i + 1} ${s.host}:${s.port}${send}${check}`),
      '',
    );
  }
  return parts.join('\n');
}

export interface ServerState {
  backend: string;
  server: string;
  /** UP, DOWN, MAINT, … as HAProxy reports it */
  status: string;
  /** last check's result: L7OK, L4CON, L7RSP, L7STS, … ('' before the first check) */
  checkStatus: string;
  checkCode: string;
  checkDesc: string;
}

/** `show stat` over the stats socket: each server's state and its last health check */
export function serverStates(h: Haproxy): Promise<ServerState[]> {
  const path = h.statsSocket;
  if (!path) return Promise.reject(new Error('this HAProxy config has no stats socket'));
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (text += d));
    s.once('error', reject);
    s.once('connect', () => s.write('show stat\n'));
    s.once('close', () => {
      const lines = text.split('\n').filter((l) => l.trim());
      const head = (lines[0] ?? '').replace(/^# /, '').split(',');
      const col = (name: string) => head.indexOf(name);
      const rows = lines.slice(1).map((l) => l.split(','));
      resolve(
        rows
          .filter((r) => r[col('svname')] !== 'FRONTEND' && r[col('svname')] !== 'BACKEND')
          .map((r) => ({ backend: r[col('pxname')] ?? '', server: r[col('svname')] ?? '', status: r[col('status')] ?? '', checkStatus: r[col('check_status')] ?? '', checkCode: r[col('check_code')] ?? '', checkDesc: r[col('last_chk')] ?? '' })),
      );
    });
  });
}

/** wait (bounded, polling the stats socket) until every server of these backends has passed a check (L7OK, UP) */
export async function waitHealthy(h: Haproxy, backends: string[], timeoutMs = 10_000): Promise<ServerState[]> {
  const until = Date.now() + timeoutMs;
  let last: ServerState[] = [];
  for (;;) {
    last = (await serverStates(h)).filter((s) => backends.includes(s.backend));
    if (last.length > 0 && last.every((s) => s.status.startsWith('UP') && s.checkStatus === 'L7OK')) return last;
    if (Date.now() > until) throw new Error(`HAProxy's health checks did not pass within ${timeoutMs} ms: ${JSON.stringify(last)}\n${h.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
