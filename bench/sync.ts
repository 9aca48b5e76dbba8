// A Defguard full sync (reference/defguard-ldap.md §2.2, S10 + S11) against one target, timed:
// every user with ['*', 'memberOf'] and every group with members, both paged at 500.
// usage: node bench-dist/bench/sync.js PORT BIND_DN BIND_PW USERS_BASE GROUPS_BASE
import { Client } from 'ldapts';

async function main(): Promise<void> {
  const [port, dn, pw, usersBase, groupsBase] = process.argv.slice(2);
  if (!groupsBase) throw new Error('usage: sync.js PORT BIND_DN BIND_PW USERS_BASE GROUPS_BASE');
  const c = new Client({ url: `ldap://127.0.0.1:${port}`, timeout: 120_000 });
  await c.bind(dn as string, pw as string);
  const t0 = process.hrtime.bigint();
  let users = 0;
  let groups = 0;
  let members = 0;
  for await (const p of c.searchPaginated(usersBase as string, { scope: 'sub', filter: '(objectClass=inetOrgPerson)', attributes: ['*', 'memberOf'], paged: { pageSize: 500 } })) users += p.searchEntries.length;
  for await (const p of c.searchPaginated(groupsBase as string, { scope: 'sub', filter: '(&(objectClass=groupOfNames)(member=*))', attributes: ['cn', 'member'], paged: { pageSize: 500 } })) {
    groups += p.searchEntries.length;
    for (const e of p.searchEntries) members += [e.member].flat().length;
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  await c.unbind();
  process.stdout.write(`users=${users} groups=${groups} members=${members} secs=${s.toFixed(3)} entries_per_s=${((users + groups) / s).toFixed(0)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`sync: ${(err as Error).message}\n`);
  process.exit(1);
});
