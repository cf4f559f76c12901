/**
 * The audio source port. Like the camera, a microphone is something ffmpeg
 * reads itself: the encoder process takes it as a second input, encodes AAC-LC
 * with ffmpeg's native encoder and muxes it into the same fMP4 as the video
 * (hw/encoder/ffmpeg-encoder.ts). Node never touches raw samples.
 *
 * Implementations: `AlsaAudioSource` (a capture PCM through ffmpeg's alsa
 * input; a USB microphone, an I2S HAT, or snd-aloop in the VM) and
 * `SimulatedTone` (ffmpeg lavfi sine, beside the simulated camera).
 */
import { z } from 'zod';

/** Rates the AAC encoder and a typical capture device both take. */
export const SAMPLE_RATES = [16_000, 22_050, 32_000, 44_100, 48_000] as const;

/** Audio settings (off by default). Strict: a typo is an error, never a silent default. */
export const audioConfigSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** Capture and encode rate, Hz (one of SAMPLE_RATES). */
    sampleRate: z
      .number()
      .refine((r) => (SAMPLE_RATES as readonly number[]).includes(r), {
        message: `must be one of ${SAMPLE_RATES.join(', ')}`,
      })
      .default(48_000),
    /** 1 (mono) or 2 (stereo). */
    channels: z.number().int().min(1).max(2).default(1),
    /** AAC-LC bitrate. */
    bitrateKbps: z.number().int().min(16).max(256).default(64),
  })
  .strict();
export type AudioConfig = z.output<typeof audioConfigSchema>;
export type AudioConfigInput = z.input<typeof audioConfigSchema>;

export interface AudioCapture {
  readonly sampleRate: number;
  readonly channels: number;
}

export interface AudioSource {
  /** 'alsa:<pcm>' or 'simulated:<name>'. */
  readonly id: string;
  readonly kind: 'alsa' | 'simulated';
  /** ffmpeg input arguments that capture this source (everything up to and including `-i`). */
  ffmpegInput(capture: AudioCapture): readonly string[];
}

/**
 * ALSA PCM names as ffmpeg's alsa input takes them: `default`, `hw:1,0`,
 * `hw:Loopback,1,0`, `plughw:CARD=Device,DEV=0`, `dsnoop:...`. Never starts
 * with a dash (it goes into argv after `-i`).
 */
export const ALSA_PCM = /^[A-Za-z0-9_][A-Za-z0-9_:,=.-]{0,63}$/;
