// Decodes the base DN and filter of a SearchRequest straight from its bytes (RFC 4511 §4.5.1).
// ldapjs's SearchRequest round-trips the filter through toString()/parseString(), which double-encodes
// non-ASCII values (`José` arrives as `JosÃ©`), and turns the base into a DN object whose toString()
// hex-escapes UTF-8 (ldapjs #957/#968). AD needs the exact bytes, so these two fields are read here.
import type { FilterNode } from '../directory/filter';

export class BerDecodeError extends Error {}

interface Tlv {
  tag: number;
  start: number; // first content byte
  end: number; // one past the last content byte
}

function tlv(buf: Buffer, off: number, limit: number): Tlv {
  const tag = buf[off];
  let len = buf[off + 1];
  if (tag === undefined || len === undefined) throw new BerDecodeError('truncated');
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new BerDecodeError('bad length');
    len = 0;
    for (let i = 0; i < n; i++) {
      const b = buf[start + i];
      if (b === undefined) throw new BerDecodeError('truncated');
      len = len * 256 + b;
    }
    start += n;
  }
  const end = start + len;
  if (end > limit) throw new BerDecodeError('length beyond enclosing element');
  return { tag, start, end };
}

function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let off = parent.start;
  while (off < parent.end) {
    const t = tlv(buf, off, parent.end);
    out.push(t);
    off = t.end;
  }
  return out;
}

const text = (buf: Buffer, t: Tlv) => buf.toString('utf8', t.start, t.end);

export interface FilterLimits {
  maxDepth: number;
  maxNodes: number;
}

function decodeFilter(buf: Buffer, t: Tlv, depth: number, budget: { nodes: number }, lim: FilterLimits): FilterNode {
  if (depth > lim.maxDepth) throw new BerDecodeError('filter nested too deeply');
  if (++budget.nodes > lim.maxNodes) throw new BerDecodeError('filter has too many terms');
  const pair = () => {
    const [a, v] = children(buf, t);
    if (!a || !v) throw new BerDecodeError('attribute value assertion incomplete');
    return { attr: text(buf, a), value: text(buf, v) };
  };
  switch (t.tag) {
    case 0xa0:
      return { type: 'and', children: children(buf, t).map((c) => decodeFilter(buf, c, depth + 1, budget, lim)) };
    case 0xa1:
      return { type: 'or', children: children(buf, t).map((c) => decodeFilter(buf, c, depth + 1, budget, lim)) };
    case 0xa2: {
      const [c] = children(buf, t);
      if (!c) throw new BerDecodeError('empty not');
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
      const [a, seq] = children(buf, t);
      if (!a || !seq) throw new BerDecodeError('substring filter incomplete');
      const f: FilterNode & { type: 'substring' } = { type: 'substring', attr: text(buf, a), any: [] };
      for (const s of children(buf, seq)) {
        if (s.tag === 0x80) f.initial = text(buf, s);
        else if (s.tag === 0x81) f.any.push(text(buf, s));
        else if (s.tag === 0x82) f.final = text(buf, s);
        else throw new BerDecodeError('bad substring element');
      }
      return f;
    }
    case 0xa9: {
      const f: FilterNode & { type: 'ext' } = { type: 'ext', value: '', dnAttributes: false };
      for (const c of children(buf, t)) {
        if (c.tag === 0x81) f.rule = text(buf, c);
        else if (c.tag === 0x82) f.attr = text(buf, c);
        else if (c.tag === 0x83) f.value = text(buf, c);
        else if (c.tag === 0x84) f.dnAttributes = buf[c.start] !== 0;
        else throw new BerDecodeError('bad extensible match element');
      }
      return f;
    }
    default:
      throw new BerDecodeError(`unknown filter choice 0x${t.tag.toString(16)}`);
  }
}

/** The base DN and filter of a SearchRequest PDU (LDAPMessage bytes). */
export function decodeSearchBaseAndFilter(pdu: Buffer, lim: FilterLimits): { base: string; filter: FilterNode } {
  const msg = tlv(pdu, 0, pdu.length);
  const [, op] = children(pdu, msg);
  if (!op || op.tag !== 0x63) throw new BerDecodeError('not a SearchRequest');
  const f = children(pdu, op);
  const base = f[0];
  const filter = f[6];
  if (!base || !filter) throw new BerDecodeError('SearchRequest incomplete');
  return { base: text(pdu, base), filter: decodeFilter(pdu, filter, 1, { nodes: 0 }, lim) };
}
