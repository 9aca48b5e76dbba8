// From bind outcomes to provisioning events. A success is recorded durably *before* the bind is
// acknowledged (the caller awaits bindSucceeded), unless the same user with the same data was recorded
// within the dedupe window: a user who binds 1,000 times an hour causes one delivery, unless their data
// changed. Failures are audit events: logged always, and (webhook mode) delivered too.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { BindFailureEvent, BindSuccessEvent } from './events';
import type { Outbox } from './outbox';

export type ProvisioningMode = 'off' | 'log-only' | 'defguard' | 'webhook';

export interface ProvisionerOptions {
  mode: ProvisioningMode;
  outbox?: Outbox;
  dedupeWindowMs: number;
  log: Logger;
  observe: (kind: 'bind.success' | 'bind.failure', outcome: 'recorded' | 'deduplicated' | 'logged') => void;
}

const digest = (x: unknown) => createHash('sha256').update(JSON.stringify(x)).digest('base64');

export class Provisioner {
  private readonly recent: LRUCache<string, string>;

  constructor(private readonly o: ProvisionerOptions) {
    this.recent = new LRUCache<string, string>({ max: 100_000, ttl: Math.max(1, o.dedupeWindowMs) });
  }

  get mode(): ProvisioningMode {
    return this.o.mode;
  }

  /** Resolves when the event is durable (or needs no recording). */
  async bindSucceeded(ev: BindSuccessEvent): Promise<void> {
    if (this.o.mode === 'off') return;
    const key = `s:${ev.user.username.toLowerCase()}`;
    const hash = digest(ev.user);
    if (this.recent.get(key) === hash) {
      this.o.observe(ev.kind, 'deduplicated');
      return;
    }
    if (this.o.mode === 'log-only') {
      this.o.log.info({ event: 'provision', mode: 'log-only', user: ev.user }, 'would provision');
      this.o.observe(ev.kind, 'logged');
    } else {
      await this.o.outbox?.append({ kind: ev.kind, subject: ev.user.username, payload: ev });
      this.o.observe(ev.kind, 'recorded');
    }
    this.recent.set(key, hash);
  }

  /** Failed binds: an audit event. Only webhooks receive them (deduplicated per name, client and reason). */
  bindFailed(ev: BindFailureEvent): void {
    if (this.o.mode !== 'webhook') return;
    const key = `f:${ev.name}|${ev.client}|${ev.reason}`;
    if (this.recent.has(key)) {
      this.o.observe(ev.kind, 'deduplicated');
      return;
    }
    this.recent.set(key, '1', { ttl: Math.min(60_000, Math.max(1, this.o.dedupeWindowMs)) });
    this.o.outbox?.append({ kind: ev.kind, subject: ev.name, payload: ev }).then(
      () => this.o.observe(ev.kind, 'recorded'),
      (err: unknown) => this.o.log.error({ err: (err as Error).message }, 'could not record a bind failure event'),
    );
  }
}
