// pino, JSON by default. Redaction is a named feature: any field that can carry a secret is removed by
// name, at any depth, whatever the caller logs. The code also never passes passwords to the logger at all.
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
  if (!isPlain(v)) return v; // Buffers, Dates, Maps: JSON.stringify decides
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

/** Lines held back at most before a write (with log.flushMs > 0). */
const BATCH_BYTES = 4096;

export function createLogger(opts: { level: string; pretty: boolean; flushMs?: number }, destination?: pino.DestinationStream): Logger {
  const base: pino.LoggerOptions = {
    level: opts.level,
    base: { service: 'ldap-gateway' },
    formatters: { log: (o) => scrub(o) as Record<string, unknown> },
    // only the per-bind audit lines wait to be written together (log.flushMs); any other line goes out at
    // once, with whatever waits before it, so the order of lines is kept and nothing rare is held back
    hooks: {
      logMethod(args, method, level) {
        method.apply(this, args);
        if (level >= 40 || (args[0] as { event?: unknown } | null)?.event !== 'bind') this.flush();
      },
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (opts.pretty && !destination) return scrubbingChildren(pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true } } }));
  if (destination) return scrubbingChildren(pino(base, destination));
  // One write per line cost a thread-pool hand-off per bind (a write, an eventfd and futex wake-ups: 10-20 %
  // of a login's CPU here); bind lines are written together instead, 4 KiB or every flushMs at most, and
  // whatever is held is written synchronously when the process exits.
  const flushMs = opts.flushMs ?? 0;
  return scrubbingChildren(pino(base, pino.destination({ dest: 1, ...(flushMs > 0 ? { minLength: BATCH_BYTES, periodicFlush: flushMs } : {}) })));
}

/** A child logger's bindings are scrubbed too (pino's formatters do not see them), and so are its children's. */
function scrubbingChildren(l: Logger): Logger {
  const child = l.child.bind(l);
  l.child = ((bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => scrubbingChildren(child(scrub(bindings) as pino.Bindings, options) as Logger)) as unknown as Logger['child'];
  return l;
}
