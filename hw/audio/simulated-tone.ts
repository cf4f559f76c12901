/**
 * The simulated camera's microphone: a sine tone from ffmpeg's lavfi (`-re`,
 * so it runs at real time like the simulated picture). Used by the local run
 * and host tests when audio is on.
 */
import { ValidationError } from '../../base/errors.js';
import type { AudioCapture, AudioSource } from './audio.js';

export class SimulatedTone implements AudioSource {
  readonly id: string;
  readonly kind = 'simulated' as const;
  readonly frequencyHz: number;

  constructor(opts: { readonly name?: string; readonly frequencyHz?: number } = {}) {
    const hz = opts.frequencyHz ?? 440;
    if (!Number.isFinite(hz) || hz < 20 || hz > 20_000)
      throw new ValidationError(`simulated tone: frequency ${hz} Hz is outside 20-20000`);
    this.frequencyHz = hz;
    this.id = `simulated:${opts.name ?? 'tone'}`;
  }

  ffmpegInput(c: AudioCapture): readonly string[] {
    return [
      '-re',
      '-f',
      'lavfi',
      '-i',
      `sine=frequency=${this.frequencyHz}:sample_rate=${c.sampleRate}`,
    ];
  }
}
