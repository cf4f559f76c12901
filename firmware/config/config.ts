/**
 * Hub configuration: /etc/vigil/config.json (overridable with --config or
 * VIGIL_CONFIG), validated with zod. Unknown keys are errors (a typo must not
 * silently fall back to a default), and every error names the offending field.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { VigilError } from '../../base/errors.js';
import { OtaChannelSchema, ServiceUrlSchema } from '../../protocol/services.js';
import { ALSA_PCM, audioConfigSchema } from '../../hw/audio/audio.js';
import { PRIVACY_OFF, privacySchema } from '../uplink/privacy.js';
import { DETECTION_DEFAULTS, detectionConfigSchema } from '../media/detection.js';

const childSpec = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'lower-case name, letters, digits and dashes'),
    command: z.string().min(1),
    args: z.array(z.string()).default([]),
    env: z.record(z.string(), z.string()).optional(),
  })
  .strict();

export const configSchema = z
  .object({
    /** Human name shown to phones. */
    deviceName: z.string().min(1).max(64).default('Vigil camera'),
    /** development: simulated hardware, keyfile storage, auto-pairing. */
    mode: z.enum(['production', 'development']).default('production'),
    log: z
      .object({ level: z.enum(['debug', 'info', 'warn', 'error']).default('info') })
      .strict()
      .default({ level: 'info' }),
    storage: z
      .object({
        /** Where the unlocked data volume is mounted (state, MLS, recordings). */
        dataDir: z.string().startsWith('/').default('/var/lib/vigil/data'),
        /** Key sources tried in order. */
        keySources: z
          .array(z.enum(['otp', 'phone', 'recovery', 'dev-keyfile']))
          .min(1)
          .default(['otp', 'phone', 'recovery']),
      })
      .strict()
      .default({ dataDir: '/var/lib/vigil/data', keySources: ['otp', 'phone', 'recovery'] }),
    /**
     * Unset: the provisioning bundle's relay (a phone's choice wins over both). The URL rule of
     * the bundle and the phone's override (protocol/services.ts): https, http only to loopback
     * or link-local.
     */
    relay: z.object({ url: ServiceUrlSchema.optional() }).strict().default({}),
    camera: z
      .object({
        device: z.string().optional(),
        width: z.number().int().min(160).max(3840).default(1280),
        height: z.number().int().min(120).max(2160).default(720),
        fps: z.number().int().min(1).max(60).default(30),
        bitrateKbps: z.number().int().min(100).max(20_000).default(2000),
        encoder: z.enum(['auto', 'camera-h264', 'v4l2-m2m', 'software']).default('auto'),
        preRollSeconds: z.number().min(0).max(30).default(3),
        postRollSeconds: z.number().min(0).max(120).default(5),
      })
      .strict()
      .default({
        width: 1280,
        height: 720,
        fps: 30,
        bitrateKbps: 2000,
        encoder: 'auto',
        preRollSeconds: 3,
        postRollSeconds: 5,
      }),
    /**
     * Optional audio (docs/media.md, "Audio"): an ALSA capture device, encoded AAC-LC into the
     * same clips and live view as the video. Off by default.
     */
    audio: audioConfigSchema
      .extend({
        /** ALSA capture PCM: "default", "hw:1,0", "plughw:CARD=Device,DEV=0", ... */
        device: z
          .string()
          .regex(
            ALSA_PCM,
            'an ALSA capture device name such as "default", "hw:1,0" or "plughw:1,0"',
          )
          .default('default'),
      })
      .strict()
      .default({
        enabled: false,
        device: 'default',
        sampleRate: 48_000,
        channels: 1,
        bitrateKbps: 64,
      }),
    ota: z
      .object({
        /** Unset: the provisioning bundle's channel, else "stable" (firmware/config/services.ts). */
        channel: OtaChannelSchema.optional(),
        /** Unset: the provisioning bundle's. The same URL rule as relay.url. */
        repositoryUrl: ServiceUrlSchema.optional(),
        pollMinutes: z
          .number()
          .min(1)
          .max(24 * 60)
          .default(360),
        /**
         * OS updates (RAUC, docs/ota.md): the hub checks the same channel for a `rootfs`
         * target, installs it into the inactive slot, reboots into its trial when nothing
         * is being recorded and confirms it after its health check. Needs an A/B image
         * (/etc/rauc/system.conf); elsewhere the hub says why they are off.
         */
        os: z
          .object({
            enabled: z.boolean().default(true),
            pollMinutes: z
              .number()
              .int()
              .min(5)
              .max(7 * 24 * 60)
              .default(720),
          })
          .strict()
          .default({ enabled: true, pollMinutes: 720 }),
      })
      .strict()
      .default({ pollMinutes: 360, os: { enabled: true, pollMinutes: 720 } }),
    /**
     * The pairing/reset button and the status LED (firmware/supervisor/panel.ts).
     * `chip: "auto"` picks the Pi's main GPIO chip by label; with no such chip (or
     * `enabled: false`) the hub runs without a panel and says so in the log.
     */
    gpio: z
      .object({
        enabled: z.boolean().default(true),
        /** gpiochip label ("pinctrl-bcm2711", "pinctrl-rp1", "gpio-mockup-A"), or "auto". */
        chip: z.string().min(1).max(64).default('auto'),
        /** Button line offset on that chip (BCM number on a Pi), and its polarity. */
        button: z.number().int().min(0).max(511).default(17),
        buttonActiveLow: z.boolean().default(true),
        /** Status LED line offset and polarity. */
        led: z.number().int().min(0).max(511).default(27),
        ledActiveLow: z.boolean().default(false),
      })
      .strict()
      .refine((g) => g.button !== g.led, {
        message: 'button and led must be different lines',
        path: ['led'],
      })
      .default({
        enabled: true,
        chip: 'auto',
        button: 17,
        buttonActiveLow: true,
        led: 27,
        ledActiveLow: false,
      }),
    /**
     * Retention on the data volume (docs/storage.md, "Retention"): local copies of clips and
     * thumbnails and the upload backlog. Days apply to items every phone acknowledged (clips,
     * thumbnails) and to the backlog (pending); the floors and the backlog cap are in MiB.
     */
    retention: z
      .object({
        clipsDays: z.number().int().min(1).max(3650).default(30),
        thumbnailsDays: z.number().int().min(1).max(3650).default(30),
        /** Oldest undelivered upload kept while the relay is away (then dropped, reported). */
        pendingDays: z.number().int().min(1).max(365).default(7),
        /** Disk-pressure floor: below it, acknowledged items go first (any class, oldest first). */
        minFreeMiB: z.number().int().min(16).max(1_048_576).default(512),
        /** Critical floor: below it even undelivered local copies go (each one logged). */
        criticalFreeMiB: z.number().int().min(8).max(1_048_576).default(64),
        /** Upload backlog cap: past it the oldest undelivered clips are dropped and reported. */
        backlogMaxMiB: z.number().int().min(1).max(1_048_576).default(1024),
        /** How often retention runs besides before each new item. */
        intervalMinutes: z.number().int().min(1).max(1440).default(60),
      })
      .strict()
      .refine((r) => r.criticalFreeMiB <= r.minFreeMiB, {
        message: 'must not exceed retention.minFreeMiB',
        path: ['criticalFreeMiB'],
      })
      .default({
        clipsDays: 30,
        thumbnailsDays: 30,
        pendingDays: 7,
        minFreeMiB: 512,
        criticalFreeMiB: 64,
        backlogMaxMiB: 1024,
        intervalMinutes: 60,
      }),
    /**
     * Motion detection (firmware/media/motion.ts, docs/media.md): what starts a clip, the
     * video detector's sensitivity and masks, and an optional PIR sensor on a GPIO line
     * (firmware/supervisor/pir.ts). `source: "pir"` or `"both"` needs `pir`.
     */
    motion: z
      .object({
        source: z.enum(['video', 'pir', 'both']).default('video'),
        /** Per-pixel luma change (1-255) that counts as changed. */
        threshold: z.number().int().min(1).max(255).default(24),
        /** Smallest changed region, as % of the unmasked picture, that is motion. */
        minAreaPct: z.number().min(0).max(100).default(0.5),
        /** Areas to ignore: rectangles in picture fractions (0..1) that lie inside the picture. */
        masks: z
          .array(
            z
              .object({
                x: z.number().min(0).max(1),
                y: z.number().min(0).max(1),
                w: z.number().gt(0).max(1),
                h: z.number().gt(0).max(1),
              })
              .strict()
              .refine((r) => r.x + r.w <= 1 && r.y + r.h <= 1, {
                message: 'the mask must lie inside the picture (x + w <= 1, y + h <= 1)',
              }),
          )
          .max(32)
          .default([]),
        pir: z
          .object({
            /** gpiochip label, or "auto" (the Pi's main chip, as for `gpio.chip`). */
            chip: z.string().min(1).max(64).default('auto'),
            /** Line offset on that chip (BCM number on a Pi). */
            line: z.number().int().min(0).max(511),
            /** true: the sensor pulls the line low on motion. */
            activeLow: z.boolean().default(false),
            /** Edges closer than this are one edge (contact bounce, sensor jitter). */
            debounceMs: z.number().int().min(0).max(1000).default(50),
          })
          .strict()
          .optional(),
      })
      .strict()
      .refine((m) => m.source === 'video' || m.pir !== undefined, {
        message: 'source "pir" or "both" needs motion.pir (chip, line)',
        path: ['pir'],
      })
      .default({ source: 'video', threshold: 24, minAreaPct: 0.5, masks: [] }),
    /**
     * What the relay and the push service may learn of when events happen (issue #20,
     * firmware/uplink/privacy.ts, docs/app.md "Privacy modes"). Off by default: the
     * constant-rate mode costs bandwidth every minute of the day (`vigil hub status` shows it).
     */
    privacy: privacySchema.default(PRIVACY_OFF),
    /**
     * Events by object class (firmware/media/detection.ts, docs/media.md): the on-device
     * detector, which classes make a clip, zones, and the load governor.
     */
    detection: detectionConfigSchema.default(DETECTION_DEFAULTS),
    /** Extra supervised programs (restarted with backoff like the built-in children). */
    children: z.array(childSpec).default([]),
    restart: z
      .object({
        initialDelayMs: z.number().int().min(10).max(60_000).default(500),
        maxDelayMs: z.number().int().min(100).max(600_000).default(30_000),
        /** A child that crashes this many times within windowMs is in a crash loop. */
        crashLoopCount: z.number().int().min(2).max(100).default(5),
        crashLoopWindowMs: z.number().int().min(1000).max(3_600_000).default(60_000),
      })
      .strict()
      .default({
        initialDelayMs: 500,
        maxDelayMs: 30_000,
        crashLoopCount: 5,
        crashLoopWindowMs: 60_000,
      }),
  })
  .strict();

export type VigilConfig = z.infer<typeof configSchema>;
export type ChildSpec = z.infer<typeof childSpec>;

export class ConfigError extends VigilError {
  /** The first offending field (schema order). */
  readonly field: string | undefined;
  /** Every offending field, when the file has several mistakes. */
  readonly fields: readonly string[];
  constructor(
    message: string,
    field?: string,
    options?: { cause?: unknown; fields?: readonly string[] },
  ) {
    super('ECONFIG', message, options);
    this.name = 'ConfigError';
    this.field = field;
    this.fields = options?.fields ?? (field === undefined ? [] : [field]);
  }
}

function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path)
    out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}

/**
 * Validate a parsed JSON value. The error is one line naming every offending
 * field (so a file with three mistakes is fixed in one edit, not three runs).
 */
export function parseConfig(value: unknown, source = 'config'): VigilConfig {
  const r = configSchema.safeParse(value);
  if (r.success) return r.data;
  const problems = r.error.issues.flatMap((issue): { field: string; text: string }[] => {
    if (issue.code === 'unrecognized_keys') {
      const base = fieldPath(issue.path);
      return issue.keys.map((key) => {
        const field = base ? `${base}.${key}` : key;
        return { field, text: `unknown field "${field}"` };
      });
    }
    const field = fieldPath(issue.path) || '(root)';
    return [{ field, text: `field "${field}": ${issue.message.replace(/\s*\n\s*/g, ' ')}` }];
  });
  const first = problems[0];
  if (!first) throw new ConfigError(`${source}: invalid configuration`);
  const fields = problems.map((p) => p.field);
  if (problems.length === 1) throw new ConfigError(`${source}: ${first.text}`, first.field);
  throw new ConfigError(
    `${source}: ${problems.length} problems: ${problems.map((p) => p.text).join('; ')}`,
    first.field,
    { fields },
  );
}

/** Read and validate the config file. A missing file is an error that names the path. */
export async function loadConfig(path: string): Promise<VigilConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === 'ENOENT'
        ? `config file not found: ${path}`
        : `cannot read config file ${path}: ${code ?? 'error'}`,
      undefined,
      { cause: err },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${path}: not valid JSON (${(err as Error).message})`, undefined, {
      cause: err,
    });
  }
  return parseConfig(json, path);
}
