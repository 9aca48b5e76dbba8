// The durable outbox: provisioning events on local disk (SQLite, WAL, synchronous=FULL), written with
// group commit. append() resolves only once the event is on disk, so a bind acknowledged after it
// survives kill -9 of the gateway. Events that arrive while one commit runs share the next one.
// better-sqlite3 is synchronous: a commit (one WAL append + fsync, ~0.3 ms here) blocks the event loop,
// which group commit amortizes over every event waiting at that moment.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export type EventKind = 'bind.success' | 'bind.failure';

export interface OutboxEvent {
  kind: EventKind;
  /** the Defguard username (or, for failures, the bind name as typed) */
  subject: string;
  payload: unknown;
}

export interface StoredEvent {
  id: number;
  createdAt: number;
  kind: EventKind;
  subject: string;
  payload: unknown;
  attempts: number;
  nextAt: number;
  lastError: string | null;
  state: 'pending' | 'dead';
  deadReason: string | null;
}

interface Row {
  id: number;
  created_at: number;
  kind: EventKind;
  subject: string;
  payload: string;
  attempts: number;
  next_at: number;
  last_error: string | null;
  state: 'pending' | 'dead';
  dead_reason: string | null;
}

const toEvent = (r: Row): StoredEvent => ({
  id: r.id,
  createdAt: r.created_at,
  kind: r.kind,
  subject: r.subject,
  payload: JSON.parse(r.payload) as unknown,
  attempts: r.attempts,
  nextAt: r.next_at,
  lastError: r.last_error,
  state: r.state,
  deadReason: r.dead_reason,
});

export class Outbox {
  private readonly db: Database.Database;
  private batch: Array<{ e: OutboxEvent; resolve: () => void; reject: (err: unknown) => void }> = [];
  private flushing = false;
  private readonly insertMany: (rows: OutboxEvent[]) => void;
  private readonly listeners = new Set<() => void>();

  /** supersede: a new bind.success for a user replaces that user's pending ones (the newest state wins) */
  constructor(dir: string, supersede = false) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.db = new Database(join(dir, 'outbox.sqlite'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      create table if not exists events (
        id integer primary key autoincrement,
        created_at integer not null,
        kind text not null,
        subject text not null,
        payload text not null,
        attempts integer not null default 0,
        next_at integer not null,
        last_error text,
        state text not null default 'pending' check (state in ('pending', 'dead')),
        dead_reason text
      );
      create index if not exists events_due on events (state, next_at, id);
    `);
    const insert = this.db.prepare('insert into events (created_at, kind, subject, payload, next_at) values (?, ?, ?, ?, ?)');
    const superseded = this.db.prepare("delete from events where subject = ? and kind = 'bind.success' and state = 'pending'");
    this.insertMany = this.db.transaction((rows: OutboxEvent[]) => {
      const now = Date.now();
      for (const r of rows) {
        if (supersede && r.kind === 'bind.success') superseded.run(r.subject);
        insert.run(now, r.kind, r.subject, JSON.stringify(r.payload), now);
      }
    });
  }

  /** Resolves once the event is durably on disk. */
  append(e: OutboxEvent): Promise<void> {
    return new Promise((resolve, reject) => {
      this.batch.push({ e, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const batch = this.batch;
    this.batch = [];
    try {
      this.insertMany(batch.map((b) => b.e));
      for (const b of batch) b.resolve();
      for (const l of this.listeners) l();
    } catch (err) {
      for (const b of batch) b.reject(err);
    }
    if (this.batch.length > 0) setImmediate(() => this.flush());
    else this.flushing = false;
  }

  /** Called after each commit that added events (the delivery worker wakes up). */
  onAppend(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Pending events due now, oldest first. */
  due(limit: number, now = Date.now()): StoredEvent[] {
    return (this.db.prepare("select * from events where state = 'pending' and next_at <= ? order by id limit ?").all(now, limit) as Row[]).map(toEvent);
  }

  /** When the next pending event is due (undefined when none is pending). */
  nextDue(): number | undefined {
    const r = this.db.prepare("select min(next_at) as t from events where state = 'pending'").get() as { t: number | null };
    return r.t ?? undefined;
  }

  delivered(id: number): void {
    this.db.prepare('delete from events where id = ?').run(id);
  }

  retryLater(id: number, nextAt: number, error: string): void {
    this.db.prepare('update events set attempts = attempts + 1, next_at = ?, last_error = ? where id = ?').run(nextAt, error, id);
  }

  dead(id: number, reason: string): void {
    this.db.prepare("update events set state = 'dead', attempts = attempts + 1, dead_reason = ? where id = ?").run(reason, id);
  }

  /** Whether a dead letter for this subject with this reason exists already. */
  isDead(subject: string, reason: string): boolean {
    return this.db.prepare("select 1 from events where state = 'dead' and subject = ? and dead_reason like ? limit 1").get(subject, `${reason}:%`) !== undefined;
  }

  list(state?: 'pending' | 'dead', limit = 1000): StoredEvent[] {
    const rows = state ? this.db.prepare('select * from events where state = ? order by id limit ?').all(state, limit) : this.db.prepare('select * from events order by id limit ?').all(limit);
    return (rows as Row[]).map(toEvent);
  }

  /** Dead events (or the given ones) back to pending, due now. Returns how many. */
  retry(ids?: number[]): number {
    const now = Date.now();
    if (!ids || ids.length === 0) return this.db.prepare("update events set state = 'pending', next_at = ?, dead_reason = null where state = 'dead'").run(now).changes;
    const stmt = this.db.prepare("update events set state = 'pending', next_at = ?, dead_reason = null where id = ?");
    return this.db.transaction(() => ids.reduce((n, id) => n + stmt.run(now, id).changes, 0))();
  }

  /** Delete dead events (or, with all, every event). Returns how many. */
  purge(all = false): number {
    return (all ? this.db.prepare('delete from events') : this.db.prepare("delete from events where state = 'dead'")).run().changes;
  }

  stats(now = Date.now()): { pending: number; dead: number; oldestPendingAgeSeconds: number } {
    const r = this.db.prepare("select sum(state = 'pending') as pending, sum(state = 'dead') as dead, min(case when state = 'pending' then created_at end) as oldest from events").get() as { pending: number | null; dead: number | null; oldest: number | null };
    return { pending: r.pending ?? 0, dead: r.dead ?? 0, oldestPendingAgeSeconds: r.oldest ? (now - r.oldest) / 1000 : 0 };
  }

  close(): void {
    if (this.batch.length > 0) this.flush();
    this.db.close();
  }
}
