// Hand-built LDAP messages for raw-socket tests (BER by hand, so malformed variants are easy to make).
export function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
export const tlv = (tag: number, ...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
};
export const str = (tag: number, s: string): Buffer => tlv(tag, Buffer.from(s, 'utf8'));
/** a non-negative INTEGER / ENUMERATED, minimal two's complement */
export const int = (tag: number, n: number): Buffer => {
  const bytes: number[] = [];
  for (let v = n; bytes.length === 0 || v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  if ((bytes[0] as number) & 0x80) bytes.unshift(0);
  return tlv(tag, Buffer.from(bytes));
};
export const msg = (id: number, op: Buffer, controls?: Buffer): Buffer => tlv(0x30, int(0x02, id), op, ...(controls ? [controls] : []));

export const bindRequest = (dn: string, password: string): Buffer => tlv(0x60, int(0x02, 3), str(0x04, dn), str(0x80, password));
export const searchRequest = (base: string, filter: Buffer, attrs: string[] = []): Buffer =>
  tlv(0x63, str(0x04, base), int(0x0a, 2), int(0x0a, 0), int(0x02, 0), int(0x02, 0), tlv(0x01, Buffer.from([0])), filter, tlv(0x30, ...attrs.map((a) => str(0x04, a))));
export const present = (attr: string): Buffer => str(0x87, attr);
export const equality = (attr: string, value: string): Buffer => tlv(0xa3, str(0x04, attr), str(0x04, value));
export const control = (oid: string, critical: boolean, value?: Buffer): Buffer => tlv(0x30, str(0x04, oid), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), ...(value ? [tlv(0x04, value)] : []));
export const controls = (...cs: Buffer[]): Buffer => tlv(0xa0, ...cs);
export const pagedControl = (size: number, cookie: Buffer = Buffer.alloc(0)): Buffer => control('1.2.840.113556.1.4.319', false, tlv(0x30, int(0x02, size), tlv(0x04, cookie)));
export const searchWith = (base: string, scope: 0 | 1 | 2, filter: Buffer, attrs: string[] = []): Buffer =>
  tlv(0x63, str(0x04, base), int(0x0a, scope), int(0x0a, 0), int(0x02, 0), int(0x02, 0), tlv(0x01, Buffer.from([0])), filter, tlv(0x30, ...attrs.map((a) => str(0x04, a))));
export const modifyRequest = (dn: string, attr: string, value: string): Buffer =>
  tlv(0x66, str(0x04, dn), tlv(0x30, tlv(0x30, int(0x0a, 2), tlv(0x30, str(0x04, attr), tlv(0x31, str(0x04, value))))));
export const extendedRequest = (oid: string, value?: Buffer): Buffer => tlv(0x77, str(0x80, oid), ...(value ? [tlv(0x81, value)] : []));
