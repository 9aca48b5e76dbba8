// The search filter as a plain tree (RFC 4511 §4.5.1): server/ decodes client filters into it, directory/
// rewrites it, upstream/ encodes it for AD. Helpers over it live in directory/filter.ts.

export type FilterNode =
  | { type: 'and'; children: FilterNode[] }
  | { type: 'or'; children: FilterNode[] }
  | { type: 'not'; child: FilterNode }
  | { type: 'equal'; attr: string; value: string; /** a binary assertion value (AD's objectGUID): written as \\xx per byte */ bytes?: Buffer }
  | { type: 'ge' | 'le' | 'approx'; attr: string; value: string }
  | { type: 'present'; attr: string }
  | { type: 'substring'; attr: string; initial?: string; any: string[]; final?: string }
  | { type: 'ext'; attr?: string; rule?: string; value: string; dnAttributes: boolean }
  // constants produced by rewriting; never sent upstream (see simplify)
  | { type: 'true' }
  | { type: 'false' };
