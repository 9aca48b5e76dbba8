// Delivery to Defguard's REST API (reference/defguard-ldap.md §5): a missing user is created without a
// password (with one, Defguard would write the user back to LDAP, i.e. to us); changed fields are
// updated with GET-edit-PUT of the full UserInfo; membership is aligned for the mapped groups only,
// through UserInfo.groups (which PUT replaces). Every step is idempotent: a re-delivery after a crash
// finds the user and changes nothing that is already right.
import type { ProvisionedUser } from './events';
import { DeliveryError, errorText, request } from './http';

export interface DefguardOptions {
  url: string;
  token: string;
  timeoutMs: number;
  /** AD group name -> Defguard group name; only these memberships are managed */
  groups: Record<string, string>;
}

type UserInfo = Record<string, unknown> & { username: string; first_name?: string; last_name?: string; email?: string; phone?: string | null; groups?: string[] };

export type DefguardOutcome = 'created' | 'updated' | 'unchanged';

export class DefguardClient {
  private readonly base: string;
  private readonly auth: Record<string, string>;

  constructor(private readonly o: DefguardOptions) {
    this.base = o.url.replace(/\/+$/, '');
    this.auth = { authorization: `Bearer ${o.token}` };
  }

  private call(method: string, path: string, body?: unknown) {
    return request(method, `${this.base}${path}`, this.auth, body === undefined ? undefined : JSON.stringify(body), this.o.timeoutMs);
  }

  private async getUser(username: string): Promise<UserInfo | undefined> {
    const r = await this.call('GET', `/api/v1/user/${encodeURIComponent(username)}`);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw this.fail('GET user', r.status, r.body);
    const info = (r.body as { user?: UserInfo }).user;
    if (!info || typeof info !== 'object') throw new DeliveryError('GET user: unexpected response shape', true);
    return info;
  }

  /** Bring Defguard in line with the user as AD and the gateway see them. */
  async provision(u: ProvisionedUser): Promise<DefguardOutcome> {
    let info = await this.getUser(u.username);
    let outcome: DefguardOutcome = 'unchanged';
    if (!info) {
      const r = await this.call('POST', '/api/v1/user', { username: u.username, first_name: u.firstName, last_name: u.lastName, email: u.email, phone: u.phone ?? null });
      if (r.status === 201 || r.status === 200) outcome = 'created';
      else {
        // a concurrent creation (or an earlier delivery whose answer was lost) is not an error
        info = await this.getUser(u.username);
        if (!info) throw this.fail('POST user', r.status, r.body);
      }
      if (outcome === 'created' && Object.keys(this.o.groups).length === 0) return outcome;
      info = info ?? (await this.getUser(u.username));
      if (!info) throw new DeliveryError('user not found right after its creation', true);
    }
    const next: UserInfo = { ...info, first_name: u.firstName, last_name: u.lastName, email: u.email, phone: u.phone ?? info.phone ?? null, groups: this.alignedGroups(info.groups ?? [], u.groups) };
    const changed = (['first_name', 'last_name', 'email', 'phone'] as const).some((k) => (next[k] ?? null) !== (info[k] ?? null)) || !sameSet(next.groups ?? [], info.groups ?? []);
    if (!changed) return outcome;
    const r = await this.call('PUT', `/api/v1/user/${encodeURIComponent(u.username)}`, next);
    if (r.status !== 200 && r.status !== 201) throw this.fail('PUT user', r.status, r.body);
    return outcome === 'created' ? 'created' : 'updated';
  }

  /** Current Defguard groups, with the managed ones set from AD and every other one left as it is. */
  private alignedGroups(current: string[], adGroups: string[]): string[] {
    const managed = new Set(Object.values(this.o.groups));
    const wanted = new Set(adGroups.flatMap((g) => (this.o.groups[g] ? [this.o.groups[g] as string] : [])));
    return [...new Set([...current.filter((g) => !managed.has(g)), ...wanted])].sort();
  }

  private fail(what: string, status: number, body: unknown): DeliveryError {
    // 401/403: the token or the license, not this event: retry (an operator has to act, metrics show it)
    const retryable = status === 401 || status === 403;
    return new DeliveryError(`${what}: HTTP ${status}${errorText(body) ? ` (${errorText(body)})` : ''}`, retryable, undefined, status);
  }
}

const sameSet = (a: string[], b: string[]) => a.length === b.length && a.every((x) => b.includes(x));
