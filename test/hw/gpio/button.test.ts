import t from 'tap';
import { manualClock } from '../../fixtures/manual-clock.js';
import { ButtonWatcher, LONG_PRESS_MS } from '../../../hw/gpio/button.js';
import { FakeGpio } from '../../../hw/gpio/gpio.js';

void t.test('short press, 5 s hold (fires while held), bounce ignored', async (t) => {
  const gpio = new FakeGpio();
  const line = { chipLabel: 'gpio-mockup-A', offset: 4 };
  const { clock, advance } = manualClock();
  const b = new ButtonWatcher(await gpio.input(line), clock);
  const ev: string[] = [];
  b.on('short-press', () => ev.push('short'));
  b.on('long-press', () => ev.push('long'));
  gpio.drive(line, 1);
  advance(300);
  gpio.drive(line, 0);
  t.same(ev, ['short']);
  gpio.drive(line, 1);
  advance(10);
  gpio.drive(line, 0);
  t.same(ev, ['short'], 'a 10 ms blip is bounce');
  gpio.drive(line, 1);
  gpio.drive(line, 1); // repeated edge while held
  advance(LONG_PRESS_MS - 1);
  t.same(ev, ['short']);
  advance(1);
  t.same(ev, ['short', 'long'], 'long press reported at 5 s, before release');
  advance(3000);
  gpio.drive(line, 0);
  t.same(ev, ['short', 'long'], 'release after a long press is not also a short press');
  gpio.drive(line, 0);
  t.same(ev, ['short', 'long']);
});

void t.test('active-low buttons', async (t) => {
  const gpio = new FakeGpio();
  const line = { chipLabel: 'x', offset: 0 };
  const { clock, advance } = manualClock();
  const b = new ButtonWatcher(await gpio.input(line), clock, 0);
  let n = 0;
  b.on('short-press', () => n++);
  gpio.drive(line, 0);
  advance(100);
  gpio.drive(line, 1);
  t.equal(n, 1);
});
