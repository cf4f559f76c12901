/**
 * Where the data volume's keys come from. A `KeySource` either yields key
 * bytes or says it has none (`undefined`); storage tries the automatic ones in
 * order at boot and, when none opens the volume, waits on the interactive ones
 * (phone unlock) while the hub stays `locked`.
 *
 * OTP-derived keys: the 256-bit device secret in the SoC's one-time
 * programmable memory never leaves the board, so an SD card on its own opens
 * nothing. Pi 4: customer OTP rows read with `vcmailbox` and expanded with
 * HKDF-SHA256. Pi 5: the firmware computes HMAC-SHA256 with the OTP key
 * (`rpi-fw-crypto hmac`) so userspace never sees the raw key. Tests and the VM
 * use a simulated OTP (a file holding the 32 secret bytes) behind the same
 * `OtpDeriver` port.
 *
 * Debian's kernel (Pi 3, 4, Zero 2 W) has no /dev/vcio (that mailbox driver
 * is Raspberry Pi's downstream one) and bookworm ships no `vcmailbox`, so the
 * customer OTP rows cannot be read there. Those boards use the serial number
 * the firmware copies from OTP into the device tree, stretched with scrypt and
 * a per-card random salt (`BoardSerialOtpDeriver`): the card alone still opens
 * nothing without the board, but the serial is not secret from someone holding
 * the board and has ~32 bits of entropy, so it is weaker than a programmed
 * customer OTP (docs/storage.md, docs/decisions.md).
 */
import { hkdfSync, randomBytes, scrypt } from 'node:crypto';
import { constants as FS } from 'node:fs';
import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { VigilError } from '../../base/errors.js';
import { run } from '../../hw/os/run.js';
import type { Runner } from '../../hw/luks/cryptsetup.js';
import type { Logger } from '../../base/logger.js';
import { normalizeRecoveryKey, recoveryKeyBytes } from './recovery-key.js';

export type KeySourceId = 'otp' | 'phone' | 'recovery' | 'dev-keyfile';

export interface KeySource {
  readonly id: KeySourceId;
  /** Interactive sources wait for a person (phone, console); automatic ones answer at once. */
  readonly interactive: boolean;
  /** Candidate keys; an empty list means "this source has no key now". Interactive sources block until one arrives. */
  obtain(signal: AbortSignal): Promise<readonly Uint8Array[]>;
}

/** The label bound into every OTP-derived LUKS key (change it and every device's key changes). */
export const OTP_LUKS_LABEL = 'vigil/luks/data/v1';
const OTP_HKDF_SALT = 'vigil-otp-hkdf-v1';

export interface OtpDeriver {
  readonly kind:
    'vcmailbox-customer' | 'vcmailbox-private' | 'rpi-fw-crypto' | 'board-serial' | 'simulated';
  /** 32 key bytes bound to `label`, or undefined when the OTP holds no secret / is unreachable. */
  derive(label: string, signal?: AbortSignal): Promise<Uint8Array | undefined>;
}

function hkdf(ikm: Uint8Array, label: string): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', ikm, OTP_HKDF_SALT, label, 32));
}

const allZero = (b: Uint8Array): boolean => b.every((x) => x === 0);

/** Parse a `vcmailbox <tag> ...` reply: the 8 OTP words after the tag header. */
export function parseVcmailboxOtp(text: string, tag: number, rows = 8): Uint8Array | undefined {
  const words = text
    .trim()
    .split(/\s+/)
    .map((w) => Number.parseInt(w, 16));
  const i = words.indexOf(tag);
  // layout after the tag: buffer size, request/response code, start row, row count, rows...
  if (i < 0) return undefined;
  const resp = words[i + 2];
  if (resp === undefined || (resp & 0x80000000) === 0) return undefined;
  const values = words.slice(i + 5, i + 5 + rows);
  if (values.length !== rows || values.some((v) => !Number.isFinite(v))) return undefined;
  const out = new Uint8Array(rows * 4);
  const dv = new DataView(out.buffer);
  values.forEach((v, k) => {
    dv.setUint32(k * 4, v >>> 0, false);
  });
  return out;
}

/** Pi 4 (and earlier with recent firmware): read 8 OTP rows through the VideoCore mailbox. */
export class VcmailboxOtpDeriver implements OtpDeriver {
  readonly kind: 'vcmailbox-customer' | 'vcmailbox-private';
  readonly #run: Runner;
  readonly #tag: number;
  constructor(opts: { region?: 'customer' | 'private'; runner?: Runner } = {}) {
    const region = opts.region ?? 'customer';
    this.kind = region === 'customer' ? 'vcmailbox-customer' : 'vcmailbox-private';
    // 0x00030021: get customer OTP; 0x00030081: get device private key rows.
    this.#tag = region === 'customer' ? 0x00030021 : 0x00030081;
    this.#run = opts.runner ?? run;
  }
  async derive(label: string, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    const tagHex = `0x${this.#tag.toString(16).padStart(8, '0')}`;
    let out: string;
    try {
      const r = await this.#run(
        'vcmailbox',
        [tagHex, '40', '40', '0', '8', '0', '0', '0', '0', '0', '0', '0', '0'],
        {
          timeoutMs: 10_000,
          ...(signal ? { signal } : {}),
        },
      );
      out = r.stdout.toString('utf8');
    } catch {
      return undefined;
    }
    const secret = parseVcmailboxOtp(out, this.#tag);
    if (secret === undefined || allZero(secret)) return undefined;
    try {
      return hkdf(secret, label);
    } finally {
      secret.fill(0);
    }
  }
}

/** Pi 5: HMAC-SHA256(OTP key 1, label) computed by the firmware; the raw key stays hidden. */
export class RpiFwCryptoOtpDeriver implements OtpDeriver {
  readonly kind = 'rpi-fw-crypto' as const;
  readonly #run: Runner;
  readonly #keyId: number;
  constructor(opts: { keyId?: number; runner?: Runner } = {}) {
    this.#run = opts.runner ?? run;
    this.#keyId = opts.keyId ?? 1;
  }
  async derive(label: string, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    if (label === '') throw new VigilError('EOTP', 'the HMAC message must not be empty');
    try {
      const r = await this.#run(
        'rpi-fw-crypto',
        ['hmac', '--in', '/dev/stdin', '--key-id', String(this.#keyId), '--outform', 'hex'],
        {
          stdin: label,
          timeoutMs: 10_000,
          ...(signal ? { signal } : {}),
        },
      );
      const hex = r.stdout.toString('utf8').trim();
      if (!/^[0-9a-fA-F]{64}$/.test(hex)) return undefined;
      const key = Buffer.from(hex, 'hex');
      return allZero(key) ? undefined : new Uint8Array(key);
    } catch {
      return undefined;
    }
  }
}

/** scrypt cost for the board-serial key: 64 MiB, ~1 s on a Pi 3 (fits a 512 MB Zero 2 W). */
export const BOARD_SERIAL_SCRYPT = { N: 1 << 16, r: 8, p: 1, maxmem: 96 * 1024 * 1024 } as const;

/** Parse the device tree's `serial-number` (hex, NUL-terminated); all-zero or malformed = none. */
export function parseBoardSerial(raw: string): Buffer | undefined {
  const hex = raw.replace(/\0+$/, '').trim().toLowerCase();
  if (!/^[0-9a-f]{8,32}$/.test(hex)) return undefined;
  const b = Buffer.from(hex.padStart(hex.length + (hex.length % 2), '0'), 'hex');
  return allZero(b) ? undefined : b;
}

/**
 * Pi 3 / 4 / Zero 2 W on Debian's kernel: the OTP serial number (from the
 * device tree the firmware fills in) stretched with scrypt and a random
 * per-card salt kept on the root filesystem (made once, 0600, synced).
 */
export class BoardSerialOtpDeriver implements OtpDeriver {
  readonly kind = 'board-serial' as const;
  readonly #serialFile: string;
  readonly #saltFile: string;
  readonly #cost: { N: number; r: number; p: number; maxmem: number };
  constructor(opts: {
    serialFile: string;
    saltFile: string;
    cost?: { N: number; r: number; p: number; maxmem: number };
  }) {
    this.#serialFile = opts.serialFile;
    this.#saltFile = opts.saltFile;
    this.#cost = opts.cost ?? BOARD_SERIAL_SCRYPT;
  }

  async derive(label: string): Promise<Uint8Array | undefined> {
    const serial = parseBoardSerial(await readFile(this.#serialFile, 'latin1').catch(() => ''));
    if (serial === undefined) return undefined;
    const salt = await this.#salt();
    const ikm = await new Promise<Buffer>((resolve, reject) => {
      scrypt(serial, salt, 32, this.#cost, (err, key) => {
        if (err) reject(new VigilError('EOTP', `board key stretch failed: ${err.message}`));
        else resolve(key);
      });
    });
    try {
      return hkdf(ikm, label);
    } finally {
      ikm.fill(0);
    }
  }

  /** The salt: created once (O_EXCL, fsync file and directory), then only read. */
  async #salt(): Promise<Buffer> {
    const existing = await readFile(this.#saltFile).catch(() => undefined);
    if (existing !== undefined) {
      if (existing.length !== 32)
        throw new VigilError('EOTP', `board key salt ${this.#saltFile} is damaged (not 32 bytes)`);
      return existing;
    }
    const dir = dirname(this.#saltFile);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      const fh = await open(this.#saltFile, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, 0o600);
      try {
        await fh.writeFile(randomBytes(32));
        await fh.sync();
      } finally {
        await fh.close();
      }
      const d = await open(dir, FS.O_RDONLY);
      try {
        await d.sync();
      } finally {
        await d.close();
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    return this.#salt();
  }
}

/** Tests and the VM: the "OTP" is a file holding 32 secret bytes as hex. Missing file = blank OTP. */
export class SimulatedOtpDeriver implements OtpDeriver {
  readonly kind = 'simulated' as const;
  readonly #file: string;
  constructor(file: string) {
    this.#file = file;
  }
  async derive(label: string): Promise<Uint8Array | undefined> {
    let text: string;
    try {
      text = (await readFile(this.#file, 'utf8')).trim();
    } catch {
      return undefined;
    }
    if (!/^[0-9a-fA-F]{64}$/.test(text))
      throw new VigilError('EOTP', `simulated OTP file ${this.#file} must hold 64 hex digits`);
    const secret = Buffer.from(text, 'hex');
    return allZero(secret) ? undefined : hkdf(secret, label);
  }
}

export class OtpKeySource implements KeySource {
  readonly id = 'otp' as const;
  readonly interactive = false;
  readonly deriver: OtpDeriver;
  constructor(deriver: OtpDeriver) {
    this.deriver = deriver;
  }
  async obtain(signal: AbortSignal): Promise<readonly Uint8Array[]> {
    const k = await this.deriver.derive(OTP_LUKS_LABEL, signal);
    return k ? [k] : [];
  }
}

/**
 * Phone unlock over the config group. The E2EE layer owns the messages; it
 * hands storage a port whose `requestKey` resolves with the key bytes the
 * phone sent (after the hub told it "locked, waiting for you").
 */
export interface PhoneUnlockPort {
  requestKey(reason: string, signal: AbortSignal): Promise<Uint8Array>;
}

export class PhoneKeySource implements KeySource {
  readonly id = 'phone' as const;
  readonly interactive = true;
  readonly #port: PhoneUnlockPort;
  #reason = 'the hub is locked';
  constructor(port: PhoneUnlockPort) {
    this.#port = port;
  }
  /** What storage tells the phone while it waits. */
  setReason(reason: string): void {
    this.#reason = reason;
  }
  async obtain(signal: AbortSignal): Promise<readonly Uint8Array[]> {
    return [await this.#port.requestKey(this.#reason, signal)];
  }
}

/** A recovery key or passphrase typed at the console / over SSH (`vigil storage unlock --recovery`). */
export class RecoveryPassphraseSource implements KeySource {
  readonly id = 'recovery' as const;
  readonly interactive = true;
  readonly #read: (signal: AbortSignal) => Promise<string>;
  constructor(read: (signal: AbortSignal) => Promise<string>) {
    this.#read = read;
  }
  async obtain(signal: AbortSignal): Promise<readonly Uint8Array[]> {
    return recoveryCandidates(await this.#read(signal));
  }
}

/** The canonical recovery-key form first, then the text exactly as typed (a passphrase set by the owner). */
export function recoveryCandidates(typed: string): Uint8Array[] {
  const raw = typed.replace(/\r?\n$/, '');
  const out: Uint8Array[] = [];
  const canon = normalizeRecoveryKey(raw);
  if (canon !== undefined) out.push(recoveryKeyBytes(canon));
  if (raw !== '' && raw !== canon) out.push(new TextEncoder().encode(raw));
  return out;
}

/** DEVELOPMENT ONLY: a plain key file on disk. Defeats the point of LUKS on a real device. */
export class DevKeyfileSource implements KeySource {
  readonly id = 'dev-keyfile' as const;
  readonly interactive = false;
  readonly file: string;
  readonly #log: Logger;
  constructor(file: string, logger: Logger) {
    this.file = file;
    this.#log = logger;
    this.#warn();
  }
  #warn(): void {
    this.#log.warn(
      '!!! DEVELOPMENT KEY SOURCE IN USE: the data volume key is a plain file on disk; anyone with the SD card can read all video. Never ship this. !!!',
      { file: this.file },
    );
  }
  async obtain(): Promise<readonly Uint8Array[]> {
    this.#warn();
    try {
      const b = await readFile(this.file);
      return b.length > 0 ? [new Uint8Array(b)] : [];
    } catch {
      return [];
    }
  }
}
