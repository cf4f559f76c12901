import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import type { Fragment, InitSegment } from '../../../firmware/media/fmp4.js';
import { Fmp4Splitter } from '../../../firmware/media/fmp4.js';
import { avcTrackOf, keyframeAnnexB } from '../../../firmware/media/keyframe.js';
import {
  frameDecoderArgs,
  pgmHeader,
  startFrameDecoder,
} from '../../../hw/encoder/frame-decoder.js';
import { makeFmp4 } from '../../firmware/media/fixtures.js';

/** The keyframes of a real fMP4 stream, as the pipeline cuts them out. */
async function keyframes(opts: Parameters<typeof makeFmp4>[0]): Promise<Uint8Array[]> {
  let init: InitSegment | undefined;
  const fragments: Fragment[] = [];
  new Fmp4Splitter({ onInit: (i) => (init = i), onFragment: (f) => fragments.push(f) }).push(
    await makeFmp4(opts),
  );
  const avc = init ? avcTrackOf(init.bytes) : undefined;
  if (!avc) throw new Error('no H.264 track');
  return fragments.map((f) => {
    const au = keyframeAnnexB(avc, f.bytes);
    if (!au) throw new Error('no keyframe');
    return au;
  });
}

t.test('args: one thread, no probing, one PGM image per picture', async (t) => {
  const a = frameDecoderArgs(96, 64);
  t.match(a.join(' '), /-threads 1 -flags low_delay -nofind_stream_info -f h264 -i pipe:0/);
  t.match(a.join(' '), /scale=96:64:flags=area,format=gray .*-f image2pipe -c:v pgm pipe:1$/);
  t.same([...pgmHeader(96, 64)], [...Buffer.from('P5\n96 64\n255\n')]);
});

t.test('each keyframe comes back as a grey picture before the next is sent', async (t) => {
  const aus = await keyframes({ seconds: 3, fps: 10, gop: 5, size: '320x240' });
  const frames: Uint8Array[] = [];
  let wake: (() => void) | undefined;
  const dec = startFrameDecoder({
    width: 96,
    height: 64,
    logger: new MemoryLogger(),
    onFrame: (f) => {
      frames.push(Uint8Array.from(f));
      wake?.();
    },
  });
  t.teardown(() => dec.stop());
  // No deadline: a decoder that held a picture back until the next one would hang here
  // (and tap's own timeout would fail the test).
  for (const [i, au] of aus.entries()) {
    const got = new Promise<void>((r) => (wake = r));
    dec.push(au);
    await got;
    t.equal(frames.length, i + 1, `picture ${i + 1} out before keyframe ${i + 2} went in`);
  }
  t.ok(frames.every((f) => f.length === 96 * 64));
  t.same(dec.stats, { pushed: aus.length, dropped: 0 });
  await dec.stop();
  dec.push(aus[0] ?? new Uint8Array());
  t.equal(dec.stats.dropped, 1, 'after stop a push is dropped, not written');
});

t.test('the picture is the scene, scaled and grey', async (t) => {
  const [au] = await keyframes({ seconds: 1, fps: 10, gop: 10, source: 'color=c=0x606060' });
  const dec = startFrameDecoder({
    width: 64,
    height: 48,
    logger: new MemoryLogger(),
    onFrame: (f) => {
      const px = [...f];
      const min = Math.min(...px);
      const max = Math.max(...px);
      t.ok(max - min <= 4, `uniform (${min}..${max})`);
      t.ok(min > 80 && max < 120, `mid grey (${min}..${max})`);
      void dec.stop();
    },
  });
  dec.push(au ?? new Uint8Array());
  const x = await dec.exited;
  t.not(x.signal, 'SIGKILL', 'ended by stop');
});
