// The lockout shield: a gateway that VPN clients reach must not become the tool that locks every AD
// account. Failed binds are counted in sliding windows per (account, source IP), per account and per
// source IP; past a threshold, binds are refused here (49, reason `throttled`) without touching AD.
// Accounts are keyed by their resolved AD DN, so every bind-name form counts together. The same wrong
// password retried for the same account is answered here and counts once (HMAC with a per-process
// secret, memory only). A success clears that account's counters for that address, and the account's
// total: AD resets badPwdCount on a successful logon too.
import { createHmac, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { EntrySource } from '../directory/search';
import type { RateLimiter, StateStores, TtlMap, WindowCounter } from '../state/types';

export interface GuardOptions {
  windowMs: number;
  perAccountIp: number;
  perAccount: number;
  perIp: number;
  /** binds per second per source address (token bucket), and its burst */
  bindRatePerIp: number;
  bindBurstPerIp: number;
}

export type TripScope = 'account_ip' | 'account' | 'ip';

export class LockoutGuard {
  private readonly secret = randomBytes(32);
  private readonly windows: WindowCounter;
  private readonly seenWrong: TtlMap<true>;
  private readonly buckets: RateLimiter;

  constructor(
    readonly o: GuardOptions,
    state: StateStores,
    private readonly onTrip: (scope: TripScope, client: string, account?: string) => void = () => undefined,
  ) {
    this.windows = state.windowCounter('lockout', { windowMs: o.windowMs, cap: Math.max(o.perAccountIp, o.perAccount, o.perIp, 1), max: 200_000 });
    this.seenWrong = state.ttlMap<true>('lockout-wrong', { max: 200_000, ttlMs: o.windowMs });
    this.buckets = state.rateLimiter('bind-rate', { ratePerSec: o.bindRatePerIp, burst: o.bindBurstPerIp, max: 100_000 });
  }

  /** Token bucket per address: false when this bind is over the rate. */
  allowBind(client: string, now = Date.now()): Promise<boolean> {
    return this.buckets.take(client, now);
  }

  /** Before any look-up: is this address over its failure budget? */
  async ipBlocked(client: string, now = Date.now()): Promise<boolean> {
    const blocked = this.o.perIp > 0 && (await this.windows.count(`i:${client}`, now)) >= this.o.perIp;
    if (blocked) this.onTrip('ip', client);
    return blocked;
  }

  /** After resolving the account, before binding upstream. */
  async accountBlocked(account: string, client: string, now = Date.now()): Promise<TripScope | undefined> {
    const a = account.toLowerCase();
    let scope: TripScope | undefined;
    if (this.o.perAccountIp > 0 && (await this.windows.count(`ai:${a}|${client}`, now)) >= this.o.perAccountIp) scope = 'account_ip';
    else if (this.o.perAccount > 0 && (await this.windows.count(`a:${a}`, now)) >= this.o.perAccount) scope = 'account';
    if (scope) this.onTrip(scope, client, account);
    return scope;
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
    await Promise.all([this.seenWrong.set(this.digest(account, password), true), this.windows.add(`ai:${a}|${client}`, now), this.windows.add(`a:${a}`, now), this.windows.add(`i:${client}`, now)]);
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
