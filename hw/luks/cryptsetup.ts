/**
 * `CryptsetupLuks`: the LUKS port over the cryptsetup CLI (2.6, Debian 12).
 *
 * Keys go to cryptsetup on stdin (`--key-file -`, read to EOF, no newline
 * handling) or, for the second key of luksAddKey, through a private tmpfs file
 * (SecretFiles). argv only ever holds device paths, slot numbers and
 * parameters. Messages are forced to English (LC_ALL=C) so errors can be
 * classified; the classification uses cryptsetup's documented exit codes
 * first (2 = bad passphrase, 4 = wrong device, 5 = busy) and stderr second.
 */
import { z } from 'zod';
import { CommandError, run } from '../os/run.js';
import type { RunOptions, RunResult } from '../os/run.js';
import { LuksError } from './luks.js';
import type {
  AddKeyOptions,
  FormatOptions,
  Luks,
  LuksDump,
  LuksErrorCode,
  LuksKeyslot,
  LuksSegment,
  MappingStatus,
  OpenOptions,
  Pbkdf,
} from './luks.js';
import type { SecretFiles } from './secret-files.js';

export type Runner = (
  cmd: string,
  args: readonly string[],
  opts?: RunOptions,
) => Promise<RunResult>;

export interface CryptsetupLuksOptions {
  readonly secretFiles: SecretFiles;
  readonly runner?: Runner;
  /** Path or name of the cryptsetup binary. */
  readonly binary?: string;
  /** Per-call timeout for slow operations (PBKDF under emulation can take minutes). */
  readonly slowTimeoutMs?: number;
}

const FAST_TIMEOUT_MS = 30_000;

function pbkdfArgs(p: Pbkdf): string[] {
  if (p.type === 'pbkdf2')
    return ['--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', String(p.iterations)];
  const a = [
    '--pbkdf',
    'argon2id',
    '--pbkdf-memory',
    String(p.memoryKiB),
    '--pbkdf-parallel',
    String(p.parallel),
  ];
  if (p.iterations !== undefined) a.push('--pbkdf-force-iterations', String(p.iterations));
  else if (p.iterTimeMs !== undefined) a.push('--iter-time', String(p.iterTimeMs));
  return a;
}

const KdfSchema = z.object({
  type: z.string(),
  hash: z.string().optional(),
  iterations: z.number().optional(),
  time: z.number().optional(),
  memory: z.number().optional(),
  cpus: z.number().optional(),
});

const DumpJsonSchema = z.object({
  keyslots: z.record(
    z.string(),
    z.object({
      type: z.string(),
      key_size: z.number(),
      kdf: KdfSchema,
      area: z.object({ encryption: z.string().optional() }).loose(),
    }),
  ),
  segments: z.record(
    z.string(),
    z.object({
      type: z.string(),
      offset: z.string(),
      encryption: z.string().optional(),
      sector_size: z.number().optional(),
    }),
  ),
  config: z.object({ keyslots_size: z.string().optional() }).loose(),
});

/** Parse the header lines of `cryptsetup luksDump` text output. Returns undefined for non-LUKS text. */
export function parseDumpHeader(text: string):
  | {
      version: number;
      uuid: string;
      label: string | undefined;
      subsystem: string | undefined;
      epoch: number | undefined;
    }
  | undefined {
  const field = (name: string): string | undefined => {
    const m = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text);
    return m?.[1]?.trim();
  };
  const version = Number(field('Version'));
  const uuid = field('UUID');
  if (!Number.isInteger(version) || uuid === undefined || uuid === '') return undefined;
  const opt = (v: string | undefined): string | undefined =>
    v === undefined || v === '' || v.startsWith('(no ') ? undefined : v;
  const epoch = Number(field('Epoch'));
  return {
    version,
    uuid,
    label: opt(field('Label')),
    subsystem: opt(field('Subsystem')),
    epoch: Number.isInteger(epoch) ? epoch : undefined,
  };
}

/** Parse `cryptsetup luksDump --dump-json-metadata` (LUKS2 only). */
export function parseDumpJson(
  json: string,
):
  | { keyslots: LuksKeyslot[]; segments: LuksSegment[]; keyslotsSizeBytes: number | undefined }
  | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return undefined;
  }
  const r = DumpJsonSchema.safeParse(raw);
  if (!r.success) return undefined;
  const keyslots: LuksKeyslot[] = Object.entries(r.data.keyslots)
    .map(([id, k]) => ({
      id: Number(id),
      type: k.type,
      keySizeBytes: k.key_size,
      pbkdf: {
        type: k.kdf.type,
        ...(k.kdf.iterations !== undefined ? { iterations: k.kdf.iterations } : {}),
        ...(k.kdf.time !== undefined ? { timeCost: k.kdf.time } : {}),
        ...(k.kdf.memory !== undefined ? { memoryKiB: k.kdf.memory } : {}),
        ...(k.kdf.cpus !== undefined ? { parallel: k.kdf.cpus } : {}),
      },
      areaEncryption: typeof k.area.encryption === 'string' ? k.area.encryption : '',
    }))
    .sort((a, b) => a.id - b.id);
  const segments: LuksSegment[] = Object.entries(r.data.segments)
    .map(([id, s]) => ({
      id: Number(id),
      type: s.type,
      offsetBytes: Number(s.offset),
      encryption: s.encryption ?? '',
      sectorSize: s.sector_size ?? 512,
    }))
    .sort((a, b) => a.id - b.id);
  const ks = r.data.config.keyslots_size;
  return { keyslots, segments, keyslotsSizeBytes: typeof ks === 'string' ? Number(ks) : undefined };
}

/** Parse `cryptsetup status <name>` output. */
export function parseStatus(name: string, text: string): MappingStatus | undefined {
  const first = text.split('\n')[0] ?? '';
  if (!/ is active/.test(first)) return undefined;
  const field = (k: string): string | undefined =>
    new RegExp(`^\\s*${k}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim();
  const ks = /^(\d+)\s*bits/.exec(field('keysize') ?? '');
  return {
    path: `/dev/mapper/${name}`,
    name,
    inUse: /in use/.test(first),
    type: field('type'),
    cipher: field('cipher'),
    keySizeBits: ks?.[1] !== undefined ? Number(ks[1]) : undefined,
    device: field('device'),
  };
}

export class CryptsetupLuks implements Luks {
  readonly #run: Runner;
  readonly #bin: string;
  readonly #secrets: SecretFiles;
  readonly #slowMs: number;

  constructor(opts: CryptsetupLuksOptions) {
    this.#run = opts.runner ?? run;
    this.#bin = opts.binary ?? 'cryptsetup';
    this.#secrets = opts.secretFiles;
    this.#slowMs = opts.slowTimeoutMs ?? 10 * 60_000;
  }

  #env(): Record<string, string | undefined> {
    return { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
  }

  async #cs(
    op: string,
    device: string,
    args: readonly string[],
    o: {
      stdin?: Uint8Array;
      signal?: AbortSignal | undefined;
      slow?: boolean;
      okExitCodes?: readonly number[];
      keyed?: boolean;
    } = {},
  ): Promise<RunResult> {
    try {
      return await this.#run(this.#bin, args, {
        timeoutMs: o.slow === true ? this.#slowMs : FAST_TIMEOUT_MS,
        env: this.#env(),
        // Always give stdin: cryptsetup must never wait on a terminal.
        stdin: o.stdin ?? new Uint8Array(0),
        ...(o.signal !== undefined ? { signal: o.signal } : {}),
        ...(o.okExitCodes !== undefined ? { okExitCodes: o.okExitCodes } : {}),
      });
    } catch (e) {
      throw classify(e, op, device, o.keyed === true);
    }
  }

  async isLuks(device: string, signal?: AbortSignal): Promise<boolean> {
    const r = await this.#cs('isLuks', device, ['isLuks', device], {
      signal,
      okExitCodes: [0, 1, 4],
    });
    return r.exitCode === 0;
  }

  async format(
    device: string,
    key: Uint8Array,
    opts: FormatOptions,
    signal?: AbortSignal,
  ): Promise<void> {
    const args = [
      'luksFormat',
      '--type',
      'luks2',
      '--batch-mode',
      '--cipher',
      opts.cipher,
      '--key-size',
      String(opts.keySizeBits),
      ...(opts.sectorSize !== undefined ? ['--sector-size', String(opts.sectorSize)] : []),
      ...pbkdfArgs(opts.pbkdf),
      ...(opts.uuid !== undefined ? ['--uuid', opts.uuid] : []),
      ...(opts.label !== undefined ? ['--label', opts.label] : []),
      ...(opts.subsystem !== undefined ? ['--subsystem', opts.subsystem] : []),
      ...(opts.keyslotsSizeBytes !== undefined
        ? ['--luks2-keyslots-size', String(opts.keyslotsSizeBytes)]
        : []),
      '--key-file',
      '-',
      device,
    ];
    await this.#cs('format', device, args, { stdin: key, signal, slow: true });
  }

  async open(device: string, name: string, key: Uint8Array, opts: OpenOptions = {}): Promise<void> {
    const args = [
      'open',
      '--type',
      'luks2',
      ...(opts.readOnly === true ? ['--readonly'] : []),
      ...(opts.allowDiscards === true ? ['--allow-discards'] : []),
      '--key-file',
      '-',
      device,
      name,
    ];
    await this.#cs('open', device, args, {
      stdin: key,
      signal: opts.signal,
      slow: true,
      keyed: true,
    });
  }

  async close(name: string, signal?: AbortSignal): Promise<void> {
    await this.#cs('close', name, ['close', name], { signal });
  }

  async status(name: string, signal?: AbortSignal): Promise<MappingStatus | undefined> {
    let r: RunResult;
    try {
      r = await this.#cs('status', name, ['status', name], { signal, okExitCodes: [0, 4] });
    } catch (e) {
      // Without device-mapper nothing can be mapped: "not active" is the truthful answer.
      if (e instanceof LuksError && e.code === 'ELUKS_NO_DM') return undefined;
      throw e;
    }
    if (r.exitCode !== 0) return undefined;
    return parseStatus(name, r.stdout.toString('utf8'));
  }

  async testKey(device: string, key: Uint8Array, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.#cs(
        'testKey',
        device,
        ['open', '--test-passphrase', '--type', 'luks2', '--key-file', '-', device],
        {
          stdin: key,
          signal,
          slow: true,
          keyed: true,
        },
      );
      return true;
    } catch (e) {
      if (e instanceof LuksError && (e.code === 'ELUKS_WRONG_KEY' || e.code === 'ELUKS_NO_KEYSLOT'))
        return false;
      throw e;
    }
  }

  async addKey(
    device: string,
    existingKey: Uint8Array,
    newKey: Uint8Array,
    opts: AddKeyOptions,
  ): Promise<number> {
    const before = new Set((await this.dump(device, opts.signal)).keyslots.map((k) => k.id));
    await this.#secrets.withFile(newKey, async (newKeyFile) => {
      const args = [
        'luksAddKey',
        '--batch-mode',
        ...pbkdfArgs(opts.pbkdf),
        ...(opts.slot !== undefined ? ['--new-key-slot', String(opts.slot)] : []),
        '--key-file',
        '-',
        device,
        newKeyFile,
      ];
      await this.#cs('addKey', device, args, {
        stdin: existingKey,
        signal: opts.signal,
        slow: true,
        keyed: true,
      });
    });
    const after = (await this.dump(device, opts.signal)).keyslots.map((k) => k.id);
    const added = after.find((id) => !before.has(id));
    if (added === undefined)
      throw new LuksError(
        'ELUKS_FAILED',
        device,
        `luksAddKey on ${device} reported success but no new keyslot appeared`,
      );
    return added;
  }

  async removeKey(device: string, key: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.#cs(
      'removeKey',
      device,
      ['luksRemoveKey', '--batch-mode', '--key-file', '-', device],
      {
        stdin: key,
        signal,
        slow: true,
        keyed: true,
      },
    );
  }

  async killSlot(
    device: string,
    slot: number,
    authKey: Uint8Array,
    signal?: AbortSignal,
  ): Promise<void> {
    if (!Number.isInteger(slot) || slot < 0 || slot > 31)
      throw new LuksError('ELUKS_FAILED', device, `invalid keyslot ${String(slot)}`);
    // No --batch-mode: in batch mode cryptsetup skips the authorisation check.
    await this.#cs('killSlot', device, ['luksKillSlot', '--key-file', '-', device, String(slot)], {
      stdin: authKey,
      signal,
      slow: true,
      keyed: true,
    });
  }

  async headerBackup(device: string, file: string, signal?: AbortSignal): Promise<void> {
    await this.#cs(
      'headerBackup',
      device,
      ['luksHeaderBackup', device, '--header-backup-file', file],
      { signal },
    );
  }

  async headerRestore(device: string, file: string, signal?: AbortSignal): Promise<void> {
    await this.#cs(
      'headerRestore',
      device,
      ['luksHeaderRestore', '--batch-mode', device, '--header-backup-file', file],
      {
        signal,
      },
    );
  }

  async dump(device: string, signal?: AbortSignal): Promise<LuksDump> {
    const text = (await this.#cs('dump', device, ['luksDump', device], { signal })).stdout.toString(
      'utf8',
    );
    const head = parseDumpHeader(text);
    if (head === undefined)
      throw new LuksError('ELUKS_NOT_LUKS', device, `cannot parse the LUKS header of ${device}`);
    if (head.version !== 2)
      throw new LuksError(
        'ELUKS_UNSUPPORTED',
        device,
        `${device} is LUKS${String(head.version)}; Vigil uses LUKS2 only`,
      );
    const json = (
      await this.#cs('dump', device, ['luksDump', '--dump-json-metadata', device], { signal })
    ).stdout.toString('utf8');
    const meta = parseDumpJson(json);
    if (meta === undefined)
      throw new LuksError(
        'ELUKS_FAILED',
        device,
        `cannot parse the LUKS2 JSON metadata of ${device}`,
      );
    return { ...head, ...meta };
  }

  async setSubsystem(device: string, subsystem: string, signal?: AbortSignal): Promise<void> {
    await this.#cs('setSubsystem', device, ['config', device, '--subsystem', subsystem], {
      signal,
    });
  }
}

/** Turn a CommandError from cryptsetup into a LuksError with a specific code. */
export function classify(e: unknown, op: string, device: string, keyed: boolean): LuksError {
  if (!(e instanceof CommandError))
    return new LuksError('ELUKS_FAILED', device, `cryptsetup ${op} on ${device} failed`, {
      cause: e,
    });
  const err = e.stderr;
  const tail = err.trim().split('\n').slice(-2).join(' | ');
  const mk = (code: LuksErrorCode, msg: string): LuksError =>
    new LuksError(code, device, msg, { cause: e });
  if (e.failure === 'spawn')
    return mk('ELUKS_FAILED', `cryptsetup could not be started (is cryptsetup installed?)`);
  if (e.failure !== 'exit')
    return mk('ELUKS_FAILED', `cryptsetup ${op} on ${device} ${e.message.replace(/^\S+ /, '')}`);
  if (
    /not a valid LUKS device|Unsupported LUKS version|Requested LUKS header.*not found|Device .* is not a valid LUKS/i.test(
      err,
    )
  )
    return mk('ELUKS_NOT_LUKS', `${device} has no valid LUKS header (missing or corrupt): ${tail}`);
  if (e.exitCode === 2 && keyed)
    return mk('ELUKS_WRONG_KEY', `no keyslot of ${device} accepts this key`);
  // exit 1: a header without a single complete keyslot (luksFormat writes the header first)
  if (keyed && /No usable keyslot is available/i.test(err))
    return mk('ELUKS_NO_KEYSLOT', `${device} has no usable keyslot: no key can open it`);
  if (e.exitCode === 4 || /does not exist or access denied/.test(err))
    return mk('ELUKS_NO_DEVICE', `device ${device} not found: ${tail}`);
  if (e.exitCode === 5) return mk('ELUKS_BUSY', `${device} is busy or already mapped: ${tail}`);
  if (/Cannot initialize device-mapper|dm_mod kernel module/i.test(err))
    return mk('ELUKS_NO_DM', `device-mapper is not available (dm_crypt not loaded?): ${tail}`);
  if (/already exists|in use|is busy/i.test(err))
    return mk('ELUKS_BUSY', `${device} is busy or already mapped: ${tail}`);
  if (/cipher .*(not available|unusable)|not supported|wrong or missing parameters/i.test(err))
    return mk(
      'ELUKS_UNSUPPORTED',
      `cryptsetup ${op} on ${device}: unsupported parameters: ${tail}`,
    );
  return mk('ELUKS_FAILED', `cryptsetup ${op} on ${device} exited ${String(e.exitCode)}: ${tail}`);
}
