/**
 * The NanoDet-g (COCO) object detector on onnxruntime-node, CPU.
 *
 * The runtime is imported on the first `detect` (never at hub start: a hub
 * that sees no motion never loads it) and the session uses one thread, so
 * the encoder keeps the other cores. `session.run` works off the event loop
 * (the addon's own thread): fragments keep flowing while a frame is analysed.
 *
 * The model (models/nanodet-g.onnx, docs/decisions.md "Object detector:
 * NanoDet-g") takes [1, 3, H, W] BGR, each channel as (value - mean) / std,
 * with H and W multiples of 32; the hub's side stream is grey, so the one
 * channel is given three times (each normalised with its channel's constants).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { VigilError } from '../../base/errors.js';
import { decodeNanoDet } from './nanodet.js';
import type { Detection, GreyFrame, ObjectDetector } from './detector.js';
import type * as OrtModule from 'onnxruntime-node';

type Ort = typeof OrtModule;
type Session = Awaited<ReturnType<Ort['InferenceSession']['create']>>;

/**
 * The model file beside this module (the source tree, tsc's dist/hw/detector/); from the
 * shipped bundle, whose chunks sit in dist/bin/ (image/app-bundle.ts), it is the copy
 * in dist/hw/detector/models/ that the image stages.
 */
export function modelBeside(moduleUrl: string, file: string): string {
  const beside = fileURLToPath(new URL(`./models/${file}`, moduleUrl));
  const fromBundle = fileURLToPath(new URL(`../hw/detector/models/${file}`, moduleUrl));
  return !existsSync(beside) && existsSync(fromBundle) ? fromBundle : beside;
}

export const NANODET_MODEL = modelBeside(import.meta.url, 'nanodet-g.onnx');

const INPUT = 'input_1';
/** Input pixels per cell of the three output levels (outputs `cls_<stride>`, `reg_<stride>`). */
const STRIDES = [8, 16, 32] as const;
/** NanoDet's training normalisation, B, G, R. */
const MEAN = [103.53, 116.28, 123.675] as const;
const STD = [57.375, 57.12, 58.395] as const;

export class DetectorError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EDETECTOR', message, options);
    this.name = 'DetectorError';
  }
}

export interface OnnxDetectorOptions {
  /** Default: the NanoDet model beside this file. */
  readonly modelPath?: string;
  /** Intra-op threads (default 1: leave the other cores to the encoder). */
  readonly threads?: number;
  /** Loads the runtime (tests count loads; default: import('onnxruntime-node')). */
  readonly loadRuntime?: () => Promise<Ort>;
}

/**
 * V8's optimizing compiler (TurboFan), on for the rest of the process. The hub starts without
 * it (`--no-opt` in HUB_NODE_FLAGS, firmware/supervisor/malloc.ts): its pages of the node
 * binary are then never touched, ~3.7 MiB of RSS, and what the recording hub runs hot is
 * native or small. The detector is the exception: normalising a 384x288 frame into three
 * planes and scanning 80 classes x 2,268 cells of scores ran 15-20x slower in baseline code
 * (14-23 ms of CPU per frame on the development VM, against ~21 ms of inference). A hub with
 * the detector on carries onnxruntime (+14.5 MiB) anyway, so its first load turns the
 * compiler on (docs/decisions.md "The hub runs without TurboFan"). V8 reads the flag at each
 * tiering decision; setting it again is harmless, as is setting it where it was never off.
 */
export function optimizingCompilerOn(): void {
  setFlagsFromString('--turbofan');
}

export class OnnxDetector implements ObjectDetector {
  readonly #o: OnnxDetectorOptions;
  #session: Promise<{ ort: Ort; session: Session }> | undefined;
  #input: Float32Array | undefined;

  constructor(o: OnnxDetectorOptions = {}) {
    this.#o = o;
  }

  /** Whether the runtime and model are loaded (false until the first `detect`). */
  get loaded(): boolean {
    return this.#session !== undefined;
  }

  #open(): Promise<{ ort: Ort; session: Session }> {
    this.#session ??= (async () => {
      const ort = await (this.#o.loadRuntime ?? (() => import('onnxruntime-node')))();
      optimizingCompilerOn();
      const threads = this.#o.threads ?? 1;
      const session = await ort.InferenceSession.create(this.#o.modelPath ?? NANODET_MODEL, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
      return { ort, session };
    })().catch((e: unknown) => {
      this.#session = undefined;
      throw new DetectorError(`object detector did not load: ${String(e)}`, { cause: e });
    });
    return this.#session;
  }

  async detect(frame: GreyFrame, minScore: number): Promise<Detection[]> {
    const { width: W, height: H, data } = frame;
    if (W % 32 !== 0 || H % 32 !== 0 || W < 64 || H < 64)
      throw new DetectorError(`frame ${W}x${H}: width and height must be multiples of 32 (>= 64)`);
    if (data.length !== W * H)
      throw new DetectorError(`frame ${W}x${H} needs ${W * H} bytes, got ${data.length}`);
    const { ort, session } = await this.#open();
    const plane = W * H;
    if (this.#input?.length !== 3 * plane) this.#input = new Float32Array(3 * plane);
    const input = this.#input;
    for (let c = 0; c < 3; c++) {
      const mean = MEAN[c] ?? 0;
      const scale = 1 / (STD[c] ?? 1);
      const base = c * plane;
      for (let i = 0; i < plane; i++) input[base + i] = ((data[i] ?? 0) - mean) * scale;
    }
    const out = await session.run({ [INPUT]: new ort.Tensor('float32', input, [1, 3, H, W]) });
    const levels = STRIDES.map((stride) => {
      const scores = out[`cls_${stride}`];
      const edges = out[`reg_${stride}`];
      if (!scores || !edges)
        throw new DetectorError(`model output is missing its stride ${stride} heads`);
      return { stride, scores: scores.data as Float32Array, edges: edges.data as Float32Array };
    });
    const classes = out.cls_8?.dims[2] ?? 0;
    const bins = (out.reg_8?.dims[2] ?? 0) / 4;
    return decodeNanoDet({ levels, classes, bins, width: W, height: H }, minScore);
  }

  async close(): Promise<void> {
    const s = this.#session;
    this.#session = undefined;
    this.#input = undefined;
    if (s) await (await s.catch(() => undefined))?.session.release();
  }
}
