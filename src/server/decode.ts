// Intake's decoder: one LDAPMessage PDU -> one Message (ldap/types.ts), decoded once from its own bytes.
// The envelope (messageID, controls) and every request that carries DNs, filters or values are read here,
// byte-exact: ldapjs round-trips filters through strings (double-encoding non-ASCII), turns DNs into
// objects that re-serialize with hex escapes (ldapjs #957/#968), turns values into strings (unicodePwd is
// not text) and fails a whole message on a control it cannot parse (#956). Bind, abandon and unbind, which
// ldapjs decodes correctly, are read here too: ldapjs's parser re-framed each PDU and built a message
// object per bind, about 4 % of the gateway's CPU in a connect-bind benchmark.
import { BerError, bool, bytes, children, element, text, uint, type Element } from '../ldap/ber';
import type { FilterNode } from '../ldap/filter';
import { OID, Tag } from '../ldap/protocol';
import type { Control, Message, Operation, PagedRequest, Scope } from '../ldap/types';

/** A request that could not be decoded; answered with `code` when its operation has a response. */
export class DecodeError extends Error {
  constructor(
    message: string,
    readonly code: number,
    readonly messageId?: number,
    readonly opTag?: number,
  ) {
    super(message);
  }
}

export interface DecodeLimits {
  maxFilterDepth: number;
  maxFilterNodes: number;
}

const PROTOCOL_ERROR = 2;
const AUTH_METHOD_NOT_SUPPORTED = 7;
const SCOPES: Scope[] = ['base', 'one', 'sub'];

interface Envelope {
  messageId: number;
  op: Element;
  controls: Control[];
}

/** messageID, the protocolOp element and the controls of a well-formed PDU. */
function envelope(pdu: Buffer): Envelope {
  const msg = element(pdu, 0);
  if (msg.tag !== 0x30) throw new BerError('not an LDAPMessage');
  const [id, op, ctl] = children(pdu, msg);
  if (!id || id.tag !== 0x02 || !op) throw new BerError('LDAPMessage incomplete');
  const messageId = uint(pdu, id);
  if (messageId > 0x7fffffff) throw new BerError('messageID out of range');
  return { messageId, op, controls: ctl && ctl.tag === 0xa0 ? decodeControls(pdu, ctl) : [] };
}

function decodeControls(pdu: Buffer, list: Element): Control[] {
  return children(pdu, list).map((c) => {
    const [type, ...rest] = children(pdu, c);
    if (!type || type.tag !== 0x04) throw new BerError('control without a type');
    const control: Control = { oid: text(pdu, type), critical: false };
    for (const e of rest) {
      if (e.tag === 0x01) control.critical = bool(pdu, e);
      else if (e.tag === 0x04) control.value = bytes(pdu, e);
    }
    return control;
  });
}

/** The paged-results control's value (RFC 2696): realSearchControlValue ::= SEQUENCE { size, cookie }. */
export function pagedRequest(controls: Control[]): PagedRequest | undefined {
  const c = controls.find((x) => x.oid === OID.pagedResults);
  if (!c) return undefined;
  if (!c.value) throw new BerError('paged results control without a value');
  const seq = element(c.value, 0);
  const [size, cookie] = children(c.value, seq);
  if (!size || !cookie) throw new BerError('paged results control incomplete');
  return { size: uint(c.value, size), cookie: Buffer.from(bytes(c.value, cookie)) };
}

/**
 * The messageID and protocolOp tag of a PDU, when they can be read at all: enough to answer a request
 * that cannot be decoded (the PDU need not be well formed past them).
 */
export function peekEnvelope(pdu: Buffer): { messageId: number; opTag: number } | undefined {
  try {
    const msg = element(pdu, 0, pdu.length);
    const id = element(pdu, msg.start, msg.end);
    if (id.tag !== 0x02) return undefined;
    const messageId = uint(pdu, id);
    const opTag = pdu[id.end];
    if (opTag === undefined || messageId > 0x7fffffff) return undefined;
    return { messageId, opTag };
  } catch {
    return undefined;
  }
}

/** Decode a well-formed PDU (see ldap/ber.ts wellFormed). Throws DecodeError. */
export function decodeMessage(pdu: Buffer, lim: DecodeLimits): Message {
  let env: Envelope;
  try {
    env = envelope(pdu);
  } catch (err) {
    const peek = peekEnvelope(pdu);
    throw new DecodeError((err as Error).message, PROTOCOL_ERROR, peek?.messageId, peek?.opTag);
  }
  const { messageId, op, controls } = env;
  try {
    return { messageId, controls, operation: decodeOperation(pdu, op, messageId, controls, lim) };
  } catch (err) {
    if (err instanceof DecodeError) throw err;
    throw new DecodeError(err instanceof BerError ? err.message : 'could not decode request', PROTOCOL_ERROR, messageId, op.tag);
  }
}

function decodeOperation(pdu: Buffer, op: Element, messageId: number, controls: Control[], lim: DecodeLimits): Operation {
  const f = () => children(pdu, op);
  const need = (e: Element | undefined, tag: number, what: string): Element => {
    if (!e || e.tag !== tag) throw new BerError(`${what} missing`);
    return e;
  };
  switch (op.tag) {
    case Tag.searchRequest: {
      const [base, scope, , sizeLimit, timeLimit, typesOnly, filter, attrs] = f();
      const s = uint(pdu, need(scope, 0x0a, 'scope'));
      if (s > 2) throw new BerError('unknown search scope');
      return {
        op: 'search',
        messageId,
        base: text(pdu, need(base, 0x04, 'base object')),
        scope: SCOPES[s] as Scope,
        sizeLimit: uint(pdu, need(sizeLimit, 0x02, 'size limit')),
        timeLimit: uint(pdu, need(timeLimit, 0x02, 'time limit')),
        typesOnly: bool(pdu, need(typesOnly, 0x01, 'typesOnly')),
        filter: decodeFilter(pdu, need(filter, filter?.tag ?? -1, 'filter'), 1, { nodes: 0 }, lim),
        attributes: children(pdu, need(attrs, 0x30, 'attribute list')).map((a) => text(pdu, a)),
        paged: pagedRequest(controls),
      };
    }
    case Tag.addRequest: {
      const [dn, list] = f();
      return { op: 'add', messageId, dn: text(pdu, need(dn, 0x04, 'entry')), attributes: children(pdu, need(list, 0x30, 'attribute list')).map((a) => attribute(pdu, a)) };
    }
    case Tag.modifyRequest: {
      const [dn, list] = f();
      const changes = children(pdu, need(list, 0x30, 'changes')).map((c) => {
        const [operation, mod] = children(pdu, c);
        const kind = uint(pdu, need(operation, 0x0a, 'modify operation'));
        if (kind > 2) throw new BerError('unknown modify operation');
        return { operation: (['add', 'delete', 'replace'] as const)[kind] as 'add' | 'delete' | 'replace', attribute: attribute(pdu, need(mod, 0x30, 'modification')) };
      });
      return { op: 'modify', messageId, dn: text(pdu, need(dn, 0x04, 'object')), changes };
    }
    case Tag.modDNRequest: {
      const [dn, rdn, del, sup] = f();
      return {
        op: 'modifyDN',
        messageId,
        dn: text(pdu, need(dn, 0x04, 'entry')),
        newRdn: text(pdu, need(rdn, 0x04, 'new RDN')),
        deleteOldRdn: bool(pdu, need(del, 0x01, 'deleteoldrdn')),
        ...(sup ? { newSuperior: text(pdu, need(sup, 0x80, 'new superior')) } : {}),
      };
    }
    case Tag.delRequest:
      return { op: 'delete', messageId, dn: text(pdu, op) };
    case Tag.compareRequest: {
      const [dn, ava] = f();
      const [attr, value] = children(pdu, need(ava, 0x30, 'assertion'));
      return { op: 'compare', messageId, dn: text(pdu, need(dn, 0x04, 'entry')), attribute: text(pdu, need(attr, 0x04, 'attribute')), value: Buffer.from(bytes(pdu, need(value, 0x04, 'value'))) };
    }
    case Tag.extendedRequest: {
      const [name, value] = f();
      const oid = text(pdu, need(name, 0x80, 'request name'));
      const raw = value && value.tag === 0x81 ? Buffer.from(bytes(pdu, value)) : undefined;
      if (oid === OID.passwordModify) return passwordModify(messageId, raw);
      return { op: 'extended', messageId, oid, ...(raw ? { value: raw } : {}) };
    }
    case Tag.bindRequest: {
      // BindRequest ::= [APPLICATION 0] SEQUENCE { version INTEGER, name LDAPDN, authentication CHOICE {
      // simple [0] OCTET STRING, sasl [3] SaslCredentials } } (RFC 4511 §4.2); the name byte-exact
      const [version, name, auth] = f();
      if (auth?.tag === 0xa3) throw new DecodeError('only simple bind is supported', AUTH_METHOD_NOT_SUPPORTED, messageId, op.tag);
      if (uint(pdu, need(version, 0x02, 'version')) !== 3) throw new BerError('only LDAPv3 is supported');
      return { op: 'bind', messageId, name: text(pdu, need(name, 0x04, 'name')), password: text(pdu, need(auth, 0x80, 'simple authentication')) };
    }
    case Tag.abandonRequest: // AbandonRequest ::= [APPLICATION 16] MessageID
      return { op: 'abandon', messageId, abandonId: uint(pdu, op) };
    case Tag.unbindRequest: // UnbindRequest ::= [APPLICATION 2] NULL
      if (op.end !== op.start) throw new BerError('UnbindRequest is not NULL');
      return { op: 'unbind', messageId };
    default:
      throw new DecodeError(`unsupported operation 0x${op.tag.toString(16)}`, PROTOCOL_ERROR, messageId, op.tag);
  }
}

function attribute(pdu: Buffer, a: Element): { type: string; values: Buffer[] } {
  const [type, vals] = children(pdu, a);
  if (!type || type.tag !== 0x04 || !vals || vals.tag !== 0x31) throw new BerError('attribute incomplete');
  return { type: text(pdu, type), values: children(pdu, vals).map((v) => Buffer.from(bytes(pdu, v))) };
}

/** PasswdModifyRequestValue ::= SEQUENCE { userIdentity [0], oldPasswd [1], newPasswd [2], all optional } */
function passwordModify(messageId: number, value: Buffer | undefined): Operation {
  const op: Operation = { op: 'passwordModify', messageId };
  if (!value || value.length === 0) return op;
  for (const e of children(value, element(value, 0))) {
    if (e.tag === 0x80) op.userIdentity = text(value, e);
    else if (e.tag === 0x81) op.oldPassword = Buffer.from(bytes(value, e));
    else if (e.tag === 0x82) op.newPassword = Buffer.from(bytes(value, e));
    else throw new BerError('unknown password modify field');
  }
  return op;
}

function decodeFilter(buf: Buffer, t: Element, depth: number, budget: { nodes: number }, lim: DecodeLimits): FilterNode {
  if (depth > lim.maxFilterDepth) throw new BerError('filter nested too deeply');
  if (++budget.nodes > lim.maxFilterNodes) throw new BerError('filter has too many terms');
  const kids = () => children(buf, t);
  const pair = () => {
    const [a, v] = kids();
    if (!a || !v) throw new BerError('attribute value assertion incomplete');
    return { attr: text(buf, a), value: text(buf, v) };
  };
  switch (t.tag) {
    case 0xa0:
      return { type: 'and', children: kids().map((c) => decodeFilter(buf, c, depth + 1, budget, lim)) };
    case 0xa1:
      return { type: 'or', children: kids().map((c) => decodeFilter(buf, c, depth + 1, budget, lim)) };
    case 0xa2: {
      const [c] = kids();
      if (!c) throw new BerError('empty not');
      return { type: 'not', child: decodeFilter(buf, c, depth + 1, budget, lim) };
    }
    case 0xa3:
      return { type: 'equal', ...pair() };
    case 0xa5:
      return { type: 'ge', ...pair() };
    case 0xa6:
      return { type: 'le', ...pair() };
    case 0xa8:
      return { type: 'approx', ...pair() };
    case 0x87:
      return { type: 'present', attr: text(buf, t) };
    case 0xa4: {
      const [a, seq] = kids();
      if (!a || !seq) throw new BerError('substring filter incomplete');
      const node: FilterNode & { type: 'substring' } = { type: 'substring', attr: text(buf, a), any: [] };
      for (const s of children(buf, seq)) {
        if (s.tag === 0x80) node.initial = text(buf, s);
        else if (s.tag === 0x81) node.any.push(text(buf, s));
        else if (s.tag === 0x82) node.final = text(buf, s);
        else throw new BerError('bad substring element');
      }
      return node;
    }
    case 0xa9: {
      const node: FilterNode & { type: 'ext' } = { type: 'ext', value: '', dnAttributes: false };
      for (const c of kids()) {
        if (c.tag === 0x81) node.rule = text(buf, c);
        else if (c.tag === 0x82) node.attr = text(buf, c);
        else if (c.tag === 0x83) node.value = text(buf, c);
        else if (c.tag === 0x84) node.dnAttributes = bool(buf, c);
        else throw new BerError('bad extensible match element');
      }
      return node;
    }
    default:
      throw new BerError(`unknown filter choice 0x${t.tag.toString(16)}`);
  }
}
