/**
 * The hub's side of the phone roster (protocol/phone-roster.ts): a paired
 * phone asks `phones-request`, the hub answers that phone alone with the
 * phones it has paired (id, admin, paired at). Any paired phone may ask: the
 * roster holds no secret, and removing a phone stays admin-only.
 */
import { reasonOf } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import { PHONES_REQUEST_TOPIC, PHONES_TOPIC, encodeRoster } from '../../protocol/phone-roster.js';
import type { ConfigChannel } from './config-channel.js';

export function answerPhoneRoster(o: {
  channel: Pick<ConfigChannel, 'onApp' | 'sendApp'>;
  phones: () => readonly { phoneId: string; admin: boolean; pairedAt: number }[];
  logger: Logger;
}): () => void {
  return o.channel.onApp(PHONES_REQUEST_TOPIC, (m) => {
    const body = encodeRoster({
      v: 1,
      phones: o.phones().map((p) => ({ phoneId: p.phoneId, admin: p.admin, pairedAt: p.pairedAt })),
    });
    o.channel.sendApp(PHONES_TOPIC, body, m.phoneId).catch((e: unknown) => {
      o.logger.warn('phone roster not sent', { phoneId: m.phoneId, err: reasonOf(e) });
    });
  });
}
