// The bind flow (ARCHITECTURE.md, "Bind"): empty password -> 49 before anything else; consumers from
// config; every other name resolved to exactly one AD entry by a service search; then an upstream bind
// as that DN on the bind pool; AD's reason decoded. One audit line per bind, never a password.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { ConsumerConfig } from '../config/schema';
import { isWithin, normalizeDN } from '../directory/dn';
import { and, filterToString } from '../directory/filter';
import type { AdEntry } from '../directory/mapping';
import type { EntrySource, KindSource } from '../directory/search';
import { guidToString } from '../directory/transforms';
import type { Naming } from '../directory/naming';
import { ResultCode } from '../ldap/protocol';
import type { BindOp, LdapResult, SessionInfo } from '../ldap/types';
import type { Policy } from './policy';
import { StateUnavailableError, type ForgetfulMap } from '../state/types';
import { classifyBindName, lookupTerm, type BindName } from './bind-name';
import type { ConsumerAccess, Identity } from './identity';
import type { LockoutGuard } from './guard';
import { STATE_ATTRS, type OfflineBinder } from './offline';
import type { BindReason } from './reasons';

export interface UpstreamBinder {
  bind(dn: string, password: string): Promise<{ ok: true; dc: string } | { ok: false; reason: BindReason; diagnostic: string; dc?: string }>;
}

export interface AuthOptions {
  /** how clients name entries (the virtual tree, or AD's own DNs) */
  naming: Naming;
  upstream: UpstreamBinder;
  source: EntrySource;
  usersSource: KindSource;
  /** filter fragment selecting user entries, the naming attribute, the attribute `name@suffix` is looked up by */
  userClass: string;
  keyAttr: string;
  upnAttr: string;
  consumers: ConsumerConfig[];
  domain?: string;
  mail: boolean;
  anonymous: 'rootdse' | 'deny' | 'allow';
  diagnostics: 'reason' | 'raw' | 'none';
  log: Logger;
  observe: (result: 'success' | 'failure', reason: BindReason, seconds: number) => void;
  /** AD attributes to read with the user look-up, for the events below (none when provisioning is off) */
  eventAttributes?: string[];
  /**
   * a user bind succeeded: awaited before the bind is acknowledged (durable provisioning event);
   * offline: decided offline, with the groups kept with the verifier (when they were read)
   */
  succeeded?: (ad: AdEntry, identity: Identity & { kind: 'user' }, client: string, offline?: { groups?: string[] }) => Promise<void>;
  /** a bind failed (an audit event; not awaited) */
  failed?: (name: string, reason: BindReason, client: string, dn?: string) => void;
  /** the lockout shield and bind rate limits (absent: none) */
  guard?: LockoutGuard;
  /** resolved bind names (name -> AD entries), reused briefly; absent: always look a name up */
  resolved?: ForgetfulMap<AdEntry[]>;
  /** who may bind at all (TLS required?) */
  policy: Policy;
  /** offline binds (auth.offline): verifiers used while no DC is reachable */
  offline?: OfflineBinder;
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export interface Outcome {
  reason: BindReason;
  identity?: Identity;
  entry?: { dn: string; guid?: string };
  ad?: AdEntry;
  consumer?: string;
  dc?: string;
  diagnostic?: string;
  /** decided without AD (no DC reachable): from the account's verifier */
  offline?: true;
  /** offline: the groups kept with the verifier */
  groups?: string[];
}

export class Authenticator {
  private readonly consumers: Array<{ name: string; dn: string; norm: string; secret: Buffer; access: ConsumerAccess }>;
  /** what each bind name denotes (parsing a DN was most of a cached bind's own work); cleared when full */
  private readonly names = new Map<string, { consumer?: Authenticator['consumers'][number]; name?: BindName }>();
  private readonly usersBaseNorm: string;

  constructor(private readonly o: AuthOptions) {
    this.consumers = o.consumers.map((c) => ({
      name: c.name,
      dn: c.bindDN,
      norm: normalizeDN(c.bindDN),
      secret: digest(c.password),
      access: { search: c.search, subtrees: c.subtrees, attributes: c.attributes ? new Set(c.attributes.map((a) => a.toLowerCase())) : undefined },
    }));
    this.usersBaseNorm = normalizeDN(o.usersSource.base);
  }

  async bind(op: BindOp, session: SessionInfo<Identity>): Promise<{ result: LdapResult; identity?: Identity }> {
    const t0 = process.hrtime.bigint();
    // the shared state unreachable with state.redis.onUnavailable: refuse: 52, as when no DC answers
    const out = await this.decide(op, session.remoteAddress, session.tls).catch((err: unknown): Outcome => {
      if (err instanceof StateUnavailableError) return { reason: 'upstream_unavailable', diagnostic: err.message };
      throw err;
    });
    if (out.reason === 'ok' && out.identity?.kind === 'user' && out.ad && this.o.succeeded) {
      try {
        await this.o.succeeded(out.ad, out.identity, session.remoteAddress, out.offline ? { groups: out.groups } : undefined);
      } catch (err) {
        // no acknowledged bind without its event: the outbox is the durability promise
        this.o.log.error({ err: (err as Error).message }, 'could not record the provisioning event: refusing the bind');
        out.reason = 'outbox_unavailable';
        out.identity = undefined;
      }
    } else if (out.reason !== 'ok') {
      this.o.failed?.(op.name, out.reason, session.remoteAddress, out.entry?.dn);
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const ok = out.reason === 'ok';
    this.o.observe(ok ? 'success' : 'failure', out.reason, seconds);
    this.o.log.info(
      {
        event: 'bind',
        conn: session.id,
        client: session.remoteAddress,
        tls: session.tls,
        name: op.name,
        ...(out.consumer ? { consumer: out.consumer } : {}),
        ...(out.entry ? { dn: out.entry.dn, guid: out.entry.guid } : {}),
        result: ok ? 'success' : 'failure',
        reason: out.reason,
        ...(out.dc ? { dc: out.dc } : {}),
        ...(out.offline ? { offline: true } : {}),
        ms: Math.round(seconds * 1e4) / 10,
      },
      'bind',
    );
    if (ok) return { result: { code: ResultCode.success }, identity: out.identity };
    return { result: { code: this.codeFor(out.reason), message: this.messageFor(out) } };
  }

  private codeFor(reason: BindReason): number {
    if (reason === 'upstream_unavailable') return ResultCode.unavailable;
    if (reason === 'upstream_error' || reason === 'outbox_unavailable') return ResultCode.other;
    if (reason === 'anonymous_denied') return ResultCode.inappropriateAuthentication;
    if (reason === 'rate_limited') return ResultCode.busy;
    if (reason === 'tls_required') return ResultCode.confidentialityRequired;
    return ResultCode.invalidCredentials;
  }

  private messageFor(out: Outcome): string {
    if (out.reason === 'tls_required') return 'TLS is required before bind: use LDAPS or StartTLS';
    switch (this.o.diagnostics) {
      case 'none':
        return '';
      case 'raw':
        return out.diagnostic ?? out.reason;
      default:
        return out.reason;
    }
  }

  /** The whole outcome of a bind (used by bind, and by `ldap-gateway test-bind`). */
  async decide(op: Pick<BindOp, 'name' | 'password'>, client: string, tls = true): Promise<Outcome> {
    if (op.name === '' && op.password === '') {
      // anonymous: it never reaches AD; what an anonymous connection may read is decided per search
      return this.o.anonymous === 'deny' ? { reason: 'anonymous_denied' } : { reason: 'ok' };
    }
    // RFC 4513 §5.1.2 unauthenticated bind: AD answers it with success. Never forwarded, and refused
    // before anything else (no rate, address or TLS check comes first)
    if (op.password === '') {
      await this.o.guard?.otherFailure(client);
      return { reason: 'empty_password' };
    }
    const allowed = this.o.policy.bind(op.name, op.password, tls);
    if (!allowed.allow) return { reason: allowed.reason };
    const guard = this.o.guard;
    const local = async (reason: BindReason, extra: Partial<Outcome> = {}): Promise<Outcome> => {
      await guard?.otherFailure(client);
      return { reason, ...extra };
    };
    const { consumer, name } = this.classify(op.name);
    // only a look-up that found exactly one entry is reused, and only until a bind with that name fails
    const cacheKey = op.name.trim().toLowerCase();
    const resolved = this.o.resolved;
    const since = resolved?.now;
    let found = name && name.form !== 'invalid' ? await resolved?.get(cacheKey) : undefined;
    // the shield, before any look-up; a name looked up before brings its account's questions along
    // (one round trip on Redis). Their verdict counts only once the address has passed.
    const kept = found?.length === 1 ? found[0] : undefined;
    const screened = await guard?.screen(client, kept ? { dn: kept.dn, password: op.password } : undefined);
    if (screened?.client) return { reason: screened.client };
    if (consumer) {
      const ok = timingSafeEqual(digest(op.password), consumer.secret);
      return ok ? { reason: 'ok', consumer: consumer.name, identity: { kind: 'consumer', name: consumer.name, dn: consumer.dn, access: consumer.access } } : local('bad_credentials', { consumer: consumer.name });
    }
    if (!name || name.form === 'invalid') return local('invalid_name');
    if (name.form === 'down-level' && this.o.domain && name.domain.toLowerCase() !== this.o.domain.toLowerCase()) return local('unknown_user');

    if (!found) {
      try {
        found = await this.resolve(name);
      } catch (err) {
        // no DC reachable and no entry kept for this name: no verifier, 52
        const offline = this.o.offline?.applies(err) ? (this.o.offline.store.count('no_verifier'), { offline: true as const }) : {};
        return { reason: 'upstream_unavailable', diagnostic: err instanceof Error ? err.message : String(err), ...offline };
      }
      // a look-up that began before a write (which forgets every look-up) is not kept
      if (found.length === 1) await resolved?.set(cacheKey, found, undefined, since);
    }
    if (found.length === 0) return local('unknown_user');
    if (found.length > 1) return local('ambiguous_user');
    const ad = found[0] as AdEntry;
    const username = String(ad.attrs.get(this.o.keyAttr.toLowerCase())?.[0] ?? '');
    const rawGuid = ad.attrs.get('objectguid')?.[0];
    const guid = Buffer.isBuffer(rawGuid) ? guidToString(rawGuid) : undefined;
    const entry = { dn: ad.dn, guid };
    if (!username) return { reason: 'unknown_user', entry };

    // the shield: refused here, AD never sees the attempt (and its badPwdCount never moves)
    const verdict = ad === kept ? screened?.account : await guard?.screenAccount(ad.dn, op.password, client);
    if (verdict && verdict !== 'known_wrong') return { reason: 'throttled', entry };
    if (verdict === 'known_wrong') {
      await resolved?.delete(cacheKey);
      return { reason: 'bad_credentials', entry };
    }

    const r = await this.o.upstream.bind(ad.dn, op.password);
    const offline = this.o.offline;
    if (!r.ok && r.reason === 'upstream_unavailable' && offline?.applies()) {
      const o = await offline.bind(ad, op.password, client, name);
      if (o.reason !== 'ok' || !o.ad) return { reason: o.reason, entry, diagnostic: r.diagnostic, offline: true };
      const user = String(o.ad.attrs.get(this.o.keyAttr.toLowerCase())?.[0] ?? username);
      return { reason: 'ok', entry, ad: o.ad, offline: true, groups: o.groups, identity: { kind: 'user', dn: this.o.naming.userDN({ key: user, dn: o.ad.dn }), adDn: o.ad.dn, username: user, guid } };
    }
    if (!r.ok) await offline?.refused(ad, r.reason);
    else offline?.accepted(ad, op.password);
    if (!r.ok) {
      await resolved?.delete(cacheKey); // a renamed, moved or deleted account re-resolves at once
      if (r.reason === 'bad_credentials') await guard?.badPassword(ad.dn, op.password, client);
      return { reason: r.reason, entry, dc: r.dc, diagnostic: r.diagnostic };
    }
    await guard?.succeeded(ad.dn, client);
    return { reason: 'ok', entry, ad, dc: r.dc, identity: { kind: 'user', dn: this.o.naming.userDN({ key: username, dn: ad.dn }), adDn: ad.dn, username, guid } };
  }

  private classify(raw: string): { consumer?: Authenticator['consumers'][number]; name?: BindName } {
    let c = this.names.get(raw);
    if (c === undefined) {
      const consumer = this.consumerFor(raw);
      c = consumer ? { consumer } : { name: classifyBindName(raw, this.o.naming.bindTree) };
      if (raw.length <= 512) {
        if (this.names.size >= 10_000) this.names.clear();
        this.names.set(raw, c);
      }
    }
    return c;
  }

  private consumerFor(name: string) {
    if (!name.includes('=')) return undefined;
    let norm: string;
    try {
      norm = normalizeDN(name);
    } catch {
      return undefined;
    }
    return this.consumers.find((c) => c.norm === norm);
  }

  /** The AD entries a bind name denotes (any form people type), for `ldap-gateway map`. */
  lookup(name: string): Promise<AdEntry[]> {
    const b = classifyBindName(name, this.o.naming.bindTree);
    return b.form === 'invalid' ? Promise.resolve([]) : this.resolve(b);
  }

  /** The AD entries a bind name denotes, within the users source (base and filter): at most two read. */
  private async resolve(name: BindName): Promise<AdEntry[]> {
    const cls = `${this.o.userClass}${this.o.usersSource.filter ?? ''}`;
    const attributes = [this.o.keyAttr, 'objectGUID', ...(this.o.eventAttributes ?? []), ...(this.o.offline ? STATE_ATTRS : [])];
    const out: AdEntry[] = [];
    if (name.form === 'ad-dn') {
      let norm: string;
      try {
        norm = normalizeDN(name.dn);
      } catch {
        return [];
      }
      if (!isWithin(norm, this.usersBaseNorm)) return [];
      try {
        for await (const page of this.o.source.search({ base: name.dn, scope: 'base', filter: `(&${cls})`, attributes })) out.push(...page);
      } catch (err) {
        if ((err as { code?: number }).code === ResultCode.noSuchObject) return [];
        throw err;
      }
      return out;
    }
    const term = lookupTerm(name, { key: this.o.keyAttr, upn: this.o.upnAttr, mail: this.o.mail });
    if (!term) return [];
    const filter = `(&${cls}${filterToString(and(term))})`;
    for await (const page of this.o.source.search({ base: this.o.usersSource.base, scope: 'sub', filter, attributes })) {
      out.push(...page);
      if (out.length > 1) break;
    }
    return out;
  }
}
