/**
 * The real detector (NanoDet-g on onnxruntime-node) on real photographs
 * (dev/fixtures/images/README.md: public-domain and CC0 pictures shipped by
 * Debian's python3-skimage).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { greyPhoto } from '../../../dev/fixtures/images.js';
import { NANODET_MODEL, OnnxDetector, modelBeside } from '../../../hw/detector/onnx-detector.js';
import { pathExists } from '../../../hw/os/fs.js';
import { run } from '../../../hw/os/run.js';

const detector = new OnnxDetector();
t.teardown(() => detector.close());

t.test('the runtime loads on the first frame, not before', async (t) => {
  let loads = 0;
  const d = new OnnxDetector({
    loadRuntime: () => {
      loads++;
      return import('onnxruntime-node');
    },
  });
  t.equal(d.loaded, false);
  t.equal(loads, 0, 'constructing the detector loads nothing');
  await d.detect(await greyPhoto('rocket', 128, 96), 0.5);
  t.equal(loads, 1);
  t.equal(d.loaded, true);
  await d.detect(await greyPhoto('rocket', 128, 96), 0.5);
  t.equal(loads, 1, 'once');
  await d.close();
  t.equal(d.loaded, false);
});

t.test('finds the person in the astronaut photo', async (t) => {
  const found = await detector.detect(await greyPhoto('astronaut'), 0.4);
  const person = found.find((d) => d.class === 'person');
  t.ok(person, `a person (found: ${JSON.stringify(found.map((d) => [d.class, d.score]))})`);
  if (!person) return;
  t.ok(person.score >= 0.45, `score ${person.score.toFixed(2)}`);
  // She stands in the left two thirds of the picture, head to the bottom edge.
  const cx = person.box.x + person.box.w / 2;
  t.ok(cx > 0.2 && cx < 0.55, `box centre x ${cx.toFixed(2)}`);
  t.ok(person.box.h > 0.7, `box height ${person.box.h.toFixed(2)}`);
});

t.test('no person in the empty scenes', async (t) => {
  for (const name of ['rocket', 'coffee'] as const) {
    const found = await detector.detect(await greyPhoto(name), 0.3);
    t.notOk(
      found.some((d) => d.class === 'person'),
      `${name}: ${JSON.stringify(found.map((d) => [d.class, d.score.toFixed(2)]))}`,
    );
  }
  const cup = (await detector.detect(await greyPhoto('coffee'), 0.2)).find(
    (d) => d.class === 'cup',
  );
  t.ok(cup, 'the coffee photo shows a cup (other classes are seen too)');
});

t.test('a frame the model cannot take is refused with its size', async (t) => {
  await t.rejects(
    detector.detect({ width: 100, height: 96, data: new Uint8Array(9600) }, 0.4),
    /frame 100x96: width and height must be multiples of 32/,
  );
  await t.rejects(
    detector.detect({ width: 128, height: 96, data: new Uint8Array(10) }, 0.4),
    /needs 12288 bytes, got 10/,
  );
});

t.test('a model that does not load is a DetectorError, and a retry loads again', async (t) => {
  const d = new OnnxDetector({ modelPath: '/nonexistent/model.onnx' });
  await t.rejects(d.detect(await greyPhoto('rocket', 128, 96), 0.4), {
    code: 'EDETECTOR',
    message: /object detector did not load/,
  });
  t.equal(d.loaded, false);
});

t.test('the model: beside the module in the source tree', async (t) => {
  t.ok(await pathExists(NANODET_MODEL), NANODET_MODEL);
  t.match(NANODET_MODEL, /hw\/detector\/models\/nanodet-g\.onnx$/);
});

t.test(
  "the model from tsc's tree and from the bundle (chunks in dist/bin/, image/app-bundle.ts)",
  async (t) => {
    const dist = await mkdtemp(join(tmpdir(), 'vigil-model-'));
    t.teardown(() => rm(dist, { recursive: true, force: true }));
    await mkdir(join(dist, 'hw/detector/models'), { recursive: true });
    await mkdir(join(dist, 'bin'), { recursive: true });
    const model = join(dist, 'hw/detector/models/m.onnx');
    await writeFile(model, 'model');
    t.equal(
      modelBeside(pathToFileURL(join(dist, 'hw/detector/onnx-detector.js')).href, 'm.onnx'),
      model,
      'tsc: beside',
    );
    t.equal(
      modelBeside(pathToFileURL(join(dist, 'bin/chunk-ABC.js')).href, 'm.onnx'),
      model,
      'a bundle chunk in dist/bin/: the staged copy',
    );
    // neither exists: the path beside the module, so the error names where it was expected
    t.equal(
      modelBeside(pathToFileURL(join(dist, 'bin/chunk-ABC.js')).href, 'other.onnx'),
      join(dist, 'bin/models/other.onnx'),
    );
  },
);

t.test('a hub started without TurboFan gets it back with the detector', async (t) => {
  // the hub's node flags turn V8's optimizing compiler off (memory); the detector's
  // per-pixel loops need it, so its first load turns it on for the process
  const child = join(import.meta.dirname, '../../fixtures/turbofan-child.ts');
  const r = await run(
    process.execPath,
    ['--no-opt', '--allow-natives-syntax', '--import', 'tsx', child],
    { timeoutMs: 300_000 },
  );
  t.same(JSON.parse(r.stdout.toString()), { before: false, after: true });
});
