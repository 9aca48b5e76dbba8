// Write-through: an Add, Modify, ModifyDN, Delete or Password Modify from a client becomes the AD
// operations that do the same thing, under the consumer's write policy (config `consumers[].writes`).
// One request flows one way:
//   plan()   where the target is (virtual DN -> AD object, read fresh from AD), what each attribute becomes
//            (reverse.ts), what the policy allows; the answer is a list of AD writes, or a refusal
//   run()    the AD writes in order (or, in a dry run, a log line naming them); a later step that fails
//            leaves what the earlier ones did (a user created but not enabled stays disabled) and the
//            client gets the error
//   after    whatever remembers what changed forgets it (membership index, search cache, bind names,
//            the lockout shield's wrong-password memory) and reads go to the DC that took the write
// Answers: 32 target missing, 68 exists, 50 refused by policy (reason in the message), 53 not supported
// or read-only, AD's own code for its refusals (reason decoded), 52 no DC. Never 0 for what did not happen.
import type { WritesConfig } from '../config/schema';
import { ResultCode } from '../ldap/protocol';
import type { AddOp, Attribute, DeleteOp, LdapResult, ModifyDNOp, ModifyOp, PasswordModifyOp, WriteOp } from '../ldap/types';
import type { TtlMap } from '../state/types';
import { decodeWriteFailure, type WriteReason } from '../upstream/ad-errors';
import { WriteFailure, type AdChange, type AdWrite } from '../upstream/upstream';
import { escapeDNValue, firstRdnValue, isWithin, normalizeDN, parseDN, DnSyntaxError, formatDN } from './dn';
import { escapeFilterValue } from './filter';
import type { AdEntry, Mapper } from './mapping';
import type { Naming } from './naming';
import { ACCOUNTDISABLE, AD_CLASSES, checkAccountName, classKind, fromUnicodePwd, inverse, isHashedPassword, NORMAL_ACCOUNT, unicodePwd, withDisableBit, type Inverse } from './reverse';
import type { AdQuery, KindSource } from './search';

/** Groups the gateway created carry this in adminDescription: they are managed (may be renamed, emptied, deleted). */
export const MANAGED_MARK = 'ldap-gateway:managed';

/** Who is writing and under which rules, as the policy decided. */
export type WriteRights =
  | { kind: 'consumer'; name: string; policy: WritesConfig }
  /** an end user changing their own password (auth.passwordChange: self) */
  | { kind: 'self'; username: string; adDn: string; dn: string };

export interface WriteAudit {
  consumer?: string;
  user?: string;
  op: WriteOp['op'];
  dn: string;
  adDn?: string;
  attributes: string[];
  result: number;
  /** success; refused by the gateway (policy, read-only attribute, dry run); failed (AD refused, or no DC) */
  outcome: 'success' | 'refused' | 'failed';
  reason: string;
  dc?: string;
  ms: number;
}

export interface WriteUpstream {
  search(q: AdQuery): AsyncIterable<AdEntry[]>;
  read(dn: string, attributes: string[]): Promise<AdEntry | undefined>;
  write(w: AdWrite): Promise<string>;
  readonly encrypted: boolean;
}

export interface WriterOptions {
  naming: Naming;
  users: Mapper;
  groups: Mapper;
  userClass: string;
  groupClass: string;
  usersSource: KindSource;
  groupsSource: KindSource;
  domainBase: string;
  upstream: WriteUpstream;
  /** virtual DNs a Modify just renamed (old -> new, normalized), so Defguard's ModifyDN that follows is answered */
  renames: TtlMap<{ to: string; adDn: string }>;
  diagnostics: 'reason' | 'raw' | 'none';
  /** something changed in AD: forget what remembers it (a password: the account and its new password) */
  changed(what: { adDn: string; password?: string }): Promise<void>;
  audit(a: WriteAudit): void;
  dryRun(a: { consumer: string; op: string; dn: string; operations: unknown[] }): void;
}

/** A step of a plan: an AD write, or "set the disable bit" (a read of AD's current value, then a Modify). */
type Step = AdWrite | { op: 'setDisabled'; dn: string; disabled: boolean; also?: AdChange[] };

interface Plan {
  steps: Step[];
  adDn?: string;
  /** why nothing or something other than the literal request was done (audit reason) */
  reason?: string;
  /** after success: a virtual rename to remember, a password to forget */
  renamed?: { from: string; to: string; adDn: string };
  password?: string;
}

/** A refusal decided before anything was sent to AD. */
class Answer extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const refuse = (reason: string, message: string) => new Answer(ResultCode.insufficientAccessRights, reason, message);
const unsupported = (reason: string, message: string) => new Answer(ResultCode.unwillingToPerform, reason, message);

const USER_ATTRS = ['cn', 'sAMAccountName', 'userPrincipalName', 'userAccountControl', 'objectClass'];
const GROUP_ATTRS = ['cn', 'sAMAccountName', 'adminDescription', 'member', 'objectClass'];

const text = (v: Buffer) => v.toString('utf8');
const first = (e: AdEntry, attr: string) => {
  const v = e.attrs.get(attr.toLowerCase())?.[0];
  return v === undefined ? undefined : typeof v === 'string' ? v : v.toString('utf8');
};
const sameName = (a: string | undefined, b: string | undefined) => a !== undefined && b !== undefined && a.toLowerCase() === b.toLowerCase();
const norm = (dn: string) => {
  try {
    return normalizeDN(dn);
  } catch {
    return undefined;
  }
};
const parentOf = (dn: string) => formatDN(parseDN(dn).slice(1));

/** What a password value is in plain text, or why it cannot become an AD password. */
function passwordOf(inv: Extract<Inverse, { kind: 'password' }>, v: Buffer): string {
  if (inv.form === 'unicodePwd') {
    const pw = fromUnicodePwd(v);
    if (pw === undefined) throw new Answer(ResultCode.invalidAttributeSyntax, 'bad_password_value', 'unicodePwd must be the UTF-16LE encoding of the password in double quotes');
    return pw;
  }
  const pw = text(v);
  if (isHashedPassword(pw))
    throw unsupported(
      'hashed_password',
      'a hashed userPassword ({SSHA}…) cannot become an Active Directory password: in Defguard turn on "LDAP server is Active Directory" and empty "Additional user object classes", so that passwords arrive as unicodePwd',
    );
  return pw;
}

export class DirectoryWriter {
  constructor(private readonly o: WriterOptions) {}

  /** Carry one write to AD; always answers (the audit line and metrics come from here). */
  async handle(op: WriteOp, rights: WriteRights): Promise<LdapResult> {
    const t0 = performance.now();
    const dn = op.op === 'passwordModify' ? (op.userIdentity ?? (rights.kind === 'self' ? rights.dn : '')) : op.dn;
    const audit: WriteAudit = {
      ...(rights.kind === 'consumer' ? { consumer: rights.name } : { user: rights.username }),
      op: op.op,
      dn,
      attributes: attributeNames(op),
      result: 0,
      outcome: 'success',
      reason: 'ok',
      ms: 0,
    };
    let touched: string | undefined;
    let done = 0; // steps AD confirmed
    let plan: Plan | undefined;
    try {
      plan = await this.plan(op, rights);
      audit.adDn = plan.adDn;
      if (plan.steps.length > 0 && rights.kind === 'consumer' && rights.policy.dryRun) {
        this.o.dryRun({ consumer: rights.name, op: op.op, dn, operations: plan.steps.map(redact) });
        throw unsupported('dry_run', 'dry run: nothing was written; the AD operations this would send are in the gateway log');
      }
      for (const step of plan.steps) {
        // set before the step: one that timed out after it was sent may have been applied all the same
        touched = step.dn;
        audit.dc = await this.run(step);
        done++;
        if (step.op === 'rename') touched = `${step.newRdn},${parentOf(step.dn)}`;
      }
      if (plan.renamed) await this.o.renames.set(plan.renamed.from, { to: plan.renamed.to, adDn: plan.renamed.adDn });
      audit.reason = plan.reason ?? 'ok';
      return { code: ResultCode.success, ...(plan.reason ? { message: plan.reason.replace(/_/g, ' ') } : {}) };
    } catch (err) {
      const r = this.answer(err, touched !== undefined);
      audit.result = r.code;
      audit.reason = r.reason;
      audit.outcome = err instanceof Answer ? 'refused' : 'failed';
      if (err instanceof WriteFailure && err.dc) audit.dc = err.dc;
      return { code: r.code, message: r.message };
    } finally {
      // the shield forgets the new password once the step that set it went through, whatever came after
      const passwordSet = plan?.password !== undefined && plan.steps.slice(0, done).some(setsPassword);
      if (touched) await this.o.changed({ adDn: plan?.adDn ?? touched, ...(passwordSet ? { password: plan?.password as string } : {}) }).catch(() => undefined);
      audit.ms = Math.round((performance.now() - t0) * 10) / 10;
      this.o.audit(audit);
    }
  }

  private answer(err: unknown, partly: boolean): { code: number; reason: string; message: string } {
    if (err instanceof Answer) return { code: err.code, reason: err.reason, message: err.message };
    if (err instanceof WriteFailure) {
      const detail = this.o.diagnostics === 'raw' ? `: ${err.diagnostic}` : this.o.diagnostics === 'none' ? '' : `: ${REASON_TEXT[err.reason] ?? err.reason}`;
      const code = err.code === 52 || err.reason === 'upstream_unavailable' ? ResultCode.unavailable : err.code;
      const prefix = partly ? 'partly done (what was done stays, an account created stays disabled); then ' : '';
      return { code, reason: err.reason, message: `${prefix}Active Directory refused the write (${err.reason})${detail}` };
    }
    const message = err instanceof Error ? err.message : String(err);
    // a look-up AD refused (busy, adminLimitExceeded, a DN it will not parse): its own code and reason
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number' && code > 0 && code !== ResultCode.unavailable) {
      const diagnostic = message.replace(/ Code: 0x[0-9a-f]+$/i, '');
      const reason = decodeWriteFailure(code, diagnostic);
      return { code, reason, message: `Active Directory refused a look-up for the write (${reason})${this.o.diagnostics === 'raw' ? `: ${diagnostic}` : ''}` };
    }
    // a look-up before any write could not reach a DC
    return { code: ResultCode.unavailable, reason: 'upstream_unavailable', message: `no domain controller could take the write: ${message}` };
  }

  private async run(step: Step): Promise<string> {
    if (step.op !== 'setDisabled') return this.o.upstream.write(step);
    const cur = await this.o.upstream.read(step.dn, ['userAccountControl']);
    const now = Number(cur ? first(cur, 'userAccountControl') : NaN);
    const value = withDisableBit(Number.isFinite(now) ? now : NORMAL_ACCOUNT, step.disabled);
    const changes: AdChange[] = [...(value !== now ? [{ operation: 'replace' as const, type: 'userAccountControl', values: [String(value)] }] : []), ...(step.also ?? [])];
    if (changes.length === 0) return '';
    return this.o.upstream.write({ op: 'modify', dn: step.dn, changes });
  }

  // ---- planning ----

  private plan(op: WriteOp, rights: WriteRights): Promise<Plan> {
    if (rights.kind === 'self') return this.planSelf(op, rights);
    switch (op.op) {
      case 'add':
        return this.planAdd(op, rights.policy);
      case 'modify':
        return this.planModify(op, rights.policy);
      case 'modifyDN':
        return this.planModifyDN(op, rights.policy);
      case 'delete':
        return this.planDelete(op, rights.policy);
      case 'passwordModify':
        return this.planPasswordModify(op, rights.policy);
    }
  }

  /** An end user: their own password only, as a change with the old one. */
  private async planSelf(op: WriteOp, who: Extract<WriteRights, { kind: 'self' }>): Promise<Plan> {
    const own = (dn: string | undefined) => dn === undefined || dn === '' || norm(dn) === norm(who.dn) || norm(dn) === norm(who.adDn);
    if (op.op === 'passwordModify') {
      if (!own(op.userIdentity)) throw refuse('not_own_entry', 'an end user may change only their own password');
      if (!op.oldPassword) throw refuse('old_password_required', 'changing your own password needs the old password');
      if (!op.newPassword) throw unsupported('new_password_required', 'a new password must be given (the gateway does not generate passwords)');
      return this.passwordChange(who.adDn, text(op.oldPassword), text(op.newPassword));
    }
    if (op.op === 'modify' && own(op.dn)) {
      const del = op.changes.find((c) => c.operation === 'delete');
      const add = op.changes.find((c) => c.operation === 'add');
      const only = op.changes.length === 2 && del && add && del.attribute.values.length === 1 && add.attribute.values.length === 1;
      const invDel = del && inverse(this.o.users, 'user', del.attribute.type);
      const invAdd = add && inverse(this.o.users, 'user', add.attribute.type);
      if (only && invDel?.kind === 'password' && invAdd?.kind === 'password') {
        return this.passwordChange(who.adDn, passwordOf(invDel, del.attribute.values[0] as Buffer), passwordOf(invAdd, add.attribute.values[0] as Buffer));
      }
    }
    throw refuse('end_user_write', 'end users may not write to the directory (only change their own password, where allowed)');
  }

  private passwordChange(adDn: string, oldPw: string, newPw: string): Plan {
    this.passwordAllowed(newPw);
    return {
      adDn,
      password: newPw,
      steps: [{ op: 'modify', dn: adDn, changes: [{ operation: 'delete', type: 'unicodePwd', values: [unicodePwd(oldPw)] }, { operation: 'add', type: 'unicodePwd', values: [unicodePwd(newPw)] }] }],
    };
  }

  private encryptedUpstream(): void {
    if (!this.o.upstream.encrypted) throw unsupported('plain_upstream', 'passwords are written only over an encrypted upstream connection (LDAPS or StartTLS): configure upstream.urls as ldaps:// or upstream.startTLS');
  }

  private passwordAllowed(pw: string): void {
    this.encryptedUpstream();
    if (pw === '') throw new Answer(ResultCode.constraintViolation, 'password_policy', 'the new password is empty');
  }

  private async planPasswordModify(op: PasswordModifyOp, p: WritesConfig): Promise<Plan> {
    this.userRules(p, 'password');
    if (!op.userIdentity) throw unsupported('no_identity', 'a consumer must name the user whose password it sets (userIdentity)');
    if (!op.newPassword) throw unsupported('new_password_required', 'a new password must be given (the gateway does not generate passwords)');
    const user = await this.existingUser(op.userIdentity);
    const pw = text(op.newPassword);
    this.passwordAllowed(pw);
    return { adDn: user.dn, password: pw, steps: [{ op: 'modify', dn: user.dn, changes: [{ operation: 'replace', type: 'unicodePwd', values: [unicodePwd(pw)] }] }] };
  }

  // ---- where things are ----

  /** A client DN as a write names it: a user or a group by key (virtual mode) or by AD DN (transparent). */
  private where(dn: string): { kind: 'user' | 'group'; key: string } | { kind: 'ad'; adDn: string } {
    const tree = this.o.naming.bindTree;
    if (!tree) {
      if (norm(dn) === undefined) throw new Answer(ResultCode.invalidDNSyntax, 'invalid_dn', `"${dn}" is not a DN`);
      return { kind: 'ad', adDn: dn };
    }
    let loc;
    try {
      loc = tree.locate(dn);
    } catch (err) {
      if (err instanceof DnSyntaxError) throw new Answer(ResultCode.invalidDNSyntax, 'invalid_dn', `"${dn}" is not a DN`);
      throw err;
    }
    if (loc.kind === 'user' || loc.kind === 'group') return { kind: loc.kind, key: loc.key };
    if (loc.kind === 'missing' || loc.kind === 'outside') throw new Answer(ResultCode.noSuchObject, 'no_such_object', `no such entry: ${dn}`);
    throw unsupported('container', `${dn} is part of the gateway's own tree and cannot be written`);
  }

  private async findOne(q: AdQuery): Promise<AdEntry | undefined> {
    for await (const page of this.o.upstream.search(q)) if (page[0]) return page[0];
    return undefined;
  }

  private byKey(kind: 'user' | 'group', key: string): Promise<AdEntry | undefined> {
    const src = kind === 'user' ? this.o.usersSource : this.o.groupsSource;
    const cls = kind === 'user' ? this.o.userClass : this.o.groupClass;
    const attr = kind === 'user' ? this.o.users.dnSource : this.o.groups.dnSource;
    return this.findOne({ base: src.base, scope: 'sub', filter: `(&${cls}${src.filter ?? ''}(${attr}=${escapeFilterValue(key)}))`, attributes: kind === 'user' ? USER_ATTRS : GROUP_ATTRS });
  }

  /** An AD DN, if it is a visible entry of that kind (inside the source base, matching its filter). */
  private async byAdDn(kind: 'user' | 'group', adDn: string): Promise<AdEntry | undefined> {
    const src = kind === 'user' ? this.o.usersSource : this.o.groupsSource;
    const cls = kind === 'user' ? this.o.userClass : this.o.groupClass;
    const n = norm(adDn);
    const s = norm(src.base);
    if (n === undefined || s === undefined || !isWithin(n, s)) return undefined;
    try {
      return await this.findOne({ base: adDn, scope: 'base', filter: `(&${cls}${src.filter ?? ''})`, attributes: kind === 'user' ? USER_ATTRS : GROUP_ATTRS });
    } catch (err) {
      if ((err as { code?: number }).code === 32) return undefined;
      throw err;
    }
  }

  /** The existing entry a DN names, with its kind. */
  private async existing(dn: string): Promise<{ kind: 'user' | 'group'; entry: AdEntry }> {
    const w = this.where(dn);
    if (w.kind === 'ad') {
      const user = await this.byAdDn('user', w.adDn);
      if (user) return { kind: 'user', entry: user };
      const group = await this.byAdDn('group', w.adDn);
      if (group) return { kind: 'group', entry: group };
    } else {
      const entry = await this.byKey(w.kind, w.key);
      if (entry) return { kind: w.kind, entry };
    }
    throw new Answer(ResultCode.noSuchObject, 'no_such_object', `no such entry: ${dn}`);
  }

  /** Whether a DN names an entry now (a fresh look-up). */
  private async names(dn: string): Promise<boolean> {
    try {
      await this.existing(dn);
      return true;
    } catch (err) {
      if (err instanceof Answer) return false;
      throw err;
    }
  }

  private async existingUser(dn: string): Promise<AdEntry> {
    const e = await this.existing(dn);
    if (e.kind !== 'user') throw unsupported('not_a_user', `${dn} is not a user`);
    return e.entry;
  }

  /** A member value (a user's or group's DN as clients see it) -> its AD DN. */
  private async memberAdDn(value: string): Promise<string> {
    let e;
    try {
      e = await this.existing(value);
    } catch (err) {
      if (err instanceof Answer) throw new Answer(ResultCode.noSuchObject, 'no_such_member', `member ${value} names no user or group the gateway shows`);
      throw err;
    }
    return e.entry.dn;
  }

  private async nameTaken(name: string): Promise<boolean> {
    return (await this.findOne({ base: this.o.domainBase, scope: 'sub', filter: `(sAMAccountName=${escapeFilterValue(name)})`, attributes: ['1.1'] })) !== undefined;
  }

  private managed(g: AdEntry, p: NonNullable<WritesConfig['groups']>): boolean {
    if (first(g, 'adminDescription') === MANAGED_MARK) return true;
    const cn = first(g, 'cn');
    return p.manage.some((n) => sameName(n, cn));
  }

  private userRules(p: WritesConfig, what: 'create' | 'modify' | 'rename' | 'password') {
    const u = p.users;
    if (!u) throw refuse('users_read_only', 'this consumer\'s write policy has no users section: user writes are not allowed');
    if (!u[what]) throw refuse(`users_${what}_refused`, `this consumer's write policy does not allow ${what === 'password' ? 'setting passwords' : `user ${what}`} (writes.users.${what})`);
    return u;
  }

  private groupRules(p: WritesConfig, what?: 'create' | 'rename') {
    const g = p.groups;
    if (!g) throw refuse('groups_read_only', 'this consumer\'s write policy has no groups section: group writes are not allowed');
    if (what && !g[what]) throw refuse(`groups_${what}_refused`, `this consumer's write policy does not allow group ${what} (writes.groups.${what})`);
    return g;
  }

  private mustManage(g: AdEntry, p: NonNullable<WritesConfig['groups']>, what: string): void {
    if (!this.managed(g, p)) throw refuse('unmanaged_group', `group ${first(g, 'cn')} is not managed by the gateway, so it may not be ${what} (writes.groups.manage lists the existing groups it may change)`);
  }

  // ---- Add ----

  private async planAdd(op: AddOp, p: WritesConfig): Promise<Plan> {
    const oc = op.attributes.find((a) => a.type.toLowerCase() === 'objectclass');
    const kind = classKind(oc ? oc.values.map(text) : []);
    if (typeof kind !== 'string') throw unsupported('object_class', kind.why);
    const w = this.where(op.dn);
    if (w.kind !== 'ad' && w.kind !== kind) throw unsupported('wrong_place', `a ${kind} cannot be added at ${op.dn}`);
    return kind === 'user' ? this.addUser(op, w.kind === 'ad' ? undefined : w.key, p) : this.addGroup(op, w.kind === 'ad' ? undefined : w.key, p);
  }

  private async addUser(op: AddOp, dnKey: string | undefined, p: WritesConfig): Promise<Plan> {
    const rules = this.userRules(p, 'create');
    let key = dnKey;
    let cn: string | undefined;
    let password: string | undefined;
    let disabled = false;
    const attrs = new Map<string, Array<string | Buffer>>();
    const after: AdChange[] = [];
    for (const a of op.attributes) {
      const inv = inverse(this.o.users, 'user', a.type);
      const values = a.values;
      switch (inv.kind) {
        case 'objectClass':
          break;
        case 'key':
          key = agreeingKey(key, a);
          break;
        case 'rdn':
          cn = single(a);
          break;
        case 'attr':
          if (values.length) attrs.set(inv.ad, values.map(text));
          break;
        case 'password':
          this.userRules(p, 'password');
          password = passwordOf(inv, singleBytes(a));
          break;
        case 'disabled': {
          disabled = disabledValue(a, inv.form);
          break;
        }
        case 'passthrough':
          after.push({ operation: 'replace', type: inv.ad, values: values.map(text) });
          break;
        default:
          throw this.notWritable(a.type, inv, 'users');
      }
    }
    if (key === undefined) throw new Answer(ResultCode.objectClassViolation, 'no_name', 'a user needs a name: uid or sAMAccountName');
    if (password !== undefined) this.passwordAllowed(password);
    const adDn = placeNew('user', key, cn ?? key, dnKey === undefined ? op.dn : undefined, rules.ou);
    if (await this.nameTaken(key)) throw new Answer(ResultCode.entryAlreadyExists, 'already_exists', `an account named ${key} exists already`);
    const suffix = rules.upnSuffix ?? dcSuffix(this.o.domainBase);
    if (!attrs.has('userPrincipalName')) attrs.set('userPrincipalName', [`${key}@${suffix}`]);
    if (!attrs.has('displayName')) {
      const given = attrs.get('givenName')?.[0];
      const sn = attrs.get('sn')?.[0];
      const dname = [given, sn].filter(Boolean).join(' ') || cn || key;
      attrs.set('displayName', [String(dname)]);
    }
    const steps: Step[] = [
      {
        op: 'add',
        dn: adDn,
        attributes: [
          { type: 'objectClass', values: [...AD_CLASSES.user] },
          { type: 'sAMAccountName', values: [key] },
          ...[...attrs].map(([type, values]) => ({ type, values })),
          // created disabled: AD refuses an enabled account without a password; enabled once it has one
          { type: 'userAccountControl', values: [String(NORMAL_ACCOUNT | ACCOUNTDISABLE)] },
        ],
      },
    ];
    if (password !== undefined) {
      steps.push({ op: 'modify', dn: adDn, changes: [{ operation: 'replace', type: 'unicodePwd', values: [unicodePwd(password)] }] });
      if (!disabled) steps.push({ op: 'setDisabled', dn: adDn, disabled: false, also: after });
      else if (after.length) steps.push({ op: 'modify', dn: adDn, changes: after });
    } else if (after.length) steps.push({ op: 'modify', dn: adDn, changes: after });
    return { adDn, steps, password, reason: password === undefined && !disabled ? 'created_disabled_until_password_set' : undefined };
  }

  private async addGroup(op: AddOp, dnKey: string | undefined, p: WritesConfig): Promise<Plan> {
    const rules = this.groupRules(p, 'create');
    let key = dnKey;
    const attrs = new Map<string, string[]>();
    const members: string[] = [];
    for (const a of op.attributes) {
      const inv = inverse(this.o.groups, 'group', a.type);
      switch (inv.kind) {
        case 'objectClass':
          break;
        case 'key':
          key = agreeingKey(key, a);
          break;
        case 'attr':
          if (a.values.length) attrs.set(inv.ad, a.values.map(text));
          break;
        case 'members':
          // Defguard 2.0.1 repeats the attribute once per member; newer versions send one multi-valued attribute
          for (const v of a.values) members.push(await this.memberAdDn(text(v)));
          break;
        default:
          throw this.notWritable(a.type, inv, 'groups');
      }
    }
    if (key === undefined) throw new Answer(ResultCode.objectClassViolation, 'no_name', 'a group needs a name: cn');
    const adDn = placeNew('group', key, key, dnKey === undefined ? op.dn : undefined, rules.ou);
    if ((await this.nameTaken(key)) || (await this.byKey('group', key))) throw new Answer(ResultCode.entryAlreadyExists, 'already_exists', `a group or account named ${key} exists already`);
    const unique = [...new Map(members.map((m) => [norm(m) ?? m, m])).values()];
    return {
      adDn,
      steps: [
        {
          op: 'add',
          dn: adDn,
          attributes: [
            { type: 'objectClass', values: [...AD_CLASSES.group] },
            // a real sAMAccountName: without one AD invents "$…" names (Defguard issue #3670)
            { type: 'sAMAccountName', values: [key] },
            { type: 'groupType', values: [String(rules.groupType)] },
            { type: 'adminDescription', values: [MANAGED_MARK] },
            ...[...attrs].map(([type, values]) => ({ type, values })),
            ...(unique.length ? [{ type: 'member', values: unique }] : []),
          ],
        },
      ],
    };
  }

  private notWritable(type: string, inv: Inverse, kind: 'users' | 'groups'): Answer {
    if (inv.kind === 'readOnly') return unsupported('read_only_attribute', `${type} is read-only: ${inv.why}`);
    if (inv.kind === 'objectClass') return unsupported('read_only_attribute', 'objectClass cannot be changed');
    return unsupported('unmapped_attribute', `${type} is not an attribute the gateway maps for ${kind}, so it cannot be written`);
  }

  // ---- Modify ----

  private async planModify(op: ModifyOp, p: WritesConfig): Promise<Plan> {
    const target = await this.existing(op.dn);
    return target.kind === 'user' ? this.modifyUser(op, target.entry, p) : this.modifyGroup(op, target.entry, p);
  }

  /** explicitRename: a ModifyDN of an AD DN, where renaming the CN is the request itself */
  private async modifyUser(op: ModifyOp, e: AdEntry, p: WritesConfig, explicitRename = false): Promise<Plan> {
    const changes: AdChange[] = [];
    const pwChanges: AdChange[] = [];
    let password: string | undefined;
    let disabled: boolean | undefined;
    let newKey: string | undefined;
    let newCn: string | undefined;
    const oldKey = first(e, this.o.users.dnSource) as string;
    for (const { operation, attribute: a } of op.changes) {
      const inv = inverse(this.o.users, 'user', a.type);
      switch (inv.kind) {
        case 'attr':
          this.userRules(p, 'modify');
          changes.push({ operation, type: inv.ad, values: a.values.map(text) });
          break;
        case 'key':
        case 'rdn': {
          if (operation !== 'replace' || a.values.length !== 1) throw unsupported('name_change', `${a.type} can only be replaced by one value (a rename)`);
          const v = single(a);
          const current = inv.kind === 'key' ? oldKey : firstRdnValue(e.dn, 'cn');
          if (sameName(v, current) && v === current) break;
          this.userRules(p, 'rename');
          if (inv.kind === 'key') newKey = v;
          else newCn = v;
          break;
        }
        case 'password': {
          this.userRules(p, 'password');
          // any password value, old ones too, travels only over an encrypted upstream
          this.encryptedUpstream();
          if (operation === 'replace' || (operation === 'add' && !op.changes.some((c) => c.operation === 'delete' && inverse(this.o.users, 'user', c.attribute.type).kind === 'password'))) {
            password = passwordOf(inv, singleBytes(a));
            pwChanges.push({ operation: 'replace', type: 'unicodePwd', values: [unicodePwd(password)] });
          } else {
            // delete old + add new: a change with the old password
            const pw = passwordOf(inv, singleBytes(a));
            if (operation === 'add') password = pw;
            pwChanges.push({ operation, type: 'unicodePwd', values: [unicodePwd(pw)] });
          }
          break;
        }
        case 'disabled': {
          this.userRules(p, 'modify');
          if (operation === 'delete') throw unsupported('disabled_delete', `${a.type} cannot be deleted; replace it`);
          disabled = disabledValue(a, inv.form);
          break;
        }
        case 'passthrough':
          this.userRules(p, 'modify');
          changes.push({ operation, type: inv.ad, values: a.values.map(text) });
          break;
        default:
          throw this.notWritable(a.type, inv, 'users');
      }
    }
    if (password !== undefined) this.passwordAllowed(password);
    if (newKey !== undefined) {
      const bad = checkAccountName(newKey, 'user');
      if (bad) throw new Answer(ResultCode.constraintViolation, 'invalid_name', bad);
      if (!sameName(newKey, oldKey) && (await this.nameTaken(newKey))) throw new Answer(ResultCode.entryAlreadyExists, 'already_exists', `an account named ${newKey} exists already`);
      changes.push({ operation: 'replace', type: this.o.users.dnSource, values: [newKey] });
      // the UPN follows when it was <old name>@suffix
      const upn = first(e, 'userPrincipalName');
      const at = upn?.lastIndexOf('@') ?? -1;
      if (upn && at > 0 && sameName(upn.slice(0, at), oldKey) && !changes.some((c) => c.type.toLowerCase() === 'userprincipalname')) changes.push({ operation: 'replace', type: 'userPrincipalName', values: [`${newKey}${upn.slice(at)}`] });
    }
    // The AD object's CN (its RDN) follows the name only where it mirrors the name, as for the users the
    // gateway creates. Defguard sends cn=<username> in every W2: an existing "CN=Alice Anderson" keeps its
    // CN (and its DN, which other systems may hold), and the rest of the Modify is applied.
    let reason: string | undefined;
    const currentCn = firstRdnValue(e.dn, 'cn');
    if (!sameName(currentCn, oldKey) && !explicitRename) {
      if (newCn !== undefined) reason = 'cn_kept';
      newCn = undefined;
    } else if (newCn === undefined && newKey !== undefined) newCn = newKey;
    const steps: Step[] = [];
    const mods = [...pwChanges, ...changes];
    if (disabled !== undefined) steps.push({ op: 'setDisabled', dn: e.dn, disabled, also: mods });
    else if (mods.length) steps.push({ op: 'modify', dn: e.dn, changes: mods });
    return { adDn: e.dn, steps, password, reason, ...(await this.renaming('user', e, oldKey, newKey, newCn, steps)) };
  }

  private async modifyGroup(op: ModifyOp, g: AdEntry, p: WritesConfig): Promise<Plan> {
    const rules = this.groupRules(p);
    const changes: AdChange[] = [];
    let newKey: string | undefined;
    const oldKey = first(g, this.o.groups.dnSource) as string;
    const current = new Set((g.attrs.get('member') ?? []).map((v) => norm(String(v)) ?? String(v)));
    let remaining = new Set(current);
    for (const { operation, attribute: a } of op.changes) {
      const inv = inverse(this.o.groups, 'group', a.type);
      switch (inv.kind) {
        case 'members': {
          if (rules.members === 'managed') this.mustManage(g, rules, 'given or relieved of members');
          const dns: string[] = [];
          for (const v of a.values) dns.push(await this.memberAdDn(text(v)));
          const keys = dns.map((d) => norm(d) ?? d);
          if (operation === 'add') keys.forEach((k) => remaining.add(k));
          else if (operation === 'replace') remaining = new Set(keys);
          else if (a.values.length === 0) remaining.clear();
          else keys.forEach((k) => remaining.delete(k));
          changes.push({ operation, type: 'member', values: dns });
          break;
        }
        case 'key': {
          if (operation !== 'replace' || a.values.length !== 1) throw unsupported('name_change', `${a.type} can only be replaced by one value (a rename)`);
          const v = single(a);
          if (v === oldKey) break;
          this.groupRules(p, 'rename');
          this.mustManage(g, rules, 'renamed');
          newKey = v;
          break;
        }
        case 'attr':
          this.mustManage(g, rules, 'changed');
          changes.push({ operation, type: inv.ad, values: a.values.map(text) });
          break;
        default:
          throw this.notWritable(a.type, inv, 'groups');
      }
    }
    // a real AD group is never emptied through the gateway
    if (current.size > 0 && remaining.size === 0 && !this.managed(g, rules)) throw refuse('unmanaged_group', `group ${oldKey} is not managed by the gateway: its last member is not removed`);
    const steps: Step[] = [];
    if (newKey !== undefined) {
      const bad = checkAccountName(newKey, 'group');
      if (bad) throw new Answer(ResultCode.constraintViolation, 'invalid_name', bad);
      if (!sameName(newKey, oldKey) && ((await this.nameTaken(newKey)) || (await this.byKey('group', newKey)))) throw new Answer(ResultCode.entryAlreadyExists, 'already_exists', `a group or account named ${newKey} exists already`);
      changes.push({ operation: 'replace', type: 'sAMAccountName', values: [newKey] });
    }
    if (changes.length) steps.push({ op: 'modify', dn: g.dn, changes });
    return { adDn: g.dn, steps, ...(await this.renaming('group', g, oldKey, newKey, newKey, steps)) };
  }

  /**
   * The AD rename (a new CN under the same parent) as the last step, and the virtual rename a Modify makes,
   * remembered so that the ModifyDN Defguard sends next is answered.
   */
  private async renaming(kind: 'user' | 'group', e: AdEntry, oldKey: string, newKey: string | undefined, newCn: string | undefined, steps: Step[]): Promise<Pick<Plan, 'renamed'>> {
    let adDn = e.dn;
    if (newCn !== undefined) {
      const newRdn = `CN=${escapeDNValue(newCn)}`;
      adDn = `${newRdn},${parentOf(e.dn)}`;
      // checked before anything is sent: a rename that fails after the attributes changed would leave
      // sAMAccountName and cn disagreeing
      if (norm(adDn) !== norm(e.dn) && (await this.o.upstream.read(adDn, ['1.1']))) throw new Answer(ResultCode.entryAlreadyExists, 'already_exists', `${adDn} exists already`);
      steps.push({ op: 'rename', dn: e.dn, newRdn });
    }
    const dnOf = (key: string, dn: string) => (kind === 'user' ? this.o.naming.userDN({ key, dn }) : this.o.naming.groupDN({ key, dn }));
    const from = norm(dnOf(oldKey, e.dn)) as string;
    const to = norm(dnOf(newKey ?? oldKey, adDn)) as string;
    return from !== to ? { renamed: { from, to, adDn } } : {};
  }

  // ---- ModifyDN ----

  private async planModifyDN(op: ModifyDNOp, p: WritesConfig): Promise<Plan> {
    let rdn;
    try {
      rdn = parseDN(op.newRdn);
    } catch {
      throw new Answer(ResultCode.invalidDNSyntax, 'invalid_dn', `"${op.newRdn}" is not an RDN`);
    }
    const ava = rdn.length === 1 && rdn[0]?.length === 1 ? rdn[0][0] : undefined;
    if (!ava) throw unsupported('multi_valued_rdn', 'the new RDN must be one attribute=value');
    let parent: string;
    try {
      parent = parentOf(op.dn);
    } catch {
      throw new Answer(ResultCode.invalidDNSyntax, 'invalid_dn', `"${op.dn}" is not a DN`);
    }
    if (op.newSuperior !== undefined && norm(op.newSuperior) !== norm(parent)) throw unsupported('move', 'moving entries to another parent is not supported');
    const newDn = `${formatDN([[ava]])},${parent}`;
    // Defguard renames with a Modify of the name first, then sends the ModifyDN: already done
    const doneKey = norm(op.dn) ?? '';
    const done = await this.o.renames.get(doneKey);
    if (done !== undefined) {
      await this.o.renames.delete(doneKey);
      // answered 0 only when AD agrees: the old name is gone and the new one is there
      if (done.to === norm(newDn) && !(await this.names(op.dn)) && (await this.names(newDn))) return { steps: [], adDn: done.adDn, reason: 'renamed_by_the_preceding_modify' };
    }
    const target = await this.existing(op.dn);
    const type = ava.type;
    const asModify = (attr: string): ModifyOp => ({ op: 'modify', messageId: op.messageId, dn: op.dn, changes: [{ operation: 'replace', attribute: { type: attr, values: [Buffer.from(ava.value, 'utf8')] } }] });
    if (target.kind === 'user') {
      // the virtual RDN is the key (uid); an AD RDN is the cn
      // the RDN of a virtual user DN is the key (uid: a rename of the account); of an AD DN, the cn
      const inv = inverse(this.o.users, 'user', type);
      const wanted = this.o.naming.bindTree ? 'key' : 'rdn';
      if (inv.kind !== wanted) throw new Answer(ResultCode.namingViolation, 'rdn_attribute', `a user's RDN is ${this.o.naming.bindTree ? this.o.users.keyAttr : 'cn'}, not ${type}`);
      return this.modifyUser(asModify(type), target.entry, p, wanted === 'rdn');
    }
    if (type.toLowerCase() !== 'cn') throw new Answer(ResultCode.namingViolation, 'rdn_attribute', `a group's RDN is cn, not ${type}`);
    return this.modifyGroup(asModify('cn'), target.entry, p);
  }

  // ---- Delete ----

  private async planDelete(op: DeleteOp, p: WritesConfig): Promise<Plan> {
    const target = await this.existing(op.dn);
    const e = target.entry;
    if (target.kind === 'user') {
      const rules = p.users;
      if (!rules) throw refuse('users_read_only', 'this consumer\'s write policy has no users section: user writes are not allowed');
      if (rules.delete === 'refuse') throw refuse('users_delete_refused', 'this consumer\'s write policy refuses user deletes (writes.users.delete: refuse)');
      if (rules.delete === 'disable') return { adDn: e.dn, reason: 'disabled_instead_of_deleted', steps: [{ op: 'setDisabled', dn: e.dn, disabled: true }] };
      return { adDn: e.dn, steps: [{ op: 'delete', dn: e.dn }] };
    }
    const rules = this.groupRules(p);
    const name = first(e, 'cn');
    if (!this.managed(e, rules)) throw refuse('unmanaged_group', `group ${name} is not managed by the gateway: it is never deleted or emptied`);
    const members = (e.attrs.get('member') ?? []).map(String);
    // Defguard's W9: it counts the members it is shown, and at the last one deletes the group. With
    // lastMember: keep, a group that still has AD members is never deleted: the one member Defguard sees
    // goes, the group (with any member Defguard does not see: computers, contacts, nested groups) stays.
    if (rules.lastMember === 'keep' && members.length > 0) {
      const shown: string[] = [];
      for (const m of members) {
        if (await this.byAdDn('user', m)) shown.push(m);
        if (shown.length > 1) break;
      }
      if (shown.length === 1) return { adDn: e.dn, reason: 'last_member_removed_group_kept', steps: [{ op: 'modify', dn: e.dn, changes: [{ operation: 'delete', type: 'member', values: shown }] }] };
      if (shown.length === 0) throw refuse('group_kept', `group ${name} still has members in AD that the gateway does not show as users (nested groups, computers, contacts): it is kept (writes.groups.lastMember: keep)`);
    }
    if (rules.delete === 'refuse') throw refuse('groups_delete_refused', 'this consumer\'s write policy refuses group deletes (writes.groups.delete: refuse)');
    return { adDn: e.dn, steps: [{ op: 'delete', dn: e.dn }] };
  }
}

/** The name a key attribute gives, which must agree with the name already known (the DN's, or another key attribute's). */
function agreeingKey(known: string | undefined, a: Attribute): string {
  const v = single(a);
  if (known !== undefined && !sameName(known, v)) throw new Answer(ResultCode.namingViolation, 'key_mismatch', `${a.type}=${v} does not match the entry's name ${known}`);
  return v;
}

/**
 * Where a new object goes in AD, its name checked against AD's rules: the DN the client gave (an AD DN,
 * transparent mode), which must lie in the policy's OU, or CN=<cn> in that OU.
 */
function placeNew(kind: 'user' | 'group', key: string, cn: string, clientAdDn: string | undefined, ou: string): string {
  const bad = checkAccountName(key, kind);
  if (bad) throw new Answer(ResultCode.constraintViolation, 'invalid_name', bad);
  if (clientAdDn === undefined) return `CN=${escapeDNValue(cn)},${ou}`;
  if (!isWithin(norm(clientAdDn) ?? '', norm(ou) ?? '\0')) throw refuse('outside_ou', `${kind}s are created only in ${ou} (writes.${kind}s.ou)`);
  return clientAdDn;
}

/** The ACCOUNTDISABLE bit a userAccountControl (an integer) or accountDisabled (TRUE/FALSE) value asks for. */
function disabledValue(a: Attribute, form: 'uac' | 'boolean'): boolean {
  const v = single(a).trim();
  if (form === 'uac') {
    if (!/^-?\d+$/.test(v)) throw new Answer(ResultCode.invalidAttributeSyntax, 'bad_value', `${a.type} must be an integer, not "${v}"`);
    return (Number(v) & ACCOUNTDISABLE) !== 0;
  }
  if (v !== 'TRUE' && v !== 'FALSE') throw new Answer(ResultCode.invalidAttributeSyntax, 'bad_value', `${a.type} must be TRUE or FALSE, not "${v}"`);
  return v === 'TRUE';
}

const setsPassword = (s: Step): boolean => (s.op === 'modify' || s.op === 'setDisabled') && (s.op === 'modify' ? s.changes : (s.also ?? [])).some((c) => c.type === 'unicodePwd' && c.operation !== 'delete');

/** The one value of a single-valued write, as bytes. */
function singleBytes(a: Attribute): Buffer {
  if (a.values.length !== 1) throw new Answer(ResultCode.constraintViolation, 'single_value', `${a.type} takes exactly one value`);
  return a.values[0] as Buffer;
}

/** The one value of a single-valued write, as text. */
const single = (a: Attribute): string => text(singleBytes(a));

/** example.com from DC=example,DC=com */
function dcSuffix(base: string): string {
  return parseDN(base)
    .filter((r) => r[0]?.type.toLowerCase() === 'dc')
    .map((r) => r[0]?.value)
    .join('.');
}

function attributeNames(op: WriteOp): string[] {
  switch (op.op) {
    case 'add':
      return op.attributes.map((a) => a.type);
    case 'modify':
      return op.changes.map((c) => `${c.operation}:${c.attribute.type}`);
    case 'modifyDN':
      return [];
    case 'delete':
      return [];
    case 'passwordModify':
      return ['password'];
  }
}

const SECRET = new Set(['unicodepwd', 'userpassword']);

/** A step for the dry-run log: every value of a password attribute replaced. */
function redact(s: Step): unknown {
  const hide = (type: string, values: Array<string | Buffer>) => (SECRET.has(type.toLowerCase()) ? values.map(() => '<password>') : values.map((v) => (Buffer.isBuffer(v) ? `<${v.length} bytes>` : v)));
  switch (s.op) {
    case 'add':
      return { op: 'add', dn: s.dn, attributes: s.attributes.map((a) => ({ type: a.type, values: hide(a.type, a.values) })) };
    case 'modify':
      return { op: 'modify', dn: s.dn, changes: s.changes.map((c) => ({ operation: c.operation, type: c.type, values: hide(c.type, c.values) })) };
    case 'setDisabled':
      return { op: 'modify', dn: s.dn, userAccountControl: s.disabled ? 'set ACCOUNTDISABLE' : 'clear ACCOUNTDISABLE', changes: (s.also ?? []).map((c) => ({ operation: c.operation, type: c.type, values: hide(c.type, c.values) })) };
    default:
      return s;
  }
}

const REASON_TEXT: Partial<Record<WriteReason, string>> = {
  password_policy: 'the password does not meet the domain password policy (length, complexity, history or minimum age)',
  old_password_mismatch: 'the old password is wrong',
  already_exists: 'the object exists already',
  no_such_object: 'no such object',
  insufficient_rights: 'the service account lacks the right to do this (see the README on delegation)',
  constraint_violation: 'a value breaks a constraint',
  unwilling: 'the domain controller will not do this',
  upstream_unavailable: 'no domain controller reachable',
};
