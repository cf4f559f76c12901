import t from 'tap';
import { Fmp4Splitter } from '../../../firmware/media/fmp4.js';
import type { Fragment, InitSegment } from '../../../firmware/media/fmp4.js';
import { ffmpegThumbnailer } from '../../../firmware/media/thumbnail.js';
import { run } from '../../../hw/os/run.js';
import { makeFmp4 } from './fixtures.js';

t.test('a JPEG from init + one fragment, scaled down', async (t) => {
  const bytes = await makeFmp4({ seconds: 2, fps: 5, gop: 5, size: '640x480' });
  let init: InitSegment | undefined;
  const frags: Fragment[] = [];
  new Fmp4Splitter({ onInit: (i) => (init = i), onFragment: (f) => frags.push(f) }).push(bytes);
  const jpeg = await ffmpegThumbnailer({ maxWidth: 160 })(init!, frags[1]!);
  t.same([jpeg[0], jpeg[1]], [0xff, 0xd8]);
  const r = await run(
    'ffprobe',
    ['-v', 'error', '-show_entries', 'stream=width,height', '-of', 'csv=p=0', '-i', 'pipe:0'],
    { stdin: jpeg },
  );
  t.equal(r.stdout.toString().trim(), '160,120');
});

t.test('a broken fragment is an error, not a hang', async (t) => {
  const bytes = await makeFmp4({ seconds: 1, fps: 5, gop: 5 });
  let init: InitSegment | undefined;
  new Fmp4Splitter({ onInit: (i) => (init = i), onFragment: () => undefined }).push(bytes);
  const junk: Fragment = {
    bytes: new Uint8Array(100),
    sequence: 1,
    startS: 0,
    durationS: 1,
    keyframe: true,
    receivedAt: 0,
    baseTime: 0,
  };
  await t.rejects(ffmpegThumbnailer({ timeoutMs: 10_000 })(init!, junk));
});
