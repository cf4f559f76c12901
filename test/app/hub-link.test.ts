import t from 'tap';
import { HubLink, linkOver } from '../../app/hub-link.js';
import type { ConfigMessage } from '../../protocol/e2ee-frames.js';
import {
  HUB_ALIVE_TOPIC,
  HUB_HEALTH_TOPIC,
  LIVE_REFUSED_TOPIC,
  LIVE_REQUEST_TOPIC,
  LIVE_STARTED_TOPIC,
  LIVE_STOP_TOPIC,
  decodeControl,
  encodeControl,
} from '../../protocol/live-control.js';
import { manualClock } from '../fixtures/manual-clock.js';

function setup(offlineAfterMs?: number) {
  const { clock, advance } = manualClock();
  const handlers = new Map<string, (b: Uint8Array) => Promise<string>>();
  const posted: ConfigMessage[] = [];
  const link = new HubLink({
    onApp: (topic, h) => {
      handlers.set(topic, h);
    },
    // the "sealed" bytes are the JSON here: the test reads back what would be sealed
    seal: (m) => Promise.resolve(Buffer.from(JSON.stringify(m))),
    postUp: (b) => {
      posted.push(JSON.parse(Buffer.from(b).toString('utf8')) as ConfigMessage);
      return Promise.resolve();
    },
    clock,
    ...(offlineAfterMs !== undefined ? { offlineAfterMs } : {}),
  });
  const hub = (topic: string, body: Uint8Array): Promise<string> => {
    const h = handlers.get(topic);
    if (!h) throw new Error(`no handler for ${topic}`);
    return h(body);
  };
  const alive = (at: number, intervalSeconds: number): Promise<string> =>
    hub(HUB_ALIVE_TOPIC, encodeControl(HUB_ALIVE_TOPIC, { v: 1, at, intervalSeconds }));
  return { clock, advance, link, hub, posted, alive };
}

const bodyOf = (m: ConfigMessage | undefined): Uint8Array =>
  m?.t === 'app' ? Buffer.from(m.body, 'base64url') : new Uint8Array();

t.test('requestLive sends live-request and resolves with live-started', async (t) => {
  const { link, hub, posted } = setup();
  const p = link.requestLive(120, 10_000);
  await new Promise((r) => setImmediate(r));
  t.equal(posted[0]?.t === 'app' ? posted[0].topic : '', LIVE_REQUEST_TOPIC);
  const d = decodeControl(LIVE_REQUEST_TOPIC, bodyOf(posted[0]));
  t.same(d.ok ? d.value : undefined, { v: 1, maxSeconds: 120 });
  const line = await hub(
    LIVE_STARTED_TOPIC,
    encodeControl(LIVE_STARTED_TOPIC, { v: 1, itemId: 'ab12', maxSeconds: 120 }),
  );
  t.match(line, /live view started \(ab12\)/);
  const a = await p;
  t.same(a, { ok: true, started: { v: 1, itemId: 'ab12', maxSeconds: 120 } });
  await link.stopLive();
  t.equal(posted[1]?.t === 'app' ? posted[1].topic : '', LIVE_STOP_TOPIC);
});

t.test('a refusal carries its reason and a sentence; silence times out', async (t) => {
  const { link, hub, advance } = setup();
  const p = link.requestLive(60, 10_000);
  await hub(LIVE_REFUSED_TOPIC, encodeControl(LIVE_REFUSED_TOPIC, { v: 1, reason: 'camera-down' }));
  t.same(await p, {
    ok: false,
    reason: 'camera-down',
    message: 'live view refused: the camera is not working',
  });
  const q = link.requestLive(60, 10_000);
  await new Promise((r) => setImmediate(r));
  advance(9_999);
  advance(1);
  const a = await q;
  t.equal(a.ok, false);
  t.match(a.ok ? '' : a.message, /no answer from the hub within 10 s/);
  t.equal(a.ok ? '' : a.reason, 'timeout');
  const ac = new AbortController();
  const r = link.requestLive(60, 10_000, ac.signal);
  ac.abort();
  t.match(await r, { ok: false, reason: 'timeout', message: 'live request cancelled' });
});

t.test('a malformed answer is rejected with the topic named', async (t) => {
  const { hub } = setup();
  await t.rejects(hub(LIVE_STARTED_TOPIC, Buffer.from('{"v":1}')), { message: /^live-started: / });
  await t.rejects(hub(HUB_ALIVE_TOPIC, Buffer.from('x')), {
    message: /^hub-alive: body is not JSON/,
  });
});

t.test(
  'offline alert: 3 x the announced interval after the newest beat, cleared by the next',
  async (t) => {
    const { link, alive, advance } = setup();
    const changes: boolean[] = [];
    link.onStatus((s) => changes.push(s.offline));
    await alive(1000, 60);
    t.equal(link.thresholdMs, 180_000, 'default threshold is 3 x the interval');
    t.notOk(link.status().offline);
    t.equal(link.status().lastSeenAt, 0);
    advance(179_999);
    t.notOk(link.status().offline, 'not before the threshold');
    advance(1);
    t.ok(link.status().offline, 'raised at the threshold');
    t.match(link.status().message, /^hub offline: last heard 1970-01-01T00:00:00.000Z$/);
    await alive(2000, 60);
    t.notOk(link.status().offline, 'cleared when the hub is back');
    t.same(changes.slice(-2), [true, false]);
    // a replayed (older or equal) beat does not refresh liveness
    advance(100_000);
    await alive(2000, 60);
    await alive(1500, 60);
    t.equal(link.status().lastSeenAt, 180_000, 'old beats ignored');
    advance(80_000);
    t.ok(link.status().offline, 'the replays did not keep the alert away');
    link.close();
  },
);

t.test(
  'a configured threshold wins; with no beat at all the alert counts from start-up',
  async (t) => {
    const { link, advance } = setup(5000);
    t.equal(link.thresholdMs, 5000);
    advance(4999);
    t.notOk(link.status().offline);
    advance(1);
    t.ok(link.status().offline);
    t.match(link.status().message, /no word from the hub since this viewer started \(5 s\)/);
    link.close();
  },
);

t.test('health notices are kept until the hub reports recovery', async (t) => {
  const { link, hub } = setup();
  t.equal(link.status().health, null);
  const line = await hub(
    HUB_HEALTH_TOPIC,
    encodeControl(HUB_HEALTH_TOPIC, {
      v: 1,
      at: 5,
      condition: 'camera-failed',
      detail: 'unplugged',
    }),
  );
  t.equal(line, 'hub: camera failed (unplugged)');
  t.equal(link.status().health, 'hub: camera failed (unplugged)');
  await hub(
    HUB_HEALTH_TOPIC,
    encodeControl(HUB_HEALTH_TOPIC, { v: 1, at: 6, condition: 'recovered' }),
  );
  t.equal(link.status().health, null);
  link.close();
});

t.test('linkOver wires a phone and a relay client', async (t) => {
  const topics: string[] = [];
  const ups: string[] = [];
  const link = linkOver(
    {
      onApp: (topic) => {
        topics.push(topic);
      },
      phone: { send: (m) => Promise.resolve(Buffer.from(m.t)) },
    },
    {
      postUp: (group, b) => {
        ups.push(`${group}:${Buffer.from(b).toString()}`);
        return Promise.resolve();
      },
    },
  );
  t.same(
    topics.sort(),
    [HUB_ALIVE_TOPIC, HUB_HEALTH_TOPIC, LIVE_REFUSED_TOPIC, LIVE_STARTED_TOPIC].sort(),
  );
  await link.stopLive();
  t.same(ups, ['config:app']);
  link.close();
});
