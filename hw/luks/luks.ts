/**
 * The LUKS port: what Vigil needs from a LUKS2 implementation. The real
 * adapter drives the cryptsetup CLI (`CryptsetupLuks`); `FakeLuks` keeps
 * volumes in memory for controller tests on machines without device-mapper.
 *
 * Keys are raw bytes (`Uint8Array`). They never appear in argv, log fields or
 * error messages: adapters pass them through stdin or through key files on a
 * private tmpfs (see secret-files.ts).
 */
import { VigilError } from '../../base/errors.js';

export type LuksErrorCode =
  | 'ELUKS_WRONG_KEY'
  /** The header holds no usable keyslot at all (e.g. power lost inside luksFormat): no key can open it. */
  | 'ELUKS_NO_KEYSLOT'
  | 'ELUKS_NO_DEVICE'
  | 'ELUKS_BUSY'
  | 'ELUKS_NOT_LUKS'
  | 'ELUKS_NO_DM'
  | 'ELUKS_UNSUPPORTED'
  | 'ELUKS_FAILED';

/** A cryptsetup operation failed for a reason callers can act on. */
export class LuksError extends VigilError {
  declare readonly code: LuksErrorCode;
  readonly device: string;
  constructor(code: LuksErrorCode, device: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'LuksError';
    this.device = device;
  }
}

export type Pbkdf =
  | {
      readonly type: 'pbkdf2';
      /** Fixed iteration count (skips the benchmark). Fine for random 256-bit keys. */
      readonly iterations: number;
    }
  | {
      readonly type: 'argon2id';
      readonly memoryKiB: number;
      readonly parallel: number;
      /** Either a benchmark target in ms... */
      readonly iterTimeMs?: number;
      /** ...or a fixed time cost (iterations, >= 4); wins over iterTimeMs. */
      readonly iterations?: number;
    };

export interface FormatOptions {
  /** dm-crypt cipher spec, e.g. `aes-xts-plain64` or `xchacha12,aes-adiantum-plain64`. */
  readonly cipher: string;
  /** Volume key size in bits (512 for AES-XTS-256, 256 for Adiantum). */
  readonly keySizeBits: number;
  readonly sectorSize?: 512 | 4096;
  /** PBKDF of the first keyslot (slot 0). */
  readonly pbkdf: Pbkdf;
  readonly uuid?: string;
  readonly label?: string;
  readonly subsystem?: string;
  /** LUKS2 keyslots area in bytes (multiple of 4096); smaller makes header backups smaller. */
  readonly keyslotsSizeBytes?: number;
}

export interface OpenOptions {
  readonly readOnly?: boolean;
  /** Pass TRIM through (leaks which blocks are used; helps flash wear). Default off. */
  readonly allowDiscards?: boolean;
  readonly signal?: AbortSignal;
}

export interface AddKeyOptions {
  readonly pbkdf: Pbkdf;
  readonly slot?: number;
  readonly signal?: AbortSignal;
}

export interface MappingStatus {
  /** /dev/mapper/<name> */
  readonly path: string;
  readonly name: string;
  readonly inUse: boolean;
  readonly type: string | undefined;
  readonly cipher: string | undefined;
  readonly keySizeBits: number | undefined;
  /** The backing device. */
  readonly device: string | undefined;
}

export interface LuksKeyslot {
  readonly id: number;
  readonly type: string;
  readonly keySizeBytes: number;
  readonly pbkdf: {
    readonly type: string;
    readonly iterations?: number;
    readonly timeCost?: number;
    readonly memoryKiB?: number;
    readonly parallel?: number;
  };
  readonly areaEncryption: string;
}

export interface LuksSegment {
  readonly id: number;
  readonly type: string;
  readonly offsetBytes: number;
  readonly encryption: string;
  readonly sectorSize: number;
}

export interface LuksDump {
  readonly version: number;
  readonly uuid: string;
  readonly label: string | undefined;
  readonly subsystem: string | undefined;
  readonly epoch: number | undefined;
  readonly keyslots: readonly LuksKeyslot[];
  readonly segments: readonly LuksSegment[];
  readonly keyslotsSizeBytes: number | undefined;
}

export interface Luks {
  /** True when the device carries a valid LUKS header. False for a missing device too. */
  isLuks(device: string, signal?: AbortSignal): Promise<boolean>;
  format(device: string, key: Uint8Array, opts: FormatOptions, signal?: AbortSignal): Promise<void>;
  /** Map the device to /dev/mapper/<name>. Throws ELUKS_WRONG_KEY / ELUKS_BUSY / ... */
  open(device: string, name: string, key: Uint8Array, opts?: OpenOptions): Promise<void>;
  close(name: string, signal?: AbortSignal): Promise<void>;
  /** Undefined when the mapping is not active. */
  status(name: string, signal?: AbortSignal): Promise<MappingStatus | undefined>;
  /** Does this key open a keyslot? (cryptsetup --test-passphrase; no mapping made). */
  testKey(device: string, key: Uint8Array, signal?: AbortSignal): Promise<boolean>;
  /** Add `newKey` in a new keyslot, authorised by `existingKey`. Returns the slot number. */
  addKey(
    device: string,
    existingKey: Uint8Array,
    newKey: Uint8Array,
    opts: AddKeyOptions,
  ): Promise<number>;
  /** Remove the keyslot that `key` opens. */
  removeKey(device: string, key: Uint8Array, signal?: AbortSignal): Promise<void>;
  /** Wipe keyslot `slot`, authorised by a key of another slot. */
  killSlot(device: string, slot: number, authKey: Uint8Array, signal?: AbortSignal): Promise<void>;
  headerBackup(device: string, file: string, signal?: AbortSignal): Promise<void>;
  headerRestore(device: string, file: string, signal?: AbortSignal): Promise<void>;
  dump(device: string, signal?: AbortSignal): Promise<LuksDump>;
  /** Set the LUKS2 subsystem label (atomic header update; Vigil keeps its progress marker there). */
  setSubsystem(device: string, subsystem: string, signal?: AbortSignal): Promise<void>;
}

/** The two cipher profiles Vigil formats with. */
export const CIPHER_PROFILES = {
  /** Boards without AES instructions (Raspberry Pi <= 4). */
  adiantum: { cipher: 'xchacha12,aes-adiantum-plain64', keySizeBits: 256, sectorSize: 4096 },
  /** CPUs with AES instructions (Pi 5, x86 with AES-NI). */
  'aes-xts': { cipher: 'aes-xts-plain64', keySizeBits: 512, sectorSize: 4096 },
} as const satisfies Record<
  string,
  { cipher: string; keySizeBits: number; sectorSize: 512 | 4096 }
>;

export type CipherProfile = keyof typeof CIPHER_PROFILES;
