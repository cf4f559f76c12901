// PhonesAdmin over a stand-in phone: the request goes up the config group, the answer is
// found among what arrives after it (not an older one), a hub that does not answer times
// out with one line, and a phone that is not the admin is refused before anything is sent.
import t from 'tap';
import { DurableFs } from '../../hw/os/fs.js';
import { PhonesAdmin, PhonesError } from '../../app/phones.js';
import type { E2eeCrypto } from '../../app/e2ee-crypto.js';
import { PHONES_TOPIC, encodeRoster } from '../../protocol/phone-roster.js';
import { tempDir } from '../relay/fixtures.js';

type Inbound = E2eeCrypto['inbound'][number];

function setup(admin: boolean, answer: (sent: string) => Inbound | undefined) {
  const inbound: Inbound[] = [];
  const sent: string[] = [];
  const phone = {
    phoneId: 'aa11',
    admin,
    send: (m: { topic: string }) => Promise.resolve(Buffer.from(`app:${m.topic}`)),
    requestInvite: () => Promise.resolve(Buffer.from('invite-request')),
    requestRemove: (id: string) => Promise.resolve(Buffer.from(`remove-request:${id}`)),
  };
  let pendingAnswer: Inbound | undefined;
  const crypto = { phone, inbound } as unknown as E2eeCrypto;
  return {
    sent,
    inbound,
    admin: (dir: string, answerMs?: number) =>
      new PhonesAdmin({
        crypto,
        client: {
          postUp: (_g, b) => {
            const s = Buffer.from(b).toString();
            sent.push(s);
            pendingAnswer = answer(s);
            return Promise.resolve({ seq: sent.length });
          },
          list: () => Promise.resolve({ items: [] }),
        },
        sync: () => {
          if (pendingAnswer) inbound.push(pendingAnswer);
          pendingAnswer = undefined;
          return Promise.resolve();
        },
        dir,
        fs: new DurableFs(),
        ...(answerMs !== undefined ? { answerMs } : {}),
      }),
  };
}

t.test('list asks the hub; this phone first, the others by pairing time', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-phones-');
  t.teardown(cleanup);
  const roster = encodeRoster({
    v: 1,
    phones: [
      { phoneId: 'cc33', admin: false, pairedAt: 30 },
      { phoneId: 'aa11', admin: true, pairedAt: 10 },
      { phoneId: 'bb22', admin: false, pairedAt: 20 },
    ],
  });
  const s = setup(true, (m) =>
    m === 'app:phones-request' ? { kind: 'app', topic: PHONES_TOPIC, body: roster } : undefined,
  );
  // an old roster received before the request must not be taken for the answer
  s.inbound.push({ kind: 'app', topic: PHONES_TOPIC, body: encodeRoster({ v: 1, phones: [] }) });
  t.same(await s.admin(dir).list(), [
    { phoneId: 'aa11', self: true, admin: true, pairedAt: 10 },
    { phoneId: 'bb22', self: false, admin: false, pairedAt: 20 },
    { phoneId: 'cc33', self: false, admin: false, pairedAt: 30 },
  ]);
  t.same(s.sent, ['app:phones-request']);
});

t.test('invite and remove wait for their answers', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-phones-');
  t.teardown(cleanup);
  const invite = {
    t: 'invite' as const,
    requestId: '0123456789abcdef',
    deviceId: 'dev-1',
    pskId: 'cGs',
    psk: 'c2s',
    expiresAt: 99,
  };
  const s = setup(true, (m) =>
    m === 'invite-request'
      ? { kind: 'invite', invite }
      : m === 'remove-request:bb22'
        ? { kind: 'removed', phoneId: 'bb22', requestId: '01' }
        : undefined,
  );
  const a = s.admin(dir);
  t.same(await a.invite(), { invite });
  await a.remove('bb22');
  t.same(s.sent, ['invite-request', 'remove-request:bb22']);
});

t.test('no answer: one line after the wait; not the admin: refused before sending', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-phones-');
  t.teardown(cleanup);
  const silent = setup(true, () => undefined);
  await t.rejects(silent.admin(dir, 1).remove('bb22'), {
    code: 'ETIMEOUT',
    message: /^no answer from the hub within 0 s; the request waits on the relay$/,
  });
  const plain = setup(false, () => undefined);
  await t.rejects(
    plain.admin(dir).invite(),
    new PhonesError('ENOT_ADMIN', 'only the admin phone can add phones; this phone is not'),
  );
  await t.rejects(plain.admin(dir).remove('bb22'), { code: 'ENOT_ADMIN' });
  t.same(plain.sent, [], 'nothing was sent');
});
