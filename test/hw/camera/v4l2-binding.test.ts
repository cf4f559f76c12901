import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CameraError } from '../../../hw/camera/camera.js';
import {
  LibV4l2Binding,
  fourccFromString,
  fourccToString,
} from '../../../hw/camera/v4l2-binding.js';

t.test('fourcc round trip', async (t) => {
  t.equal(fourccFromString('YUYV'), 0x56595559);
  t.equal(fourccToString(0x56595559), 'YUYV');
  t.equal(fourccToString(fourccFromString('H264')), 'H264');
  t.equal(fourccToString(fourccFromString('Y8')), 'Y8  ', 'short codes are space padded');
});

t.test('listDevices finds videoN nodes in numeric order', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-dev-'));
  for (const n of ['video10', 'video2', 'video0', 'media0', 'videox'])
    await writeFile(join(dir, n), '');
  const b = new LibV4l2Binding({ devDir: dir });
  t.same(
    await b.listDevices(),
    ['video0', 'video2', 'video10'].map((n) => join(dir, n)),
  );
  t.notOk(await b.exists(join(dir, 'video0')), 'a regular file is not a device node');
  t.same(await new LibV4l2Binding({ devDir: join(dir, 'missing') }).listDevices(), []);
});

t.test('ioctls on a non-V4L2 node fail with a CameraError, missing nodes as gone', async (t) => {
  const b = new LibV4l2Binding();
  t.ok(await b.exists('/dev/null'));
  const e = await b.querycap('/dev/null').catch((x: unknown) => x);
  t.ok(e instanceof CameraError, 'typed error');
  t.equal((e as CameraError).code, 'ECAMERA');
  const gone = await b.querycap('/dev/video-not-there').catch((x: unknown) => x);
  t.ok(gone instanceof CameraError);
  t.equal((gone as CameraError).code, 'ECAMERA_GONE');
  const fmt = await b.getFormat('/dev/video-not-there').catch((x: unknown) => x);
  t.equal((fmt as CameraError).code, 'ECAMERA_GONE');
});
