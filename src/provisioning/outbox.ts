// The durable outbox: provisioning events on local disk (SQLite, WAL, synchronous=FULL), written with
// group commit. append() resolves only once the event is on disk (fsync'd), so a bind acknowledged after
// it survives kill -9 of the gateway, and a machine crash too. better-sqlite3 is synchronous, so commits
// run on a worker thread with its own connection: while one commit (WAL append + fsync) is in flight,
// the event loop keeps serving, and every event that arrives meanwhile joins the next commit.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { BookOp, WriterData, WriterReply, WriterRequest } from './outbox-writer';

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

/**
 * The writer thread's module, compiled (worker threads load JavaScript): beside this file in dist/, and
 * the built copy when this file runs from its TypeScript source (tests; `npm test` builds first).
 */
const WRITER_FILE = __filename.endsWith('.ts') ? join(__dirname, '..', '..', 'dist', 'provisioning', 'outbox-writer.js') : join(__dirname, 'outbox-writer.js');

interface Pending {
  e: OutboxEvent;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class Outbox {
  private readonly file: string;
  /** reads only (due events, listings, stats); in the gateway every write goes through the writer */
  private readonly db: Database.Database;
  private writer: Worker | undefined; // started on first use (the outbox CLI never needs it)
  private batch: Pending[] = [];
  private inFlight: Pending[] | undefined;
  private inFlightId = 0;
  private nextId = 1;
  private book: BookOp[] = [];
  private bookScheduled = false;
  /** event id -> the time it may be due again, while its bookkeeping is queued but not yet committed */
  private readonly masked = new Map<number, { until: number; version: number }>();
  private readonly bookAcks = new Map<number, Array<{ id: number; version: number }>>();
  private readonly deadMarks = new Set<string>();
  private version = 0;
  private readonly listeners = new Set<() => void>();

  /**
   * supersede: a new bind.success for a user replaces that user's pending ones (the newest state wins).
   * fsync: an acknowledged event survives a machine crash; without it, a crash of the gateway process
   * (kill -9) only, since WAL writes reach the OS before the commit returns.
   */
  constructor(
    dir: string,
    private readonly supersede = false,
    private readonly fsync = true,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = join(dir, 'outbox.sqlite');
    this.db = new Database(this.file);
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
      create index if not exists events_subject on events (subject, kind, state);
    `);
  }

  /** Resolves once the event is durably on disk. */
  append(e: OutboxEvent): Promise<void> {
    return new Promise((resolve, reject) => {
      this.batch.push({ e, resolve, reject });
      if (!this.inFlight) this.send();
    });
  }

  private startWriter(): Worker {
    const w = new Worker(WRITER_FILE, { workerData: { file: this.file, fsync: this.fsync } satisfies WriterData });
    w.on('message', (m: WriterReply) => this.acked(m.id, m.error));
    w.on('error', (err) => this.acked(this.inFlightId, err.message));
    w.unref();
    return w;
  }

  private send(): void {
    if (this.batch.length === 0) return;
    this.writer ??= this.startWriter();
    this.inFlight = this.batch;
    this.batch = [];
    this.inFlightId = this.nextId++;
    const rows = this.inFlight.map((p) => ({ kind: p.e.kind, subject: p.e.subject, payload: JSON.stringify(p.e.payload) }));
    this.writer.postMessage({ id: this.inFlightId, rows, supersede: this.supersede } satisfies WriterRequest);
  }

  private acked(id: number, error?: string): void {
    const marks = this.bookAcks.get(id);
    if (marks) {
      this.bookAcks.delete(id);
      // the database now says what the mask said (unless a newer mark for the same event is queued)
      for (const m of marks) if (this.masked.get(m.id)?.version === m.version) this.masked.delete(m.id);
      return;
    }
    if (id !== this.inFlightId) return;
    const done = this.inFlight ?? [];
    this.inFlight = undefined;
    for (const p of done) {
      if (error) p.reject(new Error(`outbox write failed: ${error}`));
      else p.resolve();
    }
    if (!error && done.length > 0) for (const l of this.listeners) l();
    this.send();
  }

  /** Queue delivery bookkeeping for the writer; mask the event from due() until it is committed. */
  private mark(op: BookOp, until: number): void {
    const version = ++this.version;
    this.masked.set(op.id, { until, version });
    this.book.push(op);
    if (this.bookScheduled) return;
    this.bookScheduled = true;
    setImmediate(() => {
      this.bookScheduled = false;
      const ops = this.book;
      this.book = [];
      const id = this.nextId++;
      this.bookAcks.set(id, ops.map((o) => ({ id: o.id, version: this.masked.get(o.id)?.version ?? -1 })));
      this.writer ??= this.startWriter();
      this.writer.postMessage({ id, ops } satisfies WriterRequest);
    });
  }

  /** Called after each commit that added events (the delivery worker wakes up). */
  onAppend(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Pending events due now, oldest first (events whose bookkeeping is still queued are left out). */
  due(limit: number, now = Date.now()): StoredEvent[] {
    const rows = this.db.prepare("select * from events where state = 'pending' and next_at <= ? order by id limit ?").all(now, limit + this.masked.size) as Row[];
    return rows.filter((r) => (this.masked.get(r.id)?.until ?? 0) <= now).slice(0, limit).map(toEvent);
  }

  /** When the next pending event is due (undefined when none is pending). */
  nextDue(): number | undefined {
    // enough rows to get past every masked one: the first unmasked row bounds all the rest
    const rows = this.db.prepare("select id, next_at from events where state = 'pending' order by next_at limit ?").all(this.masked.size + 1) as Array<{ id: number; next_at: number }>;
    let t: number | undefined;
    for (const r of rows) {
      const at = this.masked.get(r.id)?.until ?? r.next_at;
      if (at !== Infinity && (t === undefined || at < t)) t = at;
    }
    return t;
  }

  delivered(id: number): void {
    this.mark({ op: 'delivered', id }, Infinity);
  }

  retryLater(id: number, nextAt: number, error: string): void {
    this.mark({ op: 'retry', id, nextAt, error }, nextAt);
  }

  dead(id: number, reason: string, subject?: string): void {
    if (subject) this.deadMarks.add(`${subject}\0${reason.split(':')[0]}`);
    this.mark({ op: 'dead', id, reason }, Infinity);
  }

  /** Whether a dead letter for this subject with this reason exists already. */
  isDead(subject: string, reason: string): boolean {
    if (this.deadMarks.has(`${subject}\0${reason}`)) return true;
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

  /** Finish the commits and bookkeeping under way, then close. */
  async close(): Promise<void> {
    while (this.inFlight || this.batch.length > 0 || this.bookScheduled || this.bookAcks.size > 0) await new Promise((r) => setTimeout(r, 5));
    if (this.writer) {
      const w = this.writer;
      await new Promise<void>((resolve) => {
        w.once('exit', () => resolve());
        w.postMessage('close' satisfies WriterRequest);
      });
    }
    this.db.close();
  }
}
