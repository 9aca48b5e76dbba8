// Who a connection is bound as. `null` (in SessionInfo) is anonymous.
export type Identity =
  /** a client application (Defguard, a RADIUS server…) with credentials from config */
  | { kind: 'consumer'; name: string; dn: string; access: ConsumerAccess }
  /** an end user, authenticated by AD */
  | { kind: 'user'; dn: string; adDn: string; username: string; guid?: string };

/** What a consumer may read (config `consumers[]`). */
export interface ConsumerAccess {
  search: boolean;
  subtrees: ReadonlyArray<'users' | 'groups'>;
  /** lower-case allow-list of virtual attribute names; undefined = all */
  attributes?: ReadonlySet<string>;
}
