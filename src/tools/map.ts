// ldap-gateway map --user NAME --config FILE [--json]
// Fetches the live AD entry for a name (any form a bind accepts) and prints the entry the gateway would
// return for it, each attribute with the rule that produced it.
import type { Config } from '../config/schema';
import { offlineCore } from './offline';

export async function mapUser(cfg: Config, name: string, json: boolean, out: (s: string) => void): Promise<number> {
  const core = offlineCore(cfg);
  try {
    const found = await core.auth.lookup(name);
    if (found.length !== 1) {
      out(found.length === 0 ? `no user found for '${name}' in the users source\n` : `'${name}' matches ${found.length} entries: a bind with it would be refused\n`);
      return 1;
    }
    const adDn = (found[0] as { dn: string }).dn;
    let entry;
    for await (const page of core.upstream.search({ base: adDn, scope: 'base', filter: '(objectClass=*)', attributes: core.directory.userSourceAttributes() })) entry = page[0];
    if (!entry) throw new Error(`${adDn} could not be read`);
    const mapped = await core.directory.explainUser(entry);
    if (json) {
      out(`${JSON.stringify({ adDn, ...mapped }, null, 2)}\n`);
      return 0;
    }
    out(`# AD entry: ${adDn}\ndn: ${mapped.dn}\n`);
    for (const a of mapped.attributes) {
      if (a.values.length === 0) out(`# ${a.type}: (none) <- ${a.rule}\n`);
      for (const v of a.values) out(`${a.type}: ${v}`.padEnd(48) + `  # <- ${a.rule}\n`);
    }
    return 0;
  } finally {
    await core.retire(0);
  }
}
