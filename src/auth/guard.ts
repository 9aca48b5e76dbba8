// The lockout shield: a gateway that VPN clients reach must not become the tool that locks every AD
// account. Failed binds are counted in sliding windows per (account, source IP), per account and per
// source IP; past a threshold, binds are refused here (49, reason `throttled`) without touching AD.
// Accounts are keyed by their resolved AD DN, so every bind-name form counts together. The same wrong
// password retried for the same account is answered here and counts once: the store keeps an HMAC of
// (account, password), never the password, keyed with a secret every process and replica derives from
// the configuration (so the memory is shared where the state is), never stored with it. A success
// clears that account's counters for that address, and the account's total: AD resets badPwdCount on a
// successful logon too.
//
// A bind asks the shield with every question at once (screen; screenAccount when the name had to be
// looked up first): on a shared backend (Redis) the look-ups travel together, one round trip.
//
// Most accounts have no failure at all, and asking about them is the whole cost of the shield. Each
// failure flags its account for the window; an account without a flag is not asked about further (no
// counts read, no digest computed). On a remote backend even reading the flag is a round trip: an
// account with no flag in the shared state is remembered as clean here, and asked about again only once
// some replica records a failure for it (it writes the flag, then says so on the bus), after the bus
// connection drops or comes back, or a minute later at most. Binds arriving at another replica while that
// message is in flight can miss the failure; the count itself is never lost, and this replica's own
// failures are seen by its next bind at once.
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { EntrySource } from '../directory/search';
import type { Bus, RateLimiter, StateStores, TtlMap, WindowCounter } from '../state/types';

export interface GuardOptions {
  windowMs: number;
  perAccountIp: number;
  perAccount: number;
  perIp: number;
  /** binds per second per source address (token bucket), and its burst */
  bindRatePerIp: number;
  bindBurstPerIp: number;
  /**
   * What the known-wrong memory's HMAC key is derived from (HKDF-SHA256): the same in every process and
   * replica of one configuration, so that they share that memory. Absent: a random key per process.
   */
  keyMaterial?: string;
}

export type TripScope = 'account_ip' | 'account' | 'ip';

/** The bus topic on which a replica says it recorded a failure for an account (lower-case DN). */
const FLAG_TOPIC = 'lockout-flag';
/** What the bus delivers after a lost subscription (messages may have been missed): forget every clean account. */
const RESYNC = '';
/** What the shield says of an account: a tripped budget, a password AD already refused, or nothing. */
export type AccountVerdict = Exclude<TripScope, 'ip'> | 'known_wrong' | undefined;
interface AccountAnswers {
  pair: number;
  total: number;
  wrong: boolean;
}

/** The HMAC key of the known-wrong memory: derived from keyMaterial, or random for this process alone. */
export function shieldKey(keyMaterial: string | undefined): Buffer {
  if (keyMaterial === undefined) return randomBytes(32);
  return Buffer.from(hkdfSync('sha256', keyMaterial, 'ldap-gateway lockout shield', 'known-wrong passwords v1', 32));
}

export class LockoutGuard {
  private readonly secret: Buffer;
  private readonly windows: WindowCounter;
  private readonly seenWrong: TtlMap<true>;
  private readonly buckets: RateLimiter;
  /**
   * An account's failure within the window (written with each failure, before its counts; a success does
   * not clear it, since the known-wrong memory outlives the counts). An account without one has no count
   * and no known-wrong password: it is not asked about further.
   */
  private readonly flags: TtlMap<true>;
  /**
   * Remote backend only (see the top of this file): the accounts known here to have no flag, and the bus
   * that tells of new ones.
   */
  private readonly remote: { clean: LRUCache<string, true>; bus: Bus; unsubscribe: () => void } | undefined;
  /** counts flags heard of, so that an answer asked for before one is not kept as clean */
  private epoch = 0;

  constructor(
    readonly o: GuardOptions,
    state: StateStores,
    private readonly onTrip: (scope: TripScope, client: string, account?: string) => void = () => undefined,
  ) {
    this.secret = shieldKey(o.keyMaterial);
    this.windows = state.windowCounter('lockout', { windowMs: o.windowMs, cap: Math.max(o.perAccountIp, o.perAccount, o.perIp, 1), max: 200_000 });
    this.seenWrong = state.ttlMap<true>('lockout-wrong', { max: 200_000, ttlMs: o.windowMs });
    this.buckets = state.rateLimiter('bind-rate', { ratePerSec: o.bindRatePerIp, burst: o.bindBurstPerIp, max: 100_000 });
    this.flags = state.ttlMap<true>('lockout-flags', { max: 200_000, ttlMs: o.windowMs });
    this.remote = state.remote
      ? {
          clean: new LRUCache<string, true>({ max: 100_000, ttl: Math.min(o.windowMs, 60_000) }),
          bus: state.bus,
          unsubscribe: state.bus.subscribe(FLAG_TOPIC, (a) => this.flagged(a)),
        }
      : undefined;
  }

  /**
   * Before any look-up: over the bind rate, or over the address's failure budget? When the account is
   * already known (a name looked up before), its questions travel in the same batch, so that on Redis
   * the whole shield is one round trip; its verdict counts only if the address passed.
   */
  async screen(client: string, account?: { dn: string; password: string }, now = Date.now()): Promise<{ client?: 'rate_limited' | 'throttled'; account?: AccountVerdict }> {
    const [allowed, ipFailures, asked] = await Promise.all([
      this.buckets.take(client, now),
      this.o.perIp > 0 ? this.windows.count(`i:${client}`, now) : 0,
      account ? this.accountQuestions(account.dn, account.password, client, now) : undefined,
    ]);
    if (!allowed) return { client: 'rate_limited' };
    if (this.o.perIp > 0 && ipFailures >= this.o.perIp) {
      this.onTrip('ip', client);
      return { client: 'throttled' };
    }
    return account && asked ? { account: this.verdict(asked, account.dn, client) } : {};
  }

  /** After resolving the account, every question at once: over a failure budget, or a password AD already refused? */
  async screenAccount(account: string, password: string, client: string, now = Date.now()): Promise<AccountVerdict> {
    return this.verdict(await this.accountQuestions(account, password, client, now), account, client);
  }

  /** After resolving the account, before binding upstream: over a failure budget? */
  async accountBlocked(account: string, client: string, now = Date.now()): Promise<TripScope | undefined> {
    const v = this.verdict({ ...(await this.accountCounts(account, client, now)), wrong: false }, account, client);
    return v === 'known_wrong' ? undefined : v;
  }

  private async accountCounts(account: string, client: string, now: number): Promise<{ pair: number; total: number }> {
    const a = account.toLowerCase();
    const [pair, total] = await Promise.all([this.o.perAccountIp > 0 ? this.windows.count(`ai:${a}|${client}`, now) : 0, this.o.perAccount > 0 ? this.windows.count(`a:${a}`, now) : 0]);
    return { pair, total };
  }

  private async accountQuestions(account: string, password: string, client: string, now: number): Promise<AccountAnswers> {
    const a = account.toLowerCase();
    const r = this.remote;
    if (r?.clean.has(a)) return { pair: 0, total: 0, wrong: false };
    // a local read costs nothing: no flag, nothing to count and no digest to compute
    if (!r && (await this.flags.get(a)) === undefined) return { pair: 0, total: 0, wrong: false };
    const epoch = this.epoch;
    const [counts, wrong, flagged] = await Promise.all([this.accountCounts(account, client, now), this.knownWrong(account, password), r ? this.flags.get(a) : true]);
    // clean only if no flag was heard of while asking (the answer may predate it)
    if (r && flagged === undefined && epoch === this.epoch) r.clean.set(a, true);
    return { ...counts, wrong };
  }

  /** A failure for this account was recorded (here or by another replica): ask about it again. */
  private flagged(a: string): void {
    this.epoch++;
    if (a === RESYNC) this.remote?.clean.clear();
    else this.remote?.clean.delete(a);
  }

  /** Stop listening to the bus (a reload replaced this guard). */
  stop(): void {
    this.remote?.unsubscribe();
  }

  /** The budgets first, then the known-wrong answer; a tripped budget is reported. */
  private verdict(x: AccountAnswers, account: string, client: string): AccountVerdict {
    const scope: TripScope | undefined = this.o.perAccountIp > 0 && x.pair >= this.o.perAccountIp ? 'account_ip' : this.o.perAccount > 0 && x.total >= this.o.perAccount ? 'account' : undefined;
    if (scope) this.onTrip(scope, client, account);
    return scope ?? (x.wrong ? 'known_wrong' : undefined);
  }

  private digest(account: string, password: string): string {
    return createHmac('sha256', this.secret).update(account.toLowerCase()).update('\0').update(password, 'utf8').digest('base64');
  }

  /** This exact wrong password was already refused by AD for this account, within the window. */
  async knownWrong(account: string, password: string): Promise<boolean> {
    return (await this.seenWrong.get(this.digest(account, password))) === true;
  }

  /** AD refused this password for this account (bad_credentials). */
  async badPassword(account: string, password: string, client: string, now = Date.now()): Promise<void> {
    const a = account.toLowerCase();
    // this replica asks about the account again from now on, before any write has landed
    const r = this.remote;
    if (r) this.flagged(a);
    try {
      await Promise.all([
        this.seenWrong.set(this.digest(account, password), true),
        this.windows.add(`ai:${a}|${client}`, now),
        this.windows.add(`a:${a}`, now),
        this.windows.add(`i:${client}`, now),
        this.flags.set(a, true),
      ]);
    } finally {
      // the flag is written (or could not be) before the others hear of it, so whoever asks again finds it
      if (r) await r.bus.publish(FLAG_TOPIC, a);
    }
  }

  /** A failure that is not about an account's password (unknown user, invalid name): the address only. */
  otherFailure(client: string, now = Date.now()): Promise<void> {
    return this.windows.add(`i:${client}`, now);
  }

  /** A password was set through the gateway: a bind with it is no longer a known wrong one. */
  async passwordChanged(account: string, password: string): Promise<void> {
    await this.seenWrong.delete(this.digest(account, password));
  }

  async succeeded(account: string, client: string): Promise<void> {
    const a = account.toLowerCase();
    // no failure recorded anywhere: no count to clear
    if (this.remote ? this.remote.clean.has(a) : (await this.flags.get(a)) === undefined) return;
    await Promise.all([this.windows.clear(`ai:${a}|${client}`), this.windows.clear(`a:${a}`)]);
  }
}

/** Read AD's domain lockout policy once: the shield's per-account limit must stay below it. */
export async function checkLockoutPolicy(source: EntrySource, baseDN: string, perAccount: number, log: Logger): Promise<void> {
  try {
    for await (const page of source.search({ base: baseDN, scope: 'base', filter: '(objectClass=*)', attributes: ['lockoutThreshold'] })) {
      const threshold = Number(String(page[0]?.attrs.get('lockoutthreshold')?.[0] ?? '0'));
      if (threshold === 0) log.info({ perAccount }, "AD's domain policy has no lockout threshold (fine-grained policies may still set one); the shield limits failures to protection.lockout.perAccount");
      else if (perAccount >= threshold) log.warn({ lockoutThreshold: threshold, perAccount }, "protection.lockout.perAccount is not below AD's lockoutThreshold: failed binds through the gateway can still lock accounts");
      else log.info({ lockoutThreshold: threshold, perAccount }, "lockout shield below AD's lockout threshold");
    }
  } catch (err) {
    log.warn({ err: (err as Error).message }, "could not read AD's lockout policy");
  }
}
