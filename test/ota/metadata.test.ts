import t from 'tap';
import {
  addDays,
  metadataFileName,
  RootSchema,
  TargetsSchema,
  tufDate,
} from '../../ota/metadata.js';

t.test('TUF dates, file names, schemas', async (tt) => {
  tt.equal(tufDate(new Date('2026-01-02T03:04:05.678Z')), '2026-01-02T03:04:05Z');
  tt.equal(addDays(new Date('2026-01-01T00:00:00Z'), 2).toISOString(), '2026-01-03T00:00:00.000Z');
  tt.equal(metadataFileName('snapshot', 7), '7.snapshot.json');
  tt.equal(metadataFileName('timestamp'), 'timestamp.json');
  const badDate = RootSchema.safeParse({
    _type: 'root',
    spec_version: '1.0.31',
    version: 1,
    expires: '2026-01-01',
    consistent_snapshot: true,
    keys: {},
    roles: {},
  });
  tt.notOk(badDate.success);
  const ok = TargetsSchema.safeParse({
    _type: 'targets',
    spec_version: '1.0.31',
    version: 2,
    expires: '2027-01-01T00:00:00Z',
    targets: {
      'stable/x.tar.gz': {
        length: 3,
        hashes: { sha256: 'ab' },
        custom: { vigil: { version: '1.0.0', channel: 'stable', kind: 'app' } },
      },
    },
    x_unknown: 'kept',
  });
  tt.ok(ok.success);
  tt.equal(
    (ok.data as Record<string, unknown> | undefined)?.x_unknown,
    'kept',
    'unknown fields survive (signatures cover them)',
  );
  tt.notOk(
    TargetsSchema.safeParse({
      _type: 'targets',
      spec_version: '2.0.0',
      version: 1,
      expires: '2027-01-01T00:00:00Z',
      targets: {},
    }).success,
    'spec 2.x refused',
  );
  tt.notOk(
    TargetsSchema.safeParse({
      _type: 'targets',
      spec_version: '1.0.31',
      version: 1,
      expires: '2027-01-01T00:00:00Z',
      targets: { x: { length: 1, hashes: {} } },
    }).success,
    'a target needs a hash',
  );
});
