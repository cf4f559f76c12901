import t from 'tap';
import { SILENT } from '../../../base/logger.js';
import { answerPhoneRoster } from '../../../firmware/mls/phone-roster.js';
import type { AppHandler } from '../../../firmware/mls/config-channel.js';
import {
  PHONES_REQUEST_BODY,
  PHONES_REQUEST_TOPIC,
  PHONES_TOPIC,
  decodeRoster,
} from '../../../protocol/phone-roster.js';

t.test('the hub answers a phones-request to the asking phone alone', async (t) => {
  const handlers = new Map<string, AppHandler>();
  const sent: { topic: string; body: Uint8Array; phoneId: string | undefined }[] = [];
  const phones = [
    { phoneId: 'aa', admin: true, pairedAt: 1 },
    { phoneId: 'bb', admin: false, pairedAt: 2 },
  ];
  const stop = answerPhoneRoster({
    channel: {
      onApp: (topic, h) => {
        handlers.set(topic, h);
        return () => handlers.delete(topic);
      },
      sendApp: (topic, body, phoneId) => {
        sent.push({ topic, body, phoneId });
        return Promise.resolve();
      },
    },
    phones: () => phones,
    logger: SILENT,
  });
  await handlers.get(PHONES_REQUEST_TOPIC)?.({
    phoneId: 'bb',
    topic: PHONES_REQUEST_TOPIC,
    body: Buffer.from(PHONES_REQUEST_BODY),
  });
  t.equal(sent.length, 1);
  t.equal(sent[0]?.topic, PHONES_TOPIC);
  t.equal(sent[0]?.phoneId, 'bb', 'only the phone that asked');
  t.same(decodeRoster(sent[0]?.body ?? new Uint8Array()), { ok: true, value: { v: 1, phones } });
  stop();
  t.equal(handlers.size, 0, 'stopping removes the handler');
});
