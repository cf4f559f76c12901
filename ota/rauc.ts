/**
 * The `rauc` command behind a typed adapter (argv arrays through hw/os/run.ts):
 * install a bundle, read the slot status, mark the booted slot good or bad, and
 * (release side and tests) check a bundle's signature and manifest.
 *
 * The device agent (ota/os-agent.ts) talks to the RaucPort interface; RaucCli is
 * the real one, FakeRauc-style stand-ins live in the tests.
 */
import { z } from 'zod';
import { reasonOf, VigilError } from '../base/errors.js';
import { CommandError, run } from '../hw/os/run.js';

export class RaucError extends VigilError {
  /** `signature`: RAUC refused the bundle's CMS signature or certificate. */
  readonly failure: 'signature' | 'refused' | 'tool';
  constructor(
    message: string,
    failure: 'signature' | 'refused' | 'tool',
    options?: { cause?: unknown },
  ) {
    super('EOTARAUC', message, options);
    this.name = 'RaucError';
    this.failure = failure;
  }
}

const SlotSchema = z
  .object({
    class: z.string(),
    device: z.string(),
    type: z.string(),
    bootname: z.string().nullable().optional(),
    state: z.string(),
    boot_status: z.string().nullable().optional(),
    slot_status: z
      .object({
        bundle: z.object({ version: z.string().nullable().optional() }).partial().optional(),
        status: z.string().nullable().optional(),
      })
      .partial()
      .optional(),
  })
  .loose();

const StatusSchema = z
  .object({
    compatible: z.string(),
    booted: z.string().nullable(),
    boot_primary: z.string().nullable(),
    slots: z.array(z.record(z.string(), SlotSchema)),
  })
  .loose();

export interface RaucSlotStatus {
  readonly name: string;
  readonly class: string;
  readonly device: string;
  readonly bootname: string | undefined;
  /** booted | active | inactive */
  readonly state: string;
  readonly bootStatus: string | undefined;
  /** Version of the bundle RAUC last installed into this slot (absent: the image's own). */
  readonly bundleVersion: string | undefined;
}

export interface RaucStatus {
  readonly compatible: string;
  /** Boot name of the booted slot ("A"). */
  readonly booted: string | undefined;
  /** Slot name the bootloader will boot next ("rootfs.1"). */
  readonly primary: string | undefined;
  readonly slots: readonly RaucSlotStatus[];
}

/** Parse `rauc status --detailed --output-format=json`. */
export function parseRaucStatus(json: string): RaucStatus {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new RaucError('rauc status did not print JSON', 'tool', { cause: e });
  }
  const r = StatusSchema.safeParse(raw);
  if (!r.success)
    throw new RaucError(`rauc status JSON has an unexpected shape: ${r.error.message}`, 'tool');
  const slots: RaucSlotStatus[] = [];
  for (const entry of r.data.slots)
    for (const [name, s] of Object.entries(entry))
      slots.push({
        name,
        class: s.class,
        device: s.device,
        bootname: s.bootname ?? undefined,
        state: s.state,
        bootStatus: s.boot_status ?? undefined,
        bundleVersion: s.slot_status?.bundle?.version ?? undefined,
      });
  return {
    compatible: r.data.compatible,
    booted: r.data.booted ?? undefined,
    primary: r.data.boot_primary ?? undefined,
    slots,
  };
}

export interface RaucBundleInfo {
  readonly compatible: string;
  readonly version: string;
  readonly images: readonly string[];
}

/** What the OS update agent needs from RAUC. */
export interface RaucPort {
  install(bundle: string, signal?: AbortSignal): Promise<void>;
  status(): Promise<RaucStatus>;
  /** `rauc status mark-good` of the booted slot (the backend commits a trial). */
  markGood(): Promise<void>;
  /** `rauc status mark-bad booted|other`. */
  markBad(which: 'booted' | 'other'): Promise<void>;
}

export interface RaucCliOptions {
  /** system.conf (default: RAUC's own, /etc/rauc/system.conf). */
  readonly conf?: string;
  /** Keyring for `info` without a system.conf. */
  readonly keyring?: string;
  readonly installTimeoutMs?: number;
}

function isSignatureFailure(stderr: string): boolean {
  return /signature verification failed|Verify error|certificate|CMS/i.test(stderr);
}

export class RaucCli implements RaucPort {
  readonly #o: RaucCliOptions;

  constructor(o: RaucCliOptions = {}) {
    this.#o = o;
  }

  #base(): string[] {
    return this.#o.conf !== undefined ? [`--conf=${this.#o.conf}`] : [];
  }

  async #rauc(args: string[], timeoutMs: number, signal?: AbortSignal): Promise<string> {
    try {
      const r = await run('rauc', [...this.#base(), ...args], {
        timeoutMs,
        ...(signal ? { signal } : {}),
      });
      return r.stdout.toString('utf8');
    } catch (e) {
      if (e instanceof CommandError && e.failure === 'exit') {
        const failure = isSignatureFailure(e.stderr) ? 'signature' : 'refused';
        const last = e.stderr.trim().split('\n').filter(Boolean).slice(-1)[0] ?? reasonOf(e);
        throw new RaucError(`rauc ${String(args[0])}: ${last}`, failure, { cause: e });
      }
      throw new RaucError(`rauc ${String(args[0])} failed: ${reasonOf(e)}`, 'tool', { cause: e });
    }
  }

  async install(bundle: string, signal?: AbortSignal): Promise<void> {
    await this.#rauc(['install', bundle], this.#o.installTimeoutMs ?? 60 * 60_000, signal);
  }

  async status(): Promise<RaucStatus> {
    return parseRaucStatus(
      await this.#rauc(['status', '--detailed', '--output-format=json'], 60_000),
    );
  }

  async markGood(): Promise<void> {
    await this.#rauc(['status', 'mark-good', 'booted'], 60_000);
  }

  async markBad(which: 'booted' | 'other'): Promise<void> {
    await this.#rauc(['status', 'mark-bad', which], 60_000);
  }

  /** Check a bundle's signature against the keyring and read its manifest. */
  async info(bundle: string): Promise<RaucBundleInfo> {
    const keyring = this.#o.keyring !== undefined ? [`--keyring=${this.#o.keyring}`] : [];
    const out = await this.#rauc(['info', ...keyring, '--output-format=json', bundle], 120_000);
    const j = z
      .object({
        compatible: z.string(),
        version: z.string(),
        images: z.array(z.record(z.string(), z.unknown())),
      })
      .safeParse(JSON.parse(out));
    if (!j.success) throw new RaucError('rauc info JSON has an unexpected shape', 'tool');
    return {
      compatible: j.data.compatible,
      version: j.data.version,
      images: j.data.images.flatMap((i) => Object.keys(i)),
    };
  }
}
