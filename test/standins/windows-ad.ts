// STAND-IN, not a model of Active Directory: a small LDAP server that reproduces the two Windows AD
// behaviours Samba does not (reference/samba-ad.md, "Differences from Windows AD"), so that the gateway's
// handling of them can be tested:
//   - MaxPageSize 1000: an unpaged search with more results ends in sizeLimitExceeded (4) after 1000
//     entries, and no page is larger than 1000 whatever the client asks;
//   - MaxValRange 1500: a multi-valued attribute with more values comes back as `attr;range=0-1499`,
//     and the rest only when asked for as `attr;range=1500-*` (and so on).
// Everything else (binds, filters, scopes) is the demo directory's plain in-memory behaviour.
import pino from 'pino';
import { isWithin, normalizeDN } from '../../src/directory/dn';
import { matches, type Attrs, type DemoEntry } from '../../src/demo/directory';
import { LdapListeners } from '../../src/server/listener';
import { ResultCode } from '../../src/ldap/protocol';
import type { Entry, Handlers } from '../../src/ldap/types';

export const MAX_PAGE_SIZE = 1000;
export const MAX_VAL_RANGE = 1500;
const BASE = 'DC=win,DC=example';
const PERSON = `CN=Person,CN=Schema,CN=Configuration,${BASE}`;

export interface Standin {
  url: string;
  baseDN: string;
  serviceDN: string;
  password: string;
  close(): Promise<void>;
}

/** `users` users in OU=People, all members of CN=Huge; user `joiner` is in `manyGroups` groups. */
export async function startWindowsAdStandin(o: { users: number; manyGroups: number }): Promise<Standin> {
  const password = 'Standin-Passw0rd';
  const serviceDN = `CN=svc,OU=Service,${BASE}`;
  const entries: DemoEntry[] = [];
  const user = (sam: string, extra: Attrs = {}): DemoEntry => ({
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
  const byNorm = new Map(entries.map((e) => [normalizeDN(e.dn), e]));

  /** attributes as Windows AD would return them: plain, or the requested or first range */
  const present = (e: DemoEntry, requested: string[]): Entry['attributes'] => {
    const all = requested.length === 0 || requested.includes('*');
    const out: Entry['attributes'] = [];
    for (const [type, values] of Object.entries(e.attrs)) {
      const ranged = requested.map((r) => /^([^;]+);range=(\d+)-(\d+|\*)$/i.exec(r)).find((m) => m && (m[1] as string).toLowerCase() === type.toLowerCase());
      if (ranged) {
        const from = Number(ranged[2]);
        const to = Math.min(ranged[3] === '*' ? values.length - 1 : Number(ranged[3]), from + MAX_VAL_RANGE - 1, values.length - 1);
        out.push({ type: `${type};range=${from}-${to === values.length - 1 ? '*' : to}`, values: values.slice(from, to + 1) });
        continue;
      }
      if (!all && !requested.some((r) => r.toLowerCase() === type.toLowerCase())) continue;
      if (values.length > MAX_VAL_RANGE) out.push({ type: `${type};range=0-${MAX_VAL_RANGE - 1}`, values: values.slice(0, MAX_VAL_RANGE) });
      else out.push({ type, values });
    }
    return out;
  };

  const readOnly = async () => ({ code: ResultCode.unwillingToPerform });
  const handlers: Handlers<{ dn: string }> = {
    async bind(op) {
      if (op.name === '' && op.password === '') return { result: { code: 0 } };
      if (normalizeDN(op.name) === normalizeDN(serviceDN) && op.password === password) return { result: { code: 0 }, identity: { dn: serviceDN } };
      return { result: { code: 49, message: '80090308: LdapErr: DSID-0C09042F, comment: AcceptSecurityContext error, data 52e, v4563' } };
    },
    async search(op, session, sink) {
      if (!session.identity) return { code: ResultCode.operationsError, message: 'bind first' };
      const baseNorm = normalizeDN(op.base);
      const hits = entries.filter((e) => {
        const n = normalizeDN(e.dn);
        return (op.scope === 'base' ? n === baseNorm : isWithin(n, baseNorm)) && matches(op.filter, e, byNorm);
      });
      if (!op.paged) {
        for (const e of hits.slice(0, MAX_PAGE_SIZE)) await sink.entry({ dn: e.dn, attributes: present(e, op.attributes) });
        return hits.length > MAX_PAGE_SIZE ? { code: ResultCode.sizeLimitExceeded, message: 'MaxPageSize exceeded' } : { code: 0 };
      }
      const from = op.paged.cookie.length ? Number(op.paged.cookie.toString()) : 0;
      const size = Math.min(op.paged.size || MAX_PAGE_SIZE, MAX_PAGE_SIZE);
      for (const e of hits.slice(from, from + size)) await sink.entry({ dn: e.dn, attributes: present(e, op.attributes) });
      const next = from + size < hits.length ? Buffer.from(String(from + size)) : Buffer.alloc(0);
      return { code: 0, paged: { size: 0, cookie: next } };
    },
    add: readOnly,
    modify: readOnly,
    modifyDN: readOnly,
    delete: readOnly,
    compare: readOnly,
    passwordModify: readOnly,
    whoami: () => '',
  };
  const listen = { ldap: '127.0.0.1:0', startTLS: false, requireTLSForBind: false, maxConnections: 100, maxConnectionsPerIp: 100, idleTimeoutMs: 0, maxPduBytes: 1 << 20, maxOutstandingPerConnection: 64 };
  const listeners = new LdapListeners(listen, handlers, { op: () => undefined, connection: () => undefined, rejected: () => undefined }, pino({ level: 'silent' }));
  await listeners.listen();
  return { url: `ldap://127.0.0.1:${listeners.addresses.ldap?.port}`, baseDN: BASE, serviceDN, password, close: () => listeners.close(0) };
}
