// The attribute map read backwards: what a write to a virtual attribute becomes in AD. The same rule
// table (mapping.ts) serves both directions, so a write can only reach an AD attribute that a read of
// the same name shows:
//   { from: [a] }            -> a                    (1:1)
//   { from: [a, b, …] }      -> a, the primary source (a fallback's later sources are never written:
//                               read(write(x)) = x as long as x is not empty)
//   the key attribute (uid)  -> a rename: sAMAccountName, with the UPN following
//   cn (AD's RDN attribute)  -> a rename of the AD object (ModifyDN), not a Modify
//   { computed: 'members' }  -> AD's member, DNs translated
//   accountDisabled, userAccountControl -> the ACCOUNTDISABLE bit only, every other bit kept
//   { const } objectClass    -> translated on Add (inetOrgPerson -> user, groupOfUniqueNames -> group)
//   computed memberOf, transformed values (GUID, SID, times) -> read-only: a write is refused
// An AD attribute name that is the only source of a 1:1 rule (sAMAccountName for uid) is accepted as that
// rule, since clients told they talk to AD (Defguard's "LDAP server is Active Directory") send AD names.
import type { Mapper } from './mapping';

export type Inverse =
  | { kind: 'attr'; ad: string }
  | { kind: 'key'; ad: string }
  | { kind: 'rdn' }
  | { kind: 'members' }
  | { kind: 'disabled'; form: 'uac' | 'boolean' }
  | { kind: 'password'; form: 'unicodePwd' | 'userPassword' }
  | { kind: 'passthrough'; ad: string }
  | { kind: 'objectClass' }
  | { kind: 'readOnly'; why: string }
  | { kind: 'unknown' };

/** AD attributes a user write may name directly, with what they are. */
const USER_SPECIALS: Record<string, Inverse> = {
  unicodepwd: { kind: 'password', form: 'unicodePwd' },
  userpassword: { kind: 'password', form: 'userPassword' },
  useraccountcontrol: { kind: 'disabled', form: 'uac' },
  // AD accepts only 0 (must change at next logon) and -1 (now): Defguard's W4 sends -1
  pwdlastset: { kind: 'passthrough', ad: 'pwdLastSet' },
};

export function inverse(mapper: Mapper, kind: 'user' | 'group', name: string): Inverse {
  const lower = name.toLowerCase();
  if (kind === 'user' && USER_SPECIALS[lower]) return USER_SPECIALS[lower] as Inverse;
  // AD's own member attribute, whichever name the group class shows members under
  if (kind === 'group' && lower === 'member' && Object.values(mapper.rules).some((r) => 'computed' in r && r.computed === 'members')) return { kind: 'members' };
  let c = mapper.rule(name);
  if (!c) {
    // an AD name: the rule that reads it one to one (sAMAccountName -> uid)
    for (const r of Object.keys(mapper.rules)) {
      const rule = mapper.rules[r];
      if (rule && 'from' in rule && !rule.transform && rule.from.length === 1 && (rule.from[0] as string).toLowerCase() === lower) {
        c = mapper.rule(r);
        break;
      }
    }
  }
  if (!c) return { kind: 'unknown' };
  const rule = c.rule;
  if ('const' in rule) return c.lower === 'objectclass' ? { kind: 'objectClass' } : { kind: 'readOnly', why: `${c.name} is a fixed value of the gateway` };
  if ('computed' in rule) {
    if (rule.computed === 'members') return { kind: 'members' };
    return { kind: 'readOnly', why: `${c.name} is computed from group membership: change the group's members instead` };
  }
  if (rule.transform === 'disabled') return { kind: 'disabled', form: 'boolean' };
  if (rule.transform && rule.transform !== 'text') return { kind: 'readOnly', why: `${c.name} is computed by the directory` };
  const ad = rule.from[0] as string;
  if (c.lower === mapper.keyAttr.toLowerCase()) return { kind: 'key', ad };
  if (ad.toLowerCase() === 'cn') return { kind: 'rdn' };
  return { kind: 'attr', ad };
}

// ---- object classes ----

const USER_CLASSES = new Set(['inetorgperson', 'person', 'organizationalperson', 'user', 'top', 'posixaccount', 'shadowaccount']);
const GROUP_CLASSES = new Set(['groupofuniquenames', 'groupofnames', 'group', 'top', 'posixgroup']);

/** The kind of object an Add's objectClass values describe, or why it is none the gateway creates. */
export function classKind(values: string[]): 'user' | 'group' | { why: string } {
  const lower = values.map((v) => v.toLowerCase());
  const structural = lower.filter((v) => v !== 'top');
  if (structural.length === 0) return { why: 'objectClass is required' };
  if (structural.every((v) => GROUP_CLASSES.has(v)) && structural.some((v) => v.startsWith('group'))) return 'group';
  if (structural.every((v) => USER_CLASSES.has(v) || v === 'simplesecurityobject')) return 'user';
  return { why: `objectClass ${values.join(', ')} is not a user (inetOrgPerson) or group (groupOfUniqueNames, groupOfNames) class` };
}

export const AD_CLASSES = { user: ['top', 'person', 'organizationalPerson', 'user'], group: ['top', 'group'] } as const;

// ---- values ----

/** The bit of userAccountControl a write may touch (MS-ADTS 2.2.16: ADS_UF_ACCOUNTDISABLE). */
export const ACCOUNTDISABLE = 0x2;
export const NORMAL_ACCOUNT = 0x200;

/** AD's current userAccountControl with only the disable bit taken from `wanted`. */
export function withDisableBit(current: number, disabled: boolean): number {
  return disabled ? current | ACCOUNTDISABLE : current & ~ACCOUNTDISABLE;
}

/** The value AD wants in unicodePwd: the UTF-16LE of the password in double quotes. */
export const unicodePwd = (password: string): Buffer => Buffer.from(`"${password}"`, 'utf16le');

/** The password inside a unicodePwd value, or undefined when the value is not a quoted UTF-16LE string. */
export function fromUnicodePwd(v: Buffer): string | undefined {
  if (v.length < 4 || v.length % 2 !== 0) return undefined;
  const s = v.toString('utf16le');
  return s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : undefined;
}

/** A userPassword value in a scheme ({SSHA}, {CRYPT}…) is a hash: AD cannot take it as a password. */
export const isHashedPassword = (v: string): boolean => /^\{[A-Za-z0-9._-]+\}/.test(v);

/** AD's rules for a sAMAccountName (MS-ADTS 3.1.1.5.2.1.2; 20 characters for users). */
export function checkAccountName(name: string, kind: 'user' | 'group'): string | undefined {
  const max = kind === 'user' ? 20 : 256;
  if (name.length === 0) return 'the name is empty';
  if (name.length > max) return `"${name}" is ${name.length} characters long: AD allows at most ${max} in a ${kind}'s sAMAccountName`;
  const bad = /["/\\[\]:;|=,+*?<>@]/.exec(name);
  if (bad) return `"${name}" contains "${bad[0]}", which AD does not allow in a sAMAccountName`;
  if (/^[. ]+$/.test(name) || name.endsWith('.')) return `"${name}" may not consist of dots and spaces or end with a dot`;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f]/.test(name)) return `"${name}" contains a control character`;
  return undefined;
}
