/**
 * Randomness as a port: code that makes ids, keys or nonces takes a
 * `RandomSource` (default: node:crypto), so tests and frozen vectors can
 * fix every byte.
 */
import { randomBytes } from 'node:crypto';

/** `n` random bytes. */
export type RandomSource = (n: number) => Uint8Array;

export const cryptoRandom: RandomSource = (n) => new Uint8Array(randomBytes(n));
