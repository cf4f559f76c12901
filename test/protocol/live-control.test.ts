import t from 'tap';
import {
  HUB_ALIVE_TOPIC,
  HUB_HEALTH_TOPIC,
  LIVE_REFUSED_TOPIC,
  LIVE_REQUEST_TOPIC,
  LIVE_STARTED_TOPIC,
  LIVE_STOP_TOPIC,
  MAX_CONTROL_BODY,
  decodeControl,
  describeHealth,
  describeRefusal,
  encodeControl,
} from '../../protocol/live-control.js';
import type { ControlTopic } from '../../protocol/live-control.js';

const bytes = (s: string): Uint8Array => Buffer.from(s, 'utf8');

t.test('frozen bodies decode, and encode back to the same bytes', async (t) => {
  const vectors: [ControlTopic, string][] = [
    [LIVE_REQUEST_TOPIC, '{"v":1,"maxSeconds":60}'],
    [LIVE_STOP_TOPIC, '{"v":1}'],
    [LIVE_STARTED_TOPIC, '{"v":1,"itemId":"0a1b2c3d","maxSeconds":300}'],
    [LIVE_REFUSED_TOPIC, '{"v":1,"reason":"camera-down","detail":"no /dev/video0"}'],
    [HUB_ALIVE_TOPIC, '{"v":1,"at":1733480000000,"intervalSeconds":900}'],
    [HUB_HEALTH_TOPIC, '{"v":1,"at":1733480000000,"condition":"encoder-software"}'],
  ];
  for (const [topic, json] of vectors) {
    const d = decodeControl(topic, bytes(json));
    if (!d.ok) throw d.error;
    t.equal(Buffer.from(encodeControl(topic, d.value as never)).toString('utf8'), json, topic);
  }
});

t.test('bad input: a specific one-line error naming the topic and field', async (t) => {
  const bad: [ControlTopic, string, RegExp][] = [
    [LIVE_REQUEST_TOPIC, 'not json', /^live-request: body is not JSON$/],
    [LIVE_REQUEST_TOPIC, '{"v":1}', /^live-request: maxSeconds: /],
    [LIVE_REQUEST_TOPIC, '{"v":1,"maxSeconds":0}', /^live-request: maxSeconds: .*>=1/],
    [LIVE_REQUEST_TOPIC, '{"v":1,"maxSeconds":3601}', /^live-request: maxSeconds: .*<=3600/],
    [LIVE_REQUEST_TOPIC, '{"v":1,"maxSeconds":1.5}', /^live-request: maxSeconds: .*expected int/],
    [LIVE_REQUEST_TOPIC, '{"v":2,"maxSeconds":5}', /^live-request: v: /],
    [LIVE_STOP_TOPIC, '{"v":1,"extra":true}', /^live-stop: body: .*extra/],
    [LIVE_STARTED_TOPIC, '{"v":1,"itemId":"../etc","maxSeconds":5}', /^live-started: itemId: /],
    [LIVE_REFUSED_TOPIC, '{"v":1,"reason":"tired"}', /^live-refused: reason: /],
    [
      LIVE_REFUSED_TOPIC,
      `{"v":1,"reason":"busy","detail":"${'x'.repeat(301)}"}`,
      /^live-refused: detail: /,
    ],
    [HUB_ALIVE_TOPIC, '{"v":1,"at":-1,"intervalSeconds":60}', /^hub-alive: at: /],
    [HUB_HEALTH_TOPIC, '{"v":1,"at":1,"condition":"sad"}', /^hub-health: condition: /],
  ];
  for (const [topic, json, want] of bad) {
    const d = decodeControl(topic, bytes(json));
    t.equal(d.ok, false, `${topic} ${json.slice(0, 40)} refused`);
    if (!d.ok) {
      t.match(d.error.message, want);
      t.equal(d.error.message.includes('\n'), false, 'one line');
      t.equal(d.error.code, 'EVALIDATION');
    }
  }
  const big = decodeControl(LIVE_REQUEST_TOPIC, new Uint8Array(MAX_CONTROL_BODY + 1));
  t.match(big.ok ? '' : big.error.message, /body is 1025 bytes; the limit is 1024/);
});

t.test('the sender cannot encode outside the format', async (t) => {
  t.throws(() => encodeControl(LIVE_REQUEST_TOPIC, { v: 1, maxSeconds: 0 }), {
    message: /^live-request: maxSeconds/,
  });
});

t.test('people get a sentence for each refusal reason and health condition', async (t) => {
  t.equal(
    describeRefusal({ v: 1, reason: 'storage-locked' }),
    "live view refused: the hub's storage is locked",
  );
  t.equal(
    describeRefusal({ v: 1, reason: 'camera-down', detail: 'unplugged' }),
    'live view refused: the camera is not working (unplugged)',
  );
  t.match(describeRefusal({ v: 1, reason: 'busy' }), /busy/);
  t.match(describeRefusal({ v: 1, reason: 'no-video-yet' }), /not produced video yet/);
  t.match(describeRefusal({ v: 1, reason: 'error' }), /could not start/);
  t.equal(
    describeHealth({ v: 1, at: 1, condition: 'encoder-software' }),
    'hub: hardware encoder unavailable; encoding in software',
  );
  t.match(
    describeHealth({ v: 1, at: 1, condition: 'camera-failed', detail: 'x' }),
    /camera failed \(x\)/,
  );
  t.match(describeHealth({ v: 1, at: 1, condition: 'storage-locked' }), /storage locked/);
  t.match(describeHealth({ v: 1, at: 1, condition: 'recovered' }), /recovered/);
});
