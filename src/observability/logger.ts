// pino, JSON by default. Redaction is a named feature: any field that can carry a secret is removed by
// name, at any depth, whatever the caller logs. The code also never passes passwords to the logger at all.
import cluster from 'node:cluster';
import pino, { type Logger } from 'pino';

/** Field names that can carry a secret (compared in lower case): removed wherever they appear. */
export const SECRET_FIELDS: ReadonlySet<string> = new Set(['password', 'credentials', 'token', 'secret', 'authorization']);

/** Deeper than this, a logged object is cut (nothing the gateway logs comes close). */
const MAX_DEPTH = 10;

const isPlain = (v: object): boolean => {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
};

/**
 * The value without any field named like a secret: the value itself when it has none (a bind's audit line
 * allocates nothing here), otherwise a copy of just the objects on the way to one. pino's path redaction
 * cloned and re-parsed its path list on every line: a third of everything a rebind allocated.
 */
export function scrub(v: unknown, depth = 0): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const s = scrub(v[i], depth + 1);
      if (s !== v[i]) (out ??= v.slice())[i] = s;
    }
    return out ?? v;
  }
  // an error carrying a secret-named field becomes a plain copy (pino's error serializer copies them too)
  if (v instanceof Error) {
    const own = { ...(v as unknown as Record<string, unknown>) };
    const s = scrub(own, depth);
    return s === own ? v : { type: v.name, message: v.message, stack: v.stack, ...(s as object) };
  }
  if (!isPlain(v)) {
    // values JSON writes without their fields (bytes, dates, collections) stay as they are; any other
    // object with a secret-named field of its own becomes a plain copy without it
    if (ArrayBuffer.isView(v) || v instanceof Date || v instanceof Map || v instanceof Set) return v;
    const own = { ...(v as Record<string, unknown>) };
    const s = scrub(own, depth);
    return s === own ? v : s;
  }
  let out: Record<string, unknown> | undefined;
  const src = v as Record<string, unknown>;
  for (const k in src) {
    if (!Object.prototype.hasOwnProperty.call(src, k)) continue;
    if (SECRET_FIELDS.has(k.toLowerCase())) {
      out ??= { ...src };
      delete out[k];
      continue;
    }
    const s = scrub(src[k], depth + 1);
    if (s !== src[k]) (out ??= { ...src })[k] = s;
  }
  return out ?? v;
}

/**
 * Bind lines wait until this many bytes are pending (log.flushMs > 0). A worker (`workers: N`) shares the
 * supervisor's stdout with the other workers: it writes at most PIPE_BUF (4096) bytes at a time, whole
 * lines each, which a pipe keeps apart from other processes' writes; one process alone writes 4 KiB+.
 */
const batching = (): { minLength: number; maxWrite?: number } => (cluster.isWorker ? { minLength: 2048, maxWrite: 4096 } : { minLength: 4096 });

export function createLogger(opts: { level: string; pretty: boolean; flushMs?: number }, destination?: pino.DestinationStream): Logger {
  const base: pino.LoggerOptions = {
    level: opts.level,
    base: { service: 'ldap-gateway' },
    formatters: { log: (o) => scrub(o) as Record<string, unknown> },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (opts.pretty && !destination) return scrubbingChildren(pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true } } }));
  if (destination) return scrubbingChildren(pino(base, destination));
  const flushMs = opts.flushMs ?? 0;
  if (flushMs <= 0) return scrubbingChildren(pino(base, pino.destination({ dest: 1 })));
  // One write per line cost a thread-pool hand-off per bind (a write, an eventfd and futex wake-ups: 10-20 %
  // of a login's CPU here). Bind lines are written together instead, when 4 KiB wait or every flushMs;
  // any other line is written at once with whatever waits before it (so the order is kept), or right after
  // a write under way; what is held is written synchronously when the process exits.
  const dest = pino.destination({ dest: 1, ...batching(), periodicFlush: flushMs });
  const pending = dest as unknown as { _len?: number; flush(): void };
  const hooks: pino.LoggerOptions['hooks'] = {
    logMethod(args, method, level) {
      method.apply(this, args);
      // no callback: a flush callback costs sonic-boom two listeners and an fsync per call
      if ((level >= 40 || (args[0] as { event?: unknown } | null)?.event !== 'bind') && pending._len !== 0) pending.flush();
    },
  };
  return scrubbingChildren(pino({ ...base, hooks }, dest));
}

/**
 * Child loggers' bindings are scrubbed too (pino's formatters do not see them). Children are made from
 * their parent with Object.create, so they inherit this wrapper, called with themselves as `this`.
 */
function scrubbingChildren(l: Logger): Logger {
  const original = l.child as unknown as (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => Logger;
  l.child = function (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) {
    return original.call(this, scrub(bindings) as pino.Bindings, options);
  } as unknown as Logger['child'];
  return l;
}
