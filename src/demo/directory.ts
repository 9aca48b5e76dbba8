// The embedded demo directory behind `npm start`: a tiny AD look-alike (sAMAccountName, userPrincipalName,
// memberOf, a nested group, a disabled user, AD's bind error texts) served on an ephemeral loopback port.
// The gateway reaches it through the same ldapts upstream code as a real DC: no shortcut.
// It is a demo, not a test double for AD: the tests run against a real Samba AD DC.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { isWithin, normalizeDN } from '../directory/dn';
import type { FilterNode } from '../directory/filter';
import { LdapListeners } from '../server/listener';
import { ResultCode } from '../ldap/protocol';
import type { Entry, Handlers, OpObserver } from '../ldap/types';

export const DEMO_BASE = 'DC=demo,DC=example';
export const DEMO_DOMAIN = 'DEMO';
export const DEMO_PASSWORD = 'demo-password'; // every demo user's password; documented in the README

export type Attrs = Record<string, string[]>;
export interface DemoEntry {
  dn: string;
  attrs: Attrs;
}

const person = ['top', 'person', 'organizationalPerson', 'user'];
const personCategory = `CN=Person,CN=Schema,CN=Configuration,${DEMO_BASE}`;
const groupCategory = `CN=Group,CN=Schema,CN=Configuration,${DEMO_BASE}`;

function user(sam: string, given: string, sn: string, ou: string, extra: Attrs = {}): DemoEntry {
  return {
    dn: `CN=${given} ${sn},OU=${ou},${DEMO_BASE}`,
    attrs: {
      objectClass: person,
      objectCategory: [personCategory],
      cn: [`${given} ${sn}`],
      sAMAccountName: [sam],
      userPrincipalName: [`${sam}@demo.example`],
      givenName: [given],
      sn: [sn],
      displayName: [`${given} ${sn}`],
      userAccountControl: ['512'],
      ...extra,
    },
  };
}

const group = (cn: string, members: string[], memberOf: string[] = []): DemoEntry => ({
  dn: `CN=${cn},OU=Groups,${DEMO_BASE}`,
  attrs: { objectClass: ['top', 'group'], objectCategory: [groupCategory], cn: [cn], sAMAccountName: [cn], member: members, ...(memberOf.length ? { memberOf } : {}) },
});

export function demoEntries(): DemoEntry[] {
  const eng = `CN=Engineering,OU=Groups,${DEMO_BASE}`;
  const staff = `CN=Staff,OU=Groups,${DEMO_BASE}`;
  const alice = user('alice', 'Alice', 'Anderson', 'People', { mail: ['alice@demo.example'], mobile: ['+1 555 0101'], memberOf: [eng] });
  const bob = user('bob', 'Bob', 'Brown', 'People', { mail: ['bob@demo.example'], memberOf: [eng] });
  // no mail: the gateway falls back to the UPN, as Defguard needs a mail
  const carol = user('carol', 'Carol', 'Clark', 'Contractors', { telephoneNumber: ['+1 555 0103'], memberOf: [staff] });
  const dave = user('dave', 'Dave', 'Disabled', 'People', { mail: ['dave@demo.example'], userAccountControl: ['514'] });
  return [
    { dn: DEMO_BASE, attrs: { objectClass: ['top', 'domain', 'domainDNS'], dc: ['demo'] } },
    alice,
    bob,
    carol,
    dave,
    group('Engineering', [alice.dn, bob.dn], [staff]),
    group('Staff', [eng, carol.dn]),
  ];
}

const AD_BIND_ERROR = (data: string) => `80090308: LdapErr: DSID-0C09042F, comment: AcceptSecurityContext error, data ${data}, v4563`;

/** Local filter evaluation: this server *is* the directory, so here (and only here) that is right. */
export function matches(f: FilterNode, e: DemoEntry, all: Map<string, DemoEntry>): boolean {
  const vals = (attr: string): string[] => {
    const k = Object.keys(e.attrs).find((a) => a.toLowerCase() === attr.toLowerCase());
    if (attr.toLowerCase() === 'distinguishedname') return [e.dn];
    return k ? (e.attrs[k] as string[]) : [];
  };
  const eqv = (attr: string, v: string, x: string) =>
    // AD accepts objectCategory=person for the schema object's DN
    attr.toLowerCase() === 'objectcategory' ? x.toLowerCase() === v.toLowerCase() || x.toLowerCase().startsWith(`cn=${v.toLowerCase()},`) : x.toLowerCase() === v.toLowerCase();
  switch (f.type) {
    case 'and':
      return f.children.every((c) => matches(c, e, all));
    case 'or':
      return f.children.some((c) => matches(c, e, all));
    case 'not':
      return !matches(f.child, e, all);
    case 'present':
      return f.attr.toLowerCase() === 'objectclass' || vals(f.attr).length > 0;
    case 'equal':
    case 'approx':
      return vals(f.attr).some((x) => eqv(f.attr, f.value, x));
    case 'ge':
      return vals(f.attr).some((x) => x >= f.value);
    case 'le':
      return vals(f.attr).some((x) => x <= f.value);
    case 'substring': {
      const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const re = new RegExp(`^${esc(f.initial ?? '')}.*${f.any.map((a) => `${esc(a)}.*`).join('')}${esc(f.final ?? '')}$`, 'i');
      return vals(f.attr).some((x) => re.test(x));
    }
    case 'ext': {
      if (!f.attr) return false;
      if (f.rule === '1.2.840.113556.1.4.1941') return transitive(e, f.attr, normalizeDN(f.value), all, new Set());
      if (f.rule === '1.2.840.113556.1.4.803') return vals(f.attr).some((x) => (Number(x) & Number(f.value)) === Number(f.value));
      return vals(f.attr).some((x) => x.toLowerCase() === f.value.toLowerCase());
    }
    case 'true':
      return true;
    case 'false':
      return false;
  }
}

/** LDAP_MATCHING_RULE_IN_CHAIN over memberOf / member. */
function transitive(e: DemoEntry, attr: string, target: string, all: Map<string, DemoEntry>, seen: Set<string>): boolean {
  const key = Object.keys(e.attrs).find((a) => a.toLowerCase() === attr.toLowerCase());
  for (const v of key ? (e.attrs[key] as string[]) : []) {
    const n = normalizeDN(v);
    if (n === target) return true;
    if (seen.has(n)) continue;
    seen.add(n);
    const next = all.get(n);
    if (next && transitive(next, attr, target, all, seen)) return true;
  }
  return false;
}

export interface DemoDirectory {
  url: string;
  serviceDN: string;
  servicePassword: string;
  baseDN: string;
  close(): Promise<void>;
}

type DemoIdentity = { dn: string };

const readOnly = async () => ({ code: ResultCode.unwillingToPerform, message: 'the demo directory is read-only' });

export async function startDemoDirectory(log: Logger): Promise<DemoDirectory> {
  const serviceDN = `CN=svc-gateway,OU=Service,${DEMO_BASE}`;
  const servicePassword = randomBytes(18).toString('base64url'); // lives only in this process
  const entries = demoEntries();
  const byNorm = new Map(entries.map((e) => [normalizeDN(e.dn), e]));

  const handlers: Handlers<DemoIdentity> = {
    async bind(op) {
      if (op.name === '' && op.password === '') return { result: { code: 0 } };
      const norm = normalizeDN(op.name);
      if (norm === normalizeDN(serviceDN)) {
        return op.password === servicePassword ? { result: { code: 0 }, identity: { dn: serviceDN } } : { result: { code: 49, message: AD_BIND_ERROR('52e') } };
      }
      const e = byNorm.get(norm);
      if (!e || !e.attrs.sAMAccountName || op.password !== DEMO_PASSWORD) return { result: { code: 49, message: AD_BIND_ERROR('52e') } };
      if ((Number(e.attrs.userAccountControl?.[0]) & 2) !== 0) return { result: { code: 49, message: AD_BIND_ERROR('533') } };
      return { result: { code: 0 }, identity: { dn: e.dn } };
    },
    async search(op, session, sink) {
      if (op.base === '' && op.scope === 'base') {
        await sink.entry({ dn: '', attributes: [{ type: 'defaultNamingContext', values: [DEMO_BASE] }] });
        return { code: 0 };
      }
      if (!session.identity) return { code: ResultCode.operationsError, message: '000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed on the connection., data 0, v4563' };
      const baseNorm = normalizeDN(op.base);
      if (!byNorm.has(baseNorm)) return { code: ResultCode.noSuchObject, message: '0000208D: NameErr: DSID-03100241, problem 2001 (NO_OBJECT)' };
      const depth = (n: string) => n.split(',').length;
      for (const e of entries) {
        const n = normalizeDN(e.dn);
        const inScope = op.scope === 'base' ? n === baseNorm : op.scope === 'one' ? isWithin(n, baseNorm) && depth(n) === depth(baseNorm) + 1 : isWithin(n, baseNorm);
        if (!inScope || !matches(op.filter, e, byNorm)) continue;
        const wanted = op.attributes.filter((a) => a !== '*');
        const all = op.attributes.length === 0 || op.attributes.includes('*');
        const attributes: Entry['attributes'] = [];
        for (const [type, values] of Object.entries(e.attrs)) {
          const asked = wanted.find((w) => w.toLowerCase() === type.toLowerCase());
          if (all || asked) attributes.push({ type: asked ?? type, values });
        }
        await sink.entry({ dn: e.dn, attributes });
      }
      return { code: 0, ...(op.paged ? { paged: { size: 0, cookie: Buffer.alloc(0) } } : {}) };
    },
    add: readOnly,
    modify: readOnly,
    modifyDN: readOnly,
    delete: readOnly,
    compare: readOnly,
    passwordModify: readOnly,
    whoami: (s) => (s.identity ? `dn:${s.identity.dn}` : ''),
  };

  const quiet: OpObserver = { op: () => undefined, connection: () => undefined, rejected: () => undefined };
  const listen = { ldap: '127.0.0.1:0', startTLS: false, requireTLSForBind: false, maxConnections: 1000, maxConnectionsPerIp: 1000, idleTimeoutMs: 0, maxPduBytes: 1024 * 1024, maxOutstandingPerConnection: 64 };
  const listeners = new LdapListeners<DemoIdentity>(listen, handlers, quiet, log.child({ component: 'demo-directory' }), { exclusive: true });
  await listeners.listen();
  const port = listeners.addresses.ldap?.port as number;
  return { url: `ldap://127.0.0.1:${port}`, serviceDN, servicePassword, baseDN: DEMO_BASE, close: () => listeners.close(0) };
}
