import t from 'tap';
import { randomBytes } from 'node:crypto';
import { MemoryLogger } from '../../base/logger.js';
import { PhoneUnlocker, unlockCli } from '../../app/unlock.js';
import type { VaultUnlock } from '../../app/recovery.js';
import {
  b64u,
  generateEd25519,
  generateX25519,
  openAnswer,
  signChallenge,
  signStatus,
} from '../../protocol/unlock.js';
import type { UnlockChallenge } from '../../protocol/unlock.js';
import { MemoryMailbox } from '../firmware/storage/unlock-relay-fixture.js';

const UUID = '0b0e6f7e-3c8c-4a4e-9d7e-1f2a3b4c5d6e';
const NOW = 1_800_000_000_000;

function hub() {
  const sign = generateEd25519();
  const unlock = generateX25519();
  const phoneKey = randomBytes(32);
  const vault: VaultUnlock = {
    deviceId: 'hub-0001',
    luksUuid: UUID,
    phoneKey,
    unlockPublicKey: unlock.publicKey,
    signPublicKey: sign.publicKey,
  };
  const challenge = (over: Partial<UnlockChallenge> = {}): UnlockChallenge =>
    signChallenge(
      {
        v: 1,
        t: 'unlock-challenge',
        deviceId: 'hub-0001',
        luksUuid: UUID,
        nonce: b64u(randomBytes(32)),
        reason: 'wrong-key: otp',
        issuedAt: NOW,
        expiresAt: NOW + 60_000,
        ...over,
      },
      sign,
    );
  return { sign, unlock, vault, challenge };
}

const post = async (box: MemoryMailbox, obj: unknown): Promise<void> => {
  await box.hub.append(
    'x1234',
    { group: 'unlock', kind: 'message', offset: 0, final: true },
    Buffer.from(JSON.stringify(obj)),
  );
};

void t.test(
  'the phone keeps the newest valid challenge; forged and expired ones are dropped',
  async (t) => {
    const h = hub();
    const box = new MemoryMailbox();
    const log = new MemoryLogger('phone');
    const u = new PhoneUnlocker({
      client: box.phone(),
      vault: h.vault,
      logger: log,
      now: () => NOW,
    });
    const older = h.challenge({ issuedAt: NOW - 10 });
    const newer = h.challenge({ issuedAt: NOW - 5 });
    await post(box, newer);
    await post(box, older);
    await post(box, h.challenge({ expiresAt: NOW - 1 }));
    const other = generateEd25519();
    await post(box, signChallenge({ ...h.challenge(), sig: undefined } as never, other));
    await post(box, { t: 'something-else' });
    await u.poll();
    t.equal(u.challenge?.nonce, newer.nonce);
    t.same(
      box.msgs.map((m) => m.seq),
      [1],
      'everything acknowledged but the newest challenge (a later run still finds it)',
    );
    await u.poll();
    t.equal(u.challenge?.nonce, newer.nonce, 'still held on the next poll');
    t.ok(log.lines.some((l) => l.includes('EUNLOCK_EXPIRED') || l.includes('expired')));
    t.ok(
      log.lines.some((l) => l.includes('signature')),
      'forged challenge logged',
    );

    // The answer opens with the hub's key and carries the phone key.
    await u.answer(newer);
    t.notOk(
      box.msgs.some((m) => m.to === 'phone'),
      'the answered challenge is acknowledged',
    );
    t.equal(u.challenge, undefined, 'spent');
    const up = box.msgs.find((m) => m.to === 'hub');
    t.same(
      Buffer.from(openAnswer(up?.bytes ?? Buffer.alloc(0), newer, h.unlock)),
      h.vault.phoneKey,
    );
    await t.rejects(
      u.answer(h.challenge({ luksUuid: 'ffff-0000-1111' })),
      { code: 'EUNLOCK_DEVICE' },
      'a challenge for another volume is not answered',
    );
  },
);

void t.test('unlockCli: approved and unlocked, declined, nothing to do, wrong key', async (t) => {
  const h = hub();
  const run = async (
    box: MemoryMailbox,
    confirm: boolean,
    onAnswer?: (nonce: string, answerEnc: string) => Promise<void>,
  ) => {
    let out = '';
    let err = '';
    const client = box.phone();
    const code = await unlockCli({
      client: {
        ...client,
        postUp: async (g: string, b: Uint8Array) => {
          const r = await client.postUp(g, b);
          const a = JSON.parse(Buffer.from(b).toString('utf8')) as { nonce: string; enc: string };
          await onAnswer?.(a.nonce, a.enc);
          return r;
        },
      },
      vault: h.vault,
      logger: new MemoryLogger('phone'),
      out: (s) => {
        out += s;
      },
      err: (s) => {
        err += s;
      },
      confirm: async () => confirm,
      waitMs: 300,
    });
    return { code, out, err };
  };
  const status = (nonce: string, answer: string, state: 'unlocked' | 'wrong-key' | 'refused') =>
    signStatus(
      {
        v: 1,
        t: 'unlock-status',
        deviceId: 'hub-0001',
        nonce,
        answer,
        state,
        detail: 'd',
        at: NOW,
      },
      h.sign,
    );

  const box1 = new MemoryMailbox();
  t.match(await run(box1, true), { code: 3, out: /not asking to be unlocked/ });

  const box2 = new MemoryMailbox();
  await post(box2, h.challenge({ issuedAt: Date.now(), expiresAt: Date.now() + 60_000 }));
  t.match(await run(box2, false), { code: 1, out: /not sent/ });
  t.equal(box2.msgs.filter((m) => m.to === 'hub').length, 0, 'nothing sent when declined');

  const box3 = new MemoryMailbox();
  await post(box3, h.challenge({ issuedAt: Date.now(), expiresAt: Date.now() + 60_000 }));
  t.match(await run(box3, true, (nonce, enc) => post(box3, status(nonce, enc, 'unlocked'))), {
    code: 0,
    out: /hub unlocked/,
  });

  const box4 = new MemoryMailbox();
  await post(box4, h.challenge({ issuedAt: Date.now(), expiresAt: Date.now() + 60_000 }));
  t.match(await run(box4, true, (nonce, enc) => post(box4, status(nonce, enc, 'wrong-key'))), {
    code: 1,
    err: /does not open the volume/,
  });

  const box5 = new MemoryMailbox();
  await post(box5, h.challenge({ issuedAt: Date.now(), expiresAt: Date.now() + 60_000 }));
  t.match(await run(box5, true), { code: 3, out: /no word from the hub yet/ });
});
