// The README's local run, end to end on loopback with every part real: the
// supervisor walks booting -> locked -> unlocked -> pairing -> running, the
// simulated camera's motion produces an MLS-sealed clip and thumbnail, the
// uplink carries them to the relay, the companion syncs and decrypts them, and
// the viewer serves the event list.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { openItem } from '../../app/crypto.js';
import { startLocalRun } from '../../dev/local-run.js';
import { MemoryLogger } from '../../base/logger.js';
import { run } from '../../hw/os/run.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { nextInbound, nextStored } from '../fixtures/local-run.js';

// Under a loaded CI machine the simulated camera and x264 run slowly: be patient.
t.setTimeout(600_000);

t.test('local run: motion -> sealed clip -> relay -> companion -> viewer', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-local-'));
  const logger = new MemoryLogger('dev');
  const lr = await startLocalRun({
    dir,
    logger,
    viewerPort: 0,
    width: 320,
    height: 240,
    fps: 10,
    motion: { intervals: [[2, 6]], periodS: 20 },
    preRollS: 1,
    postRollS: 1,
  });
  t.teardown(() => lr.stop());
  t.same(
    lr.hub.executor.history.map((h) => h.state),
    ['locked', 'unlocked', 'pairing', 'running'],
    'the supervisor walked its states',
  );
  t.equal(lr.phone.phoneId.length > 0, true, 'a phone is paired');

  const clip = await nextStored(lr, (it) => it.summary.kind === 'clip');
  const stored = await lr.store.get(clip.seq);
  t.ok(stored, 'the clip is in the companion store');
  const opened = await openItem(lr.crypto, stored?.bytes ?? Buffer.alloc(0));
  t.equal(opened.summary.kind, 'clip');
  const mp4 = join(dir, 'clip.mp4');
  await writeFile(mp4, opened.plaintext);
  const probe = await run('ffprobe', [
    '-v',
    'error',
    '-show_entries',
    'format=duration:stream=codec_name',
    '-of',
    'json',
    mp4,
  ]);
  const info = JSON.parse(probe.stdout.toString()) as {
    format: { duration: string };
    streams: { codec_name: string }[];
  };
  t.equal(info.streams[0]?.codec_name, 'h264', 'decrypted clip is H.264');
  t.ok(
    Number(info.format.duration) >= 3,
    `clip covers pre-roll + motion (${info.format.duration} s)`,
  );

  // the next motion event (the simulated motion repeats every 20 s): its clip's epoch
  // advance is pathless (docs/decisions.md "Pathless epoch advances"), and it opens too
  const second = await nextStored(lr, (it) => it.summary.kind === 'clip' && it.seq !== clip.seq);
  const secondOpened = await openItem(
    lr.crypto,
    (await lr.store.get(second.seq))?.bytes ?? Buffer.alloc(0),
  );
  t.equal(secondOpened.summary.kind, 'clip', 'the next event clip opens');
  const advances = logger.lines
    .filter((l) => l.includes('"msg":"epoch advanced"') && l.includes('"group":"motion"'))
    .map((l) => (JSON.parse(l) as { updatePath: boolean }).updatePath);
  t.same(
    advances.slice(0, 2),
    [true, false],
    'the first motion advance carried an UpdatePath, the next one was pathless',
  );

  const res = await fetch(
    new URL('/api/events', lr.viewerUrl).toString() + new URL(lr.viewerUrl).search,
  );
  t.equal(res.status, 200, 'the viewer answers with its token');
  const body = (await res.json()) as { events: { seq: number }[] };
  t.ok(
    body.events.some((e) => e.seq === clip.seq),
    'the viewer lists the clip',
  );
  // the hub answers the phone's config group through the relay (heartbeat -> ack)
  const account = JSON.parse(await readFile(join(dir, 'app', 'relay.json'), 'utf8')) as {
    url: string;
    token: string;
  };
  const before = lr.crypto.inbound.length;
  await new RelayClient({ url: account.url, token: account.token }).postUp(
    'config',
    await lr.crypto.heartbeat(),
  );
  // waits for the message itself: the test's timeout is the deadline on a loaded machine
  const ack = await nextInbound(lr, 'heartbeat-ack', before);
  t.equal(
    ack.ack.epochs.config,
    String(lr.crypto.phone.epoch('config')),
    'the hub acknowledged the heartbeat over the relay, in step on the config group',
  );

  const denied = await fetch(new URL('/api/events', lr.viewerUrl));
  t.equal(denied.status, 401, 'the viewer refuses requests without its token');
  const secret = logger.lines.filter((l) => /"(psk|secret|token)":"(?!\[redacted\])/.test(l));
  t.same(secret, [], 'no secret fields in the logs');
});

t.test('a phone saved with another relay address follows the relay on the next run', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-local-moved-'));
  const opts = { dir, viewerPort: 0, width: 160, height: 120, fps: 5 };
  const first = await startLocalRun({ ...opts, logger: new MemoryLogger('dev') });
  const relayUrl = first.relayUrl;
  await first.stop();
  // as left by a run before ports were kept: the phone points at a relay that is gone
  const accountFile = join(dir, 'app', 'relay.json');
  const account = JSON.parse(await readFile(accountFile, 'utf8')) as { url: string; token: string };
  await writeFile(accountFile, JSON.stringify({ ...account, url: 'http://127.0.0.1:9' }));
  const logger = new MemoryLogger('dev');
  const second = await startLocalRun({ ...opts, logger });
  t.teardown(async () => {
    await second.stop();
    await rm(dir, { recursive: true, force: true });
  });
  t.equal(second.relayUrl, relayUrl, 'the relay came back on its saved port');
  const saved = JSON.parse(await readFile(accountFile, 'utf8')) as { url: string };
  t.equal(saved.url, relayUrl, "the phone's relay address was rewritten");
  t.ok(
    logger.lines.some((l) => l.includes('"msg":"phone relay address updated"')),
    'and the update was logged',
  );
  // the phone reaches the relay again: a heartbeat goes up and the hub answers it
  const before = second.crypto.inbound.length;
  await new RelayClient({ url: saved.url, token: account.token }).postUp(
    'config',
    await second.crypto.heartbeat(),
  );
  const ack = await nextInbound(second, 'heartbeat-ack', before);
  t.equal(
    ack.ack.epochs.config,
    String(second.crypto.phone.epoch('config')),
    'the hub answered the phone through the relay, in step on the config group',
  );
});

t.test('unreadable local-run state: one clear error naming the file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-local-bad-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'local-run.json'), '{"relayPort": "soon"}');
  await t.rejects(startLocalRun({ dir, logger: new MemoryLogger('dev'), viewerPort: 0 }), {
    message: `${join(dir, 'local-run.json')} is not valid local-run state (delete it to pick new ports)`,
  });
});
