// The command line: ldap-gateway --config FILE | --check-config FILE | --version | --help
import { parseArgs } from 'node:util';
import cluster from 'node:cluster';
import { startGateway } from './app';
import { runSupervisor, workerCount } from './cluster/supervisor';
import { runWorker } from './cluster/worker';
import { ConfigError, loadConfigFile } from './config/load';
import type { Config } from './config/schema';
import { createLogger } from './observability/logger';
import { openOutboxAdmin } from './provisioning/admin';
import { mapUser } from './tools/map';
import { readPassword, testBind } from './tools/test-bind';
import { VERSION } from './version';

const USAGE = `usage: ldap-gateway --config FILE        start the gateway
       ldap-gateway --check-config FILE  validate FILE and exit (0 valid, 1 invalid)
       ldap-gateway map --user NAME --config FILE [--json]
                                         print the entry the gateway returns for a user, with the
                                         rule behind each attribute (the live AD entry, read now)
       ldap-gateway test-bind NAME --config FILE
                                         bind as NAME (password from a prompt or stdin, never argv)
                                         and print the decoded outcome: reason, DC, latency
       ldap-gateway outbox list|retry|purge --config FILE [--id N]... [--all]
                                         inspect the provisioning outbox, send dead letters
                                         again (retry), or delete them (purge; --all: everything)
       ldap-gateway --version | --help

Secrets in FILE may be written as \${env:NAME} or \${file:PATH}. See config/README.md.`;

const SHUTDOWN_DEADLINE_MS = 10_000;

/** The validated config, or undefined after printing one line per problem. */
function loadOrReport(file: string): Config | undefined {
  try {
    return loadConfigFile(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) process.stderr.write(`${p}\n`);
    return undefined;
  }
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  if (argv[0] === 'outbox') return outboxCommand(argv.slice(1));
  if (argv[0] === 'map' || argv[0] === 'test-bind') return toolCommand(argv[0], argv.slice(1));
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
    if (!loadOrReport(values['check-config'])) return 1;
    process.stdout.write(`${values['check-config']}: configuration is valid\n`);
    return 0;
  }
  if (!values.config) {
    process.stderr.write(`ldap-gateway: --config FILE is required\n${USAGE}\n`);
    return 2;
  }

  const configFile = values.config;
  const cfg = loadOrReport(configFile);
  if (!cfg) return 1;
  const log = createLogger(cfg.log);
  // workers: N: a supervisor and N workers (cluster/); the workers run this same command
  if (cluster.isWorker) return runWorker(cfg, log.child({ worker: Number(process.env.LDAP_GATEWAY_WORKER ?? 0) }));
  if (workerCount(cfg) > 1) return runSupervisor(configFile, cfg, log);
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
    // SIGHUP: validate the file again; only a valid one replaces the running configuration
    process.on('SIGHUP', () => {
      if (stopping) return;
      let next;
      try {
        next = loadConfigFile(configFile);
      } catch (err) {
        const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
        gateway.metrics.reloads.inc({ result: 'failure' });
        log.error({ event: 'reload', result: 'failure', problems }, 'configuration reload refused: the running configuration stays');
        return;
      }
      gateway.reload(next).then(
        ({ restartNeeded }) => {
          gateway.metrics.reloads.inc({ result: 'success' });
          if (restartNeeded.length) log.warn({ event: 'reload', result: 'success', restartNeeded }, 'configuration reloaded; changes to these settings take effect only after a restart');
          else log.info({ event: 'reload', result: 'success' }, 'configuration reloaded');
        },
        (err: unknown) => {
          gateway.metrics.reloads.inc({ result: 'failure' });
          log.error({ event: 'reload', result: 'failure', problems: [(err as Error).message] }, 'configuration reload failed: the running configuration stays');
        },
      );
    });
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

async function outboxCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, strict: true, allowPositionals: true, options: { config: { type: 'string', short: 'c' }, id: { type: 'string', multiple: true }, all: { type: 'boolean' }, json: { type: 'boolean' } } });
  } catch (err) {
    process.stderr.write(`ldap-gateway outbox: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const [verb, ...rest] = parsed.positionals;
  const { config, id, all, json } = parsed.values;
  if (!verb || !['list', 'retry', 'purge'].includes(verb) || rest.length > 0 || !config) {
    process.stderr.write(`ldap-gateway outbox: say list, retry or purge, with --config FILE\n${USAGE}\n`);
    return 2;
  }
  const cfg = loadOrReport(config);
  if (!cfg) return 1;
  const ids = (id ?? []).map(Number);
  if (ids.some((n) => !Number.isInteger(n) || n <= 0)) {
    process.stderr.write('ldap-gateway outbox: --id takes an event number\n');
    return 2;
  }
  let outbox;
  try {
    outbox = await openOutboxAdmin(cfg);
  } catch (err) {
    process.stderr.write(`ldap-gateway outbox: ${(err as Error).message}\n`);
    return 1;
  }
  try {
    if (verb === 'list') {
      const events = await outbox.list();
      if (json) {
        process.stdout.write(`${JSON.stringify(events.map(({ payload: _p, ...e }) => e))}\n`);
      } else {
        const s = await outbox.stats();
        process.stdout.write(`${s.pending} pending, ${s.dead} dead${s.pending ? `; oldest pending ${Math.round(s.oldestPendingAgeSeconds)} s old` : ''}${outbox.where === 'redis' ? ` (Redis; ${s.local ?? 0} kept locally, waiting for Redis)` : ''}\n`);
        for (const e of events) {
          const when = e.state === 'pending' ? `next attempt ${new Date(e.nextAt).toISOString()}` : `dead: ${e.deadReason ?? ''}`;
          process.stdout.write(`${e.id}\t${e.state}\t${e.kind}\t${e.subject}\tattempts=${e.attempts}\t${when}${e.lastError && e.state === 'pending' ? `\tlast error: ${e.lastError}` : ''}\n`);
        }
      }
    } else if (verb === 'retry') {
      process.stdout.write(`${await outbox.retry(ids)} event(s) queued for delivery again\n`);
    } else {
      process.stdout.write(`${await outbox.purge(all)} event(s) deleted\n`);
    }
  } finally {
    await outbox.close();
  }
  return 0;
}

async function toolCommand(tool: 'map' | 'test-bind', argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, strict: true, allowPositionals: true, options: { config: { type: 'string', short: 'c' }, user: { type: 'string', short: 'u' }, json: { type: 'boolean' } } });
  } catch (err) {
    process.stderr.write(`ldap-gateway ${tool}: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { config, user, json } = parsed.values;
  const name = tool === 'map' ? user : parsed.positionals[0];
  if (!config || !name || parsed.positionals.length > (tool === 'map' ? 0 : 1)) {
    process.stderr.write(`ldap-gateway ${tool}: ${tool === 'map' ? '--user NAME' : 'NAME'} and --config FILE are required (the password is never an argument)\n${USAGE}\n`);
    return 2;
  }
  const cfg = loadOrReport(config);
  if (!cfg) return 1;
  const out = (s: string) => process.stdout.write(s);
  try {
    if (tool === 'map') return await mapUser(cfg, name, json ?? false, out);
    return await testBind(cfg, name, await readPassword(`password for ${name}: `), out);
  } catch (err) {
    process.stderr.write(`ldap-gateway ${tool}: ${(err as Error).message}\n`);
    return 1;
  }
}
