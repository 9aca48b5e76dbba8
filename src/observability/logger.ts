// pino, JSON by default. Redaction is a named feature: any field that can carry a secret is removed
// by path, whatever the caller logs. The code also never passes passwords to the logger at all.
import pino, { type Logger } from 'pino';

export const REDACT_PATHS = [
  'password',
  'credentials',
  'token',
  'secret',
  '*.password',
  '*.credentials',
  '*.token',
  '*.secret',
  'config.upstream.bind.password',
  'config.consumers[*].password',
  'headers.authorization',
];

/** Lines held back at most before a write (with log.flushMs > 0). */
const BATCH_BYTES = 4096;

export function createLogger(opts: { level: string; pretty: boolean; flushMs?: number }, destination?: pino.DestinationStream): Logger {
  const base: pino.LoggerOptions = {
    level: opts.level,
    base: { service: 'ldap-gateway' },
    redact: { paths: REDACT_PATHS, remove: true },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (opts.pretty && !destination) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  if (destination) return pino(base, destination);
  // One write per line cost a thread-pool hand-off per bind (a write, an eventfd and futex wake-ups: 10-20 %
  // of a login's CPU here); lines are written together instead, 4 KiB or every flushMs at most, and
  // whatever is held is written synchronously when the process exits.
  const flushMs = opts.flushMs ?? 0;
  return pino(base, pino.destination({ dest: 1, ...(flushMs > 0 ? { minLength: BATCH_BYTES, periodicFlush: flushMs } : {}) }));
}
