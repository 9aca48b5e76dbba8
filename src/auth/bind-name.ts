// What people type as a bind name, and how each form is looked up in AD (ARCHITECTURE.md, Bind step 1).
import { DnSyntaxError, parseDN } from '../directory/dn';
import { eq, or, type FilterNode } from '../directory/filter';
import type { VirtualTree } from '../directory/tree';

export type BindName =
  | { form: 'virtual-dn'; username: string }
  | { form: 'ad-dn'; dn: string }
  | { form: 'upn'; upn: string }
  | { form: 'down-level'; domain: string; username: string }
  | { form: 'username'; username: string }
  | { form: 'invalid'; why: string };

/** tree: the virtual tree whose DNs are recognised; absent in transparent mode (every DN is AD's) */
export function classifyBindName(name: string, tree?: VirtualTree): BindName {
  const n = name.trim();
  if (n.includes('=')) {
    try {
      parseDN(n);
    } catch (err) {
      if (err instanceof DnSyntaxError) return { form: 'invalid', why: 'malformed DN' };
      throw err;
    }
    const loc = tree?.locate(n) ?? { kind: 'outside' };
    if (loc.kind === 'user') return { form: 'virtual-dn', username: loc.key };
    if (loc.kind !== 'outside') return { form: 'invalid', why: 'not a user entry of the virtual directory' };
    return { form: 'ad-dn', dn: n };
  }
  const slash = n.indexOf('\\');
  if (slash > 0) return { form: 'down-level', domain: n.slice(0, slash), username: n.slice(slash + 1) };
  if (/^[^@\s]+@[^@\s]+$/.test(n)) return { form: 'upn', upn: n };
  if (n === '' || /[\s@\\]/.test(n)) return { form: 'invalid', why: 'not a recognised bind name' };
  return { form: 'username', username: n };
}

/** The filter term that finds the entry for a bind name (values are escaped when the filter is encoded). */
export function lookupTerm(b: BindName, attrs: { key: string; upn: string; mail: boolean }): FilterNode | undefined {
  switch (b.form) {
    case 'virtual-dn':
    case 'down-level':
    case 'username':
      return eq(attrs.key, b.username);
    case 'upn':
      return attrs.mail && attrs.upn !== 'mail' ? or(eq(attrs.upn, b.upn), eq('mail', b.upn)) : eq(attrs.upn, b.upn);
    default:
      return undefined;
  }
}
