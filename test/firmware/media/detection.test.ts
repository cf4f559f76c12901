import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import { ConfigError, parseConfig } from '../../../firmware/config/config.js';
import {
  DetectionGate,
  anchorOf,
  detectionConfigSchema,
  formatObjects,
  insidePolygon,
  isWanted,
  mergeObjects,
} from '../../../firmware/media/detection.js';
import type { DetectionConfigInput, SeenObject } from '../../../firmware/media/detection.js';
import { createMediaPipeline } from '../../../firmware/media/pipeline.js';
import type { Detection, GreyFrame, ObjectDetector } from '../../../hw/detector/detector.js';
import { SimulatedCamera } from '../../../hw/camera/simulated-camera.js';
import { MemorySealer } from './memory-sealer.js';

const cfg = (c: DetectionConfigInput = {}) => detectionConfigSchema.parse({ enabled: true, ...c });

function det(cls: Detection['class'], score: number, x: number, y: number, w = 0.2, h = 0.5) {
  return { class: cls, score, box: { x, y, w, h } } satisfies Detection;
}

t.test('config: strict, one line naming the field', async (t) => {
  const bad = (detection: unknown, re: RegExp): void => {
    let err: unknown;
    try {
      parseConfig({ detection });
    } catch (e) {
      err = e;
    }
    t.type(err, ConfigError);
    const msg = (err as Error).message;
    t.match(msg, re);
    t.notOk(msg.includes('\n'), `one line: ${msg}`);
  };
  bad({ classes: ['persn'] }, /field "detection\.classes\[0\]": unknown class "persn"/);
  bad({ classes: [] }, /field "detection\.classes"/);
  bad({ minScore: 1.5 }, /field "detection\.minScore"/);
  bad({ width: 300 }, /field "detection\.width": must be a multiple of 32/);
  bad(
    {
      zones: [
        {
          mode: 'include',
          points: [
            [0, 0],
            [1, 1],
          ],
        },
      ],
    },
    /field "detection\.zones\[0\]\.points"/,
  );
  bad(
    {
      zones: [
        {
          mode: 'exclude',
          points: [
            [0, 0],
            [0.5, 0.5],
            [1, 1],
          ],
        },
      ],
    },
    /field "detection\.zones\[0\]\.points": the polygon has no area/,
  );
  bad(
    {
      zones: [
        {
          mode: 'exclude',
          points: [
            [0, 0],
            [1.2, 0],
            [1, 1],
          ],
        },
      ],
    },
    /field "detection\.zones\[0\]\.points\[1\]\[0\]"/,
  );
  bad({ zones: [{ mode: 'around', points: [] }] }, /field "detection\.zones\[0\]\.mode"/);
  bad(
    {
      zones: [
        {
          mode: 'exclude',
          points: [
            [0, 0],
            [1, 0],
            [1, 1],
          ],
          colour: 1,
        },
      ],
    },
    /unknown field "detection\.zones\[0\]\.colour"/,
  );
  bad(
    { governor: { cpuLow: 0.95 } },
    /field "detection\.governor\.cpuLow": must be below governor\.cpuHigh/,
  );
  bad({ governor: { tempLowC: 90 } }, /field "detection\.governor\.tempLowC": must be below/);
  bad({ clases: ['person'] }, /unknown field "detection\.clases"/);
  const ok = parseConfig({}).detection;
  t.equal(ok.enabled, false, 'off by default');
  t.same(ok.classes, ['person'], 'person by default');
  t.equal(ok.governor.fullFps, 5);
  t.throws(
    () =>
      createMediaPipeline({
        camera: new SimulatedCamera(),
        sealer: new MemorySealer(),
        logger: new MemoryLogger(),
        config: { detection: { classes: ['unicorn' as 'person'] } },
      }),
    /media config: detection\.classes\.0: unknown class "unicorn"/,
  );
});

t.test('zones: include and exclude polygons, per class, by the bottom centre', async (t) => {
  const square: [number, number][] = [
    [0, 0],
    [0.5, 0],
    [0.5, 1],
    [0, 1],
  ];
  t.ok(insidePolygon(0.25, 0.5, square));
  t.notOk(insidePolygon(0.75, 0.5, square));
  const triangle: [number, number][] = [
    [0, 0],
    [1, 0],
    [0, 1],
  ];
  t.ok(insidePolygon(0.2, 0.2, triangle));
  t.notOk(insidePolygon(0.8, 0.8, triangle));
  // A person whose head is in the left half but whose feet are in the right half is right.
  const p = det('person', 0.8, 0.4, 0.1, 0.3, 0.95);
  t.same(anchorOf(p), [0.55, 0.999]);
  t.ok(isWanted(p, cfg()), 'no zones: wanted');
  t.notOk(isWanted(p, cfg({ minScore: 0.9 })), 'below the minimum score');
  t.notOk(isWanted(det('car', 0.9, 0, 0), cfg()), 'not a wanted class');
  t.ok(isWanted(det('car', 0.9, 0, 0), cfg({ classes: ['person', 'car'] })));
  t.notOk(
    isWanted(p, cfg({ zones: [{ mode: 'include', points: square }] })),
    'feet outside the include zone',
  );
  t.ok(
    isWanted(p, cfg({ zones: [{ mode: 'exclude', points: square }] })),
    'feet outside the exclude zone',
  );
  const right: [number, number][] = [
    [0.5, 0],
    [1, 0],
    [1, 1],
    [0.5, 1],
  ];
  t.notOk(isWanted(p, cfg({ zones: [{ mode: 'exclude', points: right }] })), 'excluded');
  t.ok(
    isWanted(p, cfg({ zones: [{ mode: 'exclude', points: right, classes: ['car'] }] })),
    'a zone for cars does not exclude a person',
  );
  t.notOk(
    isWanted(
      p,
      cfg({
        zones: [
          { mode: 'include', points: right },
          { mode: 'exclude', points: right },
        ],
      }),
    ),
    'exclude wins over include',
  );
});

t.test('objects: best score per class, formatted for notes', async (t) => {
  const a: SeenObject[] = [{ class: 'person', score: 0.5 }];
  const m = mergeObjects(a, [
    { class: 'car', score: 0.7 },
    { class: 'person', score: 0.6 },
  ]);
  t.same(m, [
    { class: 'car', score: 0.7 },
    { class: 'person', score: 0.6 },
  ]);
  t.equal(formatObjects(m), 'car:0.70,person:0.60');
});

/** A detector under test control: each call waits until the test answers it. */
class ScriptedDetector implements ObjectDetector {
  calls: { frame: GreyFrame; answer: (d: Detection[]) => void; fail: (e: Error) => void }[] = [];
  #waiters: (() => void)[] = [];
  detect(frame: GreyFrame): Promise<Detection[]> {
    return new Promise((answer, fail) => {
      this.calls.push({ frame, answer, fail });
      for (const w of this.#waiters.splice(0)) w();
    });
  }
  async nextCall(n: number): Promise<void> {
    while (this.calls.length < n) await new Promise<void>((r) => this.#waiters.push(r));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

t.test('gate: one inference at a time, at the governed rate, confirmed once', async (t) => {
  let now = 0;
  const d = new ScriptedDetector();
  const confirmed: (readonly SeenObject[])[] = [];
  const updates: (readonly SeenObject[])[] = [];
  const failures: string[] = [];
  const gate = new DetectionGate({
    detector: d,
    config: cfg({ classes: ['person', 'car'], governor: { fullFps: 2, reducedFps: 1 } }),
    logger: new MemoryLogger(),
    now: () => now,
    onConfirmed: (o) => confirmed.push(o),
    onUpdate: (o) => updates.push(o),
    onFailed: (r) => failures.push(r),
  });
  const frame: GreyFrame = { width: 64, height: 64, data: new Uint8Array(64 * 64) };
  gate.offer(frame);
  t.equal(d.calls.length, 0, 'no event: no inference');
  gate.begin();
  gate.offer(frame);
  t.equal(d.calls.length, 1);
  t.not(d.calls[0]?.frame.data, frame.data, 'the gate keeps its own copy of the frame');
  now = 100;
  gate.offer(frame);
  t.equal(d.calls.length, 1, 'under the rate (2 fps): skipped');
  now = 600;
  gate.offer(frame);
  t.equal(d.calls.length, 1, 'busy: dropped, not queued');
  t.equal(gate.stats.dropped, 1);
  d.calls[0]?.answer([det('dog', 0.9, 0, 0), det('person', 0.3, 0, 0)]);
  await gate.idle();
  t.equal(confirmed.length, 0, 'no wanted object yet');
  now = 1200;
  gate.offer(frame);
  d.calls[1]?.answer([det('person', 0.6, 0.1, 0.1)]);
  await gate.idle();
  t.same(confirmed, [[{ class: 'person', score: 0.6 }]]);
  now = 1800;
  gate.offer(frame);
  d.calls[2]?.answer([det('person', 0.5, 0.1, 0.1), det('car', 0.8, 0.5, 0.2)]);
  await gate.idle();
  t.same(updates, [
    [
      { class: 'car', score: 0.8 },
      { class: 'person', score: 0.6 },
    ],
  ]);
  gate.setFps(0);
  now = 5000;
  gate.offer(frame);
  t.equal(d.calls.length, 3, 'motion-only (fps 0): no inference');
  gate.setFps(1);
  gate.offer(frame);
  t.same(gate.end(), [
    { class: 'car', score: 0.8 },
    { class: 'person', score: 0.6 },
  ]);
  d.calls[3]?.answer([det('person', 0.99, 0.1, 0.1)]);
  await gate.idle();
  t.equal(confirmed.length, 1, 'an answer after the event ended changes nothing');
  gate.begin();
  now = 9000;
  gate.offer(frame);
  d.calls[4]?.fail(new Error('model gone'));
  await gate.idle();
  t.same(failures, ['model gone']);
  t.equal(gate.stats.inferences, 4);
});

t.test('gate: the answer in flight when the event ends still decides it', async (t) => {
  const d = new ScriptedDetector();
  const confirmed: (readonly SeenObject[])[] = [];
  const gate = new DetectionGate({
    detector: d,
    config: cfg(),
    logger: new MemoryLogger(),
    onConfirmed: (o) => confirmed.push(o),
    onFailed: () => undefined,
  });
  const frame: GreyFrame = { width: 64, height: 64, data: new Uint8Array(64 * 64) };
  gate.begin();
  gate.offer(frame);
  t.same(gate.end(), [], 'nothing seen when the motion ends');
  t.equal(gate.busy, true, 'an inference of a picture from the event is in flight');
  const late = gate.settled();
  d.calls[0]?.answer([det('person', 0.7, 0.1, 0.1)]);
  t.same(await late, [{ class: 'person', score: 0.7 }], 'its answer decides the ended event');
  t.same(confirmed, [], 'not confirmed as a running event (the pipeline decides)');
  t.same(await gate.settled(), [{ class: 'person', score: 0.7 }], 'nothing in flight: at once');

  // a new event before the answer: the old one settles empty, the answer counts for nothing
  gate.begin();
  gate.offer(frame);
  gate.end();
  const superseded = gate.settled();
  gate.begin();
  t.same(await superseded, [], 'the next event began first');
  d.calls[1]?.answer([det('person', 0.9, 0.1, 0.1)]);
  await gate.idle();
  t.same(confirmed, [], 'the old answer does not confirm the new event');
  t.same(gate.objects, []);

  // stopping: a wedged inference never answers; the waiter is released
  gate.offer(frame);
  gate.end();
  const stopped = gate.settled();
  gate.cancel();
  t.same(await stopped, [], 'cancel releases the wait');
});
