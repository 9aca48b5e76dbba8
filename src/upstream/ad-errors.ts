// AD's bind failures all arrive as 49 with a diagnostic like
//   80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1
// The `data` code says why (MS-ADTS, "Active Directory LDAP error codes"); the DSID and suffix vary by DC.
import type { BindReason } from '../auth/reasons';

const DATA_CODES: Record<string, BindReason> = {
  '52e': 'bad_credentials',
  '525': 'no_such_user',
  '530': 'logon_hours',
  '531': 'workstation',
  '532': 'password_expired',
  '533': 'account_disabled',
  '701': 'account_expired',
  '773': 'must_change_password',
  '775': 'account_locked',
};

/** The reason behind an AD bind failure, from its diagnostic message; 'bad_credentials' when it has none. */
export function decodeBindFailure(diagnostic: string): BindReason {
  const m = /\bdata ([0-9a-f]{3,4})\b/i.exec(diagnostic);
  if (!m) return 'bad_credentials';
  return DATA_CODES[(m[1] as string).toLowerCase()] ?? 'bad_credentials';
}

// AD's refusals of writes: the code says what kind, the diagnostic's leading Win32 error says why
// (MS-ERREF): 0000052D password policy (too short, complexity, history, minimum age), 00000056 the old
// password does not match, 00002071 already exists, 00000005 access denied, 0000001F / 00002077
// an attribute or value AD will not take.
export type WriteReason =
  | 'ok'
  | 'password_policy'
  | 'old_password_mismatch'
  | 'already_exists'
  | 'no_such_object'
  | 'insufficient_rights'
  | 'constraint_violation'
  | 'unwilling'
  | 'upstream_unavailable'
  | 'upstream_error';

export function decodeWriteFailure(code: number, diagnostic: string): WriteReason {
  const win32 = /^([0-9A-F]{8}):/i.exec(diagnostic.trim())?.[1]?.toUpperCase();
  if (win32 === '0000052D') return 'password_policy';
  if (win32 === '00000056') return 'old_password_mismatch';
  switch (code) {
    case 68:
      return 'already_exists';
    case 32:
      return 'no_such_object';
    case 50:
      return 'insufficient_rights';
    case 19:
      return /password/i.test(diagnostic) ? 'password_policy' : 'constraint_violation';
    case 53:
      return 'unwilling';
    case 51:
    case 52:
      return 'upstream_unavailable';
    default:
      return 'upstream_error';
  }
}
