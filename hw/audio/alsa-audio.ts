/** A capture PCM read by ffmpeg's alsa input (hw/audio/audio.ts). */
import { ValidationError } from '../../base/errors.js';
import type { AudioCapture, AudioSource } from './audio.js';
import { ALSA_PCM } from './audio.js';

export class AlsaAudioSource implements AudioSource {
  readonly id: string;
  readonly kind = 'alsa' as const;
  readonly device: string;

  constructor(opts: { readonly device: string }) {
    if (!ALSA_PCM.test(opts.device))
      throw new ValidationError(`not an ALSA PCM name: ${JSON.stringify(opts.device)}`);
    this.device = opts.device;
    this.id = `alsa:${opts.device}`;
  }

  ffmpegInput(c: AudioCapture): readonly string[] {
    // A deep input queue: the audio thread must not block while the video input is busy.
    return [
      '-thread_queue_size',
      '1024',
      '-f',
      'alsa',
      '-sample_rate',
      String(c.sampleRate),
      '-channels',
      String(c.channels),
      '-i',
      this.device,
    ];
  }
}
