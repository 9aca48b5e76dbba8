// Opens N idle client connections to a port and holds them, so the server's RSS can be read.
// usage: node bench-dist/bench/idle.js PORT N HOLD_SECONDS   (prints "open=N" once all are connected)
import { connect, type Socket } from 'node:net';

async function main(): Promise<void> {
  const [port, n, hold] = process.argv.slice(2).map(Number) as [number, number, number];
  const sockets: Socket[] = [];
  let failed = 0;
  for (let i = 0; i < n; i += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, n - i) }, () =>
        new Promise<void>((resolve) => {
          const s = connect(port, '127.0.0.1', () => resolve());
          s.on('error', () => {
            failed++;
            resolve();
          });
          sockets.push(s);
        }),
      ),
    );
  }
  process.stdout.write(`open=${sockets.length - failed} failed=${failed}\n`);
  await new Promise((r) => setTimeout(r, hold * 1000));
  for (const s of sockets) s.destroy();
}

void main();
