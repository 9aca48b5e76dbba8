// From bind outcomes to provisioning events. A success is recorded durably *before* the bind is
// acknowledged (the caller awaits bindSucceeded), unless the same user with the same data was recorded
// within the dedupe window: a user who binds 1,000 times an hour causes one delivery, unless their data
// changed. Failures are audit events: logged always, and (webhook mode) delivered too.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { BindFailureEvent, BindSuccessEvent } from './events';
import type { Outbox } from './outbox';
import type { StateStores, TtlMap } from '../state/types';

export type ProvisioningMode = 'off' | 'log-only' | 'defguard' | 'webhook';

export interface ProvisionerOptions {
  mode: ProvisioningMode;
  /** where events are recorded: the outbox, or (a cluster worker) its supervisor's */
  outbox?: Pick<Outbox, 'append'>;
  dedupeWindowMs: number;
  log: Logger;
  observe: (kind: 'bind.success' | 'bind.failure', outcome: 'recorded' | 'deduplicated' | 'logged') => void;
}

const digest = (x: unknown) => createHash('sha256').update(JSON.stringify(x)).digest('base64');

export class Provisioner {
  /** the dedupe window: user -> digest of what was last recorded */
  private readonly recent: TtlMap<string>;

  constructor(
    private readonly o: ProvisionerOptions,
    state: StateStores,
  ) {
    this.recent = state.ttlMap<string>('provisioning-dedupe', { max: 100_000, ttlMs: Math.max(1, o.dedupeWindowMs) });
  }

  get mode(): ProvisioningMode {
    return this.o.mode;
  }

  /** Resolves when the event is durable (or needs no recording). */
  async bindSucceeded(ev: BindSuccessEvent): Promise<void> {
    if (this.o.mode === 'off') return;
    const key = `s:${ev.user.username.toLowerCase()}`;
    const hash = digest(ev.user);
    if ((await this.recent.get(key)) === hash) {
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
    await this.recent.set(key, hash);
  }

  /** Failed binds: an audit event. Only webhooks receive them (deduplicated per name, client and reason). */
  bindFailed(ev: BindFailureEvent): void {
    if (this.o.mode !== 'webhook') return;
    void this.recordFailure(ev).catch((err: unknown) => this.o.log.error({ err: (err as Error).message }, 'could not record a bind failure event'));
  }

  private async recordFailure(ev: BindFailureEvent): Promise<void> {
    const key = `f:${ev.name}|${ev.client}|${ev.reason}`;
    if ((await this.recent.get(key)) !== undefined) {
      this.o.observe(ev.kind, 'deduplicated');
      return;
    }
    await this.recent.set(key, '1', Math.min(60_000, Math.max(1, this.o.dedupeWindowMs)));
    await this.o.outbox?.append({ kind: ev.kind, subject: ev.name, payload: ev });
    this.o.observe(ev.kind, 'recorded');
  }
}
