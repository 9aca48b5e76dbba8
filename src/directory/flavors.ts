// What differs between upstream directory kinds, as data: how user and group entries are selected,
// which attribute names a user, which attribute a `user@domain` bind name is looked up by, and the
// attribute map. Active Directory is the main target; OpenLDAP-style inetOrgPerson trees also work.
import { defguardProfile, type Profile } from './mapping';

export interface Flavor {
  userClass: string; // filter fragment selecting user entries
  groupClass: string;
  upnAttr: string; // looked up for `name@suffix` bind names
  profile: Profile;
}

export const flavors: Record<'ad' | 'openldap', Flavor> = {
  ad: {
    userClass: '(objectCategory=person)(objectClass=user)',
    groupClass: '(objectClass=group)',
    upnAttr: 'userPrincipalName',
    profile: defguardProfile,
  },
  openldap: {
    userClass: '(objectClass=inetOrgPerson)',
    groupClass: '(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))',
    upnAttr: 'mail',
    profile: {
      users: {
        objectClass: { const: ['top', 'person', 'organizationalPerson', 'inetOrgPerson'] },
        uid: { from: ['uid'] },
        cn: { from: ['cn'] },
        sn: { from: ['sn'] },
        givenName: { from: ['givenName'] },
        displayName: { from: ['displayName', 'cn'] },
        mail: { from: ['mail'] },
        mobile: { from: ['mobile', 'telephoneNumber'] },
        telephoneNumber: { from: ['telephoneNumber'] },
        memberOf: { from: ['memberOf'], transform: 'groupDn' },
        entryUUID: { from: ['entryUUID'], operational: true },
      },
      groups: {
        objectClass: { const: ['top', 'groupOfUniqueNames'], aliases: ['groupOfNames'] },
        cn: { from: ['cn'] },
        description: { from: ['description'] },
        entryUUID: { from: ['entryUUID'], operational: true },
      },
    },
  },
};
