// Offline binds (config `auth.offline`, README "Offline binds"): when no domain controller is reachable,
// a user who bound recently is checked against a verifier of the password AD last accepted.
//
//  - The verifier: scrypt (node:crypto; no native add-on, memory-hard) with N=2^15, r=8, p=1 (32 MiB,
//    ~50-100 ms on one core), a 32-byte random salt per verifier, 32 bytes out. Never the password.
//  - Kept per account, keyed by objectGUID, with the time AD accepted that password (`at`) and its
//    pwdLastSet, in a TtlMap from the StateStores (so shared by the cluster's workers and Redis replicas),
//    with the AD entry last read (to answer the bind name's look-up and the one-entry user search).
//  - Cheap online: a successful online bind computes a new verifier only when there is none, the one
//    kept is older than refreshMs, or AD's pwdLastSet moved; never on the bind's path (queued, after the
//    outcome is decided, on libuv's thread pool, at most two at a time).
//  - Used only when every DC is unreachable (a connection-level failure and every DC in back-off);
//    never when a DC answered, whatever it answered.
//  - Dropped when AD refuses the password or reports the account disabled/locked/expired/must change;
//    when the periodic check (highestCommittedUSN, then uSNChanged>=N, then the users source) shows
//    pwdLastSet/userAccountControl/lockoutTime/accountExpires changed or the account left the source;
//    replaced when a password is set through the gateway; and past maxAgeMs (the map's TTL, and checked).
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { chmodSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { isWithin, normalizeDN } from '../directory/dn';
import { eq, filterToString, or, type FilterNode } from '../directory/filter';
import type { AdEntry, AdValue } from '../directory/mapping';
import type { AdQuery, EntrySource, KindSource } from '../directory/search';
import { guidToString } from '../directory/transforms';
import { isConnectionError } from '../upstream/pool';
import type { StateStores, TtlMap } from '../state/types';
import type { BindName } from './bind-name';
import type { LockoutGuard } from './guard';
import type { BindReason } from './reasons';

export interface OfflineSettings {
  enabled: boolean;
  maxAgeMs: number;
  maxAccounts: number;
  checkIntervalMs: number;
  refreshMs?: number;
  file?: string;
  key?: string;
}

/** scrypt's cost: N=2^15, r=8, p=1 (128*N*r = 32 MiB of memory per computation). */
export const SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024, saltBytes: 32, keyBytes: 32 } as const;

/** What AD says about an account's password and state: any change drops the verifier. */
export const STATE_ATTRS = ['pwdLastSet', 'userAccountControl', 'lockoutTime', 'accountExpires'] as const;

/** AD refused the bind for a reason about this password or this account: its verifier goes. */
const DROP_REASONS: ReadonlySet<BindReason> = new Set(['bad_credentials', 'no_such_user', 'account_disabled', 'account_locked', 'account_expired', 'password_expired', 'must_change_password']);

export type OfflineResult = 'success' | 'wrong_password' | 'no_verifier' | 'expired' | 'throttled';

type StoredValue = string | { b: string };
/** An AD entry as JSON (shared stores serialize values): binary values as base64. */
export interface StoredEntry {
  dn: string;
  attrs: Array<[string, StoredValue[]]>;
}

export interface OfflineRecord {
  /** scrypt output and salt, base64 */
  v: string;
  s: string;
  /** when AD accepted the password this verifier is of (ms) */
  at: number;
  /** pwdLastSet then */
  pls: string;
  entry: StoredEntry;
  /** with provisioning on: the user's groups as last read (what an offline bind's event carries) */
  groups?: string[];
}

export function toStored(e: AdEntry): StoredEntry {
  return { dn: e.dn, attrs: [...e.attrs].map(([k, vs]) => [k, vs.map((v) => (Buffer.isBuffer(v) ? { b: v.toString('base64') } : String(v)))]) };
}

export function fromStored(e: StoredEntry): AdEntry {
  return { dn: e.dn, attrs: new Map(e.attrs.map(([k, vs]) => [k, vs.map((v): AdValue => (typeof v === 'string' ? v : Buffer.from(v.b, 'base64')))])) };
}

const first = (e: AdEntry, a: string) => {
  const v = e.attrs.get(a.toLowerCase())?.[0];
  return v === undefined ? '' : Buffer.isBuffer(v) ? v.toString('hex') : String(v);
};
const guidOf = (e: AdEntry) => {
  const raw = e.attrs.get('objectguid')?.[0];
  return Buffer.isBuffer(raw) ? guidToString(raw) : undefined;
};

function scryptAsync(password: string, salt: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, SCRYPT.keyBytes, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, maxmem: SCRYPT.maxmem }, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function makeVerifier(password: string): Promise<{ v: string; s: string }> {
  const salt = randomBytes(SCRYPT.saltBytes);
  return { v: (await scryptAsync(password, salt)).toString('base64'), s: salt.toString('base64') };
}

export async function checkVerifier(password: string, r: Pick<OfflineRecord, 'v' | 's'>): Promise<boolean> {
  const want = Buffer.from(r.v, 'base64');
  const got = await scryptAsync(password, Buffer.from(r.s, 'base64'));
  return want.length === got.length && timingSafeEqual(want, got);
}

const FILE_FORMAT = 'ldap-gateway-offline/1';

/** The optional file: AES-256-GCM, key HKDF-SHA256(auth.offline.key, per-file salt), the format as AAD. */
export function sealRecords(records: Record<string, OfflineRecord>, secret: string): string {
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const key = Buffer.from(hkdfSync('sha256', secret, salt, FILE_FORMAT, 32));
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(FILE_FORMAT));
  const data = Buffer.concat([c.update(JSON.stringify(records), 'utf8'), c.final()]);
  return JSON.stringify({ format: FILE_FORMAT, salt: salt.toString('base64'), iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), data: data.toString('base64') });
}

/** Throws when the key is wrong or the file damaged (GCM's tag does not verify). */
export function openRecords(text: string, secret: string): Record<string, OfflineRecord> {
  const f = JSON.parse(text) as { format: string; salt: string; iv: string; tag: string; data: string };
  if (f.format !== FILE_FORMAT) throw new Error(`not a ${FILE_FORMAT} file`);
  const key = Buffer.from(hkdfSync('sha256', secret, Buffer.from(f.salt, 'base64'), FILE_FORMAT, 32));
  const d = createDecipheriv('aes-256-gcm', key, Buffer.from(f.iv, 'base64'));
  d.setAAD(Buffer.from(FILE_FORMAT));
  d.setAuthTag(Buffer.from(f.tag, 'base64'));
  return JSON.parse(Buffer.concat([d.update(Buffer.from(f.data, 'base64')), d.final()]).toString('utf8')) as Record<string, OfflineRecord>;
}

/**
 * What outlives a reload: the verifiers (in the shared stores), the names that lead to them, the
 * accounts this process knows of (for the periodic check and the file), and whether it is offline.
 */
export class OfflineStore {
  readonly records: TtlMap<OfflineRecord>;
  /** `k:<username>`, `u:<upn>`, `m:<mail>`, `d:<AD DN>` (lower-case) -> objectGUID */
  readonly names: TtlMap<string>;
  /** objectGUIDs with a verifier this process made, used or loaded (bounded by maxAccounts) */
  readonly known = new Set<string>();
  readonly refreshMs: number;
  private offline = false;
  private saving: NodeJS.Timeout | undefined;
  private queue: Array<() => Promise<void>> = [];
  private running = 0;

  constructor(
    readonly o: OfflineSettings,
    state: StateStores,
    readonly log: Logger,
    readonly count: (result: OfflineResult) => void,
  ) {
    this.records = state.ttlMap<OfflineRecord>('offline-verifiers', { max: o.maxAccounts, ttlMs: o.maxAgeMs });
    this.names = state.ttlMap<string>('offline-names', { max: o.maxAccounts * 4, ttlMs: o.maxAgeMs });
    this.refreshMs = o.refreshMs ?? Math.min(900_000, Math.floor(o.maxAgeMs / 4));
  }

  get serving(): boolean {
    return this.offline;
  }

  /** Every DC unreachable (true) or one answering (false): logged when it changes. */
  note(unreachable: boolean): void {
    if (unreachable === this.offline) return;
    this.offline = unreachable;
    if (unreachable) this.log.warn({ event: 'offline', offline: true, maxAgeMs: this.o.maxAgeMs }, 'no domain controller is reachable: binds of accounts with a recent verifier are decided offline');
    else this.log.info({ event: 'offline', offline: false }, 'a domain controller answers again: binds are decided by AD again');
  }

  remember(guid: string): void {
    this.known.delete(guid);
    this.known.add(guid);
    while (this.known.size > this.o.maxAccounts) this.known.delete(this.known.values().next().value as string);
  }

  /** Work that computes scrypt: at most two at once (the thread pool also serves fs and DNS), bounded. */
  enqueue(job: () => Promise<void>): void {
    if (this.queue.length >= 1000) return;
    this.queue.push(job);
    this.pump();
  }

  private pump(): void {
    while (this.running < 2 && this.queue.length > 0) {
      const job = this.queue.shift() as () => Promise<void>;
      this.running++;
      void job()
        .catch((err: Error) => this.log.warn({ err: err.message }, 'offline verifier: could not update'))
        .finally(() => {
          this.running--;
          this.pump();
        });
    }
  }

  async put(guid: string, r: OfflineRecord, keys: string[]): Promise<void> {
    const ttl = Math.max(1, r.at + this.o.maxAgeMs - Date.now());
    await this.records.set(guid, r, ttl);
    await Promise.all(keys.map((k) => this.names.set(k, guid, ttl)));
    this.remember(guid);
    this.scheduleSave();
  }

  async drop(guid: string, why: string): Promise<void> {
    if ((await this.records.get(guid)) === undefined && !this.known.has(guid)) return;
    await this.records.delete(guid);
    this.known.delete(guid);
    this.log.info({ event: 'offline_verifier', guid, dropped: why }, 'offline verifier dropped');
    this.scheduleSave();
  }

  /** A record within the maximum age; an older one is dropped. */
  async fresh(guid: string, now = Date.now()): Promise<OfflineRecord | 'expired' | undefined> {
    const r = await this.records.get(guid);
    if (!r) return undefined;
    if (now - r.at > this.o.maxAgeMs) {
      await this.drop(guid, 'max_age');
      return 'expired';
    }
    return r;
  }

  private scheduleSave(): void {
    if (!this.o.file || !this.o.key || this.saving) return;
    this.saving = setTimeout(() => {
      this.saving = undefined;
      void this.save().catch((err: Error) => this.log.warn({ err: err.message, file: this.o.file }, 'could not write the offline verifier file'));
    }, 500);
    this.saving.unref();
  }

  async save(): Promise<void> {
    if (!this.o.file || !this.o.key) return;
    const out: Record<string, OfflineRecord> = {};
    for (const guid of this.known) {
      const r = await this.records.get(guid);
      if (r) out[guid] = r;
    }
    const tmp = `${this.o.file}.tmp`;
    writeFileSync(tmp, sealRecords(out, this.o.key), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.o.file);
  }

  /** At start: the file's verifiers within the maximum age (none, and a clear log line, with a wrong key). */
  async load(keysOf: (e: AdEntry) => string[]): Promise<void> {
    const file = this.o.file;
    if (!file || !this.o.key || !existsSync(file)) return;
    let records: Record<string, OfflineRecord>;
    try {
      records = openRecords(readFileSync(file, 'utf8'), this.o.key);
    } catch {
      this.log.error({ event: 'offline_file', file }, 'the offline verifier file cannot be decrypted with auth.offline.key (wrong key, or a damaged file): no verifier was loaded from it, and it will be replaced');
      return;
    }
    const now = Date.now();
    let n = 0;
    for (const [guid, r] of Object.entries(records)) {
      if (now - r.at > this.o.maxAgeMs) continue;
      await this.put(guid, r, keysOf(fromStored(r.entry)));
      n++;
    }
    this.log.info({ event: 'offline_file', file, loaded: n }, 'offline verifiers loaded from the file');
  }

  async close(): Promise<void> {
    if (this.saving) {
      clearTimeout(this.saving);
      this.saving = undefined;
      await this.save().catch(() => undefined);
    }
  }
}

export interface OfflineBinderOptions {
  store: OfflineStore;
  usersSource: KindSource;
  userClass: string;
  keyAttr: string;
  upnAttr: string;
  mail: boolean;
  /** AD attributes of the entry kept (what the user mapping reads, and the state attributes) */
  snapshotAttributes: string[];
  /** the directory, without the offline answers below (the check, the snapshot reads) */
  source: EntrySource;
  read(dn: string, attributes: string[]): Promise<AdEntry | undefined>;
  /** with provisioning on: the groups a provisioning event of this user carries (kept with the verifier) */
  groupsOf?: (ad: AdEntry) => Promise<string[]>;
  /** every DC in back-off (none reachable) */
  allDown(): boolean;
  guard(): LockoutGuard | undefined;
}

/** Per core: the bind flow's and the directory's side of offline mode. */
export class OfflineBinder {
  private timer: NodeJS.Timeout | undefined;
  private last: { usn: number; dc: string } | undefined;
  private checking = false;

  private readonly read: ReadonlySet<string>;

  constructor(readonly o: OfflineBinderOptions) {
    this.read = new Set(o.snapshotAttributes.map((a) => a.toLowerCase()));
  }

  get store(): OfflineStore {
    return this.o.store;
  }

  /** Whether a failure means AD cannot answer at all (and not that a DC answered with an error). */
  applies(err?: unknown): boolean {
    const yes = (err === undefined || isConnectionError(err)) && this.o.allDown();
    if (yes) this.o.store.note(true);
    return yes;
  }

  /** Lower-case index keys of an entry: how bind names find it offline. */
  keysOf(e: AdEntry): string[] {
    const keys: string[] = [];
    const k = first(e, this.o.keyAttr);
    if (k) keys.push(`k:${k.toLowerCase()}`);
    const upn = first(e, this.o.upnAttr);
    if (upn) keys.push(`u:${upn.toLowerCase()}`);
    const mail = first(e, 'mail');
    if (this.o.mail && mail) keys.push(`m:${mail.toLowerCase()}`);
    try {
      keys.push(`d:${normalizeDN(e.dn)}`);
    } catch {
      /* a DN that does not parse is not indexed */
    }
    return keys;
  }

  /** AD accepted this password (an online bind): a new verifier if there is none, it is old, or the password moved. */
  accepted(ad: AdEntry, password: string): void {
    const store = this.o.store;
    store.note(false);
    const guid = guidOf(ad);
    if (!guid) return;
    const pls = first(ad, 'pwdLastSet');
    void store.records.get(guid).then((r) => {
      const now = Date.now();
      if (r && r.pls === pls && now - r.at < store.refreshMs) return void store.remember(guid);
      // the outcome is decided before this runs; the work goes to the thread pool, two at a time
      setImmediate(() => store.enqueue(() => this.compute(guid, ad.dn, password, now)));
    }, () => undefined);
  }

  private async compute(guid: string, dn: string, password: string, at: number): Promise<void> {
    const entry = await this.o.read(dn, this.o.snapshotAttributes);
    if (!entry || guidOf(entry) !== guid) return;
    const v = await makeVerifier(password);
    await this.o.store.put(guid, { ...v, at, pls: first(entry, 'pwdLastSet'), entry: toStored(entry), ...(await this.groups(entry)) }, this.keysOf(entry));
  }

  /** The groups to keep with the verifier (provisioning on, and the membership index answered). */
  private async groups(e: AdEntry): Promise<{ groups?: string[] }> {
    const groups = await this.o.groupsOf?.(e).catch(() => undefined);
    return groups ? { groups } : {};
  }

  /** AD answered a bind with a refusal: about this password or account, the verifier goes. */
  async refused(ad: AdEntry, reason: BindReason): Promise<void> {
    if (reason !== 'upstream_unavailable') this.o.store.note(false);
    const guid = guidOf(ad);
    if (guid && DROP_REASONS.has(reason)) await this.o.store.drop(guid, reason);
  }

  /** A password set through the gateway (AD took it): the old verifier goes now, the new one follows. */
  async passwordSet(adDn: string, password: string): Promise<void> {
    let guid: string | undefined;
    try {
      guid = await this.o.store.names.get(`d:${normalizeDN(adDn)}`);
    } catch {
      guid = undefined;
    }
    if (guid) await this.o.store.drop(guid, 'password_set');
    const at = Date.now();
    this.o.store.enqueue(async () => {
      const entry = await this.o.read(adDn, this.o.snapshotAttributes);
      const g = entry && guidOf(entry);
      if (!entry || !g) return;
      const v = await makeVerifier(password);
      await this.o.store.put(g, { ...v, at, pls: first(entry, 'pwdLastSet'), entry: toStored(entry), ...(await this.groups(entry)) }, this.keysOf(entry));
    });
  }

  /** The guid a bind name leads to offline (the entry kept must still carry that name). */
  async guidFor(name: BindName): Promise<string | undefined> {
    const names = this.o.store.names;
    let key: string[] = [];
    switch (name.form) {
      case 'virtual-dn':
      case 'down-level':
      case 'username':
        key = [`k:${name.username.toLowerCase()}`];
        break;
      case 'upn':
        key = [`u:${name.upn.toLowerCase()}`, ...(this.o.mail ? [`m:${name.upn.toLowerCase()}`] : [])];
        break;
      case 'ad-dn':
        try {
          key = [`d:${normalizeDN(name.dn)}`];
        } catch {
          key = [];
        }
        break;
      default:
        return undefined;
    }
    for (const k of key) {
      const g = await names.get(k);
      if (g) return g;
    }
    return undefined;
  }

  /**
   * The offline decision for a resolved account: its verifier, within the maximum age. With the name the
   * client bound with, that name must still lead to the account as last read (a resolution remembered
   * from before a rename the periodic check saw leads nowhere, as it would online).
   */
  async bind(ad: AdEntry, password: string, client: string, name?: BindName): Promise<{ reason: BindReason; result: OfflineResult; ad?: AdEntry; groups?: string[] }> {
    const store = this.o.store;
    const guid = guidOf(ad);
    const named = !name || !guid || (await this.guidFor(name)) === guid;
    const r = guid && named ? await store.fresh(guid) : undefined;
    const done = (reason: BindReason, result: OfflineResult, e?: AdEntry) => {
      store.count(result);
      return { reason, result, ...(e ? { ad: e } : {}), ...(e && r && r !== 'expired' && r.groups ? { groups: r.groups } : {}) };
    };
    if (r === undefined) return done('upstream_unavailable', 'no_verifier');
    if (r === 'expired') return done('upstream_unavailable', 'expired');
    store.remember(guid as string);
    const guard = this.o.guard();
    if (await guard?.accountBlocked(ad.dn, client)) return done('throttled', 'throttled');
    if (!(await checkVerifier(password, r))) {
      await guard?.badPassword(ad.dn, password, client);
      return done('bad_credentials', 'wrong_password');
    }
    await guard?.succeeded(ad.dn, client);
    return done('ok', 'success', fromStored(r.entry));
  }

  /**
   * The directory while every DC is unreachable: a look-up of one user by its key, UPN, mail, DN or
   * objectGUID within the users source is answered from the entry kept with its verifier (the filter
   * evaluated on it); everything else (listings, groups, the membership index) fails as it would.
   */
  source(): EntrySource {
    return {
      search: (q) => this.searchOrOffline(q),
    };
  }

  private async *searchOrOffline(q: AdQuery): AsyncGenerator<AdEntry[]> {
    let yielded = false;
    try {
      for await (const page of this.o.source.search(q)) {
        yielded = true;
        yield page;
      }
    } catch (err) {
      if (yielded || !this.applies(err)) throw err;
      const found = await this.offlineLookup(q);
      if (!found) throw err;
      yield found;
    }
  }

  private async offlineLookup(q: AdQuery): Promise<AdEntry[] | undefined> {
    const prefix = `(&${this.o.userClass}${this.o.usersSource.filter ?? ''}`;
    if (!q.filter.startsWith(prefix) || !q.filter.endsWith(')')) return undefined;
    let base: string;
    let usersBase: string;
    try {
      base = normalizeDN(q.base);
      usersBase = normalizeDN(this.o.usersSource.base);
    } catch {
      return undefined;
    }
    const rest = q.filter.slice(prefix.length, -1);
    let f: Filter;
    try {
      f = rest === '' ? { t: 'and', c: [] } : parseFilter(`(&${rest})`);
    } catch {
      return undefined;
    }
    // the names the filter pins (an equality every match must satisfy): the candidates
    const pins = pinned(f);
    const keys: string[] = [];
    for (const p of pins) {
      if (p.attr === this.o.keyAttr.toLowerCase()) keys.push(`k:${p.value.toLowerCase()}`);
      else if (p.attr === this.o.upnAttr.toLowerCase()) keys.push(`u:${p.value.toLowerCase()}`);
      else if (p.attr === 'mail') keys.push(`m:${p.value.toLowerCase()}`);
    }
    let guids = (await Promise.all(keys.map((k) => this.o.store.names.get(k)))).filter((g): g is string => Boolean(g));
    if (keys.length === 0 && q.scope === 'base') {
      const g = await this.o.store.names.get(`d:${base}`);
      if (g) guids = [g];
    }
    if (guids.length === 0) return undefined;
    const out: AdEntry[] = [];
    for (const guid of new Set(guids)) {
      const r = await this.o.store.fresh(guid);
      if (!r || r === 'expired') continue;
      const e = fromStored(r.entry);
      let dn: string;
      try {
        dn = normalizeDN(e.dn);
      } catch {
        continue;
      }
      if (!isWithin(dn, usersBase)) continue;
      if (q.scope === 'base' ? dn !== base : !isWithin(dn, base)) continue;
      const m = matches(f, e, this.read);
      if (m === undefined) return undefined; // a term this cannot decide: fail as without offline mode
      if (m) out.push(e);
    }
    // only an entry it has is an answer: a name it does not know fails as it would (unavailable)
    return out.length > 0 ? out : undefined;
  }

  /** Start the periodic check (while AD is reachable). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.check(), this.o.store.o.checkIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * The incremental look at AD: highestCommittedUSN (rootDSE) unchanged: nothing to do. Otherwise the
   * users changed since (uSNChanged>=last+1, anywhere in the domain: a move out of the users base too),
   * and, if a group changed, every known account: each checked within the users source (base and
   * filter): gone, or pwdLastSet/userAccountControl/lockoutTime/accountExpires changed, drops it.
   * USNs are per DC: a different DC (dsServiceName) starts over with every known account.
   */
  async check(): Promise<{ checked: number; dropped: number } | undefined> {
    const store = this.o.store;
    if (this.checking || (store.known.size === 0 && this.last)) return undefined;
    this.checking = true;
    try {
      const dse = await collect(this.o.source.search({ base: '', scope: 'base', filter: '(objectClass=*)', attributes: ['highestCommittedUSN', 'dsServiceName'] }));
      store.note(false);
      const usn = Number(first(dse[0] as AdEntry, 'highestCommittedUSN'));
      const dc = first(dse[0] as AdEntry, 'dsServiceName');
      const last = this.last;
      if (last && last.dc === dc && last.usn === usn) return { checked: 0, dropped: 0 };
      let all = !last || last.dc !== dc || !Number.isFinite(usn);
      let changed = new Set<string>();
      // where each changed account is now (a rename or a move changes its DN): looked up there too
      const dns = new Map<string, string>();
      if (!all && last) {
        const since = `(uSNChanged>=${last.usn + 1})`;
        const domain = this.domainBase();
        for (const e of await collect(this.o.source.search({ base: domain, scope: 'sub', filter: `(&${this.o.userClass}${since})`, attributes: ['objectGUID'] }))) {
          const g = guidOf(e);
          if (g && store.known.has(g)) {
            changed.add(g);
            dns.set(g, e.dn);
          }
        }
        const groups = await collect(this.o.source.search({ base: domain, scope: 'sub', filter: `(&(objectClass=group)${since})`, attributes: ['1.1'] }));
        if (groups.length > 0) all = true;
      }
      if (all) changed = new Set(store.known);
      const dropped = await this.checkAccounts([...changed], dns);
      this.last = { usn, dc };
      return { checked: changed.size, dropped };
    } catch (err) {
      if (this.applies(err)) return undefined;
      store.log.warn({ err: (err as Error).message }, 'offline verifiers: the periodic check failed (verifiers are kept until the next one, or their maximum age)');
      return undefined;
    } finally {
      this.checking = false;
    }
  }

  private domainBase(): string {
    // the users source's base climbs to its dc= components (the domain)
    const parts = this.o.usersSource.base.split(',');
    const i = parts.findIndex((p) => /^\s*dc=/i.test(p));
    return i >= 0 ? parts.slice(i).join(',') : this.o.usersSource.base;
  }

  private async checkAccounts(guids: string[], dns = new Map<string, string>()): Promise<number> {
    const store = this.o.store;
    let dropped = 0;
    for (let i = 0; i < guids.length; i += 50) {
      const batch = guids.slice(i, i + 50);
      // looked up by their naming attribute or their DN (now, when the uSNChanged read saw it; else as
      // kept), text filters every DC and client library takes (ldapts garbles binary ones), matched by
      // objectGUID: an account renamed (new name, same DN) or moved (same name) is found and keeps its
      // verifier under its new names; one whose name and DN both changed unseen goes (the safe side)
      const records = new Map<string, OfflineRecord>();
      for (const g of batch) {
        const r = await store.records.get(g);
        if (r) records.set(g, r);
      }
      const terms = [...records].flatMap(([g, r]) => [eq(this.o.keyAttr, first(fromStored(r.entry), this.o.keyAttr)), eq('distinguishedName', dns.get(g) ?? r.entry.dn)]);
      const seen = new Map<string, AdEntry>();
      if (terms.length > 0) {
        const filter = `(&${this.o.userClass}${this.o.usersSource.filter ?? ''}${filterToString(terms.length === 1 ? (terms[0] as FilterNode) : or(...terms))})`;
        for (const e of await collect(this.o.source.search({ base: this.o.usersSource.base, scope: 'sub', filter, attributes: this.o.snapshotAttributes }))) {
          const g = guidOf(e);
          if (g) seen.set(g, e);
        }
      }
      for (const g of batch) {
        const r = records.get(g);
        if (!r) {
          store.known.delete(g);
          continue;
        }
        const e = seen.get(g);
        if (!e) {
          await store.drop(g, 'left_source');
          dropped++;
          continue;
        }
        const before = fromStored(r.entry);
        const moved = STATE_ATTRS.find((a) => first(before, a) !== first(e, a));
        if (moved) {
          await store.drop(g, moved === 'pwdLastSet' ? 'password_changed' : 'state_changed');
          dropped++;
          continue;
        }
        const next = { ...r, entry: toStored(e), ...(await this.groups(e)) };
        if (JSON.stringify(next) === JSON.stringify(r)) continue;
        const keys = this.keysOf(e);
        await store.put(g, next, keys);
        // names it no longer has lead nowhere (another account may have taken one: then it stays theirs)
        const gone = this.keysOf(before).filter((k) => !keys.includes(k));
        for (const k of gone) if ((await store.names.get(k)) === g) await store.names.delete(k);
        if (gone.length > 0) store.log.info({ event: 'offline_verifier', guid: g, renamed: true }, 'offline verifier kept under the account\'s new name');
      }
    }
    return dropped;
  }
}

async function collect(it: AsyncIterable<AdEntry[]>): Promise<AdEntry[]> {
  const out: AdEntry[] = [];
  for await (const page of it) out.push(...page);
  return out;
}

/** objectGUID's string form back to AD's byte order (transforms.ts guidToString, inverted). */
export function guidBytes(guid: string): Buffer {
  const h = guid.replace(/-/g, '');
  const b = Buffer.from(h, 'hex');
  return Buffer.from([b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], ...b.subarray(8)] as number[]);
}

// A small filter language for the offline look-up: and, or, not, equality and presence. Anything else
// (substrings, ordering, extensible matches) is undecidable here, and the look-up fails as it would.
type Filter = { t: 'and' | 'or'; c: Filter[] } | { t: 'not'; c: Filter } | { t: 'eq'; attr: string; value: string; bytes: Buffer } | { t: 'present'; attr: string } | { t: 'other' };

export function parseFilter(s: string): Filter {
  let i = 0;
  const node = (): Filter => {
    if (s[i] !== '(') throw new Error('filter: ( expected');
    i++;
    const op = s[i];
    let f: Filter;
    if (op === '&' || op === '|') {
      i++;
      const c: Filter[] = [];
      while (s[i] === '(') c.push(node());
      f = { t: op === '&' ? 'and' : 'or', c };
    } else if (op === '!') {
      i++;
      f = { t: 'not', c: node() };
    } else {
      const end = s.indexOf(')', i);
      if (end < 0) throw new Error('filter: ) expected');
      const item = s.slice(i, end);
      i = end;
      const m = /^([A-Za-z0-9.;-]+)=(.*)$/.exec(item);
      if (!m || /[<>~:]$/.test(m[1] as string)) f = { t: 'other' };
      else if (m[2] === '*') f = { t: 'present', attr: (m[1] as string).toLowerCase() };
      else if ((m[2] as string).includes('*')) f = { t: 'other' };
      else {
        const bytes = unescapeValue(m[2] as string);
        f = { t: 'eq', attr: (m[1] as string).toLowerCase(), value: bytes.toString('utf8'), bytes };
      }
    }
    if (s[i] !== ')') throw new Error('filter: ) expected');
    i++;
    return f;
  };
  const f = node();
  if (i !== s.length) throw new Error('filter: trailing text');
  return f;
}

/** RFC 4515 value: `\\xx` escapes are bytes, the rest UTF-8. */
function unescapeValue(v: string): Buffer {
  const parts: Buffer[] = [];
  let text = '';
  for (let i = 0; i < v.length; i++) {
    if (v[i] === '\\' && /^[0-9a-fA-F]{2}$/.test(v.slice(i + 1, i + 3))) {
      if (text) parts.push(Buffer.from(text, 'utf8'));
      text = '';
      parts.push(Buffer.from([parseInt(v.slice(i + 1, i + 3), 16)]));
      i += 2;
    } else text += v[i];
  }
  if (text) parts.push(Buffer.from(text, 'utf8'));
  return Buffer.concat(parts);
}

/** Equalities every match must satisfy (the and-conjuncts at the top). */
function pinned(f: Filter): Array<{ attr: string; value: string }> {
  if (f.t === 'eq') return [f];
  if (f.t === 'and') return f.c.flatMap(pinned);
  return [];
}

/** true / false, or undefined when a term cannot be decided here. */
export function matches(f: Filter, e: AdEntry, read: ReadonlySet<string>): boolean | undefined {
  switch (f.t) {
    case 'and': {
      let r: boolean | undefined = true;
      for (const c of f.c) {
        const m = matches(c, e, read);
        if (m === false) return false;
        if (m === undefined) r = undefined;
      }
      return r;
    }
    case 'or': {
      let r: boolean | undefined = false;
      for (const c of f.c) {
        const m = matches(c, e, read);
        if (m === true) return true;
        if (m === undefined) r = undefined;
      }
      return r;
    }
    case 'not': {
      const m = matches(f.c, e, read);
      return m === undefined ? undefined : !m;
    }
    case 'present':
      if (f.attr === 'objectclass' || e.attrs.has(f.attr)) return true;
      return read.has(f.attr) ? false : undefined;
    case 'eq': {
      const vs = e.attrs.get(f.attr);
      // an attribute the entry kept was read: absent, it has no value; any other is not known here
      if (!vs) return read.has(f.attr) ? false : undefined;
      return vs.some((v) => (Buffer.isBuffer(v) ? v.equals(f.bytes) : String(v).toLowerCase() === f.value.toLowerCase()));
    }
    default:
      return undefined;
  }
}
