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

export function createLogger(opts: { level: string; pretty: boolean }, destination?: pino.DestinationStream): Logger {
  const base: pino.LoggerOptions = {
    level: opts.level,
    base: { service: 'ldap-gateway' },
    redact: { paths: REDACT_PATHS, remove: true },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (opts.pretty && !destination) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  return destination ? pino(base, destination) : pino(base);
}
