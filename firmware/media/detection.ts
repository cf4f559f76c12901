/**
 * Events by object class (issue #21): while motion (video or PIR) is active,
 * the recording's keyframes, decoded to grey pictures (keyframe.ts,
 * hw/encoder/frame-decoder.ts), go to the object detector at the rate the load
 * governor allows; the event becomes a clip once a wanted object is seen —
 * a configured class, at or above the minimum score, whose anchor point (the
 * bottom centre of its box: where a person stands) lies inside an include
 * zone (if any) and outside every exclude zone.
 *
 * The gate runs at most one inference at a time and drops frames while it is
 * busy: detection can fall behind, it never queues work and never holds up
 * the recorder. The summary it keeps (best score per wanted class) goes into
 * the clip's sealed end record and the motion notice.
 */
import { z } from 'zod';
import { reasonOf } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import type {
  Detection,
  GreyFrame,
  ObjectClass,
  ObjectDetector,
} from '../../hw/detector/detector.js';
import { COCO_CLASSES } from '../../hw/detector/detector.js';
import { DEFAULT_GOVERNOR_LIMITS } from './governor.js';

const unit = z.number().min(0).max(1);
const objectClass = z.enum(COCO_CLASSES, {
  error: (i) => `unknown class ${JSON.stringify(i.input)} (COCO class names, e.g. "person", "car")`,
});

/** Twice the signed area of a polygon (shoelace). */
export function polygonArea2(points: readonly (readonly [number, number])[]): number {
  let a = 0;
  for (let i = 0; i < points.length; i++) {
    const [x0, y0] = points[i] ?? [0, 0];
    const [x1, y1] = points[(i + 1) % points.length] ?? [0, 0];
    a += x0 * y1 - x1 * y0;
  }
  return a;
}

export const zoneSchema = z
  .strictObject({
    /** For logs and the docs; not used for matching. */
    name: z.string().min(1).max(32).optional(),
    /** include: only objects here count (when any include zone exists); exclude: never here. */
    mode: z.enum(['include', 'exclude']),
    /** Polygon corners in picture fractions [x, y] (0..1, origin top left), 3 to 32 of them. */
    points: z
      .array(z.tuple([unit, unit]))
      .min(3)
      .max(32),
    /** Only these classes are subject to the zone (default: every class). */
    classes: z.array(objectClass).min(1).max(80).optional(),
  })
  .refine((zn) => Math.abs(polygonArea2(zn.points)) > 1e-6, {
    message: 'the polygon has no area (its points lie on a line)',
    path: ['points'],
  });
export type Zone = z.output<typeof zoneSchema>;

export const governorConfigSchema = z
  .strictObject({
    /** Degrade at this busy CPU share (0..1); recover below cpuLow. */
    cpuHigh: z.number().gt(0).max(1).default(DEFAULT_GOVERNOR_LIMITS.cpuHigh),
    cpuLow: z.number().min(0).lt(1).default(DEFAULT_GOVERNOR_LIMITS.cpuLow),
    /** Degrade at this SoC temperature (°C); recover below tempLowC. */
    tempHighC: z.number().min(30).max(120).default(DEFAULT_GOVERNOR_LIMITS.tempHighC),
    tempLowC: z.number().min(20).max(115).default(DEFAULT_GOVERNOR_LIMITS.tempLowC),
    /** Frames analysed per second at full load and when reduced. */
    fullFps: z.number().gt(0).max(15).default(DEFAULT_GOVERNOR_LIMITS.fullFps),
    reducedFps: z.number().gt(0).max(15).default(DEFAULT_GOVERNOR_LIMITS.reducedFps),
    /** Seconds between two readings of the load and the temperature. */
    intervalS: z.number().min(1).max(600).default(10),
  })
  .refine((g) => g.cpuLow < g.cpuHigh, {
    message: 'must be below governor.cpuHigh',
    path: ['cpuLow'],
  })
  .refine((g) => g.tempLowC < g.tempHighC, {
    message: 'must be below governor.tempHighC',
    path: ['tempLowC'],
  })
  .refine((g) => g.reducedFps < g.fullFps, {
    message: 'must be below governor.fullFps',
    path: ['reducedFps'],
  });
export type GovernorConfig = z.output<typeof governorConfigSchema>;
const GOVERNOR_DEFAULTS: GovernorConfig = governorConfigSchema.parse({});

export const detectionConfigSchema = z.strictObject({
  /** Off: every motion makes a clip (as before); on: the classes below decide. */
  enabled: z.boolean().default(false),
  /** Classes that make an event. */
  classes: z.array(objectClass).min(1).max(80).default(['person']),
  /** Lowest detector score (0..1) that counts. */
  minScore: z.number().min(0.05).max(1).default(0.4),
  /**
   * Size of the picture the detector sees (multiples of 32; cost grows with the area): the
   * event's keyframes, decoded at this size only while motion is checked (pipeline.ts).
   */
  width: z.number().int().min(64).max(640).multipleOf(32, 'must be a multiple of 32').default(384),
  height: z.number().int().min(64).max(480).multipleOf(32, 'must be a multiple of 32').default(288),
  /** Areas where objects count or never count. */
  zones: z.array(zoneSchema).max(16).default([]),
  /** Also make a clip for motion without a wanted object (the detector then only labels clips). */
  motionClips: z.boolean().default(false),
  /** The load governor (firmware/media/governor.ts): when to slow down and stop the detector. */
  governor: governorConfigSchema.default(GOVERNOR_DEFAULTS),
});
export type DetectionConfig = z.output<typeof detectionConfigSchema>;
export type DetectionConfigInput = z.input<typeof detectionConfigSchema>;
export const DETECTION_DEFAULTS: DetectionConfig = detectionConfigSchema.parse({});

/** Ray casting; a point on the boundary may fall either way. */
export function insidePolygon(
  x: number,
  y: number,
  points: readonly (readonly [number, number])[],
): boolean {
  let inside = false;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const [xi, yi] = points[i] ?? [0, 0];
    const [xj, yj] = points[j] ?? [0, 0];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Where an object is, for zones: the bottom centre of its box (kept just inside the picture). */
export function anchorOf(d: Detection): [number, number] {
  return [d.box.x + d.box.w / 2, Math.min(d.box.y + d.box.h, 0.999)];
}

/** Whether a detection makes an event under this config (pure). */
export function isWanted(
  d: Detection,
  cfg: Pick<DetectionConfig, 'classes' | 'minScore' | 'zones'>,
): boolean {
  if (d.score < cfg.minScore || !cfg.classes.includes(d.class)) return false;
  const [x, y] = anchorOf(d);
  const zones = cfg.zones.filter((zn) => zn.classes === undefined || zn.classes.includes(d.class));
  if (zones.some((zn) => zn.mode === 'exclude' && insidePolygon(x, y, zn.points))) return false;
  const include = zones.filter((zn) => zn.mode === 'include');
  return include.length === 0 || include.some((zn) => insidePolygon(x, y, zn.points));
}

/** Best score per class, best first. */
export interface SeenObject {
  readonly class: ObjectClass;
  readonly score: number;
}

/** `person:0.82,car:0.51` (the sealed end-record note and the logs). */
export function formatObjects(objects: readonly SeenObject[]): string {
  return objects.map((o) => `${o.class}:${o.score.toFixed(2)}`).join(',');
}

export function mergeObjects(a: readonly SeenObject[], b: readonly SeenObject[]): SeenObject[] {
  const best = new Map<ObjectClass, number>();
  for (const o of [...a, ...b]) best.set(o.class, Math.max(best.get(o.class) ?? 0, o.score));
  return [...best].map(([c, score]) => ({ class: c, score })).sort((x, y) => y.score - x.score);
}

export interface DetectionGateDeps {
  readonly detector: ObjectDetector;
  readonly config: DetectionConfig;
  readonly logger: Logger;
  readonly now?: () => number;
  /** A wanted object was first seen in this event (`objects`: the summary so far). */
  readonly onConfirmed: (objects: readonly SeenObject[]) => void;
  /** The summary grew (a new class or a better score) after the confirmation. */
  readonly onUpdate?: (objects: readonly SeenObject[]) => void;
  /** The detector failed; the pipeline falls back to motion clips. */
  readonly onFailed: (reason: string) => void;
  /** Every inference, for the benchmark and the status (ms). */
  readonly onInference?: (ms: number) => void;
}

export class DetectionGate {
  readonly #d: DetectionGateDeps;
  readonly #now: () => number;
  #fps: number;
  #active = false;
  #confirmed = false;
  #busy: Promise<void> | undefined;
  #lastRunAt = -Infinity;
  #objects: SeenObject[] = [];
  #event = 0;
  /** settled() callers of the event that ended, woken when the next begins (or cancel). */
  #settling: (() => void)[] = [];
  #inferences = 0;
  #dropped = 0;

  constructor(d: DetectionGateDeps) {
    this.#d = d;
    this.#now = d.now ?? Date.now;
    this.#fps = d.config.governor.fullFps;
  }

  /** Analysis rate (frames/s); 0 pauses the detector. */
  setFps(fps: number): void {
    this.#fps = fps;
  }

  get fps(): number {
    return this.#fps;
  }

  get active(): boolean {
    return this.#active;
  }

  get confirmed(): boolean {
    return this.#confirmed;
  }

  get objects(): readonly SeenObject[] {
    return this.#objects;
  }

  get stats(): { inferences: number; dropped: number } {
    return { inferences: this.#inferences, dropped: this.#dropped };
  }

  /** A motion event started: look for wanted objects. */
  begin(): void {
    this.#active = true;
    this.#confirmed = false;
    this.#objects = [];
    this.#lastRunAt = -Infinity;
    this.#newEvent();
  }

  /** The motion event ended; returns what was seen so far (see settled()). */
  end(): readonly SeenObject[] {
    this.#active = false;
    return this.#objects;
  }

  /** Stopping: the event is over and an answer still in flight counts for nothing. */
  cancel(): void {
    this.#active = false;
    this.#newEvent();
  }

  #newEvent(): void {
    this.#event++;
    const waiting = this.#settling;
    this.#settling = [];
    for (const wake of waiting) wake();
  }

  /** Whether an inference is in flight. */
  get busy(): boolean {
    return this.#busy !== undefined;
  }

  /**
   * After end(): what the ended event showed once the inference in flight at its end (a
   * picture taken during the event) has answered. On a slow machine the first answer (cold
   * runtime, model, decoder) can come after the motion ended; it still decides the event.
   * Resolves [] when the next event begins (or cancel()) first: a wedged detector holds
   * nothing up.
   */
  settled(): Promise<readonly SeenObject[]> {
    const event = this.#event;
    const busy = this.#busy;
    if (busy === undefined) return Promise.resolve(this.#objects);
    return new Promise((resolve) => {
      const done = (): void => {
        resolve(event === this.#event ? this.#objects : []);
      };
      this.#settling.push(done);
      void busy.then(done);
    });
  }

  /** Resolves once no inference is in flight. */
  async idle(): Promise<void> {
    while (this.#busy) await this.#busy;
  }

  /** A side-stream frame (the gate copies what it keeps). */
  offer(frame: GreyFrame): void {
    if (!this.#active || this.#fps <= 0) return;
    const at = this.#now();
    if (at - this.#lastRunAt < 1000 / this.#fps) return;
    if (this.#busy) {
      this.#dropped++;
      return;
    }
    this.#lastRunAt = at;
    const copy: GreyFrame = { width: frame.width, height: frame.height, data: frame.data.slice() };
    const event = this.#event;
    this.#busy = this.#run(copy, event).finally(() => {
      this.#busy = undefined;
    });
  }

  async #run(frame: GreyFrame, event: number): Promise<void> {
    const cfg = this.#d.config;
    const t0 = performance.now();
    let found: Detection[];
    try {
      found = await this.#d.detector.detect(frame, cfg.minScore);
    } catch (e) {
      this.#d.onFailed(reasonOf(e));
      return;
    }
    this.#inferences++;
    this.#d.onInference?.(performance.now() - t0);
    if (event !== this.#event) return; // another event began (or the pipeline stopped)
    const wanted = found.filter((d) => isWanted(d, cfg));
    if (wanted.length === 0) return;
    const before = formatObjects(this.#objects);
    this.#objects = mergeObjects(
      this.#objects,
      wanted.map((d) => ({ class: d.class, score: d.score })),
    );
    // the event has ended: whoever waits in settled() decides with these objects
    if (!this.#active) return;
    if (!this.#confirmed) {
      this.#confirmed = true;
      this.#d.logger.info('object seen', { objects: formatObjects(this.#objects) });
      this.#d.onConfirmed(this.#objects);
    } else if (formatObjects(this.#objects) !== before) this.#d.onUpdate?.(this.#objects);
  }
}
