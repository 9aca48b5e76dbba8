// After a write, reads and binds go to the DC that took it (upstream.stickyAfterWriteMs): DcSet puts the
// pinned DC first while the pin lasts and while that DC is not in back-off.
import t from 'tap';
import { DcSet } from '../../src/upstream/pool';

const dcs = () => new DcSet({ urls: ['ldap://dc1', 'ldap://dc2', 'ldap://dc3'], startTLS: false, tls: { verify: true }, connectMs: 100, operationMs: 100, idleMs: 1000, failureBackoffMs: 10_000 });

t.test('the pinned DC comes first while the pin lasts', async (t) => {
  const d = dcs();
  t.same(d.candidates(), ['ldap://dc1', 'ldap://dc2', 'ldap://dc3']);
  d.pinTo('ldap://dc2', 30_000);
  t.equal(d.pinned(), 'ldap://dc2');
  t.same(d.candidates(), ['ldap://dc2', 'ldap://dc1', 'ldap://dc3']);
  t.same(d.candidates(Date.now() + 31_000), ['ldap://dc1', 'ldap://dc2', 'ldap://dc3'], 'the pin expires');
  t.equal(d.pinned(Date.now() + 31_000), undefined);
});

t.test('a pinned DC in back-off is not preferred; 0 ms pins nothing', async (t) => {
  const d = dcs();
  d.pinTo('ldap://dc3', 30_000);
  d.markDown('ldap://dc3', new Error('gone'));
  t.equal(d.pinned(), undefined);
  t.same(d.candidates(), ['ldap://dc1', 'ldap://dc2']);
  const e = dcs();
  e.pinTo('ldap://dc2', 0);
  t.equal(e.pinned(), undefined);
});
