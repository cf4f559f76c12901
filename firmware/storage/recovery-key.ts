/**
 * The recovery key: 160 random bits written as 8 groups of 4 Crockford base32
 * characters (`7K2M-...`). Typing is forgiving: case, spaces, dashes and the
 * look-alikes O/I/L are normalised before the key reaches cryptsetup, so the
 * canonical dashed form is what the keyslot holds.
 */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
export const RECOVERY_KEY_GROUPS = 8;
const GROUP = 4;
const CHARS = RECOVERY_KEY_GROUPS * GROUP; // 32 chars * 5 bits = 160 bits

export function generateRecoveryKey(random: (n: number) => Uint8Array): string {
  const bytes = random(CHARS);
  let s = '';
  for (let i = 0; i < CHARS; i++) s += ALPHABET.charAt((bytes[i] ?? 0) & 31);
  return group(s);
}

function group(s: string): string {
  const parts: string[] = [];
  for (let i = 0; i < s.length; i += GROUP) parts.push(s.slice(i, i + GROUP));
  return parts.join('-');
}

/** Canonical form of a typed recovery key, or undefined when it cannot be one. */
export function normalizeRecoveryKey(input: string): string | undefined {
  const s = input
    .toUpperCase()
    .replace(/[\s-]/g, '')
    .replace(/O/g, '0')
    .replace(/[IL]/g, '1')
    .replace(/U/g, 'V');
  if (s.length !== CHARS) return undefined;
  for (const c of s) if (!ALPHABET.includes(c)) return undefined;
  return group(s);
}

/** The bytes given to cryptsetup for a recovery key. */
export function recoveryKeyBytes(canonical: string): Uint8Array {
  return new TextEncoder().encode(canonical);
}
