// Who may do what, in one place. Each question returns a decision with a reason; the handlers apply it.
//   bind:   may this connection bind at all (TLS required?) — asked by the authenticator, so a refusal is
//           audited and counted like any other failed bind
//   search: anonymous rules, consumer search/subtree/attribute rights, an end user seeing only their own
//           entry (and the groups); the cache partition follows from the same decision
//   write:  add, modify, modifyDN, delete and Password Modify: a consumer with a write policy
//           (consumers[].writes) writes under it (directory/writes.ts applies its details); one without is
//           read-only (53); an end user only changes their own password, where auth.passwordChange allows
//           it; anonymous connections never write (50). Compare is not supported (53).
import { ResultCode } from '../ldap/protocol';
import type { SearchOp, WriteOp, CompareOp } from '../ldap/types';
import type { SearchScope } from '../directory/search';
import type { Identity } from './identity';
import type { BindReason } from './reasons';
import type { WritesConfig } from '../config/schema';
import type { WriteRights } from '../directory/writes';

export type Refusal = { allow: false; code: number; message: string; reason: string };

export type SearchDecision =
  | { allow: true; scope: SearchScope; /** who the answer is for, as a cache and cursor partition */ partition: string }
  | Refusal;

export interface PolicyOptions {
  anonymous: 'rootdse' | 'deny' | 'allow';
  requireTLSForBind: boolean;
  /** each consumer's write policy, by name (absent: read-only) */
  writes: ReadonlyMap<string, WritesConfig>;
  passwordChange: 'off' | 'self';
}

export class Policy {
  constructor(private readonly o: PolicyOptions) {}

  /** A bind that is not anonymous, on a connection without TLS, where TLS is required: refused with 13. */
  bind(name: string, password: string, tls: boolean): { allow: true } | { allow: false; reason: BindReason } {
    if (this.o.requireTLSForBind && !tls && !(name === '' && password === '')) return { allow: false, reason: 'tls_required' };
    return { allow: true };
  }

  search(who: Identity | null, op: SearchOp): SearchDecision {
    const rootDSE = op.base.trim() === '' && op.scope === 'base';
    if (!who) {
      if (rootDSE || this.o.anonymous === 'allow') return { allow: true, scope: {}, partition: 'anonymous' };
      return refuse(ResultCode.insufficientAccessRights, 'bind first: anonymous access is limited to the rootDSE', 'anonymous');
    }
    if (who.kind === 'consumer') {
      if (!who.access.search) return refuse(ResultCode.insufficientAccessRights, `consumer ${who.name} may not search`, 'consumer_no_search');
      return { allow: true, scope: { subtrees: who.access.subtrees, attributes: who.access.attributes }, partition: `consumer:${who.name}` };
    }
    // an end user sees their own entry and the groups
    return { allow: true, scope: { onlyUser: who.username }, partition: `user:${who.adDn}` };
  }

  write(who: Identity | null, op: WriteOp | CompareOp): { allow: true; rights: WriteRights } | Refusal {
    if (op.op === 'compare') return refuse(ResultCode.unwillingToPerform, 'compare is not supported', 'not_supported');
    if (!who) return refuse(ResultCode.insufficientAccessRights, 'anonymous connections never write: bind first', 'anonymous');
    if (who.kind === 'consumer') {
      const policy = this.o.writes.get(who.name);
      if (!policy) return refuse(ResultCode.unwillingToPerform, `ldap-gateway is read-only for ${who.name}: its configuration has no write policy (consumers[].writes)`, 'read_only');
      return { allow: true, rights: { kind: 'consumer', name: who.name, policy } };
    }
    const passwordWrite = op.op === 'passwordModify' || op.op === 'modify';
    if (passwordWrite && this.o.passwordChange === 'self') return { allow: true, rights: { kind: 'self', username: who.username, adDn: who.adDn, dn: who.dn } };
    return refuse(ResultCode.insufficientAccessRights, 'end users may not write to the directory' + (passwordWrite ? ' (changing one\'s own password is off: auth.passwordChange)' : ''), 'end_user_write');
  }
}

const refuse = (code: number, message: string, reason: string): Refusal => ({ allow: false, code, message, reason });
