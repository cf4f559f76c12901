/**
 * OLPC canonical JSON, the encoding TUF signs: object keys sorted by UTF-16
 * code units (what `Array.prototype.sort` does), no whitespace, integers only,
 * and strings escaped only for `"` and `\`. Every other character goes out as
 * is (UTF-8). A stock TUF client re-encodes the `signed` object the same way
 * before it checks a signature, so the bytes must match exactly.
 */
import { VigilError } from '../base/errors.js';

export type CanonicalValue =
  | string
  | number
  | boolean
  | null
  | readonly CanonicalValue[]
  | { readonly [key: string]: CanonicalValue | undefined };

function encodeString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function encode(v: unknown, out: string[], depth: number): void {
  if (depth > 64) throw new VigilError('ECANONICAL', 'value nested too deeply to encode');
  if (typeof v === 'string') {
    out.push(encodeString(v));
  } else if (typeof v === 'boolean' || v === null) {
    out.push(JSON.stringify(v));
  } else if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) {
      throw new VigilError('ECANONICAL', `canonical JSON allows integers only, got ${String(v)}`);
    }
    out.push(String(v));
  } else if (Array.isArray(v)) {
    out.push('[');
    v.forEach((item: unknown, i) => {
      if (i > 0) out.push(',');
      encode(item, out, depth + 1);
    });
    out.push(']');
  } else if (typeof v === 'object') {
    const obj = v as Record<string, unknown>;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort();
    out.push('{');
    keys.forEach((k, i) => {
      if (i > 0) out.push(',');
      out.push(encodeString(k), ':');
      encode(obj[k], out, depth + 1);
    });
    out.push('}');
  } else {
    throw new VigilError('ECANONICAL', `cannot encode a ${typeof v} in canonical JSON`);
  }
}

/** The canonical JSON text of a value. */
export function canonicalize(value: unknown): string {
  const out: string[] = [];
  encode(value, out, 0);
  return out.join('');
}

/** The canonical JSON bytes (UTF-8) of a value: what gets signed. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalize(value), 'utf8');
}
