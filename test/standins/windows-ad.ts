// STAND-IN, not a model of Active Directory: a small LDAP server that reproduces the two Windows AD
// behaviours Samba does not (reference/samba-ad.md, "Differences from Windows AD"), so that the gateway's
// handling of them can be tested:
//   - MaxPageSize 1000: an unpaged search with more results ends in sizeLimitExceeded (4) after 1000
//     entries, and no page is larger than 1000 whatever the client asks;
//   - MaxValRange 1500: a multi-valued attribute with more values comes back as `attr;range=0-1499`,
//     and the rest only when asked for as `attr;range=1500-*` (and so on).
// Everything else (binds, filters, scopes) is plain in-memory behaviour, written out here.
//
// It is independent of the product's server side: the protocol is ldapjs's own Server and codec, the
// DN comparison and the filter evaluation are this file's, and nothing comes from src/ (so a bug in the
// gateway's listener, encoder, DN or filter code cannot hide on both sides of a test). ldapjs's server
// defects (toolchain.md §7) are worked around where they would matter here:
//   - one catch-all route per operation, and DNs compared here case-insensitively (ldapjs #323);
//   - entries are sent as ready-made SearchResultEntry messages, so ldapjs's attribute filtering, which
//     drops requested names with capitals (#900) and every `attr;range=…` name, is not applied;
//   - filters are evaluated here, case-insensitively, not with ldapjs's case-sensitive `.matches()` (#856);
//     ldapjs hands them over re-parsed from its own filter string, so values come `\XX`-escaped and are
//     unescaped here (an extensible filter whose value holds a parenthesis does not survive that trip;
//     this directory has none);
//   - an 'error' listener (a parse failure would otherwise kill the test process), and TCP_NODELAY;
//   - anonymous binds never reach a handler in ldapjs, so a connection's bound state is reset here at
//     every bind request, before ldapjs looks at it;
//   - ldapjs answers invalidDNSyntax (34) itself to a bind name that is not a DN (a UPN, `DOMAIN\user`),
//     where AD answers 49: such a name is swapped for a placeholder DN before ldapjs parses it.
import type { Server as NetServer, Socket } from 'node:net';
import pino from 'pino';

export const MAX_PAGE_SIZE = 1000;
export const MAX_VAL_RANGE = 1500;
const BASE = 'DC=win,DC=example';
const PERSON = `CN=Person,CN=Schema,CN=Configuration,${BASE}`;
const PAGED_OID = '1.2.840.113556.1.4.319';
const IN_CHAIN_OID = '1.2.840.113556.1.4.1941';
const BIT_AND_OID = '1.2.840.113556.1.4.803';
const BAD_CREDENTIALS = '80090308: LdapErr: DSID-0C09042F, comment: AcceptSecurityContext error, data 52e, v4563';
const NOT_BOUND = '000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed on the connection., data 0, v4563';

export interface Standin {
  url: string;
  baseDN: string;
  serviceDN: string;
  password: string;
  close(): Promise<void>;
}

type Attrs = Record<string, string[]>;
interface StandinEntry {
  dn: string;
  attrs: Attrs;
}

// --- the parts of ldapjs 3.0.7 used here (its typings are `any` or wrong for the server: toolchain.md §7.12)

/** an @ldapjs/filter object; `type` names the class */
interface LdapjsFilter {
  type: string;
  attribute?: string;
  value?: string;
  clauses: LdapjsFilter[];
  /** NotFilter */
  filter?: LdapjsFilter;
  /** SubstringFilter */
  initial?: string;
  any?: string[];
  final?: string;
  /** ExtensibleFilter */
  matchingRule?: string;
  dnAttributes?: boolean;
}
interface LdapjsConnection extends Socket {
  parser: { prependListener(ev: 'message', fn: (req: { protocolOp: number; name?: string }) => void): void };
}
interface LdapjsRequest {
  connection: LdapjsConnection;
  controls: Array<{ type: string; value?: { size: number; cookie: Buffer } }>;
}
interface LdapjsBindRequest extends LdapjsRequest {
  /** the name as sent; ldapjs answers invalidDNSyntax (34) itself when it is not a DN */
  dn: string;
  credentials: string;
}
interface LdapjsSearchRequest extends LdapjsRequest {
  baseObject: { toString(): string };
  /** 0 base, 1 one level, 2 subtree */
  scope: 0 | 1 | 2;
  filter: LdapjsFilter;
  attributes: string[];
}
interface LdapjsResponse {
  errorMessage: string;
  controls: unknown[];
  end(status?: number): void;
}
interface LdapjsSearchResponse extends LdapjsResponse {
  createSearchEntry(o: { objectName: string; attributes: Array<{ type: string; values: string[] }> }): unknown;
  send(entry: unknown): void;
}
type Handler<Req, Res = LdapjsResponse> = (req: Req, res: Res, next: () => void) => void;
interface LdapjsServer {
  server: NetServer;
  on(ev: 'error' | 'clientError', fn: (err: Error) => void): void;
  bind(dn: string, h: Handler<LdapjsBindRequest>): void;
  search(dn: string, h: Handler<LdapjsSearchRequest, LdapjsSearchResponse>): void;
  add(dn: string, h: Handler<LdapjsRequest>): void;
  modify(dn: string, h: Handler<LdapjsRequest>): void;
  del(dn: string, h: Handler<LdapjsRequest>): void;
  compare(dn: string, h: Handler<LdapjsRequest>): void;
  modifyDN(dn: string, h: Handler<LdapjsRequest>): void;
  listen(port: number, host: string, cb: () => void): void;
  address(): { port: number };
  close(cb: () => void): void;
}
interface Ldapjs {
  createServer(o: { log: pino.Logger }): LdapjsServer;
  PagedResultsControl: new (o: { value: { size: number; cookie: Buffer } }) => unknown;
  parseDN(dn: string): unknown;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ldapjs = require('ldapjs') as Ldapjs;

const BIND_REQUEST = 0x60;
/** what a bind name that is not a DN is replaced with, for ldapjs; never the service DN, never '' (anonymous) */
const NOT_A_DN = 'CN=not-a-dn';
const Code = { success: 0, operationsError: 1, sizeLimitExceeded: 4, unwillingToPerform: 53, invalidCredentials: 49 } as const;

// --- DNs: this directory's DNs are plain (no escapes, no multi-valued RDNs), so comparing is lower-casing
const normDN = (dn: string): string => dn.trim().replace(/\s*([,=+])\s*/g, '$1').toLowerCase();
/** `dn` (normalised) is `base` or below it; '' is the root */
const within = (dn: string, base: string): boolean => base === '' || dn === base || dn.endsWith(`,${base}`);
const childOf = (dn: string, base: string): boolean => dn !== base && within(dn, base) && !dn.slice(0, base === '' ? dn.length : dn.length - base.length - 1).includes(',');

/** `users` users in OU=People, all members of CN=Huge; user `joiner` is in `manyGroups` groups. */
export async function startWindowsAdStandin(o: { users: number; manyGroups: number }): Promise<Standin> {
  const password = 'Standin-Passw0rd';
  const serviceDN = `CN=svc,OU=Service,${BASE}`;
  const entries: StandinEntry[] = [];
  const user = (sam: string, extra: Attrs = {}): StandinEntry => ({
    dn: `CN=${sam},OU=People,${BASE}`,
    attrs: { objectClass: ['top', 'person', 'organizationalPerson', 'user'], objectCategory: [PERSON], cn: [sam], sAMAccountName: [sam], givenName: ['Std'], sn: [sam], mail: [`${sam}@win.example`], ...extra },
  });
  const huge = `CN=Huge,OU=Groups,${BASE}`;
  const userDns: string[] = [];
  for (let i = 1; i <= o.users; i++) {
    const u = user(`u${String(i).padStart(5, '0')}`, { memberOf: [huge] });
    entries.push(u);
    userDns.push(u.dn);
  }
  const groupDns = Array.from({ length: o.manyGroups }, (_, i) => `CN=G${String(i + 1).padStart(4, '0')},OU=Groups,${BASE}`);
  const joiner = user('joiner', { memberOf: groupDns });
  entries.push(joiner);
  entries.push({ dn: huge, attrs: { objectClass: ['top', 'group'], cn: ['Huge'], sAMAccountName: ['Huge'], member: userDns } });
  for (const dn of groupDns) entries.push({ dn, attrs: { objectClass: ['top', 'group'], cn: [dn.slice(3, dn.indexOf(','))], member: [joiner.dn] } });
  const norms = new Map(entries.map((e) => [e, normDN(e.dn)]));
  const byNorm = new Map(entries.map((e) => [normDN(e.dn), e]));

  const values = (e: StandinEntry, attr: string): string[] => {
    if (attr.toLowerCase() === 'distinguishedname') return [e.dn];
    const k = Object.keys(e.attrs).find((a) => a.toLowerCase() === attr.toLowerCase());
    return k ? (e.attrs[k] as string[]) : [];
  };
  /** LDAP_MATCHING_RULE_IN_CHAIN: `target` reachable from `e` through `attr` (memberOf or member) */
  const inChain = (e: StandinEntry, attr: string, target: string, seen: Set<string>): boolean =>
    values(e, attr).some((v) => {
      const n = normDN(v);
      if (n === target) return true;
      if (seen.has(n)) return false;
      seen.add(n);
      const next = byNorm.get(n);
      return next !== undefined && inChain(next, attr, target, seen);
    });
  const equal = (attr: string, want: string, have: string) =>
    // AD accepts objectCategory=person for the schema object's DN
    have.toLowerCase() === want.toLowerCase() || (attr.toLowerCase() === 'objectcategory' && have.toLowerCase().startsWith(`cn=${want.toLowerCase()},`));
  const escRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  /** a filter value as ldapjs passes it (`\XX` escapes for UTF-8 bytes and specials) back to text */
  const unescape = (v: string): string =>
    Buffer.concat(v.split(/(\\[0-9a-fA-F]{2})/).map((p) => (/^\\[0-9a-fA-F]{2}$/.test(p) ? Buffer.from([parseInt(p.slice(1), 16)]) : Buffer.from(p, 'utf8')))).toString('utf8');
  /** attribute names and (except for ordering) values compare case-insensitively, as in AD */
  const matches = (f: LdapjsFilter, e: StandinEntry): boolean => {
    const attr = f.attribute ?? '';
    const value = unescape(f.value ?? '');
    switch (f.type) {
      case 'AndFilter':
        return f.clauses.every((c) => matches(c, e)); // (&) is true
      case 'OrFilter':
        return f.clauses.some((c) => matches(c, e)); // (|) is false
      case 'NotFilter':
        return !matches(f.filter as LdapjsFilter, e);
      case 'PresenceFilter':
        return attr.toLowerCase() === 'objectclass' || values(e, attr).length > 0;
      case 'EqualityFilter':
      case 'ApproximateFilter':
        return values(e, attr).some((x) => equal(attr, value, x));
      case 'GreaterThanEqualsFilter':
        return values(e, attr).some((x) => x >= value);
      case 'LessThanEqualsFilter':
        return values(e, attr).some((x) => x <= value);
      case 'SubstringFilter': {
        const part = (p: string | undefined) => escRe(unescape(p ?? ''));
        const re = new RegExp(`^${part(f.initial)}.*${(f.any ?? []).map((a) => `${part(a)}.*`).join('')}${part(f.final)}$`, 'is');
        return values(e, attr).some((x) => re.test(x));
      }
      case 'ExtensibleFilter':
        if (!attr) return false;
        if (f.matchingRule === IN_CHAIN_OID) return inChain(e, attr, normDN(value), new Set());
        if (f.matchingRule === BIT_AND_OID) return values(e, attr).some((x) => (Number(x) & Number(value)) === Number(value));
        return values(e, attr).some((x) => x.toLowerCase() === value.toLowerCase());
      default:
        throw new Error(`stand-in: unexpected filter ${f.type}`);
    }
  };

  /** attributes as Windows AD would return them: plain, or the requested or first range */
  const present = (e: StandinEntry, requested: string[]): Array<{ type: string; values: string[] }> => {
    const all = requested.length === 0 || requested.includes('*');
    const out: Array<{ type: string; values: string[] }> = [];
    for (const [type, vals] of Object.entries(e.attrs)) {
      const ranged = requested.map((r) => /^([^;]+);range=(\d+)-(\d+|\*)$/i.exec(r)).find((m) => m && (m[1] as string).toLowerCase() === type.toLowerCase());
      if (ranged) {
        const from = Number(ranged[2]);
        const to = Math.min(ranged[3] === '*' ? vals.length - 1 : Number(ranged[3]), from + MAX_VAL_RANGE - 1, vals.length - 1);
        out.push({ type: `${type};range=${from}-${to === vals.length - 1 ? '*' : to}`, values: vals.slice(from, to + 1) });
        continue;
      }
      if (!all && !requested.some((r) => r.toLowerCase() === type.toLowerCase())) continue;
      if (vals.length > MAX_VAL_RANGE) out.push({ type: `${type};range=0-${MAX_VAL_RANGE - 1}`, values: vals.slice(0, MAX_VAL_RANGE) });
      else out.push({ type, values: vals });
    }
    return out;
  };

  const log = pino({ level: 'silent' });
  const server = ldapjs.createServer({ log });
  server.on('error', () => undefined);
  server.on('clientError', () => undefined);
  const bound = new WeakSet<Socket>();
  const sockets = new Set<Socket>();
  // runs after ldapjs's own connection listener, which creates conn.parser
  server.server.on('connection', (s: Socket) => {
    s.setNoDelay(true);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    const conn = s as LdapjsConnection;
    conn.parser.prependListener('message', (req) => {
      if (req.protocolOp !== BIND_REQUEST) return;
      bound.delete(conn); // a bind, even a failing one, drops the old identity
      try {
        ldapjs.parseDN(req.name ?? '');
      } catch {
        // BindRequest's name and dn are getters over a private field: shadow them on the instance
        for (const key of ['name', '_dn']) Object.defineProperty(req, key, { value: NOT_A_DN });
      }
    });
  });

  server.bind('', (req, res, next) => {
    if (normDN(req.dn) === normDN(serviceDN) && req.credentials === password) {
      bound.add(req.connection);
      res.end(Code.success);
    } else {
      res.errorMessage = BAD_CREDENTIALS;
      res.end(Code.invalidCredentials);
    }
    next();
  });

  server.search('', (req, res, next) => {
    const send = (e: StandinEntry) => res.send(res.createSearchEntry({ objectName: e.dn, attributes: present(e, req.attributes) }));
    if (!bound.has(req.connection)) {
      res.errorMessage = NOT_BOUND;
      res.end(Code.operationsError);
      return next();
    }
    const base = normDN(req.baseObject.toString());
    const inScope = req.scope === 0 ? (n: string) => n === base : req.scope === 1 ? (n: string) => childOf(n, base) : (n: string) => within(n, base);
    const hits = entries.filter((e) => inScope(norms.get(e) as string) && matches(req.filter, e));
    const paged = req.controls.find((c) => c.type === PAGED_OID)?.value;
    if (!paged) {
      hits.slice(0, MAX_PAGE_SIZE).forEach(send);
      if (hits.length > MAX_PAGE_SIZE) {
        res.errorMessage = 'MaxPageSize exceeded';
        res.end(Code.sizeLimitExceeded);
      } else res.end(Code.success);
      return next();
    }
    const from = paged.cookie.length ? Number(paged.cookie.toString()) : 0;
    const size = Math.min(paged.size || MAX_PAGE_SIZE, MAX_PAGE_SIZE);
    hits.slice(from, from + size).forEach(send);
    const cookie = from + size < hits.length ? Buffer.from(String(from + size)) : Buffer.alloc(0);
    res.controls = [new ldapjs.PagedResultsControl({ value: { size: 0, cookie } })];
    res.end(Code.success);
    return next();
  });

  const readOnly: Handler<LdapjsRequest> = (_req, res, next) => {
    res.end(Code.unwillingToPerform);
    next();
  };
  server.add('', readOnly);
  server.modify('', readOnly);
  server.del('', readOnly);
  server.compare('', readOnly);
  server.modifyDN('', readOnly);

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  return { url: `ldap://127.0.0.1:${server.address().port}`, baseDN: BASE, serviceDN, password, close };
}
