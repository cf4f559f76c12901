import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import type { GreyFrame } from '../../../hw/detector/detector.js';
import type {
  FrameDecoderOptions,
  RunningFrameDecoder,
} from '../../../hw/encoder/frame-decoder.js';
import type { Fragment, InitSegment } from '../../../firmware/media/fmp4.js';
import { Fmp4Splitter } from '../../../firmware/media/fmp4.js';
import { KeyframeSource } from '../../../firmware/media/keyframe-source.js';
import { makeFmp4 } from './fixtures.js';

/** A decoder under test control: it records what it is given and exits when told. */
class FakeDecoder implements RunningFrameDecoder {
  readonly pid = 1;
  readonly pushed: Uint8Array[] = [];
  stopped = false;
  readonly stats = { pushed: 0, dropped: 0 };
  #exit: (x: { exitCode: number | null; signal: NodeJS.Signals | null }) => void = () => undefined;
  readonly exited = new Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>(
    (r) => (this.#exit = r),
  );
  readonly o: FrameDecoderOptions;
  constructor(o: FrameDecoderOptions) {
    this.o = o;
  }
  push(au: Uint8Array): void {
    this.pushed.push(au);
  }
  stderrTail(): string {
    return 'decoder broke';
  }
  stop(): Promise<unknown> {
    this.stopped = true;
    this.#exit({ exitCode: 0, signal: null });
    return this.exited;
  }
  die(): void {
    this.#exit({ exitCode: 1, signal: null });
  }
}

async function stream(): Promise<{ init: InitSegment; fragments: Fragment[] }> {
  let init: InitSegment | undefined;
  const fragments: Fragment[] = [];
  new Fmp4Splitter({ onInit: (i) => (init = i), onFragment: (f) => fragments.push(f) }).push(
    await makeFmp4({ seconds: 2, fps: 10, gop: 5 }),
  );
  if (!init) throw new Error('no init');
  return { init, fragments };
}

function rig() {
  const decoders: FakeDecoder[] = [];
  const pictures: GreyFrame[] = [];
  const failures: string[] = [];
  const src = new KeyframeSource({
    width: 64,
    height: 32,
    logger: new MemoryLogger(),
    onPicture: (f) => pictures.push(f),
    onFailed: (r) => failures.push(r),
    start: (o) => {
      const d = new FakeDecoder(o);
      decoders.push(d);
      return d;
    },
  });
  return { src, decoders, pictures, failures };
}

t.test(
  'at rest no decoder; wanted: one, the newest keyframe first, then each new one',
  async (t) => {
    const { init, fragments } = await stream();
    const [f0, f1, f2] = fragments;
    if (!f0 || !f1 || !f2) throw new Error('too few fragments');
    const { src, decoders, pictures } = rig();
    t.ok(src.onInit(init), 'an H.264 track');
    src.onFragment(f0);
    src.onFragment(f1);
    t.equal(decoders.length, 0, 'nothing runs at rest');
    src.want(true, true);
    src.want(true);
    t.equal(decoders.length, 1, 'one decoder');
    const dec = decoders[0];
    if (!dec) throw new Error('no decoder');
    t.same({ w: dec.o.width, h: dec.o.height }, { w: 64, h: 32 }, 'at the detector size');
    t.equal(dec.pushed.length, 1, 'the newest keyframe at once');
    src.onFragment(f2);
    t.equal(dec.pushed.length, 2, 'then the next');
    t.ok((dec.pushed[1]?.length ?? 0) > 0);
    dec.o.onFrame(new Uint8Array(64 * 32));
    t.equal(pictures.length, 1);
    t.same({ w: pictures[0]?.width, h: pictures[0]?.height }, { w: 64, h: 32 });
    t.equal(src.pictures, 1);
    src.want(false);
    t.ok(dec.stopped, 'stopped when no longer wanted');
    dec.o.onFrame(new Uint8Array(64 * 32));
    t.equal(pictures.length, 1, 'a late picture of a stopped decoder is dropped');
  },
);

t.test('a decoder that dies is reported once and not restarted within the event', async (t) => {
  const { init, fragments } = await stream();
  const { src, decoders, failures } = rig();
  src.onInit(init);
  src.want(true, true);
  decoders[0]?.die();
  await decoders[0]?.exited;
  await Promise.resolve();
  t.same(failures, ['exited (code 1): decoder broke']);
  src.want(true);
  const f = fragments[0];
  if (f) src.onFragment(f);
  t.equal(decoders.length, 1, 'no second try in the same event');
  src.want(true, true);
  t.equal(decoders.length, 2, 'a new event tries again');
});

t.test('a lost stream stops the decoder until the next init', async (t) => {
  const { init } = await stream();
  const { src, decoders } = rig();
  src.want(true, true);
  t.equal(decoders.length, 0, 'no stream yet: nothing to decode');
  src.onInit(init);
  t.equal(decoders.length, 1, 'started with the stream');
  src.lost();
  t.ok(decoders[0]?.stopped);
  src.onInit(init);
  t.equal(decoders.length, 2, 'the next stream, a new decoder');
  t.notOk(src.onInit({ ...init, bytes: new Uint8Array(8) }), 'no H.264 track: false');
  t.ok(decoders[1]?.stopped, 'and no decoder');
  t.equal(decoders.length, 2);
});
