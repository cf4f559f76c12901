import t from 'tap';
import { manualClock } from '../../fixtures/manual-clock.js';
import { FakeGpio } from '../../../hw/gpio/gpio.js';
import { PATTERNS, StatusLed } from '../../../hw/gpio/led.js';

void t.test('patterns play as on/off timelines and switch cleanly', async (t) => {
  const { clock, advance } = manualClock();
  const gpio = new FakeGpio();
  const led = new StatusLed(await gpio.output({ chipLabel: 'c', offset: 9 }), clock);
  const trace = () => gpio.writes.map(([, v]) => v).join('');
  led.show('pairing');
  advance(600);
  t.equal(trace(), '10101', '150 ms on/off');
  gpio.writes.length = 0;
  led.show('paired');
  advance(10_000);
  t.equal(trace(), '1', 'solid on');
  gpio.writes.length = 0;
  led.show('factory-reset');
  advance(5000);
  t.equal(trace(), '10'.repeat(20) + '0', '40 flickers then off');
  t.equal(led.pattern, 'factory-reset');
  gpio.writes.length = 0;
  led.show('error');
  advance(2000);
  t.equal(trace(), '1010101', 'triple blink, a pause, and round again');
  gpio.writes.length = 0;
  led.show('off');
  advance(5000);
  t.equal(trace(), '0');
  for (const [name, p] of Object.entries(PATTERNS))
    t.ok(
      p.steps.every((d) => d > 0),
      `${name} durations positive`,
    );
});
