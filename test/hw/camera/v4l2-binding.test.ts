import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CameraError } from '../../../hw/camera/camera.js';
import { FakeV4l2Binding } from '../../../hw/camera/fake-v4l2-binding.js';
import {
  BUF_TYPE,
  LibV4l2Binding,
  enumerateFormats,
  fourccFromString,
  fourccToString,
  type BufType,
  type FormatTree,
  type RawFormatDesc,
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

/** A driver that cannot list the frame rates at 320x240. */
class FlakyRates extends FakeV4l2Binding {
  override enumFrameRates(p: string, f: string, w: number, h: number): Promise<readonly number[]> {
    return w === 320 ? Promise.reject(new Error('ENOTTY')) : super.enumFrameRates(p, f, w, h);
  }
}

/** A binding that lists everything in one open of the device. */
class OneOpen extends FakeV4l2Binding {
  readonly tree: FormatTree;
  constructor(tree: FormatTree) {
    super();
    this.tree = tree;
  }
  enumerateAll(p: string, type: BufType): Promise<FormatTree> {
    this.calls.push(`enumerateAll ${p} ${type}`);
    return Promise.resolve(this.tree);
  }
  override enumFormats(): Promise<readonly RawFormatDesc[]> {
    return Promise.reject(new Error('must not be called'));
  }
}

t.test('enumerateFormats: one open when the binding can, else call by call', async (t) => {
  const tree: FormatTree = [
    {
      fourcc: 'YUYV',
      description: 'YUYV 4:2:2',
      flags: 0,
      sizes: [
        { type: 'discrete', width: 640, height: 480, fps: [30, 15] },
        { type: 'discrete', width: 320, height: 240, fps: [] },
      ],
    },
  ];
  const flaky = new FlakyRates().add('/dev/video0', {
    cap: { driver: 'x', card: 'x', busInfo: 'x', capabilities: 0, deviceCaps: 0 },
    formats: { [BUF_TYPE.capture]: [{ fourcc: 'YUYV', description: 'YUYV 4:2:2', flags: 0 }] },
    sizes: {
      YUYV: [
        { type: 'discrete', width: 640, height: 480 },
        { type: 'discrete', width: 320, height: 240 },
      ],
    },
    rates: { 'YUYV 640x480': [30, 15] },
  });
  t.same(
    await enumerateFormats(flaky, '/dev/video0', BUF_TYPE.capture),
    tree,
    'call by call; a size whose rates fail offers none',
  );
  const oneOpen = new OneOpen(tree);
  t.same(await enumerateFormats(oneOpen, '/dev/video0', BUF_TYPE.capture), tree);
  t.same(oneOpen.calls, [`enumerateAll /dev/video0 ${BUF_TYPE.capture}`], 'one call');
});
