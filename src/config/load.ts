// Loading: YAML text -> secret references resolved -> schema-validated Config.
// Every problem is reported as `path: message`, with the path written as the user wrote the YAML
// (`upstream.urls[1]`). Values are never echoed: a field may hold a secret.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type Path = ReadonlyArray<PropertyKey>;

export function formatPath(path: Path): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

const REF = /\$\{(env|file):([^}]*)\}/g;

/** Replace `${env:NAME}` and `${file:PATH}` in every string value; a missing one is a problem, never ''. */
function resolveRefs(value: unknown, path: PropertyKey[], baseDir: string, env: NodeJS.ProcessEnv, problems: Map<string, string>): unknown {
  if (typeof value === 'string') {
    return value.replace(REF, (_m, kind: string, ref: string) => {
      const where = formatPath(path);
      if (kind === 'env') {
        const v = env[ref];
        if (v === undefined) problems.set(where, `${where}: environment variable ${ref} is not set`);
        return v ?? '';
      }
      const file = isAbsolute(ref) ? ref : resolve(baseDir, ref);
      try {
        return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        problems.set(where, `${where}: cannot read secret file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
        return '';
      }
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => resolveRefs(v, [...path, i], baseDir, env, problems));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = resolveRefs(v, [...path, k], baseDir, env, problems);
    return out;
  }
  return value;
}

function describeIssue(issue: z.core.$ZodIssue): string[] {
  if (issue.code === 'unrecognized_keys') {
    const where = formatPath(issue.path);
    return issue.keys.map((k) => (where ? `${where}: unknown key '${k}'` : `unknown key '${k}'`));
  }
  const where = formatPath(issue.path);
  let msg = issue.message;
  if (issue.code === 'invalid_type' && /received undefined/.test(msg)) msg = 'is required';
  return [where ? `${where}: ${msg}` : msg];
}

/** Parse and validate config text; file references resolve against baseDir. */
export function parseConfig(text: string, baseDir: string, env: NodeJS.ProcessEnv = process.env): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`));
  }
  const raw: unknown = doc.toJS() ?? {};
  const refProblems = new Map<string, string>();
  const resolved = resolveRefs(raw, [], baseDir, env, refProblems);
  const problems = [...refProblems.values()];
  const parsed = configSchema.safeParse(resolved);
  // a field whose reference did not resolve has been reported once already
  if (!parsed.success) problems.push(...parsed.error.issues.filter((i) => !refProblems.has(formatPath(i.path))).flatMap(describeIssue));
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  const cfg = resolvePaths(parsed.data, baseDir);
  const files: Array<[string, string | undefined]> = [
    ['listen.tls.cert', cfg.listen.tls?.cert],
    ['listen.tls.key', cfg.listen.tls?.key],
    ['upstream.tls.ca', cfg.upstream?.tls.ca],
    ['state.redis.tls.ca', cfg.state.redis?.tls?.ca],
  ];
  for (const [where, file] of files) {
    if (file && !existsSync(file)) problems.push(`${where}: file ${file} does not exist`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return cfg;
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  return parseConfig(text, dirname(resolve(file)), env);
}

/** File paths in the config are relative to the config file, like the secrets. */
function resolvePaths(cfg: Config, baseDir: string): Config {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  if (cfg.listen.tls) cfg.listen.tls = { cert: abs(cfg.listen.tls.cert), key: abs(cfg.listen.tls.key) };
  if (cfg.upstream?.tls.ca) cfg.upstream.tls.ca = abs(cfg.upstream.tls.ca);
  if (cfg.state.redis?.tls?.ca) cfg.state.redis.tls.ca = abs(cfg.state.redis.tls.ca);
  cfg.provisioning.outbox = abs(cfg.provisioning.outbox);
  return cfg;
}
