/**
 * The PIR sensor and the motion settings of the hub config (`motion` block) as
 * the media pipeline takes them: the PIR line opened through a GpioBackend
 * (OnoffGpio on a device, FakeGpio in tests) and seen as an `EdgeInput`, and the
 * detector settings mapped onto the pipeline's `motion` config.
 */
import type { GpioBackend, InputLine } from '../../hw/gpio/gpio.js';
import { listChips } from '../../hw/gpio/gpio.js';
import type { HostPaths } from '../../hw/os/host-paths.js';
import { VigilError } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import type { VigilConfig } from '../config/config.js';
import type { EdgeInput } from '../media/motion.js';
import type { MediaConfigInput } from '../media/pipeline.js';
import { PI_CHIP_LABELS } from './panel.js';

type MotionSettings = VigilConfig['motion'];

/** The pipeline's motion config from the hub config. */
export function motionFromConfig(m: MotionSettings): NonNullable<MediaConfigInput['motion']> {
  return {
    source: m.source,
    threshold: m.threshold,
    minAreaPct: m.minAreaPct,
    masks: m.masks.map((r) => ({ x: r.x, y: r.y, w: r.w, h: r.h })),
  };
}

/** An input line as the pipeline's edge port (stamped with `now()` at each edge). */
export function edgeInput(line: InputLine, now: () => number = Date.now): EdgeInput {
  let cb: ((value: 0 | 1, at: number) => void) | undefined;
  let watching = false;
  return {
    onEdge(fn) {
      cb = fn;
      if (!watching) {
        watching = true;
        line.watch((v) => cb?.(v, now()));
      }
      return () => {
        cb = undefined;
        line.close();
        watching = false;
      };
    },
  };
}

/**
 * Open the configured PIR line; undefined when the config has none or the source is
 * "video". A missing chip or line is an error naming it (the owner asked for PIR).
 */
export async function openPir(o: {
  readonly config: MotionSettings;
  readonly gpio: GpioBackend;
  readonly paths: HostPaths;
  readonly logger: Logger;
}): Promise<EdgeInput | undefined> {
  const pir = o.config.pir;
  if (pir === undefined || o.config.source === 'video') return undefined;
  let chipLabel = pir.chip;
  if (chipLabel === 'auto') {
    const labels = (await listChips(o.paths)).map((c) => c.label);
    const found = PI_CHIP_LABELS.find((l) => labels.includes(l));
    if (found === undefined)
      throw new VigilError(
        'EGPIO_CHIP',
        `motion.pir.chip "auto": no Raspberry Pi GPIO chip (found: ${labels.join(', ') || 'none'})`,
      );
    chipLabel = found;
  }
  const line = await o.gpio.input(
    { chipLabel, offset: pir.line },
    { activeLow: pir.activeLow, debounceMs: pir.debounceMs },
  );
  o.logger.info('PIR sensor line open', {
    chip: chipLabel,
    line: pir.line,
    activeLow: pir.activeLow,
    debounceMs: pir.debounceMs,
  });
  return edgeInput(line);
}
