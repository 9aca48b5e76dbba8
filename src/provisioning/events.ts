// What a successful end-user bind tells the systems downstream: the identity as Defguard sees it through
// the gateway. Never a password.
export interface ProvisionedUser {
  /** Defguard's username: the virtual uid (sAMAccountName) */
  username: string;
  firstName: string;
  lastName: string;
  email: string;
  phone?: string;
  /** group names (cn), nested groups flattened as in the directory view */
  groups: string[];
  /** objectGUID as a UUID string */
  guid?: string;
  dn: string;
  adDn: string;
}

export interface BindSuccessEvent {
  kind: 'bind.success';
  at: string;
  client: string;
  user: ProvisionedUser;
  /** decided by the gateway while no DC was reachable (auth.offline): the user as last read from AD */
  offline?: true;
}

export interface BindFailureEvent {
  kind: 'bind.failure';
  at: string;
  client: string;
  name: string;
  reason: string;
  dn?: string;
}

export type GatewayEvent = BindSuccessEvent | BindFailureEvent;
