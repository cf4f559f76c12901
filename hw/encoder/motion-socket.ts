/**
 * The motion side stream's socket: the encoder process writes small grey
 * frames (`frameBytes` each) into a Unix socket in a private directory; this
 * adapter listens there and hands whole frames to `onFrame`. One encoder at a
 * time: a newer connection replaces an older one.
 *
 *   const sock = await MotionFrameSocket.open({ runDir, frameBytes, onFrame });
 *   ffmpeg ... -f rawvideo `unix:${sock.path}`;   await sock.close();
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { listen } from '../os/net.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface MotionSocketOptions {
  /** Parent of the private directory holding the socket (default os.tmpdir()). */
  readonly runDir?: string;
  /** Size of one frame: the stream is cut into pieces of exactly this length. */
  readonly frameBytes: number;
  /** One whole frame (a view of the socket's buffer: copy it to keep it). */
  readonly onFrame: (frame: Uint8Array) => void;
}

export class MotionFrameSocket {
  /** Where the encoder connects (`unix:<path>` for ffmpeg). */
  readonly path: string;
  readonly #dir: string;
  readonly #server: Server;
  #connection: Socket | undefined;

  private constructor(dir: string, o: MotionSocketOptions) {
    this.#dir = dir;
    this.path = join(dir, 'motion.sock');
    this.#server = createServer((sock) => {
      this.#onConnection(sock, o);
    });
  }

  static async open(o: MotionSocketOptions): Promise<MotionFrameSocket> {
    const dir = await mkdtemp(join(o.runDir ?? tmpdir(), 'vigil-media-'));
    const self = new MotionFrameSocket(dir, o);
    const server = self.#server;
    try {
      await listen(server, { path: self.path });
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    return self;
  }

  #onConnection(sock: Socket, o: MotionSocketOptions): void {
    // One encoder at a time: a newer connection replaces an older one.
    this.#connection?.destroy();
    this.#connection = sock;
    const frameBytes = o.frameBytes;
    let pending: Buffer[] = [];
    let len = 0;
    sock.on('data', (chunk: Buffer) => {
      pending.push(chunk);
      len += chunk.length;
      if (len < frameBytes) return;
      const all = Buffer.concat(pending);
      let p = 0;
      for (; p + frameBytes <= all.length; p += frameBytes)
        o.onFrame(all.subarray(p, p + frameBytes));
      pending = p < all.length ? [all.subarray(p)] : [];
      len = all.length - p;
    });
    sock.on('error', () => undefined);
  }

  /** Drop the connection, close the server and remove the private directory. */
  async close(): Promise<void> {
    this.#connection?.destroy();
    this.#connection = undefined;
    await new Promise<void>((r) => {
      this.#server.close(() => {
        r();
      });
    });
    await rm(this.#dir, { recursive: true, force: true });
  }
}
