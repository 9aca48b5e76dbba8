// The messages between the supervisor (cluster primary) and its workers, over Node's cluster IPC channel
// with `serialization: 'advanced'` (structured clone: Maps and Buffers survive). Requests carry an id and
// get exactly one reply; a request still open when the channel closes is rejected, never left hanging.
import type { Worker } from 'node:cluster';

export type ToPrimary =
  | { ldapgw: 'req'; id: number; method: string; args: unknown[] }
  | { ldapgw: 'res'; id: number; ok: boolean; value?: unknown; error?: string }
  | { ldapgw: 'publish'; topic: string; message: string }
  | { ldapgw: 'listening'; ldap?: { host: string; port: number }; ldaps?: { host: string; port: number } };

export type ToWorker =
  | { ldapgw: 'res'; id: number; ok: boolean; value?: unknown; error?: string }
  | { ldapgw: 'req'; id: number; method: string; args: unknown[] }
  | { ldapgw: 'bus'; topic: string; message: string }
  /** another worker's update of the replicated stores (cluster/state.ts) */
  | { ldapgw: 'apply'; u: unknown }
  /** another worker's connections from one address now (n), or (ip undefined) a worker gone */
  | { ldapgw: 'conns'; worker: number; ip?: string; n?: number }
  | { ldapgw: 'reload'; file: string }
  | { ldapgw: 'stop'; deadlineMs: number };

export const isOurs = (m: unknown): m is { ldapgw: string } => typeof m === 'object' && m !== null && typeof (m as { ldapgw?: unknown }).ldapgw === 'string';

/** One end of the channel: request/response with a bound on the wait, plus a handler for the other side's requests. */
export class Channel {
  private next = 1;
  private readonly open = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>();

  constructor(
    private readonly send: (m: ToPrimary | ToWorker) => boolean,
    private readonly timeoutMs = 5000,
  ) {}

  request<T>(method: string, args: unknown[]): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.open.delete(id);
        reject(new Error(`cluster: no answer to ${method} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref();
      this.open.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      let sent = false;
      try {
        sent = this.send({ ldapgw: 'req', id, method, args });
      } catch {
        sent = false;
      }
      if (!sent) this.settle({ ldapgw: 'res', id, ok: false, error: 'cluster: the channel is closed' });
    });
  }

  /**
   * A request whose answer nobody waits for (an update: a window's add or clear, a map's set). The
   * channel keeps order, so this worker's next request sees it; it saves a round trip per update.
   */
  post(method: string, args: unknown[]): void {
    try {
      this.send({ ldapgw: 'req', id: 0, method, args });
    } catch {
      // the other side is gone: the update is lost with it
    }
  }

  /** A reply to one of our requests. */
  settle(m: { ldapgw?: string; id: number; ok: boolean; value?: unknown; error?: string }): void {
    const p = this.open.get(m.id);
    if (!p) return;
    this.open.delete(m.id);
    clearTimeout(p.timer);
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(m.error ?? 'cluster: request failed'));
  }

  /** Answer the other side's request with whatever handle() resolves to. */
  serve(m: { id: number; method: string; args: unknown[] }, handle: (method: string, args: unknown[]) => Promise<unknown>): void {
    if (m.id === 0) {
      handle(m.method, m.args).catch(() => undefined); // posted: no answer
      return;
    }
    handle(m.method, m.args).then(
      (value) => this.reply({ ldapgw: 'res', id: m.id, ok: true, value }),
      (err: unknown) => this.reply({ ldapgw: 'res', id: m.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
    );
  }

  private reply(m: { ldapgw: 'res'; id: number; ok: boolean; value?: unknown; error?: string }): void {
    try {
      this.send(m);
    } catch {
      // the other side is gone
    }
  }

  /** The channel closed: every open request fails now. */
  close(): void {
    for (const [id] of this.open) this.settle({ id, ok: false, error: 'cluster: the channel closed' });
  }
}

export const sendTo = (w: Worker) => (m: ToPrimary | ToWorker) => (w.isConnected() ? w.send(m) : false);
