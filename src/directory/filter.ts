// Search filters as plain trees (RFC 4511 §4.5.1). The server decodes client filters into this shape,
// directory/ rewrites them, upstream/ encodes them for AD. Filters are never evaluated against AD data here.

import type { FilterNode } from '../ldap/filter';

export type { FilterNode } from '../ldap/filter';

export const TRUE: FilterNode = { type: 'true' };
export const FALSE: FilterNode = { type: 'false' };

/** RFC 4515 §3 value escaping: `*`, `(`, `)`, `\` and NUL become \2a \28 \29 \5c \00. UTF-8 stays as is. */
export function escapeFilterValue(value: string): string {
  let out = '';
  for (const c of value) {
    switch (c) {
      case '*':
        out += '\\2a';
        break;
      case '(':
        out += '\\28';
        break;
      case ')':
        out += '\\29';
        break;
      case '\\':
        out += '\\5c';
        break;
      case '\0':
        out += '\\00';
        break;
      default:
        out += c;
    }
  }
  return out;
}

export function eq(attr: string, value: string): FilterNode {
  return { type: 'equal', attr, value };
}

/** An equality term whose assertion value is raw bytes (AD's binary objectGUID), not text. */
export function eqBytes(attr: string, bytes: Buffer): FilterNode {
  return { type: 'equal', attr, value: bytes.toString('latin1'), bytes };
}

/** Every byte as \xx: the filter form of a binary value. */
export function escapeBytes(b: Buffer): string {
  let out = '';
  for (const x of b) out += `\\${x.toString(16).padStart(2, '0')}`;
  return out;
}
export function and(...children: FilterNode[]): FilterNode {
  return { type: 'and', children };
}
export function or(...children: FilterNode[]): FilterNode {
  return { type: 'or', children };
}
export function not(child: FilterNode): FilterNode {
  return { type: 'not', child };
}

/** The string form, for logs and for ldapts. Constants are rendered as presence tests that AD accepts. */
export function filterToString(f: FilterNode): string {
  switch (f.type) {
    case 'and':
      return `(&${f.children.map(filterToString).join('')})`;
    case 'or':
      return `(|${f.children.map(filterToString).join('')})`;
    case 'not':
      return `(!${filterToString(f.child)})`;
    case 'equal': {
      return `(${f.attr}=${f.bytes ? escapeBytes(f.bytes) : escapeFilterValue(f.value)})`;
    }
    case 'ge':
      return `(${f.attr}>=${escapeFilterValue(f.value)})`;
    case 'le':
      return `(${f.attr}<=${escapeFilterValue(f.value)})`;
    case 'approx':
      return `(${f.attr}~=${escapeFilterValue(f.value)})`;
    case 'present':
      return `(${f.attr}=*)`;
    case 'substring':
      return `(${f.attr}=${f.initial ? escapeFilterValue(f.initial) : ''}*${f.any.map((a) => `${escapeFilterValue(a)}*`).join('')}${f.final ? escapeFilterValue(f.final) : ''})`;
    case 'ext':
      return `(${f.attr ?? ''}${f.dnAttributes ? ':dn' : ''}${f.rule ? `:${f.rule}` : ''}:=${escapeFilterValue(f.value)})`;
    case 'true':
      return '(objectClass=*)';
    case 'false':
      return '(!(objectClass=*))';
  }
}

/** Fold the true/false constants away. The result is 'true', 'false', or a tree without constants. */
export function simplify(f: FilterNode): FilterNode {
  switch (f.type) {
    case 'and': {
      const kids: FilterNode[] = [];
      for (const c of f.children.map(simplify)) {
        if (c.type === 'false') return FALSE;
        if (c.type !== 'true') kids.push(c);
      }
      if (kids.length === 0) return f.children.length === 0 ? f : TRUE;
      return kids.length === 1 ? (kids[0] as FilterNode) : { type: 'and', children: kids };
    }
    case 'or': {
      const kids: FilterNode[] = [];
      for (const c of f.children.map(simplify)) {
        if (c.type === 'true') return TRUE;
        if (c.type !== 'false') kids.push(c);
      }
      if (kids.length === 0) return f.children.length === 0 ? f : FALSE;
      return kids.length === 1 ? (kids[0] as FilterNode) : { type: 'or', children: kids };
    }
    case 'not': {
      const c = simplify(f.child);
      if (c.type === 'true') return FALSE;
      if (c.type === 'false') return TRUE;
      return { type: 'not', child: c };
    }
    default:
      return f;
  }
}

/** Depth and node count, for the input limits on client filters. */
export function filterSize(f: FilterNode): { depth: number; nodes: number } {
  switch (f.type) {
    case 'and':
    case 'or': {
      let depth = 0;
      let nodes = 1;
      for (const c of f.children) {
        const s = filterSize(c);
        depth = Math.max(depth, s.depth);
        nodes += s.nodes;
      }
      return { depth: depth + 1, nodes };
    }
    case 'not': {
      const s = filterSize(f.child);
      return { depth: s.depth + 1, nodes: s.nodes + 1 };
    }
    default:
      return { depth: 1, nodes: 1 };
  }
}

/** Replace every term on an attribute the reader may not see by FALSE, so hidden values cannot be probed. */
export function hideTerms(f: FilterNode, visible: (lowerAttr: string) => boolean): FilterNode {
  switch (f.type) {
    case 'and':
      return { type: 'and', children: f.children.map((c) => hideTerms(c, visible)) };
    case 'or':
      return { type: 'or', children: f.children.map((c) => hideTerms(c, visible)) };
    case 'not':
      return { type: 'not', child: hideTerms(f.child, visible) };
    case 'true':
    case 'false':
      return f;
    default: {
      return f.attr === undefined || visible(f.attr.toLowerCase()) ? f : FALSE;
    }
  }
}
