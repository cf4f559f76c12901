/**
 * Per-device LUKS parameters, chosen on the device at first boot.
 *
 * - Cipher: Adiantum (`xchacha12,aes-adiantum-plain64`) when the CPU has no
 *   AES instructions (Raspberry Pi <= 4: Cortex-A72 without the crypto
 *   extension), AES-XTS where it has them (Pi 5, x86 with AES-NI).
 * - PBKDF for machine-derived keys (OTP, phone unlock key, dev keyfile):
 *   those are uniformly random 256-bit keys, so stretching buys nothing;
 *   PBKDF2 with a fixed 1000 iterations keeps every boot fast.
 * - PBKDF for the human-typed recovery keyslot: argon2id, memory capped at a
 *   quarter of RAM and 128 MiB so a 512 MB board can still open it while the
 *   hub runs, parallelism up to 4 lanes, ~2 s benchmarked on the device.
 */
import type { CipherProfile, Pbkdf } from '../../hw/luks/luks.js';

export const MACHINE_KEY_PBKDF: Pbkdf = { type: 'pbkdf2', iterations: 1000 };

export const PASSPHRASE_MAX_MEMORY_KIB = 128 * 1024;
export const PASSPHRASE_ITER_TIME_MS = 2000;

/** True when /proc/cpuinfo advertises AES instructions (x86 `flags`, arm64 `Features`). */
export function cpuHasAes(cpuinfo: string): boolean {
  for (const line of cpuinfo.split('\n')) {
    const m = /^(flags|Features)\s*:\s*(.*)$/.exec(line);
    if (m?.[2] !== undefined && m[2].split(/\s+/).includes('aes')) return true;
  }
  return false;
}

export type CipherChoice = 'auto' | CipherProfile;

export function chooseCipher(cpuinfo: string, choice: CipherChoice = 'auto'): CipherProfile {
  if (choice !== 'auto') return choice;
  return cpuHasAes(cpuinfo) ? 'aes-xts' : 'adiantum';
}

/** MemTotal in KiB from /proc/meminfo (undefined when absent). */
export function memTotalKiB(meminfo: string): number | undefined {
  const m = /^MemTotal:\s*(\d+)\s*kB/m.exec(meminfo);
  return m?.[1] !== undefined ? Number(m[1]) : undefined;
}

/** argon2id for the recovery keyslot, sized to the board. */
export function passphrasePbkdf(memTotal: number | undefined, cpus: number): Pbkdf {
  const quarter = memTotal !== undefined ? Math.floor(memTotal / 4) : PASSPHRASE_MAX_MEMORY_KIB;
  const memoryKiB = Math.max(32 * 1024, Math.min(PASSPHRASE_MAX_MEMORY_KIB, quarter));
  return {
    type: 'argon2id',
    memoryKiB,
    parallel: Math.max(1, Math.min(4, cpus)),
    iterTimeMs: PASSPHRASE_ITER_TIME_MS,
  };
}
