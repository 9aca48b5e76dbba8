// The outbox's single writer, run in a worker thread (outbox.ts starts it): inserts batches of events
// (fsync'd: a promise to the clients whose binds wait for it) and the delivery bookkeeping (delivered,
// retry later, dead). SQLite has one writer at a time; a second connection on the main thread would
// wait, synchronously, for every commit here.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { EventKind } from './outbox';

export interface WriterData {
  file: string;
  fsync: boolean;
}

export type BookOp = { op: 'delivered'; id: number } | { op: 'retry'; id: number; nextAt: number; error: string } | { op: 'dead'; id: number; reason: string };

export type WriterRequest =
  | { id: number; rows: Array<{ kind: EventKind; subject: string; payload: string }>; supersede: boolean }
  | { id: number; ops: BookOp[] }
  | 'close';

export interface WriterReply {
  id: number;
  error?: string;
}

function serve(port: NonNullable<typeof parentPort>, data: WriterData): void {
  const db = new Database(data.file);
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 5000');
  const durable = data.fsync ? 'synchronous = FULL' : 'synchronous = NORMAL';
  db.pragma(durable);
  const insert = db.prepare('insert into events (created_at, kind, subject, payload, next_at) values (?, ?, ?, ?, ?)');
  const superseded = db.prepare("delete from events where subject = ? and kind = 'bind.success' and state = 'pending'");
  const del = db.prepare('delete from events where id = ?');
  const retry = db.prepare('update events set attempts = attempts + 1, next_at = ?, last_error = ? where id = ?');
  const dead = db.prepare("update events set state = 'dead', attempts = attempts + 1, dead_reason = ? where id = ?");
  const commit = db.transaction((rows: Array<{ kind: EventKind; subject: string; payload: string }>, supersede: boolean) => {
    const now = Date.now();
    for (const r of rows) {
      if (supersede && r.kind === 'bind.success') superseded.run(r.subject);
      insert.run(now, r.kind, r.subject, r.payload, now);
    }
  });
  const book = db.transaction((ops: BookOp[]) => {
    for (const o of ops) {
      if (o.op === 'delivered') del.run(o.id);
      else if (o.op === 'retry') retry.run(o.nextAt, o.error, o.id);
      else dead.run(o.reason, o.id);
    }
  });
  port.on('message', (m: WriterRequest) => {
    if (m === 'close') {
      db.close();
      port.close();
      return;
    }
    try {
      if ('ops' in m) {
        // bookkeeping needs no fsync: a lost mark only re-delivers an event (idempotently)
        db.pragma('synchronous = NORMAL');
        try {
          book(m.ops);
        } finally {
          db.pragma(durable);
        }
      } else commit(m.rows, m.supersede);
      port.postMessage({ id: m.id } satisfies WriterReply);
    } catch (err) {
      port.postMessage({ id: m.id, error: err instanceof Error ? err.message : String(err) } satisfies WriterReply);
    }
  });
}

if (parentPort) serve(parentPort, workerData as WriterData);
