// A private redis-server for tests that stop and restart Redis (the shared test-bed Redis of
// with-servers.sh must stay up for the others): its own loopback address, its own temp directory and
// config (appendonly, appendfsync always), stopped by PID, restarted on the same port and data directory.
// Ready means redis-server said "Ready to accept connections" on its log (stdout), bounded in time.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PrivateRedis {
  readonly url: string;
  readonly dir: string;
  /** the running server's PID (undefined while stopped) */
  readonly pid: number | undefined;
  /** start (again, on the same port and data directory); resolves when it accepts connections */
  start(): Promise<void>;
  /** SIGTERM by PID (SIGKILL after timeoutMs), resolves on its exit */
  stop(timeoutMs?: number): Promise<void>;
  /** stop and remove the data directory */
  destroy(): Promise<void>;
}

const alive = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of alive) c.kill('SIGKILL');
});

export async function startRedis(host: string, port = 6379, readyTimeoutMs = 10_000): Promise<PrivateRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'gw-redis-'));
  const conf = join(dir, 'redis.conf');
  writeFileSync(conf, [`bind ${host}`, `port ${port}`, 'protected-mode no', `dir ${dir}`, 'appendonly yes', 'appendfsync always', 'save ""', 'daemonize no', 'logfile ""', ''].join('\n'));
  let child: ChildProcess | undefined;

  const start = () =>
    new Promise<void>((resolve, reject) => {
      const c = spawn('redis-server', [conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      child = c;
      alive.add(c);
      let out = '';
      let ready = false;
      const timer = setTimeout(() => fail(new Error(`redis-server on ${host}:${port} not ready within ${readyTimeoutMs} ms: ${out.slice(-500)}`)), readyTimeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        c.kill('SIGKILL');
        reject(err);
      };
      c.once('error', fail);
      c.once('exit', (code) => {
        alive.delete(c);
        if (child === c) child = undefined;
        fail(new Error(`redis-server exited (${code}) before it was ready: ${out.slice(-500)}`));
      });
      c.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      c.stdout?.on('data', (d: Buffer) => {
        if (ready) return;
        out += d.toString();
        if (!ready && out.includes('Ready to accept connections')) {
          ready = true;
          clearTimeout(timer);
          c.removeAllListeners('exit');
          c.once('exit', () => {
            alive.delete(c);
            if (child === c) child = undefined;
          });
          resolve();
        }
      });
    });

  const stop = (timeoutMs = 5000) =>
    new Promise<void>((resolve) => {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return resolve();
      const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
      c.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      c.kill('SIGTERM');
    });

  await start();
  return {
    url: `redis://${host}:${port}`,
    dir,
    get pid() {
      return child?.pid;
    },
    start,
    stop,
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
