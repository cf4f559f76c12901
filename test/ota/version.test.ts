import t from 'tap';
import { compareVersions, isVersion } from '../../ota/version.js';

t.test('semantic version order', async (tt) => {
  const ordered = [
    '0.9.9',
    '1.0.0-alpha',
    '1.0.0-alpha.1',
    '1.0.0-alpha.beta',
    '1.0.0-beta.2',
    '1.0.0-beta.11',
    '1.0.0-rc.1',
    '1.0.0',
    '1.0.1',
    '1.10.0',
    '2.0.0',
  ];
  for (let i = 0; i + 1 < ordered.length; i++) {
    tt.equal(
      compareVersions(ordered[i]!, ordered[i + 1]!),
      -1,
      `${ordered[i]!} < ${ordered[i + 1]!}`,
    );
    tt.equal(compareVersions(ordered[i + 1]!, ordered[i]!), 1);
  }
  tt.equal(compareVersions('1.2.3', '1.2.3'), 0);
  tt.equal(compareVersions('1.0.0-rc.1', '1.0.0-rc.1'), 0);
  tt.ok(isVersion('1.2.3-beta.1'));
  tt.notOk(isVersion('1.2'));
  tt.notOk(isVersion('v1.2.3'));
  tt.throws(() => compareVersions('1.2', '1.2.3'), /not a semantic version/);
});
