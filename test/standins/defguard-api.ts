// STAND-IN for Defguard's REST API (no Defguard runs here). It follows the contract written down in
// reference/defguard-ldap.md §5 for the calls the gateway makes:
//   Authorization: Bearer <token> (401 {msg} otherwise)
//   GET  /api/v1/user/{username}  -> 200 {user: UserInfo, biometric_enabled_devices, security_keys} | 404 {msg}
//   POST /api/v1/user  AddUserData {username, last_name, first_name, email, phone?, password?}
//                      -> 201 UserInfo | 400 {msg} (bad username, duplicate username/email)
//   PUT  /api/v1/user/{username}  full UserInfo (no defaults: every field required) -> 200;
//                      groups[] replaces the membership (unknown group -> 404 {msg})
// plus failure injection (an outage, queued error answers with headers) and a log of every request.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface UserInfo {
  id: number;
  username: string;
  last_name: string;
  first_name: string;
  email: string;
  phone: string | null;
  mfa_enabled: boolean;
  totp_enabled: boolean;
  email_mfa_enabled: boolean;
  groups: string[];
  mfa_method: string;
  authorized_apps: unknown[];
  is_active: boolean;
  enrolled: boolean;
  is_admin: boolean;
  ldap_pass_requires_change: boolean;
  devices: unknown[];
}

const USER_INFO_KEYS: Array<keyof UserInfo> = ['id', 'username', 'last_name', 'first_name', 'email', 'phone', 'mfa_enabled', 'totp_enabled', 'email_mfa_enabled', 'groups', 'mfa_method', 'authorized_apps', 'is_active', 'enrolled', 'is_admin', 'ldap_pass_requires_change', 'devices'];
const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface Logged {
  method: string;
  path: string;
  body: unknown;
  status: number;
}

export class DefguardStandin {
  readonly users = new Map<string, UserInfo>();
  readonly groups = new Set<string>(['admin']);
  readonly log: Logged[] = [];
  /** answers to give before normal processing: [status, headers] */
  readonly injected: Array<{ status: number; headers?: Record<string, string>; match?: (method: string, path: string) => boolean }> = [];
  /** usernames that GET does not see once (a creation racing with ours) */
  readonly hiddenOnce = new Set<string>();
  private server: Server | undefined;
  private nextId = 1;
  port = 0;

  constructor(readonly token: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  addUser(u: Partial<UserInfo> & { username: string; email: string }): void {
    this.users.set(u.username, { id: this.nextId++, last_name: '', first_name: '', phone: null, mfa_enabled: false, totp_enabled: false, email_mfa_enabled: false, groups: [], mfa_method: 'None', authorized_apps: [], is_active: true, enrolled: false, is_admin: false, ldap_pass_requires_change: false, devices: [], ...u });
  }

  /** start (or, after down(), restart) on the same port */
  async up(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server?.listen(this.port, '127.0.0.1', () => resolve()));
    const a = this.server.address();
    this.port = typeof a === 'object' && a ? a.port : this.port;
  }

  /** an outage: the port refuses connections */
  async down(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  requests(method: string, pathPrefix: string): Logged[] {
    return this.log.filter((l) => l.method === method && l.path.startsWith(pathPrefix));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body: unknown;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = raw;
    }
    const method = req.method ?? 'GET';
    const path = decodeURI((req.url ?? '/').split('?')[0] as string);
    const send = (status: number, json: unknown, headers: Record<string, string> = {}) => {
      this.log.push({ method, path, body, status });
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(json));
    };
    const i = this.injected.findIndex((x) => !x.match || x.match(method, path));
    if (i >= 0) {
      const inj = this.injected.splice(i, 1)[0] as (typeof this.injected)[number];
      return send(inj.status, { msg: 'injected' }, inj.headers);
    }
    if (req.headers.authorization !== `Bearer ${this.token}`) return send(401, { msg: 'Session is required' });

    const userPath = /^\/api\/v1\/user\/([^/]+)$/.exec(path);
    if (method === 'GET' && userPath) {
      const name = userPath[1] as string;
      const u = this.users.get(name);
      if (!u || this.hiddenOnce.delete(name)) return send(404, { msg: `User ${name} not found` });
      return send(200, { user: u, biometric_enabled_devices: [], security_keys: [] });
    }
    if (method === 'POST' && path === '/api/v1/user') {
      const b = body as { username?: string; first_name?: string; last_name?: string; email?: string; phone?: string | null; password?: string };
      if (!b?.username || !USERNAME.test(b.username)) return send(400, { msg: 'Invalid username' });
      if (this.users.has(b.username)) return send(400, { msg: 'User already exists' });
      if ([...this.users.values()].some((u) => u.email === b.email)) return send(400, { msg: 'Email already in use' });
      this.addUser({ username: b.username, first_name: b.first_name ?? '', last_name: b.last_name ?? '', email: b.email ?? '', phone: b.phone ?? null });
      return send(201, this.users.get(b.username));
    }
    if (method === 'PUT' && userPath) {
      const name = userPath[1] as string;
      const u = this.users.get(name);
      if (!u) return send(404, { msg: `User ${name} not found` });
      const b = body as Partial<UserInfo>;
      const missing = USER_INFO_KEYS.filter((k) => !(k in (b ?? {})));
      if (missing.length) return send(422, { msg: `missing field ${missing[0]}` });
      const unknown = (b.groups ?? []).find((g) => !this.groups.has(g));
      if (unknown) return send(404, { msg: `Group ${unknown} not found` });
      this.users.set(name, { ...u, first_name: b.first_name as string, last_name: b.last_name as string, email: b.email as string, phone: b.phone ?? null, groups: b.groups as string[] });
      return send(200, {});
    }
    return send(404, { msg: 'not found' });
  }
}
