// The lockout shield: a gateway that VPN clients reach must not become the tool that locks every AD
// account. Failed binds are counted in sliding windows per (account, source IP), per account and per
// source IP; past a threshold, binds are refused here (49, reason `throttled`) without touching AD.
// Accounts are keyed by their resolved AD DN, so every bind-name form counts together. The same wrong
// password retried for the same account is answered here and counts once (HMAC with a per-process
// secret, memory only). A success clears that account's counters for that address, and the account's
// total: AD resets badPwdCount on a successful logon too.
import { createHmac, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';

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

/** Failure times within the window, oldest first; bounded by the largest threshold. */
class Window {
  private readonly times: number[] = [];
  constructor(private readonly cap: number) {}
  add(now: number): void {
    this.times.push(now);
    if (this.times.length > this.cap) this.times.shift();
  }
  count(now: number, windowMs: number): number {
    while (this.times.length > 0 && (this.times[0] as number) <= now - windowMs) this.times.shift();
    return this.times.length;
  }
}

export class LockoutGuard {
  private readonly secret = randomBytes(32);
  private readonly windows: LRUCache<string, Window>;
  private readonly seenWrong: LRUCache<string, true>;
  private readonly buckets: LRUCache<string, { tokens: number; at: number }>;

  constructor(
    readonly o: GuardOptions,
    private readonly onTrip: (scope: TripScope, client: string, account?: string) => void = () => undefined,
  ) {
    this.windows = new LRUCache({ max: 200_000, ttl: o.windowMs, updateAgeOnGet: false });
    this.seenWrong = new LRUCache({ max: 200_000, ttl: o.windowMs });
    this.buckets = new LRUCache({ max: 100_000, ttl: 60_000 });
  }

  /** Token bucket per address: false when this bind is over the rate. */
  allowBind(client: string, now = Date.now()): boolean {
    if (this.o.bindRatePerIp <= 0) return true;
    const b = this.buckets.get(client) ?? { tokens: this.o.bindBurstPerIp, at: now };
    b.tokens = Math.min(this.o.bindBurstPerIp, b.tokens + ((now - b.at) / 1000) * this.o.bindRatePerIp);
    b.at = now;
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    this.buckets.set(client, b);
    return ok;
  }

  private count(key: string, now: number): number {
    return this.windows.get(key)?.count(now, this.o.windowMs) ?? 0;
  }

  /** Before any look-up: is this address over its failure budget? */
  ipBlocked(client: string, now = Date.now()): boolean {
    const blocked = this.o.perIp > 0 && this.count(`i:${client}`, now) >= this.o.perIp;
    if (blocked) this.onTrip('ip', client);
    return blocked;
  }

  /** After resolving the account, before binding upstream. */
  accountBlocked(account: string, client: string, now = Date.now()): TripScope | undefined {
    const a = account.toLowerCase();
    let scope: TripScope | undefined;
    if (this.o.perAccountIp > 0 && this.count(`ai:${a}|${client}`, now) >= this.o.perAccountIp) scope = 'account_ip';
    else if (this.o.perAccount > 0 && this.count(`a:${a}`, now) >= this.o.perAccount) scope = 'account';
    if (scope) this.onTrip(scope, client, account);
    return scope;
  }

  private digest(account: string, password: string): string {
    return createHmac('sha256', this.secret).update(account.toLowerCase()).update('\0').update(password, 'utf8').digest('base64');
  }

  /** This exact wrong password was already refused by AD for this account, within the window. */
  knownWrong(account: string, password: string): boolean {
    return this.seenWrong.has(this.digest(account, password));
  }

  private add(key: string, now: number): void {
    let w = this.windows.get(key);
    if (!w) {
      w = new Window(Math.max(this.o.perAccountIp, this.o.perAccount, this.o.perIp, 1));
      this.windows.set(key, w);
    }
    w.add(now);
  }

  /** AD refused this password for this account (bad_credentials). */
  badPassword(account: string, password: string, client: string, now = Date.now()): void {
    const a = account.toLowerCase();
    this.seenWrong.set(this.digest(account, password), true);
    this.add(`ai:${a}|${client}`, now);
    this.add(`a:${a}`, now);
    this.add(`i:${client}`, now);
  }

  /** A failure that is not about an account's password (unknown user, invalid name): the address only. */
  otherFailure(client: string, now = Date.now()): void {
    this.add(`i:${client}`, now);
  }

  succeeded(account: string, client: string): void {
    const a = account.toLowerCase();
    this.windows.delete(`ai:${a}|${client}`);
    this.windows.delete(`a:${a}`);
  }
}
