/**
 * Live sessions on demand: each session is its own sealed item ('live') that
 * receives the init segment and then every fragment as the encoder emits it,
 * until stopped, until its time limit, or until the encoder restarts (a new
 * encoder means a new init segment: the viewer starts a new session).
 */
import type { ItemSealer, SealedItemWriter } from '../items.js';
import type { Logger } from '../../base/logger.js';
import { reasonOf } from '../../base/errors.js';
import type { Fragment, InitSegment } from './fmp4.js';
import { clipOrigin, rebaseFragment } from './fmp4.js';

export interface LiveSession {
  readonly itemId: string;
  readonly epoch: bigint;
  /** End the session (the item is closed cleanly). */
  stop(): Promise<void>;
  /** Resolves with why the session ended. */
  readonly ended: Promise<string>;
}

interface Session {
  writer: SealedItemWriter;
  writtenS: number;
  maxS: number;
  chain: Promise<void>;
  done: boolean;
  end: (why: string) => void;
  failed: boolean;
  baseTicks: number | undefined;
}

export class LiveSessions {
  readonly #sealer: ItemSealer;
  readonly #logger: Logger;
  readonly #sessions = new Set<Session>();
  #init: InitSegment | undefined;

  constructor(d: { sealer: ItemSealer; logger: Logger }) {
    this.#sealer = d.sealer;
    this.#logger = d.logger;
  }

  get count(): number {
    return this.#sessions.size;
  }

  onInit(init: InitSegment): void {
    this.#endAll('encoder restarted');
    this.#init = init;
  }

  encoderLost(reason: string): void {
    this.#endAll(`encoder lost: ${reason}`);
    this.#init = undefined;
  }

  async start(maxS: number): Promise<LiveSession> {
    const init = this.#init;
    if (!init) throw new Error('no video stream yet');
    const writer = await this.#sealer.begin({
      kind: 'live',
      startedAt: Date.now(),
      codec: `video/mp4; codecs="${init.codec}"`,
    });
    let resolveEnded: (why: string) => void = () => undefined;
    const ended = new Promise<string>((r) => (resolveEnded = r));
    const s: Session = {
      writer,
      writtenS: 0,
      maxS,
      chain: writer.write(init.bytes),
      done: false,
      failed: false,
      baseTicks: undefined,
      end: () => undefined,
    };
    s.end = (why: string) => {
      if (s.done) return;
      s.done = true;
      this.#sessions.delete(s);
      s.chain = s.chain
        .then(async () => {
          if (!s.failed) await writer.close(Math.round(s.writtenS * 1000));
        })
        .catch((e: unknown) => {
          this.#logger.warn('live session close failed', {
            itemId: writer.itemId,
            reason: reasonOf(e),
          });
        })
        .finally(() => {
          resolveEnded(why);
        });
    };
    s.chain = s.chain.catch((e: unknown) => {
      this.#failed(s, e);
    });
    this.#sessions.add(s);
    this.#logger.info('live session started', { itemId: writer.itemId });
    return {
      itemId: writer.itemId,
      epoch: writer.epoch,
      ended,
      stop: async () => {
        s.end('stopped');
        await ended;
      },
    };
  }

  onFragment(f: Fragment): void {
    for (const s of [...this.#sessions]) {
      s.writtenS += f.durationS;
      s.baseTicks ??= clipOrigin(f);
      const bytes = rebaseFragment(f, s.baseTicks);
      s.chain = s.chain
        .then(() => s.writer.write(bytes))
        .catch((e: unknown) => {
          this.#failed(s, e);
        });
      if (s.writtenS >= s.maxS) s.end('time limit');
    }
  }

  async stopAll(): Promise<void> {
    const all = [...this.#sessions];
    this.#endAll('stopped');
    await Promise.all(all.map((s) => s.chain));
  }

  #endAll(why: string): void {
    for (const s of [...this.#sessions]) s.end(why);
  }

  #failed(s: Session, e: unknown): void {
    if (s.failed) return;
    s.failed = true;
    const reason = reasonOf(e);
    this.#logger.error('live session failed', { itemId: s.writer.itemId, reason });
    void s.writer.abort(reason).catch(() => undefined);
    s.end(`failed: ${reason}`);
  }
}
