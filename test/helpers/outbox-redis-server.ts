// A private redis-server for the outbox tests, which stop and restart Redis: its own loopback address and
// data directory (appendonly yes, appendfsync always: the settings the outbox's guarantee needs), stopped
// by PID, restarted on the same port and data. Ready = "Ready to accept connections" on its output.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface OutboxRedisServer {
  readonly url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

const alive = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of alive) c.kill('SIGKILL');
});

/** o.password: the server requires it (--requirepass); clients pass it separately (REDIS_PASSWORD) */
export async function redisServer(host: string, port = 6379, o: { password?: string } = {}): Promise<OutboxRedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'gw-oredis-'));
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const start = () =>
    new Promise<void>((resolve, reject) => {
      const c = spawn('redis-server', ['--bind', host, '--port', String(port), '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--protected-mode', 'no', ...(o.password ? ['--requirepass', o.password] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
      child = c;
      alive.add(c);
      exited = new Promise<void>((r) => c.once('exit', () => (alive.delete(c), r())));
      let out = '';
      const timer = setTimeout(() => (c.kill('SIGKILL'), reject(new Error(`redis-server not ready: ${out.slice(-300)}`))), 10_000);
      void exited.then(() => (clearTimeout(timer), reject(new Error(`redis-server exited: ${out.slice(-300)}`))));
      const onData = (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      c.stdout?.on('data', onData);
      c.stderr?.on('data', onData);
    });
  const stop = async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  await start();
  return { url: `redis://${host}:${port}`, start, stop, destroy: async () => (await stop(), rmSync(dir, { recursive: true, force: true })) };
}
