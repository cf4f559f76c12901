/**
 * RFC 4648 base32, upper case, no padding. Every character is in the QR
 * alphanumeric set (A-Z, 2-7), so payloads built from it stay in the compact
 * alphanumeric mode.
 */
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const LOOKUP = new Map<string, number>();
for (let i = 0; i < ALPHABET.length; i++) LOOKUP.set(ALPHABET.charAt(i), i);

export function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const b of bytes) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET.charAt((buffer >>> bits) & 31);
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET.charAt((buffer << (5 - bits)) & 31);
  return out;
}

/** Characters needed to encode `n` bytes. */
export function base32Length(n: number): number {
  return Math.ceil((n * 8) / 5);
}

/**
 * Decode; returns undefined for a character outside the alphabet, a length no
 * byte count produces, or non-zero padding bits (so every byte string has
 * exactly one encoding).
 */
export function base32Decode(text: string): Uint8Array | undefined {
  const n = Math.floor((text.length * 5) / 8);
  if (base32Length(n) !== text.length) return undefined;
  const out = new Uint8Array(n);
  let buffer = 0;
  let bits = 0;
  let i = 0;
  for (const c of text) {
    const v = LOOKUP.get(c);
    if (v === undefined) return undefined;
    buffer = (buffer << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[i++] = (buffer >>> bits) & 0xff;
    }
    buffer &= (1 << bits) - 1;
  }
  if (buffer !== 0) return undefined;
  return out;
}

export function isBase32(text: string): boolean {
  return /^[A-Z2-7]*$/.test(text);
}
