import t from 'tap';
import { HostPaths } from '../../../hw/os/host-paths.js';

t.test('maps absolute host paths under the root', async (t) => {
  const p = new HostPaths('/tmp/root');
  t.equal(p.host('/etc/vigil/config.json'), '/tmp/root/etc/vigil/config.json');
  t.equal(p.configFile, '/tmp/root/etc/vigil/config.json');
  t.equal(p.stateDir, '/tmp/root/var/lib/vigil');
  t.equal(p.runDir, '/tmp/root/run/vigil');
  t.equal(p.host('/a/../b'), '/tmp/root/b', 'normalised, never escapes');
  t.equal(new HostPaths().host('/etc/x'), '/etc/x');
  t.equal(HostPaths.fromEnv({ VIGIL_ROOT: '/r' }).host('/x'), '/r/x');
  t.equal(HostPaths.fromEnv({}).root, '/');
});

t.test('relative paths are rejected', async (t) => {
  t.throws(() => new HostPaths('/r').host('etc/x'), { code: 'EPATH' });
});
