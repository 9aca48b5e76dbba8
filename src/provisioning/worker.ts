// Delivers outbox events one at a time, oldest first: exponential back-off with jitter, Retry-After
// honoured (429/503), permanent failures parked as dead letters with their reason. Nothing is lost: an
// event leaves the outbox only once delivered, or is kept as a dead letter for `outbox retry`.
import type { Logger } from 'pino';
import type { StoredEvent } from './outbox';
import { DeliveryError } from './http';

/** Where events wait: the SQLite outbox (synchronous) or the Redis one (asynchronous). */
export interface DeliveryQueue {
  due(limit: number): StoredEvent[] | Promise<StoredEvent[]>;
  /** when to look again (undefined: when something is appended) */
  nextDue(): number | undefined | Promise<number | undefined>;
  delivered(id: number): void | Promise<void>;
  retryLater(id: number, nextAt: number, error: string): void | Promise<void>;
  dead(id: number, reason: string, subject?: string): void | Promise<void>;
  isDead(subject: string, reason: string): boolean | Promise<boolean>;
  onAppend(fn: () => void): () => void;
}

export interface DeliveryTarget {
  deliver(e: StoredEvent): Promise<string>; // resolves with what happened (created, updated, sent…)
}

/** A failure that retrying cannot fix (an invalid username): straight to the dead letters. */
export class PermanentError extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export interface WorkerOptions {
  initialBackoffMs: number;
  maxBackoffMs: number;
  log: Logger;
  observe: (outcome: 'delivered' | 'retried' | 'failed', reason?: string) => void;
}

export class DeliveryWorker {
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: () => void = () => undefined;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly outbox: DeliveryQueue,
    private readonly target: DeliveryTarget,
    private readonly o: WorkerOptions,
  ) {
    this.unsubscribe = outbox.onAppend(() => this.wake());
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stop taking new events; deliver what is due until the deadline (shutdown: flush the outbox). */
  async stop(deadlineMs: number): Promise<void> {
    this.running = false;
    this.wake();
    await this.loop;
    const until = Date.now() + deadlineMs;
    while (Date.now() < until) {
      let e: StoredEvent | undefined;
      try {
        [e] = await this.outbox.due(1);
      } catch {
        break; // the queue is unreachable (Redis): what is left stays there
      }
      if (!e) break;
      await this.deliverOne(e);
    }
    this.unsubscribe();
  }

  private async run(): Promise<void> {
    let failing = false;
    while (this.running) {
      let batch: StoredEvent[];
      let next: number | undefined;
      try {
        batch = await this.outbox.due(20);
        for (const e of batch) {
          if (!this.running) return;
          await this.deliverOne(e);
        }
        if (batch.length > 0) continue;
        next = await this.outbox.nextDue();
        failing = false;
      } catch (err) {
        // the queue is unreachable (Redis): look again in a second
        if (!failing) this.o.log.warn({ event: 'delivery', err: (err as Error).message }, 'cannot take events for delivery: trying again');
        failing = true;
        next = Date.now() + 1000;
      }
      const waitMs = Math.min(30_000, next === undefined ? 30_000 : Math.max(0, next - Date.now()));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  private backoff(attempts: number): number {
    const exp = Math.min(this.o.maxBackoffMs, this.o.initialBackoffMs * 2 ** Math.min(attempts, 30));
    return Math.round(exp / 2 + (Math.random() * exp) / 2); // "equal jitter"
  }

  private async deliverOne(e: StoredEvent): Promise<void> {
    try {
      const what = await this.target.deliver(e);
      await this.outbox.delivered(e.id);
      this.o.observe('delivered');
      this.o.log.info({ event: 'delivery', id: e.id, kind: e.kind, subject: e.subject, result: what, attempts: e.attempts + 1 }, 'event delivered');
    } catch (err) {
      if (err instanceof PermanentError && (await this.outbox.isDead(e.subject, err.reason))) {
        // reported once already (see `outbox list`): not again for every later bind
        await this.outbox.delivered(e.id);
        this.o.observe('failed', err.reason);
      } else if (err instanceof PermanentError) {
        await this.outbox.dead(e.id, `${err.reason}: ${err.message}`, e.subject);
        this.o.observe('failed', err.reason);
        this.o.log.warn({ event: 'delivery', id: e.id, subject: e.subject, reason: err.reason, detail: err.message }, 'event rejected for good (dead letter)');
      } else if (err instanceof DeliveryError && !err.retryable) {
        await this.outbox.dead(e.id, err.message);
        this.o.observe('failed', 'rejected');
        this.o.log.warn({ event: 'delivery', id: e.id, subject: e.subject, reason: 'rejected', detail: err.message }, 'event rejected for good (dead letter)');
      } else {
        const delay = err instanceof DeliveryError && err.retryAfterMs !== undefined ? Math.max(err.retryAfterMs, this.o.initialBackoffMs / 10) : this.backoff(e.attempts);
        const msg = err instanceof Error ? err.message : String(err);
        await this.outbox.retryLater(e.id, Date.now() + delay, msg);
        this.o.observe('retried');
        this.o.log.info({ event: 'delivery', id: e.id, subject: e.subject, attempts: e.attempts + 1, retryInMs: delay, detail: msg }, 'delivery failed: will retry');
      }
    }
  }
}
