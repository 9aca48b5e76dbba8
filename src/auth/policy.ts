// Who may do what, in one place. Each question returns a decision with a reason; the handlers apply it.
//   bind:   may this connection bind at all (TLS required?) — asked by the authenticator, so a refusal is
//           audited and counted like any other failed bind
//   search: anonymous rules, consumer search/subtree/attribute rights, an end user seeing only their own
//           entry (and the groups); the cache partition follows from the same decision
//   write:  add, modify, modifyDN, delete, compare and Password Modify. Refused here (53) until the write
//           policy of issue 12 exists: a decision of policy, not a constant of the protocol layer.
import { ResultCode } from '../ldap/protocol';
import type { SearchOp, WriteOp, CompareOp } from '../ldap/types';
import type { SearchScope } from '../directory/search';
import type { Identity } from './identity';
import type { BindReason } from './reasons';

export type Refusal = { allow: false; code: number; message: string; reason: string };

export type SearchDecision =
  | { allow: true; scope: SearchScope; /** who the answer is for, as a cache and cursor partition */ partition: string }
  | Refusal;

export interface PolicyOptions {
  anonymous: 'rootdse' | 'deny' | 'allow';
  requireTLSForBind: boolean;
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

  write(_who: Identity | null, op: WriteOp | CompareOp): Refusal {
    const what = op.op === 'passwordModify' ? 'password changes are' : op.op === 'compare' ? 'compare is' : 'write operations are';
    return refuse(ResultCode.unwillingToPerform, `ldap-gateway is read-only: ${what} not supported`, 'read_only');
  }
}

const refuse = (code: number, message: string, reason: string): Refusal => ({ allow: false, code, message, reason });
