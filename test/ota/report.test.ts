// Update outcomes to the phone: the wire format, the reporter over the config
// channel, the phone's store, and the whole way: a real agent's outcome sealed by a
// real MLS hub, through a real relay on loopback, opened by a real paired phone and
// printed by `vigil app updates`.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { command as appCommand } from '../../app/cli.js';
import { SILENT } from '../../base/logger.js';
import { RelayConfigChannel } from '../../firmware/mls/config-channel.js';
import { DurableFs } from '../../hw/os/fs.js';
import type { OtaOutcome } from '../../ota/agent.js';
import { ConfigChannelReporter } from '../../ota/report.js';
import type { AppSender } from '../../ota/report.js';
import {
  decodeOtaReport,
  encodeOtaReport,
  formatOtaReport,
  OTA_REPORT_TOPIC,
} from '../../protocol/ota-report.js';
import { PhoneOtaReports, showUpdates } from '../../app/ota-reports.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { startRelay } from '../../relay/server.js';
import { pairedOverRelay } from '../../dev/fixtures/paired-hub.js';
import { makeAgent, makeDevice, makeRepo, publish, tempDir } from './helpers.js';

const AT = new Date('2026-11-20T10:00:00Z');

t.test('wire format: every reported kind round-trips and prints one line', async (tt) => {
  const kinds: OtaOutcome[] = [
    { kind: 'committed', version: '2.0.0', from: '1.0.0' },
    { kind: 'rolled-back', version: '2.0.0', to: '1.0.0', reason: 'health check failed: relay' },
    { kind: 'refused', version: '1.0.0', failure: 'signature', reason: 'bad signature' },
    { kind: 'failed', version: '1.0.0', reason: 'repository unreachable' },
  ];
  const lines = kinds.map((o) => {
    const d = decodeOtaReport(encodeOtaReport(o, AT));
    if (!d.ok) throw new Error(d.reason);
    return formatOtaReport(d.value);
  });
  tt.same(lines, [
    '2026-11-20T10:00:00.000Z update installed: 1.0.0 -> 2.0.0',
    '2026-11-20T10:00:00.000Z update to 2.0.0 rolled back to 1.0.0: health check failed: relay',
    '2026-11-20T10:00:00.000Z update refused (signature), staying on 1.0.0: bad signature',
    '2026-11-20T10:00:00.000Z update check failed, staying on 1.0.0: repository unreachable',
  ]);
  tt.throws(() => encodeOtaReport({ kind: 'up-to-date', version: '1.0.0' }, AT), {
    code: 'EOTAREPORT',
  });
  tt.match(decodeOtaReport(Buffer.from('{not json')), { ok: false, reason: /not JSON/ });
  tt.match(decodeOtaReport(Buffer.from('{"v":2}')), { ok: false, reason: /malformed/ });
  tt.match(
    decodeOtaReport(
      Buffer.from(
        JSON.stringify({
          v: 1,
          at: 'x',
          outcome: { kind: 'committed', version: 'x'.repeat(300) },
        }),
      ),
    ),
    { ok: false, code: 'EOTAREPORT', reason: /malformed/ },
  );
});

t.test('reporter: needs a channel, skips non-events, does not wait forever', async (tt) => {
  const sent: { topic: string; body: Uint8Array }[] = [];
  let channel: AppSender | undefined;
  const r = new ConfigChannelReporter(() => channel, { now: () => AT, timeoutMs: 200 });
  const o: OtaOutcome = { kind: 'committed', version: '2.0.0', from: '1.0.0' };
  await tt.rejects(r.report(o), /no config channel/);
  channel = {
    sendApp: (topic, body) => {
      sent.push({ topic, body });
      return Promise.resolve();
    },
  };
  await r.report({ kind: 'up-to-date', version: '1.0.0' });
  await r.report({ kind: 'restarting', version: '2.0.0', from: '1.0.0' });
  await r.report(o);
  tt.equal(sent.length, 1, 'only the event worth telling');
  tt.equal(sent[0]?.topic, OTA_REPORT_TOPIC);
  tt.match(decodeOtaReport(sent[0]?.body ?? new Uint8Array()), {
    ok: true,
    value: { at: AT.toISOString(), outcome: o },
  });
  channel = { sendApp: () => new Promise(() => undefined) };
  await tt.rejects(r.report(o), /did not take the report in time/);
});

t.test('phone store: duplicates ignored, the last 20 kept, unreadable file named', async (tt) => {
  const dir = await tempDir();
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const fs = new DurableFs();
  const store = new PhoneOtaReports(dir, fs);
  tt.same(await store.list(), []);
  const h = store.handler();
  const body = encodeOtaReport({ kind: 'committed', version: '2.0.0', from: '1.0.0' }, AT);
  tt.equal(await h(body), '2026-11-20T10:00:00.000Z update installed: 1.0.0 -> 2.0.0');
  await h(body); // re-sent after a lost acknowledgement
  tt.equal((await store.list()).length, 1, 'a duplicate is kept once');
  for (let i = 0; i < 25; i++) {
    const d = decodeOtaReport(
      encodeOtaReport({ kind: 'failed', version: '2.0.0', reason: `try ${String(i)}` }, AT),
    );
    if (!d.ok) throw new Error(d.reason);
    await store.add(d.value);
  }
  const all = await store.list();
  tt.equal(all.length, PhoneOtaReports.KEEP);
  tt.match(all.at(-1)?.outcome, { reason: 'try 24' });
  const out: string[] = [];
  tt.equal(
    await showUpdates({ dir, fs, out: (s) => out.push(s) }, { json: false }, () =>
      Promise.resolve(),
    ),
    0,
  );
  tt.equal(out.length, 10, 'the last ten, one line each');
  await fs.writeFileAtomic(join(dir, 'ota-reports.json'), 'garbage');
  await tt.rejects(store.list(), /ota-reports\.json is unreadable/);
  const empty = await tempDir();
  const o2: string[] = [];
  await showUpdates({ dir: empty, fs, out: (s) => o2.push(s) }, { json: false }, () =>
    Promise.resolve(),
  );
  tt.same(o2, ['no update reports from the hub yet\n']);
  await rm(empty, { recursive: true, force: true });
});

t.test(
  'a real outcome reaches a paired phone over a real relay: `vigil app updates`',
  async (tt) => {
    const work = await tempDir();
    const fs = new DurableFs();
    const relay = await startRelay({ dataDir: join(work, 'relay'), logger: SILENT });
    const repo = await makeRepo(work);
    const closers: (() => Promise<void>)[] = [
      () => repo.close(),
      () => relay.close(),
      () => rm(work, { recursive: true, force: true }),
    ];
    tt.teardown(async () => {
      for (const c of closers) await c().catch(() => undefined);
    });
    // Hub and phone paired over MLS; relay accounts for both; the phone's app directory.
    const { hub, phone, appDir, accounts } = await pairedOverRelay({
      root: work,
      relayUrl: relay.url,
      fs,
    });
    tt.ok(phone, 'paired');
    const channel = new RelayConfigChannel({
      hub,
      client: new RelayClient({ url: relay.url, token: accounts.device.token }),
      logger: SILENT,
      pollWaitMs: 500,
      backoff: { initialMs: 50, maxMs: 400 },
    });
    channel.start();
    closers.unshift(() => channel.stop());

    // The real agent installs 2.0.0 and reports through the channel.
    await publish(repo, work, '2.0.0');
    const device = await makeDevice(work, repo);
    const rig = makeAgent(device, repo, {
      extra: { reporter: new ConfigChannelReporter(() => channel, { now: () => repo.now }) },
    });
    const o = await rig.agent.check();
    tt.match(o, { kind: 'committed', version: '2.0.0' });
    tt.match(await rig.agent.lastOutcome(), { delivered: true, outcome: { kind: 'committed' } });

    const out: string[] = [];
    const err: string[] = [];
    const code = await appCommand.run({
      argv: ['updates', '--dir', appDir],
      env: {},
      stdout: (s) => out.push(s),
      stderr: (s) => err.push(s),
    });
    tt.equal(code, 0, err.join(''));
    tt.match(out.join(''), /update installed: 0\.0\.0 -> 2\.0\.0/, 'printed on the phone');
    const json: string[] = [];
    await appCommand.run({
      argv: ['updates', '--json', '--dir', appDir],
      env: {},
      stdout: (s) => json.push(s),
      stderr: () => undefined,
    });
    tt.match(JSON.parse(json.join('')), {
      reports: [{ v: 1, outcome: { kind: 'committed', version: '2.0.0', from: '0.0.0' } }],
    });
  },
);
