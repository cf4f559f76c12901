import t from 'tap';
import { manualClock } from '../../fixtures/manual-clock.js';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../../firmware/config/config.js';
import { MemoryLogger } from '../../../base/logger.js';
import {
  FACTORY_RESET_CONFIRM_MS,
  Panel,
  canFactoryReset,
  ledPatternFor,
  openPanel,
} from '../../../firmware/supervisor/panel.js';
import type { Event, State } from '../../../firmware/supervisor/state.js';
import { FakeGpio } from '../../../hw/gpio/gpio.js';
import type { GpioBackend } from '../../../hw/gpio/gpio.js';
import { LONG_PRESS_MS } from '../../../hw/gpio/button.js';
import type { LedPattern } from '../../../hw/gpio/led.js';
import { HostPaths } from '../../../hw/os/host-paths.js';

const S = {
  locked: { name: 'locked', reason: 'x', waitingFor: undefined },
  pairing: { name: 'pairing', dataDir: '/d', failedAttempts: 0 },
  closed: { name: 'pairing', dataDir: '/d', failedAttempts: 20, windowClosed: 'failures' },
  running: { name: 'running', dataDir: '/d' },
} satisfies Record<string, State>;

void t.test('LED pattern per supervisor state (pure)', async (t) => {
  const table: [State, boolean, LedPattern][] = [
    [{ name: 'booting' }, false, 'locked'],
    [S.locked, false, 'locked'],
    [{ name: 'unlocked', dataDir: '/d' }, false, 'locked'],
    [S.pairing, false, 'pairing'],
    [S.closed, false, 'idle'],
    [S.running, false, 'paired'],
    [S.running, true, 'recording'],
    [{ name: 'updating', dataDir: '/d', version: '2' }, false, 'paired'],
    [{ name: 'degraded', dataDir: '/d', reason: 'x', resume: 'running' }, false, 'error'],
    [{ name: 'failed', reason: 'x' }, false, 'error'],
    [{ name: 'stopping', exitCode: 0 }, false, 'off'],
  ];
  for (const [s, rec, p] of table) t.equal(ledPatternFor(s, rec), p, `${s.name} rec=${rec}`);
  t.notOk(canFactoryReset(S.locked));
  t.notOk(canFactoryReset({ name: 'updating', dataDir: '/d', version: '2' }));
  t.notOk(canFactoryReset({ name: 'degraded', dataDir: undefined, reason: 'x', resume: 'locked' }));
  t.ok(canFactoryReset({ name: 'degraded', dataDir: '/d', reason: 'x', resume: 'running' }));
  t.ok(canFactoryReset(S.running));
  t.ok(canFactoryReset(S.pairing));
});

/** A panel over the fake GPIO backend (the lowest port), with the real ButtonWatcher/StatusLed. */
async function rig(config: Record<string, unknown> = {}) {
  const root = await mkdtemp(join(tmpdir(), 'vigil-panel-'));
  const d = join(root, 'sys/class/gpio/gpiochip512');
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'label'), 'pinctrl-bcm2711\n');
  await writeFile(join(d, 'base'), '512\n');
  await writeFile(join(d, 'ngpio'), '58\n');
  const gpio = new FakeGpio();
  const { clock, advance } = manualClock();
  const logger = new MemoryLogger();
  const panel = await openPanel({
    config: parseConfig({ gpio: config }).gpio,
    backend: gpio,
    paths: new HostPaths(root),
    logger,
    clock,
  });
  const events: Event['type'][] = [];
  panel.attach((e) => events.push(e.type));
  const button = { chipLabel: 'pinctrl-bcm2711', offset: 17 };
  const led = 'pinctrl-bcm2711:27';
  const press = (ms: number) => {
    gpio.drive(button, 1);
    advance(ms);
    gpio.drive(button, 0);
  };
  return { gpio, panel, events, press, advance, led, logger };
}

void t.test('short press asks for the pairing window; the LED follows the state', async (t) => {
  const r = await rig();
  t.ok(r.panel.present);
  t.equal(r.gpio.values.get(r.led), 1, 'booting: slow blink starts on');
  r.panel.onState(S.running);
  t.equal(r.gpio.values.get(r.led), 1, 'paired: solid on');
  r.press(300);
  t.same(r.events, ['pairing-requested']);
  r.panel.onState(S.pairing);
  const writes = r.gpio.writes.length;
  r.advance(150);
  t.equal(r.gpio.values.get(r.led), 0, 'pairing: fast blink');
  r.advance(150);
  t.equal(r.gpio.values.get(r.led), 1);
  t.ok(r.gpio.writes.length > writes);
  r.panel.onState(S.running);
  r.panel.setRecording(true);
  r.advance(120);
  t.equal(r.gpio.values.get(r.led), 0, 'recording: double blink');
  r.panel.setRecording(false);
  t.equal(r.gpio.values.get(r.led), 1, 'back to solid');
});

void t.test('a 5 s hold confirms with the LED, then asks for a factory reset', async (t) => {
  const r = await rig();
  r.panel.onState(S.running);
  r.gpio.drive({ chipLabel: 'pinctrl-bcm2711', offset: 17 }, 1);
  r.advance(LONG_PRESS_MS);
  t.same(r.events, ['factory-reset-requested'], 'reported while still held');
  // the state machine answers at once (pairing, reset running): the confirmation keeps playing
  r.panel.onState(S.pairing);
  const during: number[] = [];
  for (let i = 0; i < 8; i++) {
    r.advance(50);
    during.push(r.gpio.values.get(r.led) ?? -1);
  }
  t.same(during, [0, 1, 0, 1, 0, 1, 0, 1], '50 ms flicker, not the pairing blink');
  r.gpio.drive({ chipLabel: 'pinctrl-bcm2711', offset: 17 }, 0);
  t.same(r.events, ['factory-reset-requested'], 'release after a long press is not a short press');
  r.advance(FACTORY_RESET_CONFIRM_MS);
  r.advance(150);
  t.equal(r.gpio.values.get(r.led), 0);
  r.advance(150);
  t.equal(r.gpio.values.get(r.led), 1, 'then the pairing blink');
  t.ok(r.logger.lines.some((l) => l.includes('factory reset')));
});

void t.test('no factory reset while locked (the volume holding the state is closed)', async (t) => {
  const r = await rig();
  r.panel.onState(S.locked);
  r.press(LONG_PRESS_MS + 100);
  t.same(r.events, []);
  t.ok(r.logger.lines.some((l) => l.includes('refused')));
  r.panel.close();
  t.equal(r.gpio.values.get(r.led), 0, 'closing turns the LED off');
  r.press(300);
  t.same(r.events, [], 'a closed panel ignores the button');
});

void t.test('no chip, disabled, or a broken line: the hub runs without that part', async (t) => {
  const logger = new MemoryLogger();
  const empty = await mkdtemp(join(tmpdir(), 'vigil-panel-none-'));
  const none = await openPanel({
    config: parseConfig({}).gpio,
    backend: new FakeGpio(),
    paths: new HostPaths(empty),
    logger,
  });
  t.notOk(none.present);
  t.ok(logger.lines.some((l) => l.includes('no GPIO')));
  const off = await openPanel({
    config: parseConfig({ gpio: { enabled: false } }).gpio,
    backend: new FakeGpio(),
    paths: new HostPaths(empty),
    logger,
  });
  t.notOk(off.present);
  t.ok(logger.lines.some((l) => l.includes('disabled')));
  const r = await rig({ chip: 'gpio-mockup-A' });
  t.notOk(r.panel.present, 'configured chip absent');
  t.ok(r.logger.lines.some((l) => l.includes('no matching GPIO chip')));

  const root = await mkdtemp(join(tmpdir(), 'vigil-panel-'));
  const d = join(root, 'sys/class/gpio/gpiochip0');
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'label'), 'gpio-mockup-A\n');
  await writeFile(join(d, 'base'), '0\n');
  await writeFile(join(d, 'ngpio'), '8\n');
  const fake = new FakeGpio();
  const half: GpioBackend = {
    input: () => Promise.reject(new Error('busy')),
    output: (l) => fake.output(l),
  };
  const l2 = new MemoryLogger();
  const p = await openPanel({
    config: parseConfig({ gpio: { chip: 'gpio-mockup-A', button: 1, led: 2 } }).gpio,
    backend: half,
    paths: new HostPaths(root),
    logger: l2,
  });
  t.ok(p.present, 'the LED still works');
  t.ok(l2.lines.some((l) => l.includes('button line unavailable')));
  p.onState(S.running);
  t.equal(fake.values.get('gpio-mockup-A:2'), 1);
  p.close();
});

void t.test('Panel without hardware is inert', async (t) => {
  const p = new Panel({ logger: new MemoryLogger() });
  p.onState(S.running);
  p.setRecording(true);
  p.close();
  p.close();
  t.notOk(p.present);
});
