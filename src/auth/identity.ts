// Who a connection is bound as. `null` (in SessionInfo) is anonymous.
export type Identity =
  /** a client application (Defguard, a RADIUS server…) with credentials from config */
  | { kind: 'consumer'; name: string; dn: string }
  /** an end user, authenticated by AD */
  | { kind: 'user'; dn: string; adDn: string; username: string; guid?: string };
