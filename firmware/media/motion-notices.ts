/**
 * Sealed motion notices (issue #17, item 2): when the media pipeline starts a
 * clip (a motion event), the hub seals `{t:"notice", kind:"motion", at, itemId,
 * text, objects?}` (objects: the detected classes and best scores, issue #21) in each phone's notification group (MLS) and posts it to the relay's
 * `notification` group; the relay pushes that ciphertext to the phones' Web
 * Push endpoints (relay/push.ts). The phone opens it with MLS and can then
 * open the clip `itemId` once it has arrived. docs/protocol.md "Notices".
 *
 * A notice that cannot be sent (relay down past the channel's retries, no
 * phone) is logged; the clip itself still travels through the uplink.
 */
import { reasonOf } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import type { NoticeChannel } from '../mls/config-channel.js';
import type { MediaEvent } from './pipeline.js';

/** The notice a media event raises, if any (pure). */
export function noticeOf(e: MediaEvent):
  | {
      at: number;
      kind: 'motion';
      itemId: string;
      text: string;
      objects?: { class: string; score: number }[];
    }
  | undefined {
  if (e.type !== 'clip-started') return undefined;
  const base = { at: Math.floor(e.at), kind: 'motion' as const, itemId: e.itemId };
  const objects = e.objects?.slice(0, 16);
  if (objects === undefined || objects.length === 0) return { ...base, text: 'motion detected' };
  // e.g. "person detected (0.82)"; the classes and best scores also travel as data
  const best = objects[0];
  return {
    ...base,
    text: `${objects.map((o) => o.class).join(', ')} detected${best ? ` (${best.score.toFixed(2)})` : ''}`,
    objects: objects.map((o) => ({ class: o.class, score: Math.round(o.score * 1000) / 1000 })),
  };
}

/** Follow `media` events and send a notice for each motion clip; returns the unsubscribe. */
export function sendMotionNotices(o: {
  media: { on(listener: (e: MediaEvent) => void): () => void };
  channel: NoticeChannel;
  logger: Logger;
}): () => void {
  const log = o.logger.child('notices');
  return o.media.on((e) => {
    const n = noticeOf(e);
    if (!n) return;
    o.channel.sendNotice(n).then(
      () => {
        log.debug('motion notice sent', { itemId: n.itemId });
      },
      (err: unknown) => {
        log.warn('motion notice not sent', { itemId: n.itemId, err: reasonOf(err) });
      },
    );
  });
}
