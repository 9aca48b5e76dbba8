import t, { type Test } from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/load';

const dir = mkdtempSync(join(tmpdir(), 'gw-config-'));

/** `path: message` as load.ts writes a problem; a problem with no field path (the top level) has path '' */
const PROBLEM = /^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\])*): ([\s\S]*)$/;
const split = (p: string) => {
  const m = PROBLEM.exec(p);
  return m ? { path: m[1] as string, message: m[2] as string } : { path: '', message: p };
};

/**
 * A negative check: the text must be refused (never accepted, never a crash), with exactly these problems,
 * each naming its field path (compared exactly) and saying what is wrong (exact string, or a pattern).
 */
function refused(t: Test, what: string, yaml: string, env: NodeJS.ProcessEnv, expected: Array<[path: string, message: string | RegExp]>): string[] {
  let got: string[] | undefined;
  try {
    parseConfig(yaml, dir, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    got = err.problems;
  }
  if (!got || got.length === 0) {
    t.fail(`${what}: a problem is reported (the configuration was accepted)`);
    return [];
  }
  const parsed = got.map(split);
  t.same(parsed.map((p) => p.path), expected.map(([path]) => path), `${what}: the problems name ${expected.map(([path]) => path || '(top level)').join(', ')}: ${JSON.stringify(got)}`);
  expected.forEach(([, message], i) => {
    const m = parsed[i]?.message ?? '';
    if (typeof message === 'string') t.equal(m, message, `${what}: ${message}`);
    else t.match(m, message, `${what}: ${String(message)}`);
  });
  return got;
}

const minimal = `
listen:
  ldap: 127.0.0.1:1389
directory:
  baseDN: dc=vpn,dc=example
upstream:
  urls: [ldap://dc1.example]
  bind:
    dn: CN=svc,DC=example
    password: \${env:PW}
  baseDN: DC=example
`;

t.test('a valid file gets its defaults', async (t) => {
  const cfg = parseConfig(minimal, dir, { PW: 'pw-from-env' });
  t.equal(cfg.upstream?.bind.password, 'pw-from-env');
  t.equal(cfg.upstream?.pool.bind, 8);
  t.equal(cfg.auth.anonymous, 'rootdse');
  t.equal(cfg.listen.maxPduBytes, 1048576);
});

t.test('each problem names its field', async (t) => {
  const pw = { PW: 'x' };
  refused(t, 'a non-LDAP URL', minimal.replace('urls: [ldap://dc1.example]', 'urls: [ldap://dc1.example, http://dc2]'), pw, [['upstream.urls[1]', 'must be an ldap:// or ldaps:// URL']]);
  refused(t, 'a misspelt top-level key', `${minimal}upstrem: {}\n`, pw, [['', "unknown key 'upstrem'"]]);
  refused(t, 'a misspelt nested key', minimal.replace('directory:\n', 'directory:\n  basedn: x\n'), pw, [['directory', "unknown key 'basedn'"]]);
  // an unquoted DN in a flow map splits at its commas: the part after the comma becomes a key of its own
  refused(t, 'an unquoted DN in a flow map', minimal.replace('baseDN: dc=vpn,dc=example', '{baseDN: dc=vpn,dc=example}'), pw, [['directory', "unknown key 'dc=example'"]]);
  refused(t, 'a missing variable is an error, not an empty string', minimal, {}, [['upstream.bind.password', 'environment variable PW is not set']]);
  refused(t, 'broken YAML', 'listen: [\n', {}, [['YAML', /at line \d+, column \d+/]]);
  refused(t, 'no listener', 'listen: {}\ndirectory: {baseDN: x}\ndemo: true\n', {}, [['listen', 'set ldap, ldaps or both']]);
  refused(t, 'ldaps without a certificate', 'listen: {ldaps: 127.0.0.1:1636}\ndirectory: {baseDN: x}\ndemo: true\n', {}, [['listen.tls', 'ldaps needs listen.tls.cert and listen.tls.key']]);
  refused(t, 'no upstream', 'listen: {ldap: 127.0.0.1:1}\ndirectory: {baseDN: x}\n', {}, [['upstream', 'required unless demo: true']]);
});

t.test('secrets from files; the secret is never echoed in messages', async (t) => {
  writeFileSync(join(dir, 'pw'), 'file-secret-123\n');
  const cfg = parseConfig(minimal.replace('${env:PW}', '${file:pw}'), dir, {});
  t.equal(cfg.upstream?.bind.password, 'file-secret-123', 'relative to the config file, trailing newline dropped');
  refused(t, 'a missing secret file', minimal.replace('${env:PW}', '${file:nope}'), {}, [['upstream.bind.password', `cannot read secret file ${join(dir, 'nope')} (ENOENT)`]]);
  const msgs = refused(t, 'a secret where a URL belongs', minimal.replace('urls: [ldap://dc1.example]', 'urls: ["${env:PW}"]'), { PW: 'TopSecretValue' }, [['upstream.urls[0]', 'must be an ldap:// or ldaps:// URL']]);
  t.notMatch(msgs.join('\n'), /TopSecretValue/, 'the value is not echoed');
});

t.test('TLS files must exist', async (t) => {
  refused(t, 'missing TLS files', minimal.replace('  ldap: 127.0.0.1:1389', '  ldaps: 127.0.0.1:1636\n  tls: { cert: nope.crt, key: nope.key }'), { PW: 'x' }, [
    ['listen.tls.cert', `file ${join(dir, 'nope.crt')} does not exist`],
    ['listen.tls.key', `file ${join(dir, 'nope.key')} does not exist`],
  ]);
});

t.test('write policies: the OU an Add creates in must lie inside the source, and writes need an AD upstream', async (t) => {
  const withWrites = (users: string, groups: string, extra = '') =>
    `${minimal}${extra}consumers:\n  - name: defguard\n    bindDN: cn=defguard,dc=vpn,dc=example\n    password: consumer-pw-1\n    writes:\n      users: {ou: "${users}"}\n      groups: {ou: "${groups}"}\n`;
  const ok = parseConfig(withWrites('OU=People,DC=example', 'OU=Groups,DC=example'), dir, { PW: 'x' });
  t.match(ok.consumers[0]?.writes, { dryRun: false, users: { ou: 'OU=People,DC=example', create: true, delete: 'disable' }, groups: { lastMember: 'keep', members: 'managed', delete: 'delete', groupType: -2147483646, manage: [] } }, 'the protective defaults');
  const sourced = minimal.replace('  baseDN: dc=vpn,dc=example\n', '  baseDN: dc=vpn,dc=example\n  users: {source: {base: "OU=People,DC=example"}}\n  groups: {source: {base: "OU=Groups,DC=example"}}\n');
  refused(t, 'a users OU outside the users source', withWrites('OU=Elsewhere,DC=example', 'OU=Groups,DC=example').replace(minimal, sourced), { PW: 'x' }, [
    ['consumers[0].writes.users.ou', 'must lie inside the users source (directory.users.source.base, or upstream.baseDN)'],
  ]);
  refused(t, 'a groups OU outside the domain', withWrites('OU=People,DC=example', 'OU=Groups,DC=other'), { PW: 'x' }, [
    ['consumers[0].writes.groups.ou', 'must lie inside the groups source (directory.groups.source.base, or upstream.baseDN)'],
  ]);
  refused(t, 'writes to an OpenLDAP upstream', withWrites('OU=People,DC=example', 'OU=Groups,DC=example').replace('  baseDN: DC=example\n', '  baseDN: DC=example\n  flavor: openldap\n'), { PW: 'x' }, [
    ['consumers[0].writes', 'write-through is implemented for Active Directory only (upstream.flavor: ad)'],
  ]);
});
