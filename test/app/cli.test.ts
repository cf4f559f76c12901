import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DurableFs } from '../../hw/os/fs.js';
import { SILENT } from '../../base/logger.js';
import { createUplink } from '../../firmware/uplink/uplink.js';
import { UsageError } from '../../base/command.js';
import { command } from '../../app/cli.js';
import { devKeyPath, devPairRelay, saveAccount } from '../../app/account.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { startRelay } from '../../relay/server.js';
import { tempDir } from '../relay/fixtures.js';
import { StaticKeySealer, sealWhole } from './fixtures.js';

function io() {
  const out: string[] = [];
  const err: string[] = [];
  let printed: (s: string) => void = () => undefined;
  /** Resolves with the first line written to stdout (an event, not a poll). */
  const firstOut = new Promise<string>((resolve) => {
    printed = resolve;
  });
  return {
    out,
    err,
    firstOut,
    ctx: (argv: string[]) => ({
      argv,
      env: {},
      stdout: (s: string) => {
        out.push(s);
        printed(s);
      },
      stderr: (s: string) => err.push(s),
    }),
  };
}

t.test('usage errors and an unpaired directory', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-appcli-');
  t.teardown(cleanup);
  const { ctx } = io();
  for (const argv of [
    [],
    ['bogus'],
    ['list', '--nope'],
    ['fetch'],
    ['fetch', 'x', '-o', 'f'],
    ['live'],
    ['list', '--dir'],
    ['list', '--log-level', 'loud'],
    ['live', '-o', 'x', '--seconds', '0'],
    ['live', '-o', 'x', '--wait', 'soon'],
    ['sync', '--follow', '--heartbeat-every', '0'],
  ])
    await t.rejects(command.run(ctx([...argv])), UsageError, argv.join(' ') || '(none)');
  await t.rejects(command.run(ctx(['list', '--dir', dir])), { code: 'ENOTPAIRED' });
  const { err, ctx: c2 } = io();
  t.equal(
    await command.run(c2(['pair', '--help-me-not-a-flag'])).catch(() => 2),
    2,
    'pair is dispatched to the pairing module',
  );
  t.ok(err.length >= 0);
});

t.test('development mode: list, fetch, heartbeat, live, view', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-appcli-');
  const relay = await startRelay({ dataDir: join(dir, 'relay'), logger: SILENT });
  const acc = await devPairRelay(relay.url, 'dev-cli-app');
  const appDir = join(dir, 'app');
  const fs = new DurableFs();
  await saveAccount(fs, appDir, acc.phone);
  const key = randomBytes(32);
  await fs.writeFileAtomic(devKeyPath(appDir), key);
  const uplink = await createUplink({
    relayUrl: relay.url,
    credentials: acc.device,
    stateDir: join(dir, 'q'),
    fs,
    logger: SILENT,
  });
  uplink.start();
  let relayOpen = true;
  t.teardown(async () => {
    if (relayOpen) {
      await uplink.stop();
      await relay.close();
    }
    await cleanup();
  });
  const sealer = new StaticKeySealer(key, uplink);
  const clip = randomBytes(40_000);
  await sealWhole(
    sealer,
    { kind: 'clip', startedAt: Date.UTC(2026, 0, 1), codec: 'video/mp4' },
    clip,
    3,
    4000,
  );
  await uplink.drained();

  const a = io();
  t.equal(await command.run(a.ctx(['list', '--dir', appDir])), 0);
  t.match(a.out.join(''), /^\s+SEQ\s+STARTED \(UTC\)\s+LENGTH\s+SIZE\s+THUMBNAIL\n/, 'headers');
  t.match(a.out.join(''), /2026-01-01T00:00:00.000Z\s+4\.0 s/);
  t.match(a.err.join(''), /development mode/, 'the static key is announced loudly');
  const j = io();
  t.equal(await command.run(j.ctx(['list', '--json', '--dir', appDir])), 0);
  const seq = (JSON.parse(j.out.join('')) as { events: { seq: number }[] }).events[0]!.seq;
  const f = io();
  t.equal(
    await command.run(f.ctx(['fetch', String(seq), '-o', join(dir, 'out.mp4'), '--dir', appDir])),
    0,
  );
  t.same(await fs.readIfExists(join(dir, 'out.mp4')), clip, 'fetch decrypts to the original bytes');
  await t.rejects(command.run(f.ctx(['fetch', '999', '-o', join(dir, 'x'), '--dir', appDir])), {
    code: 'ENOTFOUND',
  });
  // a stored item altered on disk: fetch refuses it and writes nothing under the output name
  // (the chunks are streamed to a temp file that is published only after the end record)
  const vgi = join(appDir, 'items', `${seq}.vgi`);
  const stored = (await fs.readIfExists(vgi)) ?? Buffer.alloc(0);
  const altered = Buffer.from(stored);
  const mid = Math.floor(altered.length / 2);
  altered[mid] = (altered[mid] ?? 0) ^ 1;
  await fs.writeFileAtomic(vgi, altered);
  await t.rejects(
    command.run(f.ctx(['fetch', String(seq), '-o', join(dir, 'out.mp4'), '--dir', appDir])),
    { code: 'ECHUNK_TAMPERED' },
  );
  t.same(await fs.readIfExists(join(dir, 'out.mp4')), clip, 'the earlier export is untouched');
  await t.rejects(
    command.run(f.ctx(['fetch', String(seq), '-o', join(dir, 'new.mp4'), '--dir', appDir])),
    { code: 'ECHUNK_TAMPERED' },
  );
  t.same(
    (await readdir(dir)).filter((n) => n.includes('new.mp4')),
    [],
    'no output file and no half-written temp file',
  );
  await fs.writeFileAtomic(vgi, stored.subarray(0, stored.length - 10));
  await t.rejects(
    command.run(f.ctx(['fetch', String(seq), '-o', join(dir, 'new.mp4'), '--dir', appDir])),
    { code: 'EITEM_TRUNCATED' },
  );
  t.same(
    (await readdir(dir)).filter((n) => n.includes('new.mp4')),
    [],
    'truncated: nothing',
  );
  await fs.writeFileAtomic(vgi, stored);

  // heartbeat: the "hub" answers through the relay
  const hub = new RelayClient({ url: relay.url, token: acc.device.token });
  const responder = (async () => {
    const l = await hub.list({ waitMs: 10_000 });
    const m = l.items[0]!;
    t.match((await hub.readAll(m.seq)).toString(), /dev-heartbeat/);
    await hub.ack(m.seq);
    await hub.append(
      'reply-0001',
      { group: 'config', kind: 'message', offset: 0, final: true },
      Buffer.from('ack'),
    );
  })();
  const h = io();
  t.equal(await command.run(h.ctx(['heartbeat', '--dir', appDir])), 0);
  await responder;
  t.match(h.out.join(''), /heartbeat sent[\s\S]*hub: message of 3 bytes/);

  // live with nothing arriving: exit 1 with the reason, not 0 bytes and 0
  const nothing = io();
  t.equal(
    await command.run(
      nothing.ctx(['live', '-o', join(dir, 'none.mp4'), '--wait', '1', '--dir', appDir]),
    ),
    1,
    'live exits non-zero when no video arrives',
  );
  t.match(nothing.err.join(''), /vigil app live: no live video arrived within 1 s/);

  // live: a short live item, followed until its end record
  const l = io();
  const liveRun = command.run(
    l.ctx(['live', '-o', join(dir, 'live.mp4'), '--seconds', '20', '--dir', appDir]),
  );
  // the follower finds the live item whether it starts before or after the hub seals it
  const liveBytes = randomBytes(30_000);
  await sealWhole(
    sealer,
    { kind: 'live', startedAt: Date.now(), codec: 'video/mp4' },
    liveBytes,
    3,
    1000,
  );
  t.equal(await liveRun, 0);
  t.same(
    await fs.readIfExists(join(dir, 'live.mp4')),
    liveBytes,
    'live follow writes the decrypted stream',
  );

  // view prints its URL and serves until SIGTERM
  const v = io();
  const viewRun = command.run(v.ctx(['view', '--dir', appDir, '--no-sync']));
  const url = (await v.firstOut).trim();
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/\?t=/);
  const res = await fetch(url);
  t.equal(res.status, 200);
  t.match(await res.text(), /<title>Vigil<\/title>/);
  process.emit('SIGTERM');
  t.equal(await viewRun, 0);
  // phones needs MLS
  await t.rejects(command.run(io().ctx(['phones', 'add', '--dir', appDir])), {
    code: 'ENOTPAIRED',
  });
  const p = io();
  t.equal(await command.run(p.ctx(['phones', 'list', '--dir', appDir])), 0);
  t.match(p.out.join(''), new RegExp(`relay account ${acc.phone.phoneId}`));
  const pj = io();
  t.equal(await command.run(pj.ctx(['phones', 'list', '--json', '--dir', appDir])), 0);
  t.match(JSON.parse(pj.out.join('')), {
    phones: [{ phoneId: null, relayAccount: acc.phone.phoneId, self: true }],
  });

  // the relay gone: list still shows what is kept here, and says it did not sync
  await uplink.stop();
  await relay.close();
  relayOpen = false;
  const off = io();
  t.equal(await command.run(off.ctx(['list', '--dir', appDir])), 0, 'list works offline');
  t.match(off.out.join(''), /2026-01-01T00:00:00.000Z\s+4\.0 s/);
  t.match(off.err.join(''), /not synced \(.+\): showing the events kept in /);
  const offJson = io();
  t.equal(await command.run(offJson.ctx(['list', '--json', '--dir', appDir])), 0);
  t.match(JSON.parse(offJson.out.join('')), { synced: false, events: [{ seq }] });
});
