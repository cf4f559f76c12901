// The hub's own health check (storage, MLS, camera, relay) against a real relay on
// loopback and a real data directory, and the busy port (a clip being recorded).
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { SILENT } from '../../base/logger.js';
import { HubHealthCheck, MediaBusy } from '../../ota/health.js';
import type { HubView } from '../../ota/health.js';
import { startRelay } from '../../relay/server.js';
import { tempDir } from './helpers.js';

function view(o: Partial<HubView> & { dir?: string; media?: unknown }): HubView {
  return {
    dataDir: o.dataDir ?? (() => o.dir),
    isPaired: o.isPaired ?? (() => Promise.resolve(true)),
    status: o.status ?? (() => (o.media === undefined ? {} : { media: o.media })),
  };
}

t.test('every check against the real thing', async (tt) => {
  const work = await tempDir();
  const relay = await startRelay({ dataDir: join(work, 'relay'), logger: SILENT });
  tt.teardown(async () => {
    await relay.close();
    await rm(work, { recursive: true, force: true });
  });
  const dir = join(work, 'data');
  await mkdir(dir);
  const signal = AbortSignal.timeout(30_000);

  const good = new HubHealthCheck({
    hub: view({ dir, media: { state: 'running' } }),
    mode: 'production',
    relayUrl: relay.url,
  });
  const r = await good.once(signal);
  tt.ok(r.ok, JSON.stringify(r.checks));
  tt.same(Object.keys(r.checks).sort(), ['camera', 'mls', 'relay', 'storage']);

  const bad = await new HubHealthCheck({
    hub: view({
      dir: join(work, 'missing'),
      isPaired: () => Promise.reject(new Error('epoch file torn')),
      media: { state: 'camera-missing' },
    }),
    mode: 'production',
    relayUrl: 'http://127.0.0.1:9', // nothing listens on the discard port
  }).once(signal);
  tt.notOk(bad.ok);
  tt.match(bad.checks.storage, { ok: false, detail: /data volume unusable/ });
  tt.match(bad.checks.mls, { ok: false, detail: /MLS state does not load: epoch file torn/ });
  tt.match(bad.checks.camera, { ok: false, detail: 'camera pipeline camera-missing' });
  tt.match(bad.checks.relay, { ok: false, detail: /relay http:\/\/127\.0\.0\.1:9 unreachable/ });

  const locked = await new HubHealthCheck({
    hub: view({ dataDir: () => undefined, isPaired: () => Promise.resolve(false) }),
    mode: 'production',
    relayUrl: undefined,
  }).once(signal);
  tt.match(locked.checks, {
    storage: { ok: false, detail: 'storage not unlocked' },
    mls: { ok: false, detail: 'no data volume' },
    camera: { ok: false, detail: 'camera pipeline not started' },
    relay: { ok: false, detail: 'no relay.url configured' },
  });
  const unpaired = await new HubHealthCheck({
    hub: view({ dir, isPaired: () => Promise.resolve(false) }),
    mode: 'development',
    relayUrl: undefined,
  }).once(signal);
  tt.match(unpaired.checks, {
    mls: { ok: false, detail: 'MLS state names no paired phone' },
    camera: { ok: true, detail: /development mode/ },
    relay: { ok: true, detail: /development mode/ },
  });
  const sick = await new HubHealthCheck({
    hub: view({ dir }),
    mode: 'development',
    relayUrl: relay.url,
    relayHealth: () => Promise.resolve(false),
  }).once(signal);
  tt.match(sick.checks.relay, { ok: false, detail: /answers unhealthy/ });

  if (process.getuid?.() !== 0) {
    // a volume remounted read-only after errors
    await chmod(dir, 0o500);
    const ro = await good.once(signal);
    tt.match(ro.checks.storage, { ok: false, detail: /data volume unusable/ });
    await chmod(dir, 0o700);
  }
});

t.test('check() waits for a slow camera; the deadline ends it with the last report', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  let rounds = 0;
  const slow = new HubHealthCheck({
    hub: view({
      dir: work,
      status: () => ({ media: { state: ++rounds < 3 ? 'starting' : 'running' } }),
    }),
    mode: 'production',
    relayUrl: 'http://relay.invalid',
    relayHealth: () => Promise.resolve(true),
    retryMs: 10,
  });
  const r = await slow.check({ signal: AbortSignal.timeout(30_000) });
  tt.ok(r.ok, 'healthy once the camera runs');
  tt.equal(rounds, 3);
  const never = new HubHealthCheck({
    hub: view({ dir: work, media: { state: 'failed' } }),
    mode: 'production',
    relayUrl: 'http://relay.invalid',
    relayHealth: () => Promise.resolve(true),
    retryMs: 10,
  });
  const r2 = await never.check({ signal: AbortSignal.timeout(200) });
  tt.notOk(r2.ok);
  tt.match(r2.checks.camera, { detail: 'camera pipeline failed' });
});

t.test('busy while a clip is being recorded', async (tt) => {
  let status: Record<string, unknown> = {};
  const busy = new MediaBusy(() => status);
  tt.equal(busy.isBusy(), false, 'no pipeline: not busy');
  status = { media: { state: 'running', recording: { active: false } } };
  tt.equal(busy.isBusy(), false);
  status = { media: { state: 'running', recording: { active: true, itemId: 'x' } } };
  tt.equal(busy.isBusy(), true);
  status = { media: 'weird' };
  tt.equal(busy.isBusy(), false);
});
