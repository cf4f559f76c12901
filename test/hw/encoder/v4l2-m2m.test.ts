import { chmod, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  FakeV4l2Binding,
  bcm2835CodecEncoderLike,
  vicodecDecoderLike,
  vicodecEncoderLike,
  vividLike,
} from '../../../hw/camera/fake-v4l2-binding.js';
import {
  V4l2CtlM2mCodec,
  buildV4l2CtlArgs,
  findDecoder,
  findEncoder,
  probeM2mDevices,
} from '../../../hw/encoder/v4l2-m2m.js';

t.test('probe lists M2M nodes with both queues, single- and multi-planar', async (t) => {
  const b = new FakeV4l2Binding()
    .add('/dev/video0', vividLike())
    .add('/dev/video1', vicodecEncoderLike())
    .add('/dev/video2', vicodecDecoderLike())
    .add('/dev/video11', bcm2835CodecEncoderLike());
  const devs = await probeM2mDevices(b);
  t.same(
    devs.map((d) => [d.path, d.outputFormats.join('/'), d.captureFormats.join('/'), d.multiplanar]),
    [
      ['/dev/video1', 'YU12/NV12', 'FWHT', false],
      ['/dev/video11', 'YU12/NV12', 'H264', true],
      ['/dev/video2', 'FWHT', 'YU12', false],
    ],
  );
  t.ok(b.calls.includes('enumFormats /dev/video11 10'), 'multi-planar OUTPUT queue enumerated');
  t.equal(findEncoder(devs, 'FWHT')?.path, '/dev/video1');
  t.equal(findDecoder(devs, 'FWHT')?.path, '/dev/video2');
  t.equal(findEncoder(devs, 'H264')?.path, '/dev/video11');
  t.equal(findDecoder(devs, 'H264'), undefined);
});

t.test('v4l2-ctl arguments for an encode with controls', async (t) => {
  t.same(
    buildV4l2CtlArgs('/dev/video1', {
      input: 'in.yuv',
      output: 'out.fwht',
      inFourcc: 'YU12',
      outFourcc: 'FWHT',
      width: 320,
      height: 240,
      frames: 10,
      controls: { video_gop_size: 10 },
    }),
    [
      '-d',
      '/dev/video1',
      '--set-fmt-video-out=width=320,height=240,pixelformat=YU12',
      '--set-fmt-video=width=320,height=240,pixelformat=FWHT',
      '--set-ctrl=video_gop_size=10',
      '--stream-mmap',
      '--stream-out-mmap',
      '--stream-from=in.yuv',
      '--stream-to=out.fwht',
      '--stream-count=10',
    ],
  );
  const dec = buildV4l2CtlArgs('/dev/video2', {
    input: 'a',
    output: 'b',
    inFourcc: 'FWHT',
    outFourcc: 'YU12',
    frames: 3,
  });
  t.equal(dec[2], '--set-fmt-video-out=pixelformat=FWHT', 'decoders take the size from the stream');
});

t.test(
  'the codec driver runs the tool and reports the output size (stand-in v4l2-ctl)',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vigil-m2m-'));
    // A stand-in for v4l2-ctl that copies --stream-from to --stream-to and logs its argv.
    const fake = join(dir, 'v4l2-ctl');
    await writeFile(
      fake,
      '#!/bin/sh\nfor a in "$@"; do case "$a" in --stream-from=*) IN="${a#*=}";; --stream-to=*) OUT="${a#*=}";; esac; done\n' +
        'echo "$@" > "$OUT.args"; cat "$IN" > "$OUT"; echo ">>>>"\n',
    );
    await chmod(fake, 0o755);
    await writeFile(join(dir, 'in.yuv'), Buffer.alloc(1000, 7));
    const b = new FakeV4l2Binding().add('/dev/video1', vicodecEncoderLike());
    const [dev] = await probeM2mDevices(b);
    if (!dev) throw new Error('no device');
    const codec = new V4l2CtlM2mCodec({ device: dev, v4l2ctl: fake });
    const r = await codec.process({
      input: join(dir, 'in.yuv'),
      output: join(dir, 'out.fwht'),
      inFourcc: 'YU12',
      outFourcc: 'FWHT',
      width: 32,
      height: 24,
      frames: 1,
    });
    t.equal(r.bytesOut, 1000);
    t.match(r.log, />>>>/);
    t.match(
      await readFile(join(dir, 'out.fwht.args'), 'utf8'),
      /-d \/dev\/video1 .*--stream-out-mmap/,
    );
    await t.rejects(
      new V4l2CtlM2mCodec({ device: dev, v4l2ctl: join(dir, 'missing') }).process({
        input: 'x',
        output: join(dir, 'y'),
        inFourcc: 'YU12',
        outFourcc: 'FWHT',
        frames: 1,
      }),
      { code: 'ECOMMAND' },
    );
  },
);
