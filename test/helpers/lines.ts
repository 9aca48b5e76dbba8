// Log lines as they arrive (a gateway's pino JSON lines, in-process or from a child process), and
// waits on them that are driven by the arrival of a line, never by polling, and bounded in time.
import { EventEmitter } from 'node:events';

export type LogRecord = Record<string, unknown>;
/** a regular expression over the raw line, or a predicate over the raw line and its JSON (if it is JSON) */
export type LineMatch = RegExp | ((line: string, json: LogRecord | undefined) => boolean);

export interface WaitOptions {
  /** only lines from this index on (e.g. `lines.all.length` taken before an action) */
  from?: number;
  /** how many matching lines to wait for (default 1); resolves with the last of them */
  count?: number;
  timeoutMs?: number;
}

export function parseLine(line: string): LogRecord | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(line);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as LogRecord) : undefined;
  } catch {
    return undefined;
  }
}

export function matches(m: LineMatch, line: string): boolean {
  return typeof m === 'function' ? m(line, parseLine(line)) : m.test(line);
}

export class Lines {
  readonly all: string[] = [];
  private readonly events = new EventEmitter();
  private endReason: string | undefined;

  constructor() {
    this.events.setMaxListeners(0);
  }

  push(line: string): void {
    this.all.push(line);
    this.events.emit('line', line);
  }

  /** No more lines will come (the process exited): waits still pending reject at once. */
  end(reason: string): void {
    this.endReason = reason;
    this.events.emit('end', reason);
  }

  /** the last lines, for error messages */
  tail(n = 60): string {
    return this.all.slice(-n).join('\n');
  }

  /** Resolves with the count-th line (from `from` on) that matches; rejects on timeout or end. */
  waitFor(match: LineMatch, o: WaitOptions = {}): Promise<string> {
    const count = o.count ?? 1;
    const timeoutMs = o.timeoutMs ?? 10_000;
    let seen = 0;
    for (const line of this.all.slice(o.from ?? 0)) {
      if (matches(match, line) && ++seen >= count) return Promise.resolve(line);
    }
    if (this.endReason !== undefined) return Promise.reject(new Error(`no line matching ${String(match)} (${seen}/${count}) before ${this.endReason}:\n${this.tail()}`));
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.events.off('line', onLine);
        this.events.off('end', onEnd);
      };
      const onLine = (line: string) => {
        if (matches(match, line) && ++seen >= count) {
          done();
          resolve(line);
        }
      };
      const onEnd = (reason: string) => {
        done();
        reject(new Error(`no line matching ${String(match)} (${seen}/${count}) before ${reason}:\n${this.tail()}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no line matching ${String(match)} (${seen}/${count}) within ${timeoutMs} ms:\n${this.tail()}`));
      }, timeoutMs);
      this.events.on('line', onLine);
      this.events.on('end', onEnd);
    });
  }
}

/**
 * A bounded wait for a condition that announces itself by no event (a metric, a stand-in's state):
 * checked now, then every intervalMs, failing after timeoutMs. Prefer a wait on a log line or an event.
 */
export async function eventually(what: string, ok: () => boolean | Promise<boolean>, o: { timeoutMs?: number; intervalMs?: number } = {}): Promise<void> {
  const end = Date.now() + (o.timeoutMs ?? 10_000);
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 25));
  }
}
