/**
 * The media pipeline: camera -> encoder process (ffmpeg reading the device
 * itself) -> fMP4 fragments -> GOP ring / event clips / live sessions, each
 * sealed through the ItemSealer; motion from a low-rate grey side stream of
 * the same encoder process and/or a PIR edge input. With object detection on,
 * the detector's larger pictures are decoded from the recording's own
 * keyframes, and only while a motion event is being checked: at rest the hub
 * does exactly the work it does with detection off.
 *
 * It survives its children: an encoder that dies closes the open clip at its
 * last whole fragment and is restarted with backoff; an unplugged camera parks
 * the pipeline in `camera-missing` until the device comes back.
 *
 * Adapter work lives in hw/encoder/: encoder negotiation (negotiate.ts), the
 * encoder process (ffmpeg-encoder.ts) and the motion-frame socket
 * (motion-socket.ts); this file is the feature layer that wires them up.
 *
 *   const media = createMediaPipeline({ camera, sealer, logger, config });
 *   media.on((e) => ...); await media.start(); media.status(); await media.stop();
 */
import { z } from 'zod';
import type { Camera, CameraFormat } from '../../hw/camera/camera.js';
import { describeFormat } from '../../hw/camera/camera.js';
import type { AudioSource } from '../../hw/audio/audio.js';
import { audioConfigSchema } from '../../hw/audio/audio.js';
import type { EncoderChoice, EncoderPreference, M2mDevice } from '../../hw/encoder/encoder.js';
import { encoderConfigSchema } from '../../hw/encoder/encoder.js';
import { MotionFrameSocket } from '../../hw/encoder/motion-socket.js';
import { UnreadableFormatError, negotiateEncoder } from '../../hw/encoder/negotiate.js';
import type { RunningEncoder } from '../../hw/encoder/ffmpeg-encoder.js';
import { buildEncoderArgs, startEncoder } from '../../hw/encoder/ffmpeg-encoder.js';
import { ValidationError, VigilError, reasonOf } from '../../base/errors.js';
import type { ItemSealer } from '../items.js';
import type { Logger } from '../../base/logger.js';
import type { ClipEvent, Thumbnailer } from './clips.js';
import { ClipRecorder, clipConfigSchema } from './clips.js';
import type { Fragment, InitSegment } from './fmp4.js';
import { Fmp4Splitter } from './fmp4.js';
import type { LiveSession } from './live.js';
import { LiveSessions } from './live.js';
import type { EdgeInput } from './motion.js';
import { MotionDetector, motionConfigSchema } from './motion.js';
import { ffmpegThumbnailer } from './thumbnail.js';
import type { ObjectDetector } from '../../hw/detector/detector.js';
import { OnnxDetector } from '../../hw/detector/onnx-detector.js';
import type { SeenObject } from './detection.js';
import { DetectionGate, detectionConfigSchema, formatObjects } from './detection.js';
import { KeyframeSource } from './keyframe-source.js';
import type { LoadLevel } from './governor.js';

export const mediaConfigSchema = z.object({
  encoder: encoderConfigSchema.prefault({}),
  motion: motionConfigSchema
    .extend({ source: z.enum(['video', 'pir', 'both']).default('video') })
    .prefault({}),
  clips: clipConfigSchema.prefault({}),
  live: z.object({ maxS: z.number().min(1).max(3600).default(300) }).prefault({}),
  /** Optional AAC track from `deps.audio`, muxed into clips and live fragments (off by default). */
  audio: audioConfigSchema.prefault({}),
  restart: z
    .object({
      minMs: z.number().int().min(10).max(60_000).default(500),
      maxMs: z.number().int().min(10).max(600_000).default(30_000),
      /** An encoder that ran this long resets the backoff. */
      stableMs: z.number().int().min(0).default(30_000),
    })
    .prefault({}),
  cameraWatchMs: z.number().int().min(50).max(60_000).default(1000),
  thumbnailWidth: z.number().int().min(32).max(1920).default(320),
  /** Events by object class (firmware/media/detection.ts). */
  detection: detectionConfigSchema.prefault({}),
});
export type MediaConfig = z.output<typeof mediaConfigSchema>;
export type MediaConfigInput = z.input<typeof mediaConfigSchema>;

export type PipelineState =
  'stopped' | 'starting' | 'running' | 'restarting' | 'camera-missing' | 'failed';

export type MediaEvent =
  | ClipEvent
  | { type: 'motion-start'; source: 'video' | 'pir' | 'manual'; at: number; areaPct?: number }
  | { type: 'motion-end'; source: 'video' | 'pir' | 'manual'; at: number }
  /** The detector saw a wanted object in the current motion event (first time, then each gain). */
  | { type: 'objects'; at: number; objects: readonly SeenObject[]; first: boolean }
  /** Motion ended without a wanted object: no clip (detection on, motionClips off). */
  | { type: 'motion-ignored'; source: 'video' | 'pir' | 'manual'; at: number }
  /** The governor changed the analysis level (firmware/media/governor.ts). */
  | { type: 'analysis-level'; level: LoadLevel; fps: number; at: number }
  | { type: 'encoder-started'; path: EncoderChoice['path']; pid: number | undefined; at: number }
  | {
      type: 'encoder-exited';
      exitCode: number | null;
      signal: string | null;
      at: number;
      reason: string;
    }
  | { type: 'camera-unplugged'; at: number }
  | { type: 'camera-replugged'; at: number }
  | { type: 'warning'; message: string; at: number }
  | { type: 'state'; state: PipelineState; at: number };

export interface MediaStatus {
  readonly state: PipelineState;
  readonly camera: {
    readonly id: string;
    readonly kind: Camera['kind'];
    readonly present: boolean;
    readonly format?: CameraFormat;
  };
  readonly encoder: {
    readonly path?: EncoderChoice['path'];
    readonly device?: string;
    readonly reason?: string;
    /** Set when the software encoder is in use (also logged at warn level). */
    readonly warning?: string;
    readonly rejected: EncoderChoice['rejected'];
    readonly pid?: number;
    readonly restarts: number;
    readonly lastExit?: string;
  };
  readonly motion: {
    readonly source: MediaConfig['motion']['source'];
    readonly active: boolean;
    readonly lastStartAt?: number;
    readonly lastAreaPct: number;
  };
  readonly audio: {
    readonly enabled: boolean;
    /** The source's id ('alsa:hw:1,0', 'simulated:tone'). */
    readonly source?: string;
    /** The running encoder muxes an audio track. */
    readonly active: boolean;
    /** Why audio is off although enabled (its capture failed; video goes on without it). */
    readonly error?: string;
  };
  readonly recording: { readonly active: boolean; readonly itemId?: string };
  readonly detection: {
    readonly enabled: boolean;
    readonly level: LoadLevel;
    readonly fps: number;
    /** The detector failed (the hub records on motion until restarted). */
    readonly failed?: string;
    /** Pictures decoded for the detector (from keyframes, during motion events only). */
    readonly frames: number;
    readonly inferences: number;
    readonly dropped: number;
    readonly lastInferenceMs?: number;
    readonly objects: readonly SeenObject[];
  };
  readonly live: { readonly sessions: number };
  readonly counters: {
    readonly fragments: number;
    readonly bytes: number;
    readonly clips: number;
    readonly thumbnails: number;
    readonly motionFrames: number;
  };
  readonly warnings: readonly string[];
  readonly error?: string;
}

export interface MediaPipelineDeps {
  readonly camera: Camera;
  readonly sealer: ItemSealer;
  readonly logger: Logger;
  readonly encoderPreference?: EncoderPreference;
  readonly config?: MediaConfigInput;
  /** PIR or any other edge input (used when motion.source is 'pir' or 'both'). */
  readonly pir?: EdgeInput;
  /** The microphone (used when audio.enabled): ALSA, or the simulated camera's tone. */
  readonly audio?: AudioSource;
  /** M2M encoder discovery (default: V4L2 probe for real cameras, none for the simulator). */
  readonly probeM2m?: () => Promise<readonly M2mDevice[]>;
  readonly ffmpegEncoders?: () => Promise<ReadonlySet<string>>;
  readonly ffmpeg?: string;
  readonly thumbnailer?: Thumbnailer;
  /** The object detector (default: NanoDet-g on onnxruntime, loaded on first use). */
  readonly detector?: ObjectDetector;
  /** Parent of the private directory holding the motion socket (default os.tmpdir()). */
  readonly runDir?: string;
  readonly now?: () => number;
}

export interface MediaPipeline {
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): MediaStatus;
  on(listener: (e: MediaEvent) => void): () => void;
  /** Start a live session (its own sealed item) on demand. */
  startLive(opts?: { maxS?: number }): Promise<LiveSession>;
  /** An event by hand (button, app request): records like motion for `durationMs`. */
  trigger(durationMs: number): void;
  /** Resolves when every queued sealer write has completed (tests, shutdown). */
  idle(): Promise<void>;
  /** The load governor's level: the detector's rate, or motion-only (no detector). */
  setAnalysisLevel(level: LoadLevel, fps: number): void;
}

export class MediaError extends VigilError {
  constructor(code: 'EMEDIA' | 'EMEDIA_STATE', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'MediaError';
  }
}

export function createMediaPipeline(deps: MediaPipelineDeps): MediaPipeline {
  return new Pipeline(deps);
}

class Pipeline implements MediaPipeline {
  readonly #d: MediaPipelineDeps;
  readonly #cfg: MediaConfig;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #listeners = new Set<(e: MediaEvent) => void>();
  readonly #recorder: ClipRecorder;
  readonly #live: LiveSessions;
  readonly #detector: MotionDetector;
  readonly #gate: DetectionGate | undefined;
  #level: LoadLevel = 'full';
  #detectorFailed: string | undefined;
  #lastInferenceMs: number | undefined;
  /** The detector's pictures, decoded from keyframes while a motion event is checked. */
  readonly #keyframes: KeyframeSource | undefined;
  /** The current motion event is recording (a clip was asked for). */
  #eventRecording = false;
  #eventSource: 'video' | 'pir' | 'manual' = 'video';

  #state: PipelineState = 'stopped';
  #choice: EncoderChoice | undefined;
  #format: CameraFormat | undefined;
  #encoder: RunningEncoder | undefined;
  #encoderStartedAt = 0;
  #restarts = 0;
  #failures = 0;
  #lastExit: string | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #tickTimer: NodeJS.Timeout | undefined;
  #unwatch: (() => void) | undefined;
  #unPir: (() => void) | undefined;
  #motionSocket: MotionFrameSocket | undefined;
  #present = true;
  #warnings: string[] = [];
  #error: string | undefined;
  #videoActive = false;
  #pirActive = false;
  #manualUntil = 0;
  #manualTimer: NodeJS.Timeout | undefined;
  #motionActive = false;
  #lastStartAt: number | undefined;
  #lastAreaPct = 0;
  #fragments = 0;
  #bytes = 0;
  #motionFrames = 0;
  #launching: Promise<void> | undefined;
  /** The running encoder was started with the audio input. */
  #audioInEncoder = false;
  /** The running encoder has produced its init segment. */
  #streamSeen = false;
  /** Audio was dropped after its capture failed (cleared on replug and restart). */
  #audioError: string | undefined;
  /** A video-only retry is running to find out whether the audio input was at fault. */
  #audioSuspect: string | undefined;

  constructor(d: MediaPipelineDeps) {
    this.#d = d;
    const parsed = mediaConfigSchema.safeParse(d.config ?? {});
    if (!parsed.success) {
      const i = parsed.error.issues[0];
      throw new ValidationError(
        `media config: ${i ? `${i.path.join('.')}: ${i.message}` : 'invalid'}`,
      );
    }
    this.#cfg = parsed.data;
    this.#log = d.logger.child('media');
    this.#now = d.now ?? Date.now;
    const thumbnailer =
      d.thumbnailer ??
      ffmpegThumbnailer({
        maxWidth: this.#cfg.thumbnailWidth,
        ...(d.ffmpeg ? { ffmpeg: d.ffmpeg } : {}),
      });
    this.#recorder = new ClipRecorder({
      sealer: d.sealer,
      logger: this.#log.child('clips'),
      config: this.#cfg.clips,
      thumbnailer,
      now: this.#now,
      onEvent: (e) => {
        this.#emit(e);
      },
    });
    this.#live = new LiveSessions({ sealer: d.sealer, logger: this.#log.child('live') });
    this.#detector = new MotionDetector(this.#cfg.motion);
    const det = this.#cfg.detection;
    if (det.enabled) {
      const detector = d.detector ?? new OnnxDetector();
      this.#gate = new DetectionGate({
        detector,
        config: det,
        logger: this.#log.child('detect'),
        now: this.#now,
        onConfirmed: (objects) => {
          this.#onObjects(objects, true);
        },
        onUpdate: (objects) => {
          this.#onObjects(objects, false);
        },
        onFailed: (reason) => {
          this.#onDetectorFailed(reason);
        },
        onInference: (ms) => {
          this.#lastInferenceMs = ms;
        },
      });
      const gate = this.#gate;
      this.#keyframes = new KeyframeSource({
        width: det.width,
        height: det.height,
        logger: this.#log.child('frames'),
        ...(d.ffmpeg !== undefined ? { ffmpeg: d.ffmpeg } : {}),
        onPicture: (frame) => {
          gate.offer(frame); // copies the picture only when it runs the detector
        },
        onFailed: (reason) => {
          this.#warn(`detector frame decoder ${reason}`);
          this.#recordPending('no pictures for the detector');
        },
      });
    }
  }

  /**
   * The detector's pictures run exactly while a motion event is checked:
   * detection on and working, not paused by the governor.
   */
  #syncFrames(fresh = false): void {
    this.#keyframes?.want(
      this.#motionActive && this.#level !== 'motion-only' && this.#detectorFailed === undefined,
      fresh,
    );
  }

  /** Whether a motion event waits for a wanted object before it records. */
  #gating(source: 'video' | 'pir' | 'manual'): boolean {
    return (
      this.#gate !== undefined &&
      source !== 'manual' &&
      !this.#cfg.detection.motionClips &&
      this.#level !== 'motion-only' &&
      this.#detectorFailed === undefined
    );
  }

  #onObjects(objects: readonly SeenObject[], first: boolean): void {
    if (!this.#motionActive) return;
    this.#emit({ type: 'objects', at: this.#now(), objects, first });
    if (!this.#eventRecording) {
      this.#eventRecording = true;
      this.#recorder.motionStarted(`object (${formatObjects(objects)})`, objects);
    } else this.#recorder.noteObjects(objects);
  }

  #onDetectorFailed(reason: string): void {
    if (this.#detectorFailed !== undefined) return;
    this.#detectorFailed = reason;
    this.#warn(`object detector failed; recording on motion: ${reason}`);
    // An event waiting for an object records now: never lose an event to the detector.
    this.#recordPending('detector failed');
    this.#syncFrames();
  }

  /** A motion event that waits for an object starts recording (detector paused or failed). */
  #recordPending(why: string): void {
    if (this.#motionActive && !this.#eventRecording) {
      this.#eventRecording = true;
      this.#recorder.motionStarted(`motion (${this.#eventSource}; ${why})`);
    }
  }

  setAnalysisLevel(level: LoadLevel, fps: number): void {
    if (level === this.#level && fps === (this.#gate?.fps ?? fps)) return;
    this.#level = level;
    this.#gate?.setFps(fps);
    this.#emit({ type: 'analysis-level', level, fps, at: this.#now() });
    if (level === 'motion-only') this.#recordPending('detector paused by the load governor');
    this.#syncFrames();
  }

  on(listener: (e: MediaEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(e: MediaEvent): void {
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        this.#log.warn('media event listener threw', { reason: reasonOf(err) });
      }
    }
  }

  #setState(s: PipelineState): void {
    if (this.#state === s) return;
    this.#state = s;
    this.#emit({ type: 'state', state: s, at: this.#now() });
  }

  #warn(message: string): void {
    if (!this.#warnings.includes(message)) this.#warnings.push(message);
    this.#log.warn(message);
    this.#emit({ type: 'warning', message, at: this.#now() });
  }

  async start(): Promise<void> {
    if (this.#state !== 'stopped' && this.#state !== 'failed')
      throw new MediaError('EMEDIA_STATE', `media pipeline already ${this.#state}`);
    this.#setState('starting');
    this.#error = undefined;
    this.#audioError = undefined;
    this.#audioSuspect = undefined;
    try {
      if (this.#cfg.audio.enabled && !this.#d.audio)
        throw new MediaError('EMEDIA', 'audio.enabled is true but no audio source was given');
      await this.#openMotionServer();
      await this.#configure();
      const src = this.#cfg.motion.source;
      if (src !== 'video') {
        if (!this.#d.pir)
          throw new MediaError('EMEDIA', `motion.source is '${src}' but no PIR input was given`);
        this.#unPir = this.#d.pir.onEdge((v) => {
          this.#pirActive = v === 1;
          this.#updateMotion('pir');
        });
      }
      this.#unwatch = this.#d.camera.watch((e) => {
        this.#onPresence(e);
      }, this.#cfg.cameraWatchMs);
      this.#tickTimer = setInterval(() => {
        if (this.#detector.tick(this.#now())) {
          this.#videoActive = false;
          this.#updateMotion('video');
        }
      }, 500);
      this.#tickTimer.unref();
      await this.#launch();
    } catch (e) {
      this.#error = reasonOf(e);
      await this.#teardown();
      this.#setState('failed');
      this.#log.error('media pipeline failed to start', { reason: this.#error });
      throw e;
    }
  }

  async #openMotionServer(): Promise<void> {
    // PIR only: no side stream (the detector takes its pictures from the keyframes).
    if (this.#cfg.motion.source === 'pir') return;
    const m = this.#cfg.motion;
    this.#motionSocket = await MotionFrameSocket.open({
      ...(this.#d.runDir !== undefined ? { runDir: this.#d.runDir } : {}),
      frameBytes: m.width * m.height,
      onFrame: (frame) => {
        this.#onMotionFrame(frame);
      },
    });
  }

  #onMotionFrame(frame: Uint8Array): void {
    this.#motionFrames++;
    // Copy: the socket's buffer may be reused, the detector keeps the previous frame.
    const sample = this.#detector.push(new Uint8Array(frame), this.#now());
    if (!sample) return;
    this.#lastAreaPct = sample.areaPct;
    if (sample.started) {
      this.#videoActive = true;
      this.#updateMotion('video', sample.areaPct);
    } else if (sample.ended) {
      this.#videoActive = false;
      this.#updateMotion('video');
    }
  }

  #updateMotion(source: 'video' | 'pir' | 'manual', areaPct?: number): void {
    const src = this.#cfg.motion.source;
    const video = src !== 'pir' && this.#videoActive;
    const pir = src !== 'video' && this.#pirActive;
    const manual = this.#manualUntil > this.#now();
    const active = video || pir || manual;
    if (active === this.#motionActive) return;
    this.#motionActive = active;
    const at = this.#now();
    if (active) {
      this.#lastStartAt = at;
      this.#eventSource = source;
      this.#log.info('motion started', { source, ...(areaPct !== undefined ? { areaPct } : {}) });
      this.#emit({
        type: 'motion-start',
        source,
        at,
        ...(areaPct !== undefined ? { areaPct } : {}),
      });
      this.#gate?.begin();
      this.#syncFrames(true);
      if (this.#gating(source)) {
        // The pre-roll ring keeps filling; the clip opens (with it) once an object is seen.
        this.#eventRecording = false;
      } else {
        this.#eventRecording = true;
        this.#recorder.motionStarted(`motion (${source})`);
      }
    } else {
      const objects = this.#gate?.end() ?? [];
      this.#syncFrames();
      this.#log.info('motion ended', {
        source,
        ...(objects.length > 0 ? { objects: formatObjects(objects) } : {}),
      });
      this.#emit({ type: 'motion-end', source, at });
      if (this.#eventRecording) {
        if (objects.length > 0) this.#recorder.noteObjects(objects);
        this.#recorder.motionEnded();
      } else if (this.#gate?.busy) this.#decideLate(this.#gate, source, at);
      else this.#emit({ type: 'motion-ignored', source, at });
      this.#eventRecording = false;
    }
  }

  /**
   * The motion ended while the detector still looked at a picture of it (on a slow or busy
   * hub the first answer can take longer than the event): that answer decides. A wanted
   * object records the event now (its clip holds the pre-roll, the last seconds of the
   * motion, and the post-roll); none, or a new event first, and the event is ignored.
   */
  #decideLate(gate: DetectionGate, source: 'video' | 'pir' | 'manual', at: number): void {
    void gate.settled().then((objects) => {
      const up = this.#state !== 'stopped' && this.#state !== 'failed';
      if (up && !this.#motionActive && objects.length > 0) {
        this.#log.info('object seen after the motion ended', {
          objects: formatObjects(objects),
        });
        this.#emit({ type: 'objects', at: this.#now(), objects, first: true });
        this.#recorder.motionStarted(`object (${formatObjects(objects)})`, objects);
        this.#recorder.motionEnded();
      } else if (up && !this.#motionActive && this.#detectorFailed !== undefined) {
        // never lose an event to the detector (as #onDetectorFailed during the event)
        this.#recorder.motionStarted(`motion (${source}; detector failed)`);
        this.#recorder.motionEnded();
      } else this.#emit({ type: 'motion-ignored', source, at });
    });
  }

  trigger(durationMs: number): void {
    this.#manualUntil = Math.max(this.#manualUntil, this.#now() + durationMs);
    if (this.#manualTimer) clearTimeout(this.#manualTimer);
    this.#manualTimer = setTimeout(() => {
      this.#updateMotion('manual');
    }, durationMs + 1);
    this.#manualTimer.unref();
    this.#updateMotion('manual');
  }

  async #configure(): Promise<void> {
    let negotiated;
    try {
      negotiated = await negotiateEncoder({
        camera: this.#d.camera,
        config: this.#cfg.encoder,
        ...(this.#d.encoderPreference !== undefined
          ? { preference: this.#d.encoderPreference }
          : {}),
        ...(this.#d.probeM2m !== undefined ? { probeM2m: this.#d.probeM2m } : {}),
        ...(this.#d.ffmpegEncoders !== undefined ? { ffmpegEncoders: this.#d.ffmpegEncoders } : {}),
        ...(this.#d.ffmpeg !== undefined ? { ffmpeg: this.#d.ffmpeg } : {}),
        warn: (message) => {
          this.#warn(message);
        },
      });
    } catch (e) {
      if (e instanceof UnreadableFormatError)
        throw new MediaError('EMEDIA', e.message, { cause: e });
      throw e;
    }
    const { choice, format: got } = negotiated;
    this.#choice = choice;
    this.#format = got;
    if (choice.warning) this.#warn(choice.warning);
    this.#log.info('encoder selected', {
      path: choice.path,
      reason: choice.reason,
      ...(choice.device ? { device: choice.device } : {}),
      rejected: choice.rejected,
      format: describeFormat(got),
    });
  }

  #launch(): Promise<void> {
    this.#launching ??= this.#doLaunch().finally(() => {
      this.#launching = undefined;
    });
    return this.#launching;
  }

  async #doLaunch(): Promise<void> {
    const choice = this.#choice;
    const format = this.#format;
    if (!choice || !format) throw new MediaError('EMEDIA_STATE', 'encoder not configured');
    const m = this.#cfg.motion;
    const a = this.#cfg.audio;
    const source = this.#d.audio;
    const withAudio =
      a.enabled &&
      source !== undefined &&
      this.#audioError === undefined &&
      this.#audioSuspect === undefined;
    const args = buildEncoderArgs({
      input: this.#d.camera.ffmpegInput(format),
      choice,
      config: this.#cfg.encoder,
      ...(this.#motionSocket
        ? {
            motion: {
              url: `unix:${this.#motionSocket.path}`,
              width: m.width,
              height: m.height,
              fps: m.fps,
            },
          }
        : {}),
      ...(withAudio
        ? {
            audio: {
              input: source.ffmpegInput({ sampleRate: a.sampleRate, channels: a.channels }),
              sampleRate: a.sampleRate,
              channels: a.channels,
              bitrateKbps: a.bitrateKbps,
            },
          }
        : {}),
    });
    this.#detector.reset();
    this.#audioInEncoder = withAudio;
    this.#streamSeen = false;
    const enc = startEncoder({
      args,
      logger: this.#log.child('ffmpeg'),
      ...(this.#d.ffmpeg ? { ffmpeg: this.#d.ffmpeg } : {}),
    });
    this.#encoder = enc;
    this.#encoderStartedAt = this.#now();
    const splitter = new Fmp4Splitter({
      now: this.#now,
      onInit: (init) => {
        this.#onInit(init);
      },
      onFragment: (f) => {
        this.#onFragment(f);
      },
    });
    enc.stdout.on('data', (chunk: Buffer) => {
      if (this.#encoder !== enc) return;
      try {
        splitter.push(chunk);
      } catch (e) {
        this.#log.error('encoder stream is not valid fMP4; restarting encoder', {
          reason: reasonOf(e),
        });
        void enc.stop(500);
      }
    });
    void enc.exited.then((x) => {
      this.#onEncoderExit(enc, x);
    });
    this.#setState('running');
    this.#log.info('encoder started', {
      path: choice.path,
      pid: enc.pid,
      audio: withAudio ? source.id : 'off',
    });
    this.#emit({ type: 'encoder-started', path: choice.path, pid: enc.pid, at: this.#now() });
    await Promise.resolve();
  }

  #onInit(init: InitSegment): void {
    this.#streamSeen = true;
    if (this.#audioSuspect !== undefined) {
      // Video alone works: the audio input was what stopped the encoder.
      this.#audioError = this.#audioSuspect;
      this.#audioSuspect = undefined;
      this.#warn(
        `AUDIO CAPTURE FAILED (${this.#d.audio?.id ?? 'audio'}): ${this.#audioError}; ` +
          'recording video without audio',
      );
    }
    if (this.#audioInEncoder && !init.hasAudio)
      this.#warn('the encoder was given audio but its stream has no audio track');
    this.#recorder.onInit(init);
    this.#live.onInit(init);
    if (this.#keyframes && !this.#keyframes.onInit(init))
      this.#warn('the stream has no H.264 track the detector can decode');
  }

  #onFragment(f: Fragment): void {
    this.#fragments++;
    this.#bytes += f.bytes.length;
    this.#recorder.onFragment(f);
    this.#live.onFragment(f);
    this.#keyframes?.onFragment(f);
  }

  #onEncoderExit(
    enc: RunningEncoder,
    x: { exitCode: number | null; signal: NodeJS.Signals | null },
  ): void {
    if (this.#encoder !== enc) return; // an encoder we stopped on purpose
    this.#encoder = undefined;
    const tail = enc.stderrTail().trim().split('\n').slice(-2).join(' | ');
    const reason = `exit code ${String(x.exitCode)}${x.signal ? `, signal ${x.signal}` : ''}${tail ? `: ${tail}` : ''}`;
    this.#lastExit = reason;
    this.#log.warn('encoder exited', { reason });
    this.#emit({
      type: 'encoder-exited',
      exitCode: x.exitCode,
      signal: x.signal,
      at: this.#now(),
      reason,
    });
    this.#lostStream(reason);
    if (this.#state === 'stopped') return;
    this.#judgeAudio(reason);
    const ranMs = this.#now() - this.#encoderStartedAt;
    if (ranMs >= this.#cfg.restart.stableMs) this.#failures = 0;
    this.#failures++;
    void this.#d.camera.present().then((present) => {
      if (this.#state === 'stopped' || this.#state === 'camera-missing') return;
      if (!present) {
        this.#present = false;
        this.#setState('camera-missing');
        return;
      }
      this.#scheduleRestart();
    });
  }

  /**
   * Audio must never cost the video: an encoder with the audio input that died
   * before its first output is retried once without it. If that one runs,
   * audio is dropped with a warning (until the camera is replugged or the
   * pipeline restarted); if it fails too, the audio was not the cause and
   * stays on.
   */
  #judgeAudio(reason: string): void {
    if (this.#streamSeen) {
      this.#audioSuspect = undefined;
      return;
    }
    if (this.#audioInEncoder) {
      this.#audioSuspect = reason;
      this.#log.warn('encoder with audio died before its first output; retrying without audio', {
        reason,
      });
    } else if (this.#audioSuspect !== undefined) {
      this.#audioSuspect = undefined;
    }
  }

  #lostStream(reason: string): void {
    this.#recorder.encoderLost(reason);
    this.#live.encoderLost(reason);
    this.#detector.reset();
    // The next encoder's stream has its own parameter sets: start afresh with its init.
    this.#keyframes?.lost();
    if (this.#videoActive) {
      this.#videoActive = false;
      this.#updateMotion('video');
    }
  }

  #scheduleRestart(): void {
    if (this.#restartTimer) return;
    const r = this.#cfg.restart;
    const delay = Math.min(r.maxMs, r.minMs * 2 ** Math.max(0, this.#failures - 1));
    this.#setState('restarting');
    this.#log.info('restarting encoder', { inMs: delay, failures: this.#failures });
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (this.#state !== 'restarting') return;
      this.#restarts++;
      this.#launch().catch((e: unknown) => {
        this.#log.error('encoder restart failed', { reason: reasonOf(e) });
        this.#failures++;
        this.#scheduleRestart();
      });
    }, delay);
  }

  #onPresence(e: 'unplugged' | 'replugged'): void {
    const at = this.#now();
    if (this.#state === 'stopped' || this.#state === 'failed') return;
    if (e === 'unplugged') {
      this.#present = false;
      this.#log.warn('camera unplugged', { camera: this.#d.camera.id });
      this.#emit({ type: 'camera-unplugged', at });
      if (this.#restartTimer) clearTimeout(this.#restartTimer);
      this.#restartTimer = undefined;
      this.#setState('camera-missing');
      const enc = this.#encoder;
      this.#encoder = undefined;
      if (enc) {
        this.#lostStream('camera unplugged');
        void enc.stop(1000);
      }
      return;
    }
    this.#present = true;
    this.#audioError = undefined;
    this.#audioSuspect = undefined;
    this.#log.info('camera replugged', { camera: this.#d.camera.id });
    this.#emit({ type: 'camera-replugged', at });
    if (this.#state !== 'camera-missing') return;
    this.#setState('restarting');
    // The device may come back with another format: negotiate again.
    void this.#configure()
      .then(() => {
        this.#restarts++;
        this.#failures = 0;
        return this.#launch();
      })
      .catch((err: unknown) => {
        this.#log.error('camera came back but could not be restarted', { reason: reasonOf(err) });
        this.#failures++;
        this.#scheduleRestart();
      });
  }

  async startLive(opts: { maxS?: number } = {}): Promise<LiveSession> {
    if (this.#state !== 'running')
      throw new MediaError('EMEDIA_STATE', `no live view while ${this.#state}`);
    return this.#live.start(opts.maxS ?? this.#cfg.live.maxS);
  }

  idle(): Promise<void> {
    return this.#recorder.idle();
  }

  async stop(): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#setState('stopped');
    await this.#teardown();
  }

  async #teardown(): Promise<void> {
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    if (this.#tickTimer) clearInterval(this.#tickTimer);
    this.#tickTimer = undefined;
    if (this.#manualTimer) clearTimeout(this.#manualTimer);
    this.#manualTimer = undefined;
    this.#unwatch?.();
    this.#unwatch = undefined;
    this.#unPir?.();
    this.#unPir = undefined;
    const enc = this.#encoder;
    this.#encoder = undefined;
    if (enc) await enc.stop(2000);
    await this.#recorder.stop();
    await this.#live.stopAll();
    const motion = this.#motionSocket;
    this.#motionSocket = undefined;
    if (motion) await motion.close();
    // An inference in flight is not awaited (a wedged runtime must not hold up the stop);
    // its answer is dropped since the event is over.
    this.#gate?.cancel();
    this.#keyframes?.lost();
    this.#eventRecording = false;
    this.#videoActive = false;
    this.#pirActive = false;
    this.#motionActive = false;
  }

  status(): MediaStatus {
    const c = this.#choice;
    const stats = this.#recorder.stats;
    const itemId = this.#recorder.currentItemId;
    return {
      state: this.#state,
      camera: {
        id: this.#d.camera.id,
        kind: this.#d.camera.kind,
        present: this.#present,
        ...(this.#format ? { format: this.#format } : {}),
      },
      encoder: {
        ...(c ? { path: c.path, reason: c.reason } : {}),
        ...(c?.device ? { device: c.device } : {}),
        ...(c?.warning ? { warning: c.warning } : {}),
        rejected: c?.rejected ?? [],
        ...(this.#encoder?.pid !== undefined ? { pid: this.#encoder.pid } : {}),
        restarts: this.#restarts,
        ...(this.#lastExit ? { lastExit: this.#lastExit } : {}),
      },
      motion: {
        source: this.#cfg.motion.source,
        active: this.#motionActive,
        ...(this.#lastStartAt !== undefined ? { lastStartAt: this.#lastStartAt } : {}),
        lastAreaPct: this.#lastAreaPct,
      },
      audio: {
        enabled: this.#cfg.audio.enabled,
        ...(this.#d.audio ? { source: this.#d.audio.id } : {}),
        active: this.#encoder !== undefined && this.#audioInEncoder,
        ...(this.#audioError !== undefined ? { error: this.#audioError } : {}),
      },
      recording: { active: this.#recorder.recording, ...(itemId ? { itemId } : {}) },
      detection: {
        enabled: this.#gate !== undefined,
        level: this.#level,
        fps: this.#gate?.fps ?? 0,
        ...(this.#detectorFailed !== undefined ? { failed: this.#detectorFailed } : {}),
        frames: this.#keyframes?.pictures ?? 0,
        inferences: this.#gate?.stats.inferences ?? 0,
        dropped: this.#gate?.stats.dropped ?? 0,
        ...(this.#lastInferenceMs !== undefined ? { lastInferenceMs: this.#lastInferenceMs } : {}),
        objects: this.#gate?.objects ?? [],
      },
      live: { sessions: this.#live.count },
      counters: {
        fragments: this.#fragments,
        bytes: this.#bytes,
        clips: stats.clips,
        thumbnails: stats.thumbnails,
        motionFrames: this.#motionFrames,
      },
      warnings: [...this.#warnings],
      ...(this.#error ? { error: this.#error } : {}),
    };
  }
}
