// One vocabulary for why a bind ended as it did, shared by logs, metrics and (later) events.
export const BIND_REASONS = [
  'ok',
  'bad_credentials',
  'no_such_user',
  'logon_hours',
  'workstation',
  'password_expired',
  'account_disabled',
  'account_expired',
  'must_change_password',
  'account_locked',
  'empty_password',
  'unknown_user',
  'ambiguous_user',
  'anonymous_denied',
  'tls_required',
  'invalid_name',
  'upstream_unavailable',
  'upstream_error',
  'outbox_unavailable',
  'throttled',
  'rate_limited',
] as const;

export type BindReason = (typeof BIND_REASONS)[number];
