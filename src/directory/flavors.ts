// What differs between upstream directory kinds, as data: how user and group entries are selected,
// which attribute names a user, which attribute a `user@domain` bind name is looked up by, and the
// attribute map. Active Directory is the main target; OpenLDAP-style inetOrgPerson trees also work.
import { defguardProfile, memberAttributeOf, type Profile, type ProfileOptions } from './mapping';

export interface Flavor {
  userClass: string; // filter fragment selecting user entries
  groupClass: string;
  upnAttr: string; // looked up for `name@suffix` bind names
  /** supports LDAP_MATCHING_RULE_IN_CHAIN (1.2.840.113556.1.4.1941) for nested membership filters */
  inChain: boolean;
  /**
   * the attribute holding an entry's own DN, for equality filters (AD and Samba: distinguishedName;
   * OpenLDAP: entryDN, since its distinguishedName is the supertype of member, owner, seeAlso…). Exact
   * membership filters name the matching entries by it; the profiles put it on their computed rules.
   */
  dnAttr: string;
  profile: (o: ProfileOptions) => Profile;
}

const AD_DN = 'distinguishedName';
const OPENLDAP_DN = 'entryDN';

export const flavors: Record<'ad' | 'openldap', Flavor> = {
  ad: {
    userClass: '(objectCategory=person)(objectClass=user)',
    groupClass: '(objectClass=group)',
    upnAttr: 'userPrincipalName',
    inChain: true,
    dnAttr: AD_DN,
    profile: defguardProfile,
  },
  openldap: {
    userClass: '(objectClass=inetOrgPerson)',
    groupClass: '(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))',
    upnAttr: 'mail',
    inChain: false,
    dnAttr: OPENLDAP_DN,
    profile: (o) => ({
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
        memberOf: { computed: 'memberOf' },
        entryUUID: { from: ['entryUUID'], operational: true },
      },
      groups: {
        objectClass: { const: ['top', o.groupClass], aliases: ['groupOfNames', 'groupOfUniqueNames'] },
        cn: { from: ['cn'] },
        description: { from: ['description'] },
        [memberAttributeOf(o.groupClass)]: { computed: 'members' },
        entryUUID: { from: ['entryUUID'], operational: true },
      },
    }),
  },
};
