// The command line: ldap-gateway --config FILE | --check-config FILE | --version | --help
import { parseArgs } from 'node:util';
import { startGateway } from './app';
import { ConfigError, loadConfigFile } from './config/load';
import { createLogger } from './observability/logger';
import { VERSION } from './version';

const USAGE = `usage: ldap-gateway --config FILE        start the gateway
       ldap-gateway --check-config FILE  validate FILE and exit (0 valid, 1 invalid)
       ldap-gateway --version | --help

Secrets in FILE may be written as \${env:NAME} or \${file:PATH}. See config/README.md.`;

const SHUTDOWN_DEADLINE_MS = 10_000;

export async function main(argv = process.argv.slice(2)): Promise<number> {
  let values: { config?: string; 'check-config'?: string; version?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: { config: { type: 'string', short: 'c' }, 'check-config': { type: 'string' }, version: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    process.stderr.write(`ldap-gateway: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`ldap-gateway ${VERSION}\n`);
    return 0;
  }
  if (values['check-config']) {
    try {
      loadConfigFile(values['check-config']);
      process.stdout.write(`${values['check-config']}: configuration is valid\n`);
      return 0;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const p of err.problems) process.stderr.write(`${p}\n`);
      return 1;
    }
  }
  if (!values.config) {
    process.stderr.write(`ldap-gateway: --config FILE is required\n${USAGE}\n`);
    return 2;
  }

  let cfg;
  try {
    cfg = loadConfigFile(values.config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) process.stderr.write(`${p}\n`);
    return 1;
  }
  const log = createLogger(cfg.log);
  const gateway = await startGateway(cfg, log);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down: no new connections, draining in-flight operations');
      gateway.stop(SHUTDOWN_DEADLINE_MS).then(
        () => {
          log.info('stopped');
          resolve(0);
        },
        (err) => {
          log.error({ err: (err as Error).message }, 'error during shutdown');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`ldap-gateway: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
