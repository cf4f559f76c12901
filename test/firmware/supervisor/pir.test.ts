import t from 'tap';
import type { Test } from 'tap';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeGpio } from '../../../hw/gpio/gpio.js';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { MemoryLogger } from '../../../base/logger.js';
import { parseConfig } from '../../../firmware/config/config.js';
import { motionFromConfig, openPir } from '../../../firmware/supervisor/pir.js';
import { buildMask, motionConfigSchema } from '../../../firmware/media/motion.js';
import { mediaConfigSchema } from '../../../firmware/media/pipeline.js';

async function sysfs(t: Test, label: string): Promise<HostPaths> {
  const root = await mkdtemp(join(tmpdir(), 'vigil-pir-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const d = join(root, 'sys/class/gpio/gpiochip0');
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'label'), `${label}\n`);
  await writeFile(join(d, 'base'), '0\n');
  await writeFile(join(d, 'ngpio'), '54\n');
  return new HostPaths(root);
}

t.test(
  'the PIR line opens with its polarity and debounce, and its edges reach the pipeline',
  async (t) => {
    const paths = await sysfs(t, 'pinctrl-bcm2711');
    const gpio = new FakeGpio();
    const opened: unknown[] = [];
    const spy = {
      input: (
        l: Parameters<FakeGpio['input']>[0],
        opts?: { activeLow?: boolean; debounceMs?: number },
      ) => {
        opened.push({ l, opts });
        return gpio.input(l);
      },
      output: gpio.output.bind(gpio),
    };
    const config = parseConfig({
      motion: { source: 'pir', pir: { line: 4, activeLow: true, debounceMs: 120 } },
    }).motion;
    const pir = await openPir({ config, gpio: spy, paths, logger: new MemoryLogger() });
    if (!pir) throw new Error('no PIR input');
    t.same(opened, [
      {
        l: { chipLabel: 'pinctrl-bcm2711', offset: 4 },
        opts: { activeLow: true, debounceMs: 120 },
      },
    ]);
    const seen: number[] = [];
    const off = pir.onEdge((v) => seen.push(v));
    gpio.drive({ chipLabel: 'pinctrl-bcm2711', offset: 4 }, 1);
    gpio.drive({ chipLabel: 'pinctrl-bcm2711', offset: 4 }, 0);
    t.same(seen, [1, 0]);
    off();
    gpio.drive({ chipLabel: 'pinctrl-bcm2711', offset: 4 }, 1);
    t.same(seen, [1, 0], 'closed: no more edges');
  },
);

t.test('no PIR for source "video"; a missing chip is an error naming the field', async (t) => {
  const paths = await sysfs(t, 'gpio-mockup-A');
  const gpio = new FakeGpio();
  const logger = new MemoryLogger();
  t.equal(await openPir({ config: parseConfig({}).motion, gpio, paths, logger }), undefined);
  t.equal(
    await openPir({
      config: parseConfig({ motion: { source: 'video', pir: { line: 3 } } }).motion,
      gpio,
      paths,
      logger,
    }),
    undefined,
    'a PIR configured but not selected stays closed',
  );
  await t.rejects(
    openPir({
      config: parseConfig({ motion: { source: 'both', pir: { line: 3 } } }).motion,
      gpio,
      paths,
      logger,
    }),
    { code: 'EGPIO_CHIP', message: /motion\.pir\.chip "auto".*gpio-mockup-A/ },
  );
  const mock = await openPir({
    config: parseConfig({ motion: { source: 'both', pir: { chip: 'gpio-mockup-A', line: 3 } } })
      .motion,
    gpio,
    paths,
    logger,
  });
  t.ok(mock, 'a named chip (gpio-mockup) is used as given');
});

t.test('motion config: strict validation naming the field', async (t) => {
  const bad: [unknown, string, RegExp][] = [
    [{ source: 'radar' }, 'motion.source', /field "motion\.source"/],
    [{ threshold: 0 }, 'motion.threshold', /field "motion\.threshold"/],
    [{ threshold: 256 }, 'motion.threshold', /field "motion\.threshold"/],
    [{ minAreaPct: 101 }, 'motion.minAreaPct', /field "motion\.minAreaPct"/],
    [{ masks: [{ x: 0.5, y: 0, w: 0.6, h: 0.5 }] }, 'motion.masks[0]', /inside the picture/],
    [
      { masks: [{ x: 0, y: 0, w: 0, h: 0.5 }] },
      'motion.masks[0].w',
      /field "motion\.masks\[0\]\.w"/,
    ],
    [{ masks: [{ x: 0, y: 0, w: 1, h: 1, z: 1 }] }, 'motion.masks[0].z', /unknown field/],
    [{ source: 'pir' }, 'motion.pir', /needs motion\.pir/],
    [{ source: 'pir', pir: {} }, 'motion.pir.line', /field "motion\.pir\.line"/],
    [{ source: 'pir', pir: { line: 512 } }, 'motion.pir.line', /field "motion\.pir\.line"/],
    [{ source: 'pir', pir: { line: 4, activeLow: 'yes' } }, 'motion.pir.activeLow', /activeLow/],
    [{ source: 'pir', pir: { line: 4, debounceMs: 5000 } }, 'motion.pir.debounceMs', /debounceMs/],
    [{ source: 'pir', pir: { line: 4, edge: 'both' } }, 'motion.pir.edge', /unknown field/],
  ];
  for (const [motion, field, message] of bad)
    t.throws(() => parseConfig({ motion }), { field, message }, JSON.stringify(motion));
});

t.test('masks and threshold reach the pipeline and mask the right pixels', async (t) => {
  const m = parseConfig({
    motion: { threshold: 40, minAreaPct: 2, masks: [{ x: 0, y: 0, w: 0.5, h: 1 }] },
  }).motion;
  const media = mediaConfigSchema.parse({ motion: motionFromConfig(m) });
  t.equal(media.motion.threshold, 40);
  t.equal(media.motion.minAreaPct, 2);
  t.equal(media.motion.source, 'video');
  const det = motionConfigSchema.parse({ width: 16, height: 12, masks: media.motion.masks });
  const mask = buildMask(det);
  for (let y = 0; y < 12; y++)
    t.same(
      [...mask.subarray(y * 16, y * 16 + 16)],
      [...Array<number>(8).fill(1), ...Array<number>(8).fill(0)],
      `row ${y}: the left half is ignored`,
    );
});
