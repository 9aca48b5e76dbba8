// Distinguished names (RFC 4514), as plain data. AD compares DNs case-insensitively, so comparisons go
// through normalizeDN; output DNs are built with formatDN so that they are byte-stable across calls.

export interface Ava {
  type: string;
  value: string;
}
export type Rdn = Ava[];

export class DnSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DnSyntaxError';
  }
}

const HEX = /^[0-9a-fA-F]{2}$/;

/** Parse a string DN into RDNs (most specific first). '' is the root DN: []. */
export function parseDN(input: string): Rdn[] {
  const s = input.trim();
  if (s === '') return [];
  const rdns: Rdn[] = [];
  let rdn: Rdn = [];
  let i = 0;
  while (i < s.length) {
    // attribute type
    while (s[i] === ' ') i++;
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new DnSyntaxError('missing "=" in DN component');
    const type = s.slice(i, eq).trim();
    if (!/^([A-Za-z][A-Za-z0-9-]*|\d+(\.\d+)*)$/.test(type)) throw new DnSyntaxError('invalid attribute type in DN');
    i = eq + 1;
    while (s[i] === ' ') i++;
    // attribute value, raw bytes collected so that \XX sequences form UTF-8 correctly
    const bytes: number[] = [];
    let lastSignificant = 0; // bytes.length after the last non-space or escaped char (trailing spaces are insignificant)
    if (s[i] === '#') throw new DnSyntaxError('BER-encoded DN values are not supported');
    if (s[i] === '"') {
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        bytes.push(...Buffer.from(s[i] as string, 'utf8'));
        i++;
      }
      if (s[i] !== '"') throw new DnSyntaxError('unterminated quoted DN value');
      i++;
      lastSignificant = bytes.length;
      while (s[i] === ' ') i++;
    } else {
      while (i < s.length && s[i] !== ',' && s[i] !== '+' && s[i] !== ';') {
        const c = s[i] as string;
        if (c === '\\') {
          const pair = s.slice(i + 1, i + 3);
          if (HEX.test(pair)) {
            bytes.push(parseInt(pair, 16));
            i += 3;
          } else if (i + 1 < s.length) {
            bytes.push(...Buffer.from(s[i + 1] as string, 'utf8'));
            i += 2;
          } else {
            throw new DnSyntaxError('DN ends with a lone backslash');
          }
          lastSignificant = bytes.length;
          continue;
        }
        if (c === '=' || c === '<' || c === '>' || c === '"') throw new DnSyntaxError(`unescaped "${c}" in DN value`);
        const cp = s.codePointAt(i) as number;
        const ch = String.fromCodePoint(cp);
        bytes.push(...Buffer.from(ch, 'utf8'));
        if (ch !== ' ') lastSignificant = bytes.length;
        i += ch.length;
      }
    }
    const value = Buffer.from(bytes.slice(0, lastSignificant)).toString('utf8');
    rdn.push({ type, value });
    const sep = s[i];
    i++;
    if (sep === '+') continue;
    rdns.push(rdn);
    rdn = [];
    if (sep === undefined) break;
    if (i >= s.length) throw new DnSyntaxError('DN ends with a separator');
  }
  if (rdn.length) rdns.push(rdn);
  return rdns;
}

/** RFC 4514 §2.4 escaping of one attribute value. Non-ASCII stays as UTF-8 text. */
export function escapeDNValue(value: string): string {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as string;
    if (c === '\0') out += '\\00';
    else if (',+"\\<>;='.includes(c)) out += `\\${c}`;
    else if ((c === ' ' && (i === 0 || i === value.length - 1)) || (c === '#' && i === 0)) out += `\\${c}`;
    else out += c;
  }
  return out;
}

export function formatRdn(rdn: Rdn): string {
  return rdn.map((a) => `${a.type}=${escapeDNValue(a.value)}`).join('+');
}

export function formatDN(rdns: Rdn[]): string {
  return rdns.map(formatRdn).join(',');
}

/** Canonical form for comparison: lower-case types and values, canonical escaping, no spaces. */
export function normalizeRdns(rdns: Rdn[]): string {
  return rdns
    .map((rdn) =>
      rdn
        .map((a) => `${a.type.toLowerCase()}=${escapeDNValue(a.value.toLowerCase())}`)
        .sort()
        .join('+'),
    )
    .join(',');
}

export function normalizeDN(dn: string): string {
  return normalizeRdns(parseDN(dn));
}

/** True when `child` (normalized) is `parent` (normalized) or below it. */
export function isWithin(child: string, parent: string): boolean {
  if (parent === '') return true;
  return child === parent || child.endsWith(`,${parent}`);
}

/** The value of the first RDN when it is of `type` (case-insensitive): `CN=Doe\, John,OU=x` -> `Doe, John`. */
export function firstRdnValue(dn: string, type?: string): string | undefined {
  const rdn = parseDN(dn)[0];
  const ava = rdn?.[0];
  if (!ava || rdn.length !== 1) return undefined;
  if (type && ava.type.toLowerCase() !== type.toLowerCase()) return undefined;
  return ava.value;
}
