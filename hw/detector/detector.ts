/**
 * The object detector port: one grey frame in, the objects seen out. The hub
 * runs it only on the motion side stream while motion (or the PIR) is active
 * (firmware/media/detection.ts); the ONNX adapter (onnx-detector.ts) loads its
 * runtime lazily on the first call, so a hub that never sees motion never
 * loads it.
 */

/** The 80 COCO classes, in the order the model's class scores use. */
export const COCO_CLASSES = [
  'person',
  'bicycle',
  'car',
  'motorcycle',
  'airplane',
  'bus',
  'train',
  'truck',
  'boat',
  'traffic light',
  'fire hydrant',
  'stop sign',
  'parking meter',
  'bench',
  'bird',
  'cat',
  'dog',
  'horse',
  'sheep',
  'cow',
  'elephant',
  'bear',
  'zebra',
  'giraffe',
  'backpack',
  'umbrella',
  'handbag',
  'tie',
  'suitcase',
  'frisbee',
  'skis',
  'snowboard',
  'sports ball',
  'kite',
  'baseball bat',
  'baseball glove',
  'skateboard',
  'surfboard',
  'tennis racket',
  'bottle',
  'wine glass',
  'cup',
  'fork',
  'knife',
  'spoon',
  'bowl',
  'banana',
  'apple',
  'sandwich',
  'orange',
  'broccoli',
  'carrot',
  'hot dog',
  'pizza',
  'donut',
  'cake',
  'chair',
  'couch',
  'potted plant',
  'bed',
  'dining table',
  'toilet',
  'tv',
  'laptop',
  'mouse',
  'remote',
  'keyboard',
  'cell phone',
  'microwave',
  'oven',
  'toaster',
  'sink',
  'refrigerator',
  'book',
  'clock',
  'vase',
  'scissors',
  'teddy bear',
  'hair drier',
  'toothbrush',
] as const;
export type ObjectClass = (typeof COCO_CLASSES)[number];

/** A box in picture fractions (0..1, origin top left). */
export interface Box {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
}

export interface Detection {
  readonly class: ObjectClass;
  /** 0..1 */
  readonly score: number;
  readonly box: Box;
}

/** An 8-bit grey picture, row-major, `width * height` bytes. */
export interface GreyFrame {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

export interface ObjectDetector {
  /** Objects scoring at least `minScore` (best first). */
  detect(frame: GreyFrame, minScore: number): Promise<Detection[]>;
  /** Release the runtime (the next `detect` loads it again). */
  close(): Promise<void>;
}
