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
