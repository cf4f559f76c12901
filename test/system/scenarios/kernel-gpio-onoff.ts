// Issue 4e: an input edge on gpio-mockup seen through onoff, and an output line driven
// through onoff. Lines are resolved from the chip's label and base, never hard-coded.
// @group kernel
// @timeout 180
import { Gpio } from 'onoff';
import { check, fail, log, scenario } from '../guest/harness.js';
import { driveMockupLine, loadGpioMockup, readMockupLine } from '../guest/devices.js';

const BUTTON = 4; // line offsets on the mockup chip
const LED = 17;

function waitForEdge(gpio: Gpio, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      gpio.unwatchAll();
      reject(new Error(`no edge within ${timeoutMs} ms`));
    }, timeoutMs);
    gpio.watch((err, value) => {
      clearTimeout(timer);
      gpio.unwatchAll();
      if (err) reject(err);
      else resolve(value);
    });
  });
}

scenario(async () => {
  const chip = await loadGpioMockup(32);
  log(`chip ${chip.label}: base ${chip.base}, ${chip.ngpio} lines, ${chip.chipDev}`);
  check(Gpio.accessible, 'onoff: Gpio.accessible is false (no sysfs GPIO?)');
  check(chip.ngpio > LED, `chip has ${chip.ngpio} lines, need ${LED + 1}`);

  const led = new Gpio(chip.base + LED, 'out');
  const button = new Gpio(chip.base + BUTTON, 'in', 'both');
  try {
    // output: onoff drives the line, the chip sees the level
    led.writeSync(1);
    check((await readMockupLine(chip, LED)) === 1, 'LED line is not high after writeSync(1)');
    check(led.readSync() === 1, 'onoff reads the LED back as low');
    led.writeSync(0);
    check((await readMockupLine(chip, LED)) === 0, 'LED line is not low after writeSync(0)');

    // input: a level change from outside reaches onoff as an interrupt-driven edge
    check(button.readSync() === 0, 'button line starts high');
    const rising = waitForEdge(button, 5000);
    await driveMockupLine(chip, BUTTON, 1);
    const v1 = await rising.catch((e: unknown) => fail(`rising edge: ${String(e)}`));
    check(v1 === 1, `rising edge reported value ${v1}`);
    const falling = waitForEdge(button, 5000);
    await driveMockupLine(chip, BUTTON, 0);
    const v0 = await falling.catch((e: unknown) => fail(`falling edge: ${String(e)}`));
    check(v0 === 0, `falling edge reported value ${v0}`);
    log('edges 1 then 0 seen through onoff; output driven through onoff');
  } finally {
    led.unexport();
    button.unexport();
  }
});
