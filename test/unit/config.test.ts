import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/load';

const dir = mkdtempSync(join(tmpdir(), 'gw-config-'));
const problems = (yaml: string, env: NodeJS.ProcessEnv = {}): string[] => {
  try {
    parseConfig(yaml, dir, env);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
};

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
  t.same(problems(minimal.replace('urls: [ldap://dc1.example]', 'urls: [ldap://dc1.example, http://dc2]'), { PW: 'x' }), ['upstream.urls[1]: must be an ldap:// or ldaps:// URL']);
  t.same(problems(`${minimal}upstrem: {}\n`, { PW: 'x' }), ["unknown key 'upstrem'"]);
  t.same(problems(minimal.replace('directory:\n', 'directory:\n  basedn: x\n'), { PW: 'x' }), ["directory: unknown key 'basedn'"]);
  t.same(problems(minimal.replace('baseDN: dc=vpn,dc=example', '{baseDN: dc=vpn,dc=example}'), { PW: 'x' }).length > 0, true, 'an unquoted DN in a flow map splits at its commas and is reported');
  t.same(problems(minimal, {}), ['upstream.bind.password: environment variable PW is not set'], 'a missing variable is an error, not an empty string');
  t.match(problems('listen: [\n'), [/^YAML: /]);
  t.match(problems('listen: {}\ndirectory: {baseDN: x}\ndemo: true\n'), ['listen: set ldap, ldaps or both']);
  t.match(problems('listen: {ldaps: 127.0.0.1:1636}\ndirectory: {baseDN: x}\ndemo: true\n'), ['listen.tls: ldaps needs listen.tls.cert and listen.tls.key']);
  t.match(problems('listen: {ldap: 127.0.0.1:1}\ndirectory: {baseDN: x}\n'), ['upstream: required unless demo: true']);
});

t.test('secrets from files; the secret is never echoed in messages', async (t) => {
  writeFileSync(join(dir, 'pw'), 'file-secret-123\n');
  const cfg = parseConfig(minimal.replace('${env:PW}', '${file:pw}'), dir, {});
  t.equal(cfg.upstream?.bind.password, 'file-secret-123', 'relative to the config file, trailing newline dropped');
  t.match(problems(minimal.replace('${env:PW}', '${file:nope}')), [/^upstream\.bind\.password: cannot read secret file .*nope \(ENOENT\)$/]);
  const msgs = problems(minimal.replace('urls: [ldap://dc1.example]', 'urls: ["${env:PW}"]'), { PW: 'TopSecretValue' });
  t.notMatch(msgs.join('\n'), /TopSecretValue/);
});

t.test('TLS files must exist', async (t) => {
  t.same(problems(`${minimal.replace('  ldap: 127.0.0.1:1389', '  ldaps: 127.0.0.1:1636\n  tls: { cert: nope.crt, key: nope.key }')}`, { PW: 'x' }), [
    `listen.tls.cert: file ${join(dir, 'nope.crt')} does not exist`,
    `listen.tls.key: file ${join(dir, 'nope.key')} does not exist`,
  ]);
});
