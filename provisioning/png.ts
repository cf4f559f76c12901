/**
 * A minimal PNG encoder for 8-bit greyscale bitmaps (labels are black on
 * white). Deterministic output: no timestamps, fixed zlib level.
 */
import { crc32, deflateSync } from 'node:zlib';

export interface Bitmap {
  readonly width: number;
  readonly height: number;
  /** One byte per pixel, 0 = black, 255 = white, row-major. */
  readonly pixels: Uint8Array;
}

export function newBitmap(width: number, height: number): Bitmap {
  return { width, height, pixels: new Uint8Array(width * height).fill(255) };
}

export function fillRect(b: Bitmap, x: number, y: number, w: number, h: number, value = 0): void {
  const x0 = Math.max(0, x);
  const x1 = Math.min(b.width, x + w);
  for (let yy = Math.max(0, y); yy < Math.min(b.height, y + h); yy++) {
    b.pixels.fill(value, yy * b.width + x0, yy * b.width + x1);
  }
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** Encode; `dpi` sets the physical size (pHYs) so the label prints at its designed size. */
export function encodePng(b: Bitmap, dpi?: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(b.width, 0);
  ihdr.writeUInt32BE(b.height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  ihdr[10] = 0; // deflate
  ihdr[11] = 0; // adaptive filtering
  ihdr[12] = 0; // no interlace
  const raw = Buffer.alloc((b.width + 1) * b.height);
  for (let y = 0; y < b.height; y++) {
    raw[y * (b.width + 1)] = 0; // filter: none
    raw.set(b.pixels.subarray(y * b.width, (y + 1) * b.width), y * (b.width + 1) + 1);
  }
  const parts = [
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
  ];
  if (dpi !== undefined) {
    const ppm = Math.round(dpi / 0.0254);
    const phys = Buffer.alloc(9);
    phys.writeUInt32BE(ppm, 0);
    phys.writeUInt32BE(ppm, 4);
    phys[8] = 1; // metre
    parts.push(chunk('pHYs', phys));
  }
  parts.push(chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', new Uint8Array()));
  return Buffer.concat(parts);
}
