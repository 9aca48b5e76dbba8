// The rootDSE (RFC 4512 §5.1) the gateway answers for itself: what it supports, not what AD does.
import { OID } from '../ldap/protocol';
import { VERSION } from '../version';

export function rootDSE(o: { namingContext: string; startTLS: boolean }): Record<string, string[]> {
  return {
    namingContexts: [o.namingContext],
    supportedLDAPVersion: ['3'],
    supportedControl: [OID.pagedResults],
    supportedExtension: [OID.whoami, ...(o.startTLS ? [OID.startTLS] : [])],
    supportedSASLMechanisms: [],
    vendorName: ['ldap-gateway'],
    vendorVersion: [VERSION],
  };
}
