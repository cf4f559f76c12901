import t from 'tap';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { FakeGpio, GpioError, OnoffGpio, listChips, resolveLine } from '../../../hw/gpio/gpio.js';

async function sysfs(chips: { name: string; label: string; base: number; ngpio: number }[]) {
  const root = await mkdtemp(join(tmpdir(), 'vigil-gpio-'));
  for (const c of chips) {
    const d = join(root, 'sys/class/gpio', c.name);
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'label'), `${c.label}\n`);
    await writeFile(join(d, 'base'), `${c.base}\n`);
    await writeFile(join(d, 'ngpio'), `${c.ngpio}\n`);
  }
  await writeFile(join(root, 'sys/class/gpio/export'), '');
  return new HostPaths(root);
}

void t.test('lines resolve from chip label + offset, whatever the base', async (t) => {
  const paths = await sysfs([
    { name: 'gpiochip512', label: 'pinctrl-bcm2711', base: 512, ngpio: 58 },
    { name: 'gpiochip570', label: 'raspberrypi-exp-gpio', base: 570, ngpio: 8 },
    { name: 'gpiochip992', label: 'gpio-mockup-A', base: 992, ngpio: 32 },
  ]);
  t.equal(
    await resolveLine(paths, { chipLabel: 'pinctrl-bcm2711', offset: 17 }),
    529,
    'BCM17 on a 6.6+ Pi kernel',
  );
  t.equal(await resolveLine(paths, { chipLabel: 'gpio-mockup-A', offset: 3 }), 995);
  t.equal((await listChips(paths)).length, 3);
  await t.rejects(resolveLine(paths, { chipLabel: 'nope', offset: 0 }), {
    code: 'EGPIO_CHIP',
    message: /found: .*pinctrl-bcm2711/,
  });
  await t.rejects(resolveLine(paths, { chipLabel: 'gpio-mockup-A', offset: 32 }), {
    code: 'EGPIO_LINE',
    message: /0\.\.31/,
  });
  await t.rejects(resolveLine(paths, { chipLabel: 'gpio-mockup-A', offset: -1 }), GpioError);
  await t.rejects(
    resolveLine(new HostPaths(await mkdtemp(join(tmpdir(), 'vigil-gpio-none-'))), {
      chipLabel: 'x',
      offset: 0,
    }),
    { code: 'EGPIO_CHIP', message: /no sysfs GPIO/ },
  );
  const dup = await sysfs([
    { name: 'gpiochip0', label: 'same', base: 0, ngpio: 4 },
    { name: 'gpiochip4', label: 'same', base: 4, ngpio: 4 },
  ]);
  await t.rejects(resolveLine(dup, { chipLabel: 'same', offset: 0 }), /several/);
});

void t.test(
  'OnoffGpio fails clearly where the line cannot be exported (no GPIO on this host)',
  async (t) => {
    const paths = await sysfs([
      { name: 'gpiochip992', label: 'gpio-mockup-A', base: 992, ngpio: 32 },
    ]);
    const g = new OnoffGpio(paths);
    await t.rejects(g.input({ chipLabel: 'gpio-mockup-A', offset: 1 }), GpioError);
    await t.rejects(g.output({ chipLabel: 'missing', offset: 1 }), { code: 'EGPIO_CHIP' });
  },
);

void t.test('FakeGpio', async (t) => {
  const f = new FakeGpio();
  const line = { chipLabel: 'c', offset: 1 };
  const input = await f.input(line);
  const seen: number[] = [];
  input.watch((v) => seen.push(v));
  f.drive(line, 1);
  f.drive(line, 0);
  t.same(seen, [1, 0]);
  t.equal(await input.read(), 0);
  const out = await f.output({ chipLabel: 'c', offset: 2 });
  await out.write(1);
  t.same(f.writes, [['c:2', 1]]);
  input.close();
  out.close();
});
