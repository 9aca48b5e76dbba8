// What cannot run here (Docker, Kubernetes) is checked against the code: docker-compose.yml, the Dockerfile,
// deploy/kubernetes/*.yaml and config/examples/ha-replica.yaml must agree on ports, probe paths, the config's
// environment and Redis persistence, and every config they run must pass the gateway's own validation.
//
// `check()` returns the problems it finds; the shipped files must have none, and each mutation below (a
// wrong path, a wrong port, a missing variable, …) must produce the problem that names it, so that no check
// passes vacuously.
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { ConfigError, parseConfig } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { startHttp } from '../../src/observability/http';
import { Metrics } from '../../src/observability/metrics';

const root = resolve(__dirname, '..', '..');
const read = (p: string) => readFileSync(join(root, p), 'utf8');
const sandbox = mkdtempSync(join(tmpdir(), 'gw-deploy-'));
const K8S_DIR = 'deploy/kubernetes';
const HAPROXY_CFG = 'deploy/haproxy/haproxy.cfg';
const HA_REPLICA = 'config/examples/ha-replica.yaml';

interface Files {
  compose: string;
  dockerfile: string;
  k8s: Record<string, string>;
  haReplica: string;
  sambaAd: string;
  /** absent until someone writes deploy/haproxy/haproxy.cfg */
  haproxy?: string;
  packageJson: string;
  systemd: string;
}

function shippedFiles(): Files {
  const k8s: Record<string, string> = {};
  for (const f of readdirSync(join(root, K8S_DIR)).filter((f) => /\.ya?ml$/.test(f)).sort()) k8s[f] = read(`${K8S_DIR}/${f}`);
  return {
    compose: read('docker-compose.yml'),
    dockerfile: read('Dockerfile'),
    packageJson: read('package.json'),
    systemd: read('deploy/systemd/ldap-gateway.service'),
    k8s,
    haReplica: read(HA_REPLICA),
    sambaAd: read('config/examples/samba-ad.yaml'),
    ...(existsSync(join(root, HAPROXY_CFG)) ? { haproxy: read(HAPROXY_CFG) } : {}),
  };
}

// ---- the HTTP routes, from the code itself ------------------------------------------------------------

interface Routes {
  /** answer 200 when ready and 503 when not */
  readiness: Set<string>;
  /** answer 200 whether ready or not (and are not the metrics page) */
  liveness: Set<string>;
}

/** Every path literal http.ts compares the request path with, asked of the real server, ready and not. */
async function discoverRoutes(): Promise<Routes> {
  const source = readFileSync(join(root, 'src/observability/http.ts'), 'utf8');
  const paths = [...source.matchAll(/path === '(\/[^']*)'/g)].map((m) => m[1] as string);
  let ready = false;
  const { server, port } = await startHttp('127.0.0.1:0', new Metrics(), async () => ready);
  const ask = async (p: string) => {
    const r = await fetch(`http://127.0.0.1:${port}${p}`);
    return { status: r.status, body: await r.text() };
  };
  const routes: Routes = { readiness: new Set(), liveness: new Set() };
  try {
    for (const p of paths) {
      ready = false;
      const down = await ask(p);
      ready = true;
      const up = await ask(p);
      if (up.status === 200 && down.status === 503) routes.readiness.add(p);
      else if (up.status === 200 && down.status === 200 && !/^# HELP /m.test(up.body)) routes.liveness.add(p);
    }
  } finally {
    await new Promise((r) => server.close(r));
  }
  return routes;
}

// ---- small parsers ------------------------------------------------------------------------------------

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const envRefs = (text: string) => new Set([...text.matchAll(/\$\{env:([^}]*)\}/g)].map((m) => m[1] as string));
const portOf = (hostPort: string | undefined) => (hostPort ? Number(hostPort.slice(hostPort.lastIndexOf(':') + 1)) : undefined);
const hostOf = (hostPort: string) => hostPort.slice(0, hostPort.lastIndexOf(':')).replace(/^\[|\]$/g, '');
const under = (p: string, dir: string) => p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
const anyAddress = (h: string) => h === '0.0.0.0' || h === '::';

/** The ports a parsed config listens on, by role. */
function listened(cfg: Config) {
  return { ldap: portOf(cfg.listen.ldap), ldaps: portOf(cfg.listen.ldaps), http: portOf(cfg.http.listen) };
}

/** Values of the shell or .env file that docker compose would interpolate; the test's stand-ins. */
const SHELL: Record<string, string> = {
  REDIS_PASSWORD: 'redis-password-1',
  SAMBA_AD_LDAPS_URL: 'ldaps://dc1.corp.example.com:636',
  SAMBA_AD_SERVICE_DN: 'CN=svc-gateway,OU=Service,DC=corp,DC=example,DC=com',
  SAMBA_AD_USER_PASS: 'service-password',
  SAMBA_AD_BASE_DN: 'DC=corp,DC=example,DC=com',
  SAMBA_AD_DOMAIN: 'CORP',
  GATEWAY_DEFGUARD_PASSWORD: 'defguard-password',
  DEFGUARD_URL: 'https://defguard.example.com',
  DEFGUARD_API_TOKEN: 'dg-token',
  GATEWAY_TLS_CERT_FILE: './certs/server.crt',
  GATEWAY_TLS_KEY_FILE: './certs/server.key',
  AD_CA_FILE: './certs/ad-ca.pem',
};
/** docker compose's interpolation: ${NAME}, ${NAME:?err}, ${NAME:-default}, $$ */
function interpolate(v: unknown): string {
  return String(v)
    .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?+])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => SHELL[name] ?? (op === '-' ? (arg ?? '') : `placeholder-${name}`))
    .replace(/\$\$/g, '$');
}
/** a compose `environment` (map or list) as a plain map, interpolated */
function composeEnv(env: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(env)) {
    for (const e of env as string[]) {
      const i = e.indexOf('=');
      if (i > 0) out[e.slice(0, i)] = interpolate(e.slice(i + 1));
    }
  } else if (env && typeof env === 'object') {
    for (const [k, v] of Object.entries(env)) if (v !== null) out[k] = interpolate(v);
  }
  return out;
}

/** Absolute container paths become files inside the sandbox, so parseConfig finds the TLS files and the CA. */
function materialize(env: Record<string, string>, scope: string): Record<string, string> {
  const out: Record<string, string> = { ...env };
  for (const [k, v] of Object.entries(env)) {
    if (!v.startsWith('/')) continue;
    const local = join(sandbox, scope, v);
    mkdirSync(dirname(local), { recursive: true });
    if (!existsSync(local)) writeFileSync(local, '');
    out[k] = local;
  }
  return out;
}

function validate(what: string, text: string, env: Record<string, string>, problems: string[]): Config | undefined {
  try {
    return parseConfig(text, join(root, 'config/examples'), env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(`${what}: the config does not validate: ${err.problems.join('; ')}`);
    return undefined;
  }
}

/** Dockerfile instructions (continuation lines joined) */
function dockerfile(text: string) {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const last = (kw: string) => lines.filter((l) => l.toUpperCase().startsWith(`${kw} `)).map((l) => l.slice(kw.length).trim()).pop();
  const exec = (v: string | undefined): string[] => {
    if (!v) return [];
    try {
      return JSON.parse(v) as string[];
    } catch {
      return v.split(/\s+/);
    }
  };
  const runtime = lines.slice(lines.map((l) => /^FROM /i.test(l)).lastIndexOf(true)); // the last stage
  const expose = runtime.filter((l) => /^EXPOSE /i.test(l)).flatMap((l) => l.slice(7).trim().split(/\s+/)).map((p) => Number(p.split('/')[0]));
  const user = runtime.filter((l) => /^USER /i.test(l)).map((l) => l.slice(5).trim()).pop();
  return { entrypoint: exec(last('ENTRYPOINT')), cmd: exec(last('CMD')), expose, healthcheck: last('HEALTHCHECK') ?? '', user, from: runtime[0] ?? '' };
}

const configArg = (argv: string[]) => {
  const i = argv.indexOf('--config');
  return i >= 0 ? argv[i + 1] : undefined;
};
const httpUrl = (s: string) => {
  const m = /http:\/\/(127\.0\.0\.1|localhost|\[::1\]):(\d+)(\/[^'"\s)]*)/.exec(s);
  return m ? { port: Number(m[2]), path: m[3] as string } : undefined;
};

/** Redis command-line options: --name value */
function redisOptions(command: unknown): Map<string, string> {
  const words = (Array.isArray(command) ? command.map(interpolate) : [interpolate(command ?? '')]).flatMap((w) => w.split(/\s+/)).filter(Boolean);
  const opts = new Map<string, string>();
  words.forEach((w, i) => {
    if (w.startsWith('--') && i + 1 < words.length) opts.set(w.slice(2).toLowerCase(), (words[i + 1] as string).replace(/^["']|["']$/g, ''));
  });
  return opts;
}

function inSubnet(ip: string, cidr: string): boolean {
  const [net, bits] = cidr.split('/');
  const n = (a: string) => a.split('.').reduce((acc, o) => (acc << 8) + Number(o), 0) >>> 0;
  const mask = Number(bits) === 0 ? 0 : (~0 << (32 - Number(bits))) >>> 0;
  return (n(ip) & mask) === (n(net as string) & mask);
}

// ---- the checks ---------------------------------------------------------------------------------------

function check(files: Files, routes: Routes): string[] {
  const problems: string[] = [];
  const need = (ok: unknown, msg: string) => {
    if (!ok) problems.push(msg);
  };
  const replicaVars = envRefs(files.haReplica);
  need(replicaVars.size > 0, `${HA_REPLICA}: no \${env:…} reference`);
  for (const v of ['GATEWAY_LDAP_PORT', 'GATEWAY_LDAPS_PORT', 'GATEWAY_HTTP_PORT', 'GATEWAY_INSTANCE', 'REDIS_URL', 'GATEWAY_TRUSTED_PROXY'])
    need(replicaVars.has(v), `${HA_REPLICA}: does not read ${v}`);

  // -- the Dockerfile
  const df = dockerfile(files.dockerfile);
  const argv = [...df.entrypoint, ...df.cmd];
  const imageConfig = configArg(argv);
  // node's own flags (the young generation's size) are the same wherever the gateway is started
  const nodeFlags = (words: string[], script: RegExp) => {
    const at = words.findIndex((w) => script.test(w));
    return at > 0 && /(^|\/)node$/.test(words[0] as string) ? words.slice(1, at).join(' ') : undefined;
  };
  const startFlags = nodeFlags(String((JSON.parse(files.packageJson) as { scripts: Record<string, string> }).scripts.start).split(/\s+/), /^bin\/ldap-gateway\.js$/);
  need(startFlags !== undefined, 'package.json: npm start does not run node bin/ldap-gateway.js');
  const imageFlags = nodeFlags(argv, /^bin\/ldap-gateway\.js$/);
  need(imageFlags !== undefined, `Dockerfile: ENTRYPOINT/CMD does not run node bin/ldap-gateway.js (${argv.join(' ')})`);
  need(imageFlags === startFlags, `Dockerfile: node runs with '${imageFlags}', npm start with '${startFlags}'`);
  const execStart = /^ExecStart=(.*)$/m.exec(files.systemd)?.[1]?.split(/\s+/) ?? [];
  const unitFlags = nodeFlags(execStart, /\/bin\/ldap-gateway\.js$/);
  need(unitFlags === startFlags, `deploy/systemd: node runs with '${unitFlags}', npm start with '${startFlags}'`);
  need(imageConfig, 'Dockerfile: ENTRYPOINT/CMD has no --config FILE');
  need(/node:20/.test(df.from), `Dockerfile: the runtime stage is not Node 20 (${df.from})`);
  need(df.user && df.user !== 'root' && df.user !== '0', 'Dockerfile: the runtime stage does not switch to a non-root USER');
  const dfHealth = httpUrl(df.healthcheck);
  need(dfHealth, 'Dockerfile: HEALTHCHECK does not fetch a loopback http:// URL');
  if (dfHealth) need(routes.liveness.has(dfHealth.path) || routes.readiness.has(dfHealth.path), `Dockerfile: HEALTHCHECK path ${dfHealth.path} is not a health route of src/observability/http.ts`);

  // -- docker-compose.yml
  const compose = parse(files.compose, { merge: true }) as Obj;
  const services = (compose.services ?? {}) as Record<string, Obj>;
  const gateways = Object.entries(services).filter(([, s]) =>
    ((s.configs ?? []) as Obj[]).some((c) => c.target === imageConfig && /ha-replica\.yaml$/.test(compose.configs?.[c.source]?.file ?? '')) ||
    ((s.volumes ?? []) as unknown[]).some((v) => typeof v === 'string' && v.split(':')[0]?.endsWith('ha-replica.yaml') && v.split(':')[1] === imageConfig),
  );
  need(gateways.length >= 2, `docker-compose.yml: ${gateways.length} services run ${HA_REPLICA} at the image's config path ${imageConfig} (want 2 or more)`);
  const redisEntry = Object.entries(services).find(([, s]) => /^redis:7/.test(String(s.image ?? '')));
  need(redisEntry, 'docker-compose.yml: no redis:7 service');
  const haproxyEntry = Object.entries(services).find(([, s]) => /^haproxy:/.test(String(s.image ?? '')));
  need(haproxyEntry, 'docker-compose.yml: no haproxy service');
  const instances = new Set<string>();
  const outboxVolumes = new Map<string, string>();
  const gatewayPorts = new Map<string, number[]>(); // service or host name -> LDAP/LDAPS ports
  const trusted = new Set<string>();
  for (const [name, svc] of gateways) {
    const where = `docker-compose.yml: ${name}`;
    const env = composeEnv(svc.environment);
    for (const v of replicaVars) need(v in env, `${where}: does not set ${v} (${HA_REPLICA} reads it)`);
    const secrets = ((svc.secrets ?? []) as Array<string | Obj>).map((s) => (typeof s === 'string' ? { source: s, target: `/run/secrets/${s}` } : { source: s.source, target: s.target?.startsWith('/') ? s.target : `/run/secrets/${s.target ?? s.source}` }));
    const volumes = ((svc.volumes ?? []) as Array<string | Obj>).map((v) => {
      if (typeof v !== 'string') return { source: String(v.source), target: String(v.target), ro: Boolean(v.read_only) };
      const [source, target, mode] = v.split(':');
      return { source: source as string, target: target as string, ro: mode === 'ro' };
    });
    // every absolute path in the environment is a secret file or lies in a volume
    for (const [k, v] of Object.entries(env)) {
      if (!v.startsWith('/')) continue;
      const secret = secrets.find((s) => s.target === v);
      if (secret) need(compose.secrets?.[secret.source]?.file, `${where}: secret ${secret.source} is not defined with a file`);
      else need(volumes.some((m) => under(v, m.target)), `${where}: ${k}=${v} is neither a secret of the service nor in one of its volumes`);
    }
    const cfg = validate(where, files.haReplica, materialize(env, name), problems);
    if (!cfg) continue;
    const ports = listened(cfg);
    if (cfg.instance) {
      need(!instances.has(cfg.instance), `${where}: instance ${cfg.instance} is used by another replica`);
      instances.add(cfg.instance);
    }
    need(anyAddress(hostOf(cfg.listen.ldap ?? '')), `${where}: listens on ${cfg.listen.ldap}; inside a container HAProxy cannot reach that`);
    const exposed = new Set(((svc.expose ?? []) as unknown[]).map((p) => Number(String(p).split('/')[0])));
    for (const [role, p] of Object.entries(ports)) {
      if (p === undefined) continue;
      need(exposed.has(p), `${where}: the ${role} port ${p} the config listens on is not in expose`);
      need(df.expose.includes(p), `Dockerfile: EXPOSE lacks ${p}, the ${role} port of ${name}'s config`);
    }
    for (const p of (svc.ports ?? []) as unknown[]) {
      const container = Number(String(typeof p === 'object' ? (p as Obj).target : String(p).split(':').pop()).split('/')[0]);
      need(Object.values(ports).includes(container), `${where}: publishes container port ${container}, which the config does not listen on`);
    }
    const hc = httpUrl(((svc.healthcheck?.test ?? []) as string[]).join(' '));
    need(hc, `${where}: the healthcheck does not fetch a loopback http:// URL`);
    if (hc) {
      need(routes.readiness.has(hc.path), `${where}: the healthcheck path ${hc.path} is not the readiness route (${[...routes.readiness].join(', ')})`);
      need(hc.port === ports.http, `${where}: the healthcheck asks port ${hc.port}, the config's HTTP port is ${ports.http}`);
    }
    if (dfHealth) need(dfHealth.port === ports.http, `Dockerfile: HEALTHCHECK asks port ${dfHealth.port}, ${name}'s HTTP port is ${ports.http}`);
    const outbox = env.GATEWAY_OUTBOX_DIR ? volumes.find((m) => under(env.GATEWAY_OUTBOX_DIR as string, m.target)) : undefined;
    need(outbox && !outbox.ro, `${where}: the outbox ${env.GATEWAY_OUTBOX_DIR} is not in a writable volume`);
    if (outbox) {
      const other = outboxVolumes.get(outbox.source);
      need(!other, `${where}: shares its outbox volume ${outbox.source} with ${other}`);
      outboxVolumes.set(outbox.source, name);
    }
    const fixed = Object.values((Array.isArray(svc.networks) ? {} : svc.networks ?? {}) as Record<string, Obj | null>).map((n) => n?.ipv4_address);
    for (const n of [name, svc.hostname, ...fixed].filter(Boolean)) gatewayPorts.set(String(n), [ports.ldap, ports.ldaps].filter((p): p is number => p !== undefined));
    for (const a of cfg.listen.proxyProtocol?.trusted ?? []) trusted.add(a);
    need((cfg.listen.proxyProtocol?.trusted ?? []).length > 0, `${where}: no listen.proxyProtocol.trusted`);
    if (redisEntry && cfg.state.redis) {
      const [rname, rsvc] = redisEntry;
      const url = new URL(cfg.state.redis.url);
      const rport = Number(redisOptions(rsvc.command).get('port') ?? 6379);
      need(url.hostname === rname || url.hostname === rsvc.hostname, `${where}: REDIS_URL names ${url.hostname}, the Redis service is ${rname}`);
      need(Number(url.port || 6379) === rport, `${where}: REDIS_URL port ${url.port || 6379}, Redis listens on ${rport}`);
      const requirepass = redisOptions(rsvc.command).get('requirepass');
      if (requirepass) {
        const val = requirepass.startsWith('$') ? composeEnv(rsvc.environment)[requirepass.replace(/^\$\{?|\}$/g, '')] : requirepass;
        need(val === cfg.state.redis.password, `${where}: state.redis.password is not the password Redis requires`);
      }
    }
    for (const [dep, d] of Object.entries((svc.depends_on ?? {}) as Record<string, Obj>)) {
      if (d?.condition === 'service_healthy') need(services[dep]?.healthcheck, `${where}: waits for ${dep} to be healthy, which has no healthcheck`);
    }
  }

  // Redis: persistence the outbox and counters need
  if (redisEntry) {
    const [rname, rsvc] = redisEntry;
    const opts = redisOptions(rsvc.command);
    need(opts.get('appendonly') === 'yes', `docker-compose.yml: ${rname} does not run with --appendonly yes`);
    need(opts.get('appendfsync') === 'always', `docker-compose.yml: ${rname} does not run with --appendfsync always`);
    need(!opts.has('maxmemory-policy') || opts.get('maxmemory-policy') === 'noeviction', `docker-compose.yml: ${rname} may evict keys (maxmemory-policy ${opts.get('maxmemory-policy')})`);
    need(((rsvc.volumes ?? []) as unknown[]).some((v) => String(typeof v === 'object' ? (v as Obj).target : String(v).split(':')[1]) === '/data'), `docker-compose.yml: ${rname} keeps /data (the append-only file) in no volume`);
  }

  // HAProxy: its address is the one the replicas trust; its configuration, once written, agrees
  if (haproxyEntry) {
    const [hname, hsvc] = haproxyEntry;
    const mounted = ((hsvc.volumes ?? []) as unknown[]).map(String).some((v) => v.split(':')[0]?.replace(/^\.\//, '') === HAPROXY_CFG);
    need(mounted, `docker-compose.yml: ${hname} does not mount ${HAPROXY_CFG}`);
    const addrs = Object.entries((hsvc.networks ?? {}) as Record<string, Obj | null>).flatMap(([net, n]) => (n?.ipv4_address ? [{ net, ip: String(n.ipv4_address) }] : []));
    need(addrs.length > 0, `docker-compose.yml: ${hname} has no fixed ipv4_address for the replicas to trust`);
    for (const a of trusted) need(addrs.some((x) => x.ip === a), `docker-compose.yml: the replicas trust ${a}, HAProxy's address is ${addrs.map((x) => x.ip).join(', ') || 'not fixed'}`);
    for (const { net, ip } of addrs) {
      const subnets = ((compose.networks?.[net]?.ipam?.config ?? []) as Obj[]).map((c) => String(c.subnet));
      need(subnets.some((s) => inSubnet(ip, s)), `docker-compose.yml: ${ip} is not inside network ${net}'s subnet`);
      for (const [name, svc] of gateways) need(Array.isArray(svc.networks) ? svc.networks.includes(net) : svc.networks && net in svc.networks, `docker-compose.yml: ${name} is not on ${net} with HAProxy`);
      for (const [name, svc] of gateways) {
        const ip = Array.isArray(svc.networks) ? undefined : svc.networks?.[net]?.ipv4_address;
        if (ip) need(subnets.some((s) => inSubnet(String(ip), s)), `docker-compose.yml: ${name}'s ${ip} is not inside network ${net}'s subnet`);
      }
    }
    if (files.haproxy !== undefined) {
      const lines = files.haproxy.split('\n').map((l) => l.replace(/#.*/, '').trim());
      // a server line takes the default-server options of its own section and of the defaults sections
      const servers: Array<{ words: string[]; defaults: string }> = [];
      let section = '';
      const defaultServer = new Map<string, string>();
      const globalDefaults: string[] = [];
      for (const l of lines) {
        if (/^(global|defaults|frontend|backend|listen)\b/.test(l)) section = l;
        else if (/^default-server\s/.test(l)) {
          if (section.startsWith('defaults')) globalDefaults.push(l);
          else defaultServer.set(section, `${defaultServer.get(section) ?? ''} ${l}`);
        } else if (/^server\s/.test(l)) servers.push({ words: l.split(/\s+/), defaults: `${globalDefaults.join(' ')} ${defaultServer.get(section) ?? ''}` });
      }
      need(servers.length >= 2, `${HAPROXY_CFG}: fewer than two server lines`);
      for (const { words: s, defaults } of servers) {
        const [host, port] = [(s[2] ?? '').slice(0, (s[2] ?? '').lastIndexOf(':')), Number((s[2] ?? '').split(':').pop())];
        need(gatewayPorts.get(host)?.includes(port), `${HAPROXY_CFG}: server ${s[1]} ${s[2]} is not a gateway replica's LDAP or LDAPS port in docker-compose.yml`);
        need(s.includes('send-proxy-v2') || /\bsend-proxy-v2\b/.test(defaults), `${HAPROXY_CFG}: server ${s[1]} does not send-proxy-v2`);
      }
      const binds = new Set(lines.filter((l) => /^bind\s/.test(l)).map((l) => Number(/:(\d+)/.exec(l)?.[1])));
      const published = ((hsvc.ports ?? []) as unknown[]).map((p) => Number(String(typeof p === 'object' ? (p as Obj).target : String(p).split(':').pop()).split('/')[0]));
      for (const p of published) need(binds.has(p), `docker-compose.yml: ${hname} publishes ${p}, which ${HAPROXY_CFG} does not bind`);
    }
  }

  // -- deploy/kubernetes
  const docs: Obj[] = [];
  for (const [f, text] of Object.entries(files.k8s)) {
    for (const d of parseAllDocuments(text)) {
      if (d.errors.length) problems.push(`${K8S_DIR}/${f}: ${d.errors[0]?.message}`);
      const js = d.toJS() as Obj | null;
      if (js) docs.push({ ...js, __file: f });
    }
  }
  const kinds = (k: string) => docs.filter((d) => d.kind === k);
  const kustomization = kinds('Kustomization')[0];
  if (kustomization) {
    const listed = new Set((kustomization.resources ?? []) as string[]);
    for (const f of Object.keys(files.k8s)) if (!/^kustomization\.ya?ml$/.test(f)) need(listed.has(f), `${K8S_DIR}/kustomization.yaml: does not list ${f}`);
    for (const f of listed) need(f in files.k8s, `${K8S_DIR}/kustomization.yaml: lists ${f}, which does not exist`);
  }
  const deployments = kinds('Deployment');
  need(deployments.length === 1, `${K8S_DIR}: ${deployments.length} Deployments (want 1)`);
  const dep = deployments[0];
  if (dep) {
    const where = `${K8S_DIR}/${dep.__file}`;
    const podLabels = (dep.spec?.template?.metadata?.labels ?? {}) as Record<string, string>;
    const matches = (sel: Record<string, string> | undefined) => Boolean(sel && Object.keys(sel).length && Object.entries(sel).every(([k, v]) => podLabels[k] === v));
    need(Number(dep.spec?.replicas) >= 2, `${where}: replicas ${dep.spec?.replicas} (want 2 or more)`);
    need(matches(dep.spec?.selector?.matchLabels), `${where}: the selector does not match the pod labels`);
    const pod = (dep.spec?.template?.spec ?? {}) as Obj;
    const containers = (pod.containers ?? []) as Obj[];
    need(containers.length === 1, `${where}: ${containers.length} containers (want 1)`);
    const c = containers[0] ?? {};
    const cArgv = [...((c.command as string[] | undefined) ?? df.entrypoint), ...((c.args as string[] | undefined) ?? (c.command ? [] : df.cmd))];
    const configPath = configArg(cArgv) ?? '';
    const mounts = ((c.volumeMounts ?? []) as Obj[]).map((m): Obj => ({ ...m, volume: ((pod.volumes ?? []) as Obj[]).find((v) => v.name === m.name) }));
    for (const m of mounts) need(m.volume, `${where}: volumeMount ${m.name} has no volume`);
    const defined = (kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata?.name === name);
    // the config file: a ConfigMap key at the path the image's CMD reads
    const cfgMount = mounts.find((m) => (m.subPath ? m.mountPath === configPath : m.mountPath === posix.dirname(configPath)));
    const cfgKey = cfgMount?.subPath ?? posix.basename(configPath);
    const cfgMap = cfgMount?.volume?.configMap ? defined('ConfigMap', cfgMount.volume.configMap.name) : undefined;
    const cfgText = cfgMap?.data?.[cfgKey] as string | undefined;
    need(cfgText, `${where}: no ConfigMap from ${K8S_DIR} provides ${configPath} (the container's --config)`);
    if (cfgText) need(isDeepStrictEqual(parse(cfgText), parse(files.haReplica)), `${K8S_DIR}/${cfgMap?.__file}: ${cfgKey} is not the same config as ${HA_REPLICA}`);
    // the environment: literal values, Secret keys, the pod name
    const secretValue = (ref: Obj) => {
      const s = defined('Secret', ref.name);
      const v = s?.stringData?.[ref.key] ?? (s?.data?.[ref.key] !== undefined ? Buffer.from(String(s.data[ref.key]), 'base64').toString() : undefined);
      need(v !== undefined, `${where}: secretKeyRef ${ref.name}/${ref.key} is not in a Secret of ${K8S_DIR}`);
      return v ?? '';
    };
    const envFor = (podName: string) => {
      const env: Record<string, string> = {};
      for (const e of (c.env ?? []) as Obj[]) {
        if (e.value !== undefined) env[e.name] = String(e.value);
        else if (e.valueFrom?.secretKeyRef) env[e.name] = secretValue(e.valueFrom.secretKeyRef);
        else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = podName;
        else if (e.valueFrom?.configMapKeyRef) env[e.name] = String(defined('ConfigMap', e.valueFrom.configMapKeyRef.name)?.data?.[e.valueFrom.configMapKeyRef.key] ?? '');
      }
      return env;
    };
    const baseEnv = envFor('ldap-gateway-6f7c9d8b5-a1b2c');
    for (const v of new Set([...replicaVars, ...envRefs(cfgText ?? '')])) need(v in baseEnv, `${where}: does not set ${v} (the config reads it)`);
    for (const [k, v] of Object.entries(baseEnv)) {
      if (!v.startsWith('/')) continue;
      const m = mounts.find((x) => under(v, x.mountPath));
      need(m, `${where}: ${k}=${v} lies in no volumeMount`);
      const file = m ? posix.relative(m.mountPath, v) : '';
      if (m?.volume?.secret) {
        const s = defined('Secret', m.volume.secret.secretName);
        const keys = s ? Object.keys({ ...s.data, ...s.stringData }) : ['tls.crt', 'tls.key', 'ca.crt']; // an external TLS Secret
        need(keys.includes(file), `${where}: ${k}=${v}: Secret ${m.volume.secret.secretName} has no key ${file}`);
      }
      if (m?.volume?.configMap) {
        const cm = defined('ConfigMap', m.volume.configMap.name);
        if (cm) need(file in (cm.data ?? {}), `${where}: ${k}=${v}: ConfigMap ${m.volume.configMap.name} has no key ${file}`);
      }
    }
    const outboxMount = baseEnv.GATEWAY_OUTBOX_DIR ? mounts.find((x) => under(baseEnv.GATEWAY_OUTBOX_DIR as string, x.mountPath)) : undefined;
    need(outboxMount && !outboxMount.readOnly && (outboxMount.volume?.emptyDir || outboxMount.volume?.persistentVolumeClaim), `${where}: the outbox ${baseEnv.GATEWAY_OUTBOX_DIR} is not in a writable volume`);
    // two pods: both configs validate, with their own instance names
    const cfgs = ['ldap-gateway-6f7c9d8b5-a1b2c', 'ldap-gateway-6f7c9d8b5-d3e4f'].map((p) => validate(`${where} (pod ${p})`, cfgText ?? '', materialize(envFor(p), p), problems));
    need(!cfgs[0] || !cfgs[1] || cfgs[0].instance !== cfgs[1].instance, `${where}: two pods get the same instance name`);
    const cfg = cfgs[0];
    const portsByName = new Map(((c.ports ?? []) as Obj[]).map((p) => [String(p.name), Number(p.containerPort)]));
    const containerPorts = new Set(portsByName.values());
    const resolvePort = (p: unknown) => (typeof p === 'number' ? p : portsByName.get(String(p)));
    if (cfg) {
      const ports = listened(cfg);
      need(anyAddress(hostOf(cfg.listen.ldap ?? '')), `${where}: the config listens on ${cfg.listen.ldap}; probes and the Service cannot reach that`);
      for (const [role, p] of Object.entries(ports)) if (p !== undefined) need(containerPorts.has(p), `${where}: the ${role} port ${p} the config listens on is not a containerPort`);
      for (const p of containerPorts) need(Object.values(ports).includes(p), `${where}: containerPort ${p} is not a port the config listens on`);
      for (const [kind, set] of [['readinessProbe', routes.readiness], ['livenessProbe', routes.liveness]] as const) {
        const probe = c[kind]?.httpGet as Obj | undefined;
        need(probe, `${where}: no httpGet ${kind}`);
        if (!probe) continue;
        need(set.has(String(probe.path)), `${where}: ${kind} path ${probe.path} is not the ${kind === 'readinessProbe' ? 'readiness' : 'liveness'} route (${[...set].join(', ')})`);
        need(resolvePort(probe.port) === ports.http, `${where}: ${kind} port ${probe.port} is not the config's HTTP port ${ports.http}`);
      }
      const services = kinds('Service');
      need(services.length > 0, `${K8S_DIR}: no Service`);
      const ldapService = services.some((s) => ((s.spec?.ports ?? []) as Obj[]).some((p) => resolvePort(p.targetPort ?? p.port) === ports.ldap));
      need(ldapService, `${K8S_DIR}: no Service sends to the LDAP port ${ports.ldap}`);
      for (const s of services) {
        need(matches(s.spec?.selector), `${K8S_DIR}/${s.__file}: Service ${s.metadata?.name} selects no gateway pod`);
        for (const p of (s.spec?.ports ?? []) as Obj[]) need(containerPorts.has(resolvePort(p.targetPort ?? p.port) ?? -1), `${K8S_DIR}/${s.__file}: Service ${s.metadata?.name} port ${p.name ?? p.port} targets ${p.targetPort}, not a containerPort`);
      }
    }
    need(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${where}: no cpu and memory requests`);
    const pdbs = kinds('PodDisruptionBudget');
    need(pdbs.length > 0, `${K8S_DIR}: no PodDisruptionBudget`);
    for (const p of pdbs) {
      const w = `${K8S_DIR}/${p.__file}`;
      need(matches(p.spec?.selector?.matchLabels), `${w}: the selector matches no gateway pod`);
      const min = p.spec?.minAvailable;
      if (min !== undefined) need(typeof min === 'number' && min >= 1 && min < Number(dep.spec?.replicas), `${w}: minAvailable ${min} must be at least 1 and below replicas ${dep.spec?.replicas}`);
      else need(Number(p.spec?.maxUnavailable) >= 1, `${w}: neither minAvailable nor maxUnavailable`);
    }
  }
  return problems;
}

// ---- the tests ----------------------------------------------------------------------------------------

const routes = discoverRoutes();
const shipped = shippedFiles();

t.test('the health routes come from the running HTTP endpoint', async (t) => {
  const r = await routes;
  t.equal(r.readiness.size, 1, `one readiness route (${[...r.readiness].join(', ')})`);
  t.ok(r.liveness.size >= 1, `a liveness route (${[...r.liveness].join(', ')})`);
});

t.test('the shipped deployment files agree with the code', async (t) => {
  t.same(check(shipped, await routes), [], 'no problem');
  if (shipped.haproxy === undefined) t.comment(`${HAPROXY_CFG} does not exist yet: its checks run once it does`);
});

/** replace one exact piece of one file (which must be there: a mutation that changes nothing proves nothing) */
function mutate(files: Files, file: keyof Files | `k8s:${string}`, from: string | RegExp, to: string): Files {
  const get = (f: typeof file) => (f.startsWith('k8s:') ? files.k8s[f.slice(4)] : (files[f as keyof Files] as string | undefined));
  const text = get(file);
  if (text === undefined || !(typeof from === 'string' ? text.includes(from) : from.test(text))) throw new Error(`mutation: ${String(from)} is not in ${file}`);
  const changed = text.replace(from, to);
  return file.startsWith('k8s:') ? { ...files, k8s: { ...files.k8s, [file.slice(4)]: changed } } : { ...files, [file]: changed };
}

const mutations: Array<[what: string, file: Parameters<typeof mutate>[1], from: string | RegExp, to: string, expect: RegExp]> = [
  ['compose healthcheck on a path http.ts does not serve', 'compose', "9090/readyz'", "9090/ready'", /gw1: the healthcheck path \/ready is not the readiness route/],
  ['compose healthcheck on the liveness path', 'compose', "9090/readyz'", "9090/healthz'", /gw1: the healthcheck path \/healthz is not the readiness route/],
  ['compose healthcheck on another port', 'compose', "127.0.0.1:9090/readyz", '127.0.0.1:9091/readyz', /gw1: the healthcheck asks port 9091/],
  ['compose LDAP port not exposed', 'compose', 'GATEWAY_LDAP_PORT: "1389"', 'GATEWAY_LDAP_PORT: "1399"', /gw1: the ldap port 1399 the config listens on is not in expose/],
  ['compose loopback listeners', 'compose', 'GATEWAY_LISTEN_ADDRESS: 0.0.0.0', 'GATEWAY_LISTEN_ADDRESS: 127.0.0.1', /gw1: listens on 127\.0\.0\.1:1389/],
  ['compose without a variable the config reads', 'compose', /\n {2}REDIS_PASSWORD: [^\n]*/, '', /gw1: does not set REDIS_PASSWORD/],
  ['compose publishing a port nobody listens on', 'compose', '"127.0.0.1:9091:9090"', '"127.0.0.1:9091:9099"', /gw1: publishes container port 9099/],
  ['compose replicas sharing an outbox volume', 'compose', 'gw2-data:/var/lib/ldap-gateway', 'gw1-data:/var/lib/ldap-gateway', /gw2: shares its outbox volume gw1-data with gw1/],
  ['compose TLS file that is not a secret', 'compose', 'GATEWAY_TLS_KEY: /run/secrets/gateway_tls_key', 'GATEWAY_TLS_KEY: /run/secrets/tls_key', /GATEWAY_TLS_KEY=\/run\/secrets\/tls_key is neither a secret/],
  ['compose trusting another address than HAProxy', 'compose', 'GATEWAY_TRUSTED_PROXY: 10.0.0.10 ', 'GATEWAY_TRUSTED_PROXY: 10.0.0.9 ', /the replicas trust 10\.0\.0\.9, HAProxy's address is 10\.0\.0\.10/],
  ['compose Redis with appendfsync everysec', 'compose', '--appendfsync always', '--appendfsync everysec', /does not run with --appendfsync always/],
  ['compose Redis without appendonly', 'compose', '--appendonly yes', '--appendonly no', /does not run with --appendonly yes/],
  ['compose Redis under another name', 'compose', 'REDIS_URL: redis://redis:6379/0', 'REDIS_URL: redis://cache:6379/0', /REDIS_URL names cache, the Redis service is redis/],
  ['compose Redis password differing', 'compose', 'REDISCLI_AUTH: ${REDIS_PASSWORD:?set REDIS_PASSWORD}', 'REDISCLI_AUTH: other-password', /state\.redis\.password is not the password Redis requires/],
  ['compose HAProxy without its configuration', 'compose', './deploy/haproxy/haproxy.cfg:', './deploy/haproxy.cfg:', /haproxy does not mount deploy\/haproxy\/haproxy\.cfg/],
  ['Dockerfile HEALTHCHECK on a path http.ts does not serve', 'dockerfile', '9090/healthz', '9090/health', /Dockerfile: HEALTHCHECK path \/health is not a health route/],
  ['Dockerfile not exposing LDAPS', 'dockerfile', 'EXPOSE 1389 1636 9090', 'EXPOSE 1389 9090', /Dockerfile: EXPOSE lacks 1636/],
  ['Dockerfile reading its config elsewhere', 'dockerfile', '"/etc/ldap-gateway/config.yaml"', '"/etc/ldap-gateway/gateway.yaml"', /docker-compose\.yml: 0 services run .*gateway\.yaml/],
  ['Dockerfile running as root', 'dockerfile', /\nUSER node\n/, '\n', /does not switch to a non-root USER/],
  ['Kubernetes readiness on a path http.ts does not serve', 'k8s:deployment.yaml', 'path: /readyz', 'path: /ready', /readinessProbe path \/ready is not the readiness route/],
  ['Kubernetes readiness on the liveness path', 'k8s:deployment.yaml', 'path: /readyz', 'path: /healthz', /readinessProbe path \/healthz is not the readiness route/],
  ['Kubernetes liveness on a path http.ts does not serve', 'k8s:deployment.yaml', 'path: /healthz', 'path: /livez', /livenessProbe path \/livez is not the liveness route/],
  ['Kubernetes LDAP containerPort not the config\'s', 'k8s:deployment.yaml', 'containerPort: 1389', 'containerPort: 1390', /the ldap port 1389 the config listens on is not a containerPort/],
  ['Kubernetes HTTP port differing from the probe\'s', 'k8s:deployment.yaml', /name: GATEWAY_HTTP_PORT\n(\s+)value: "9090"/, 'name: GATEWAY_HTTP_PORT\n$1value: "9091"', /readinessProbe port http is not the config's HTTP port 9091/],
  ['Kubernetes without a variable the config reads', 'k8s:deployment.yaml', /\n\s+- name: DEFGUARD_URL\n\s+value: [^\n]*/, '', /does not set DEFGUARD_URL/],
  ['Kubernetes Secret key missing', 'k8s:secret.yaml', 'redis-password:', 'redis-pass:', /secretKeyRef ldap-gateway-secrets\/redis-password is not in a Secret/],
  ['Kubernetes ConfigMap config invalid', 'k8s:configmap.yaml', 'members: managed', 'members: some', /configmap\.yaml: config\.yaml is not the same config[\s\S]*does not validate: consumers\[0\]\.writes\.groups\.members/],
  ['Kubernetes ConfigMap config drifting from ha-replica.yaml', 'k8s:configmap.yaml', 'lastMember: keep', 'lastMember: delete', /config\.yaml is not the same config as config\/examples\/ha-replica\.yaml/],
  ['Kubernetes one replica', 'k8s:deployment.yaml', 'replicas: 2', 'replicas: 1', /replicas 1 \(want 2 or more\)/],
  ['Kubernetes Service targeting no container port', 'k8s:service.yaml', 'targetPort: ldaps', 'targetPort: ldapx', /Service ldap-gateway port ldaps targets ldapx, not a containerPort/],
  ['Kubernetes PDB selecting nothing', 'k8s:poddisruptionbudget.yaml', 'app.kubernetes.io/name: ldap-gateway', 'app.kubernetes.io/name: gateway', /poddisruptionbudget\.yaml: the selector matches no gateway pod/],
  ['Kubernetes PDB blocking every drain', 'k8s:poddisruptionbudget.yaml', 'minAvailable: 1', 'minAvailable: 2', /minAvailable 2 must be at least 1 and below replicas 2/],
  ['Kubernetes without resource requests', 'k8s:deployment.yaml', /\n\s+requests:\n\s+cpu: 250m\n\s+memory: 256Mi/, '', /no cpu and memory requests/],
  ['Kubernetes outbox on a read-only path', 'k8s:deployment.yaml', 'value: /var/lib/ldap-gateway/outbox', 'value: /etc/ldap-gateway/outbox', /the outbox \/etc\/ldap-gateway\/outbox is not in a writable volume/],
  ['Kubernetes manifest not in the kustomization', 'k8s:kustomization.yaml', '  - poddisruptionbudget.yaml\n', '', /does not list poddisruptionbudget\.yaml/],
  ['ha-replica.yaml reading a variable nobody sets', 'haReplica', 'url: ${env:REDIS_URL}', 'url: ${env:REDIS_ADDRESS}', /gw1: does not set REDIS_ADDRESS[\s\S]*deployment\.yaml: does not set REDIS_ADDRESS/],
  ['ha-replica.yaml with one instance name for all', 'haReplica', 'instance: ${env:GATEWAY_INSTANCE}', 'instance: gw1', /gw2: instance gw1 is used by another replica/],
];

t.test('each check fails when what it checks is broken', async (t) => {
  const r = await routes;
  if (shipped.haproxy !== undefined) {
    const moved = check(mutate(shipped, 'compose', 'ipv4_address: 10.0.0.12 ', 'ipv4_address: 10.0.0.13 '), r).join('\n');
    t.match(moved, /haproxy\.cfg: server gw2 10\.0\.0\.12:1389 is not a gateway replica's LDAP or LDAPS port/, 'compose replica on another address than haproxy.cfg names');
  }
  for (const [what, file, from, to, expect] of mutations) {
    const problems = check(mutate(shipped, file, from, to), r).join('\n');
    t.match(problems, expect, what);
  }
});

// ---- ha-replica.yaml: two replicas on one host from one file (the test bed's way) ----------------------

const tlsCert = join(sandbox, 'server.crt');
const tlsKey = join(sandbox, 'server.key');
const adCa = join(sandbox, 'ad-ca.pem');
for (const f of [tlsCert, tlsKey, adCa]) writeFileSync(f, '');
const testBed = {
  SAMBA_AD_LDAPS_URL: 'ldaps://127.0.0.2:636',
  SAMBA_AD_CA_FILE: adCa,
  SAMBA_AD_SERVICE_DN: 'CN=svc-gateway,CN=Users,DC=samba,DC=test',
  SAMBA_AD_USER_PASS: 'Test-Passw0rd!',
  SAMBA_AD_BASE_DN: 'DC=samba,DC=test',
  SAMBA_AD_DOMAIN: 'SAMBA',
  GATEWAY_DEFGUARD_PASSWORD: 'defguard-secret',
  DEFGUARD_URL: 'http://127.0.0.1:18080',
  DEFGUARD_API_TOKEN: 'dg-test-token',
};
const replicaEnv = (n: number): Record<string, string> => ({
  ...testBed,
  GATEWAY_INSTANCE: `gw${n}`,
  GATEWAY_LISTEN_ADDRESS: '127.0.0.1',
  GATEWAY_LDAP_PORT: String(1388 + n),
  GATEWAY_LDAPS_PORT: String(1635 + n),
  GATEWAY_HTTP_PORT: String(9089 + n),
  GATEWAY_TLS_CERT: tlsCert,
  GATEWAY_TLS_KEY: tlsKey,
  GATEWAY_OUTBOX_DIR: `../../var/gw${n}`,
  GATEWAY_TRUSTED_PROXY: '127.0.0.1',
  REDIS_URL: 'redis://127.0.0.1:6379/0',
  REDIS_PASSWORD: 'redis-test-password',
});

t.test('ha-replica.yaml: two replicas on loopback from one file', async (t) => {
  const [a, b] = [1, 2].map((n) => parseConfig(shipped.haReplica, join(root, 'config/examples'), replicaEnv(n))) as [Config, Config];
  t.equal(a.instance, 'gw1');
  t.equal(b.instance, 'gw2');
  t.same([a.listen.ldap, a.listen.ldaps, a.http.listen], ['127.0.0.1:1389', '127.0.0.1:1636', '127.0.0.1:9090'], 'replica 1 listens on loopback, on its own ports');
  t.same([b.listen.ldap, b.listen.ldaps, b.http.listen], ['127.0.0.1:1390', '127.0.0.1:1637', '127.0.0.1:9091'], 'replica 2 listens on loopback, on its own ports');
  t.not(a.provisioning.outbox, b.provisioning.outbox, 'each replica has its own outbox folder');
  t.equal(a.provisioning.outbox, join(root, 'var/gw1'), 'the outbox lies in <repository>/var (git-ignored)');
  t.same(a.state.redis?.url, 'redis://127.0.0.1:6379/0', 'state.redis.url from REDIS_URL');
  t.same(a.listen.proxyProtocol?.trusted, ['127.0.0.1'], 'PROXY protocol trusted from GATEWAY_TRUSTED_PROXY');
  for (const [n, env] of [[1, replicaEnv(1)], [2, replicaEnv(2)]] as const) {
    for (const v of envRefs(shipped.haReplica)) {
      const { [v]: _dropped, ...rest } = env;
      t.throws(() => parseConfig(shipped.haReplica, join(root, 'config/examples'), rest), new RegExp(`environment variable ${v} is not set`), `replica ${n} without ${v} is refused`);
    }
  }
});

t.test('ha-replica.yaml has the directory settings and write policy of samba-ad.yaml', async (t) => {
  // samba-ad.yaml's listener certificate is made by certs/make-dev-cert.sh (not in a clean clone)
  const sambaText = shipped.sambaAd.replace('../../certs/server.crt', tlsCert).replace('../../certs/server.key', tlsKey);
  const samba = parseConfig(sambaText, join(root, 'config/examples'), testBed);
  const replica = parseConfig(shipped.haReplica, join(root, 'config/examples'), replicaEnv(1));
  for (const k of ['upstream', 'directory', 'consumers', 'auth', 'protection', 'cache'] as const) t.same(replica[k], samba[k], k);
  const { outbox: _a, ...rp } = replica.provisioning;
  const { outbox: _b, ...sp } = samba.provisioning;
  t.same(rp, sp, 'provisioning (apart from the per-replica outbox folder)');
});

// ---- the HAProxy checks, on a stand-in until deploy/haproxy/haproxy.cfg exists ------------------------

const HAPROXY_STANDIN = `global
  log stdout format raw local0
defaults
  mode tcp
  timeout connect 5s
frontend ldap
  bind :389
  default_backend gateways_ldap
frontend ldaps
  bind :636
  default_backend gateways_ldaps
backend gateways_ldap
  option ldap-check
  server gw1 gw1:1389 check send-proxy-v2
  server gw2 gw2:1389 check send-proxy-v2
backend gateways_ldaps
  default-server check send-proxy-v2
  server gw1 gw1:1636
  server gw2 gw2:1636
`;

t.test('the HAProxy checks work on a configuration like the one compose expects', async (t) => {
  const r = await routes;
  const files = { ...shipped, haproxy: HAPROXY_STANDIN };
  t.same(check(files, r), [], 'a consistent haproxy.cfg has no problem');
  t.match(check(mutate(files, 'haproxy', 'gw2:1389', 'gw3:1389'), r).join('\n'), /server gw2 gw3:1389 is not a gateway replica's LDAP or LDAPS port/, 'a server that is no replica');
  t.match(check(mutate(files, 'haproxy', 'gw1:1389', 'gw1:1390'), r).join('\n'), /server gw1 gw1:1390 is not a gateway replica's LDAP or LDAPS port/, 'a server on a port the replica does not listen on');
  t.match(check(mutate(files, 'haproxy', 'gw1:1389 check send-proxy-v2', 'gw1:1389 check'), r).join('\n'), /server gw1 does not send-proxy-v2/, 'a server without PROXY protocol');
  t.match(check(mutate(files, 'haproxy', 'bind :636', 'bind :1636'), r).join('\n'), /haproxy publishes 636, which deploy\/haproxy\/haproxy\.cfg does not bind/, 'a published port HAProxy does not bind');
});
