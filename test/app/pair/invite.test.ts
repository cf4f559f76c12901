import t from 'tap';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import {
  HOTSPOT_FILE,
  InviteError,
  loadHotspot,
  parseInvite,
  readInviteArg,
  saveHotspot,
} from '../../../app/pair/invite.js';

const NOW = Date.parse('2026-12-06T10:00:00Z');
const psk = Buffer.alloc(32, 7).toString('base64url');
const pskId = Buffer.from('vigil-invite:0123456789abcdef').toString('base64url');
const invite = (extra: Record<string, unknown> = {}) => ({
  invite: {
    t: 'invite',
    requestId: 'ab12cd34',
    deviceId: 'ABCDEFGHIJKLMNOP',
    pskId,
    psk,
    expiresAt: NOW + 60_000,
    ...extra,
  },
});

void t.test('parses what phones add prints', async (t) => {
  const r = parseInvite(JSON.stringify(invite()), NOW);
  t.equal(r.deviceId, 'ABCDEFGHIJKLMNOP');
  t.same(Buffer.from(r.psk.secret), Buffer.alloc(32, 7));
  t.equal(Buffer.from(r.psk.id).toString(), 'vigil-invite:0123456789abcdef');
  t.equal(r.hotspot, undefined);
  const h = { ssid: 'Vigil-ABCDEF', passphrase: 'A'.repeat(32) };
  t.same(parseInvite(JSON.stringify(invite({ hotspot: h })), NOW).hotspot, h);
});

void t.test('bad invites: one line, the field named, never the PSK', async (t) => {
  const cases: [string, RegExp][] = [
    ['nope', /^the invite is not the JSON `vigil app phones add` printed$/],
    [JSON.stringify({ other: 1 }), /^invalid invite \(invite\)/],
    [JSON.stringify(invite({ psk: '!!' })), /^invalid invite \(invite\.psk\)/],
    [JSON.stringify(invite({ extra: 1 })), /^invalid invite \(invite\)/],
    [
      JSON.stringify(invite({ hotspot: { ssid: 'x', passphrase: 'short' } })),
      /\(invite\.hotspot\.passphrase\)/,
    ],
    [
      JSON.stringify(invite({ expiresAt: NOW })),
      /^the invite expired at 2026-12-06T10:00:00\.000Z/,
    ],
  ];
  for (const [text, why] of cases) {
    t.throws(() => parseInvite(text, NOW), InviteError);
    try {
      parseInvite(text, NOW);
    } catch (e) {
      t.match((e as Error).message, why);
      t.notOk((e as Error).message.includes(psk), 'PSK not echoed');
      t.notMatch((e as Error).message, /\n/);
    }
  }
});

void t.test('--invite takes the text or a file; the hotspot file is private', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-invite-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const text = JSON.stringify(invite());
  await writeFile(join(dir, 'invite.json'), text);
  t.equal(await readInviteArg(join(dir, 'invite.json')), text);
  t.equal(await readInviteArg(text), text);
  const fs = new DurableFs();
  t.equal(await loadHotspot(fs, dir), undefined);
  await saveHotspot(fs, dir, { ssid: 'Vigil-ABCDEF', passphrase: 'B'.repeat(32) });
  t.equal((await stat(join(dir, HOTSPOT_FILE))).mode & 0o777, 0o600);
  t.same(await loadHotspot(fs, dir), { ssid: 'Vigil-ABCDEF', passphrase: 'B'.repeat(32) });
  await writeFile(join(dir, HOTSPOT_FILE), '{"ssid":""}');
  t.equal(await loadHotspot(fs, dir), undefined, 'a damaged file is not handed on');
});
