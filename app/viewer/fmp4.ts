/**
 * Keeps a fragmented-MP4 byte stream decodable across dropped live chunks.
 * Container chunks do not align with MP4 boxes, so after a gap the stream
 * resumes at the next `moof` box (the start of a fragment; with keyframe
 * fragmentation every fragment starts with a keyframe) and the partial
 * fragment before it is discarded.
 */
const MOOF = Buffer.from('moof', 'ascii');

export class Fmp4Resync {
  #lost = false;
  /** Tail kept while searching, so a `moof` split across chunks is still found. */
  #carry: Buffer = Buffer.alloc(0);

  push(chunk: Buffer, gapBefore: boolean): Buffer {
    if (gapBefore) {
      this.#lost = true;
      this.#carry = Buffer.alloc(0);
    }
    if (!this.#lost) return chunk;
    const buf = this.#carry.length > 0 ? Buffer.concat([this.#carry, chunk]) : chunk;
    for (let i = buf.indexOf(MOOF, 4); i >= 4; i = buf.indexOf(MOOF, i + 1)) {
      const size = buf.readUInt32BE(i - 4);
      if (size >= 16 && size < 64 * 1024 * 1024) {
        this.#lost = false;
        this.#carry = Buffer.alloc(0);
        return buf.subarray(i - 4);
      }
    }
    this.#carry = buf.subarray(Math.max(0, buf.length - 7));
    return Buffer.alloc(0);
  }
}
