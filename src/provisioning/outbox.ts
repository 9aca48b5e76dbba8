// The durable outbox: provisioning events on local disk (SQLite, WAL, synchronous=FULL), written with
// group commit. append() resolves only once the event is on disk (fsync'd), so a bind acknowledged after
// it survives kill -9 of the gateway, and a machine crash too. better-sqlite3 is synchronous, so commits
// run on a worker thread with its own connection: while one commit (WAL append + fsync) is in flight,
// the event loop keeps serving, and every event that arrives meanwhile joins the next commit.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
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

/**
 * The single writer, run in a worker thread: insert batches (fsync'd: a promise to clients) and the
 * delivery bookkeeping (delivered, retry later, dead). SQLite has one writer at a time; a second
 * connection on the main thread would wait, synchronously, for every commit here.
 */
const WRITER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.file);
db.pragma('journal_mode = WAL');
db.pragma('busy_timeout = 5000');
const durable = workerData.fsync ? 'synchronous = FULL' : 'synchronous = NORMAL';
db.pragma(durable);
const insert = db.prepare('insert into events (created_at, kind, subject, payload, next_at) values (?, ?, ?, ?, ?)');
const superseded = db.prepare("delete from events where subject = ? and kind = 'bind.success' and state = 'pending'");
const del = db.prepare('delete from events where id = ?');
const retry = db.prepare('update events set attempts = attempts + 1, next_at = ?, last_error = ? where id = ?');
const dead = db.prepare("update events set state = 'dead', attempts = attempts + 1, dead_reason = ? where id = ?");
const commit = db.transaction((rows, supersede) => {
  const now = Date.now();
  for (const r of rows) {
    if (supersede && r.kind === 'bind.success') superseded.run(r.subject);
    insert.run(now, r.kind, r.subject, r.payload, now);
  }
});
const book = db.transaction((ops) => {
  for (const o of ops) {
    if (o.op === 'delivered') del.run(o.id);
    else if (o.op === 'retry') retry.run(o.nextAt, o.error, o.id);
    else dead.run(o.reason, o.id);
  }
});
parentPort.on('message', (m) => {
  if (m === 'close') { db.close(); parentPort.close(); return; }
  try {
    if (m.ops) {
      // bookkeeping needs no fsync: a lost mark only re-delivers an event (idempotently)
      db.pragma('synchronous = NORMAL');
      try { book(m.ops); } finally { db.pragma(durable); }
    } else commit(m.rows, m.supersede);
    parentPort.postMessage({ id: m.id });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String((err && err.message) || err) });
  }
});
`;

type BookOp = { op: 'delivered'; id: number } | { op: 'retry'; id: number; nextAt: number; error: string } | { op: 'dead'; id: number; reason: string };

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
    const w = new Worker(WRITER, { eval: true, workerData: { file: this.file, fsync: this.fsync, sqlite: require.resolve('better-sqlite3') } });
    w.on('message', (m: { id: number; error?: string }) => this.acked(m.id, m.error));
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
    this.writer.postMessage({ id: this.inFlightId, rows, supersede: this.supersede });
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
      this.writer.postMessage({ id, ops });
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
        w.postMessage('close');
      });
    }
    this.db.close();
  }
}
