import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  ConfigError,
  configSchema,
  loadConfig,
  parseConfig,
} from '../../../firmware/config/config.js';

t.test('an empty object gets every default', async (t) => {
  const c = parseConfig({});
  t.equal(c.mode, 'production');
  t.equal(c.camera.fps, 30);
  t.same(c.storage.keySources, ['otp', 'phone', 'recovery']);
  t.equal(c.restart.crashLoopCount, 5);
});

t.test('errors name the offending field', async (t) => {
  t.throws(() => parseConfig({ camera: { fps: 'thirty' } }), {
    field: 'camera.fps',
    message: /field "camera.fps"/,
  });
  t.throws(() => parseConfig({ camera: { fsp: 30 } }), {
    field: 'camera.fsp',
    message: /unknown field "camera.fsp"/,
  });
  t.throws(() => parseConfig({ colour: 'red' }), {
    field: 'colour',
    message: /unknown field "colour"/,
  });
  t.throws(() => parseConfig({ children: [{ name: 'BAD NAME', command: 'x' }] }), {
    field: 'children[0].name',
    message: /field "children\[0\]\.name"/,
  });
  t.throws(() => parseConfig([]), { field: '(root)', message: /field "\(root\)"/ });
});

t.test('loadConfig: missing file, bad JSON, good file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-cfg-'));
  const missing = await loadConfig(join(dir, 'nope.json')).catch((e: unknown) => e);
  t.ok(missing instanceof ConfigError);
  t.match(missing, { message: /config file not found: .*nope.json/ });
  await writeFile(join(dir, 'bad.json'), '{"mode": ');
  t.rejects(loadConfig(join(dir, 'bad.json')), { message: /not valid JSON/ });
  await writeFile(
    join(dir, 'ok.json'),
    JSON.stringify({ mode: 'development', log: { level: 'debug' } }),
  );
  const c = await loadConfig(join(dir, 'ok.json'));
  t.equal(c.mode, 'development');
  t.equal(c.log.level, 'debug');
});

t.test('gpio: Pi defaults, a mockup chip, and the same line twice refused', async (t) => {
  t.same(parseConfig({}).gpio, {
    enabled: true,
    chip: 'auto',
    button: 17,
    buttonActiveLow: true,
    led: 27,
    ledActiveLow: false,
  });
  t.same(
    parseConfig({ gpio: { chip: 'gpio-mockup-A', button: 3, led: 4, buttonActiveLow: false } })
      .gpio,
    {
      enabled: true,
      chip: 'gpio-mockup-A',
      button: 3,
      buttonActiveLow: false,
      led: 4,
      ledActiveLow: false,
    },
  );
  t.throws(() => parseConfig({ gpio: { button: 5, led: 5 } }), {
    field: 'gpio.led',
    message: /different lines/,
  });
  t.throws(() => parseConfig({ gpio: { pin: 5 } }), {
    field: 'gpio.pin',
    message: /unknown field/,
  });
});

t.test('retention: defaults, and each bad value names its field', async (t) => {
  const c = parseConfig({});
  t.same(c.retention, {
    clipsDays: 30,
    thumbnailsDays: 30,
    pendingDays: 7,
    minFreeMiB: 512,
    criticalFreeMiB: 64,
    backlogMaxMiB: 1024,
    intervalMinutes: 60,
  });
  const ok = parseConfig({ retention: { clipsDays: 3, backlogMaxMiB: 50, criticalFreeMiB: 512 } });
  t.equal(ok.retention.clipsDays, 3);
  t.equal(ok.retention.thumbnailsDays, 30, 'fields left out keep their defaults');
  const bad: [unknown, string][] = [
    [{ clipsDays: 0 }, 'retention.clipsDays'],
    [{ clipsDays: 1.5 }, 'retention.clipsDays'],
    [{ thumbnailsDays: '30' }, 'retention.thumbnailsDays'],
    [{ pendingDays: 366 }, 'retention.pendingDays'],
    [{ minFreeMiB: -1 }, 'retention.minFreeMiB'],
    [{ criticalFreeMiB: 4 }, 'retention.criticalFreeMiB'],
    [{ backlogMaxMiB: 0 }, 'retention.backlogMaxMiB'],
    [{ intervalMinutes: 0 }, 'retention.intervalMinutes'],
    [{ minFreeMiB: 100, criticalFreeMiB: 200 }, 'retention.criticalFreeMiB'],
  ];
  for (const [retention, field] of bad) {
    const e = (() => {
      try {
        parseConfig({ retention });
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    t.ok(e instanceof ConfigError, JSON.stringify(retention));
    t.match(e, { field, message: new RegExp(`field "${field.replace('.', '\\.')}"`) });
    t.notOk((e as Error).message.includes('\n'), 'one line');
  }
  t.throws(() => parseConfig({ retention: { clipDays: 3 } }), {
    field: 'retention.clipDays',
    message: /unknown field "retention\.clipDays"/,
  });
});

t.test('several mistakes: all of them in one line, each naming its field', async (t) => {
  const e = (() => {
    try {
      parseConfig(
        {
          camera: { fps: 'thirty' },
          colour: 'red',
          retention: { clipDays: -1, flavour: 1 },
          motion: { threshold: 0 },
        },
        '/etc/vigil/config.json',
      );
    } catch (err) {
      return err;
    }
    return undefined;
  })();
  t.ok(e instanceof ConfigError);
  const err = e as ConfigError;
  t.notOk(err.message.includes('\n'), 'one line');
  t.match(err.message, /^\/etc\/vigil\/config\.json: 5 problems: /);
  t.same(
    [...err.fields].sort(),
    ['camera.fps', 'colour', 'motion.threshold', 'retention.clipDays', 'retention.flavour'],
    'every offending field',
  );
  for (const f of err.fields) t.ok(err.message.includes(`"${f}"`), `the message names ${f}`);
  t.equal(err.field, err.fields[0], 'field: the first of them');
  t.match(err.message, /unknown field "colour"/);
  t.match(err.message, /field "camera\.fps": /);
  // one mistake keeps the short form
  t.throws(() => parseConfig({ camera: { fps: 'thirty' } }), {
    message: /^config: field "camera\.fps": [^;]*$/,
    fields: ['camera.fps'],
  });
});

// docs/config.example.jsonc against the real parser: it parses, it names every field the
// schema has (a new field without an example fails here), and every field is commented.
const FILE = new URL('../../../docs/config.example.jsonc', import.meta.url);

interface Def {
  readonly type: string;
  readonly shape?: Record<string, { _zod: { def: Def } }>;
  readonly innerType?: { _zod: { def: Def } };
  readonly element?: { _zod: { def: Def } };
}

/** Every field path of a zod schema ("camera.width", "motion.masks[].x"). */
function schemaPaths(def: Def, prefix: string, out: Set<string>): void {
  switch (def.type) {
    case 'default':
    case 'optional':
      if (def.innerType) schemaPaths(def.innerType._zod.def, prefix, out);
      return;
    case 'object':
      for (const [k, v] of Object.entries(def.shape ?? {})) {
        const p = prefix === '' ? k : `${prefix}.${k}`;
        out.add(p);
        schemaPaths(v._zod.def, p, out);
      }
      return;
    case 'array':
      if (def.element) schemaPaths(def.element._zod.def, `${prefix}[]`, out);
      return;
    default:
      return;
  }
}

/** Every field path of the example (arrays: their first element). */
function valuePaths(v: unknown, prefix: string, out: Set<string>, record: Set<string>): void {
  if (Array.isArray(v)) {
    if (v.length > 0) valuePaths(v[0], `${prefix}[]`, out, record);
    return;
  }
  if (v === null || typeof v !== 'object' || record.has(prefix)) return;
  for (const [k, x] of Object.entries(v)) {
    const p = prefix === '' ? k : `${prefix}.${k}`;
    out.add(p);
    valuePaths(x, p, out, record);
  }
}

void t.test('the example config parses and shows every field, each commented', async (t) => {
  const text = await readFile(FILE, 'utf8');
  const lines = text.split('\n');
  const json = lines.filter((l) => !/^\s*\/\//.test(l)).join('\n');
  const value = JSON.parse(json) as unknown;
  const parsed = parseConfig(value, 'docs/config.example.jsonc');
  t.equal(parsed.deviceName, 'Front door', 'the real parser accepts it');

  const want = new Set<string>();
  schemaPaths((configSchema as unknown as { _zod: { def: Def } })._zod.def, '', want);
  t.ok(want.size > 50, `the schema walk finds the fields (${want.size})`);
  const have = new Set<string>();
  valuePaths(value, '', have, new Set(['children[].env']));
  t.same(
    [...want].filter((p) => !have.has(p)),
    [],
    'every schema field appears in the example',
  );
  t.same(
    [...have].filter((p) => !want.has(p)),
    [],
    'nothing in the example the schema lacks',
  );

  for (const [i, line] of lines.entries()) {
    if (!/^\s*("[A-Za-z]+":|\{ ")/.test(line)) continue;
    if (/^\s*"[A-Z_]+":/.test(line)) continue; // an env variable inside children[].env
    t.match(lines[i - 1] ?? '', /^\s*\/\/ /, `line ${i + 1} has a comment above: ${line.trim()}`);
  }
});

void t.test('audio: off by default; each bad value is one line naming its field', async (t) => {
  t.same(parseConfig({}).audio, {
    enabled: false,
    device: 'default',
    sampleRate: 48_000,
    channels: 1,
    bitrateKbps: 64,
  });
  const on = parseConfig({ audio: { enabled: true, device: 'plughw:CARD=Device,DEV=0' } }).audio;
  t.match(on, { enabled: true, device: 'plughw:CARD=Device,DEV=0', sampleRate: 48_000 });
  for (const [audio, field, message] of [
    [{ enabled: 'yes' }, 'audio.enabled', /field "audio\.enabled"/],
    [
      { sampleRate: 44_000 },
      'audio.sampleRate',
      /must be one of 16000, 22050, 32000, 44100, 48000/,
    ],
    [{ channels: 3 }, 'audio.channels', /field "audio\.channels"/],
    [{ bitrateKbps: 8 }, 'audio.bitrateKbps', /field "audio\.bitrateKbps"/],
    [{ device: '-f' }, 'audio.device', /an ALSA capture device name/],
    [{ device: 'hw:1,0; rm -rf /' }, 'audio.device', /an ALSA capture device name/],
    [{ microphone: 'usb' }, 'audio.microphone', /unknown field "audio\.microphone"/],
  ] as const) {
    t.throws(() => parseConfig({ audio }), { field, message }, JSON.stringify(audio));
    try {
      parseConfig({ audio });
    } catch (e) {
      t.notMatch((e as Error).message, /\n/, 'one line');
    }
  }
});

t.test('ota.os: OS updates on by default, fields checked strictly', async (t) => {
  t.same(parseConfig({}).ota.os, { enabled: true, pollMinutes: 720 });
  t.same(parseConfig({ ota: { os: { enabled: false } } }).ota.os, {
    enabled: false,
    pollMinutes: 720,
  });
  const bad: [unknown, string][] = [
    [{ enabled: 'yes' }, 'ota.os.enabled'],
    [{ pollMinutes: 4 }, 'ota.os.pollMinutes'],
    [{ pollMinutes: 7 * 24 * 60 + 1 }, 'ota.os.pollMinutes'],
    [{ pollMinutes: 60.5 }, 'ota.os.pollMinutes'],
    [{ window: '02:00-04:00' }, 'ota.os.window'],
  ];
  for (const [os, field] of bad) {
    let e: unknown;
    try {
      parseConfig({ ota: { os } });
    } catch (err) {
      e = err;
    }
    t.ok(e instanceof ConfigError, JSON.stringify(os));
    t.match(e, { field, message: new RegExp(field.replace(/\./g, '\\.')) });
    t.notOk((e as Error).message.includes('\n'), 'one line');
  }
});

void t.test(
  'relay.url and ota.repositoryUrl: the URL rule of the bundle and the phone',
  async (t) => {
    const withUrl = (field: 'relay.url' | 'ota.repositoryUrl', url: string): unknown =>
      field === 'relay.url' ? { relay: { url } } : { ota: { repositoryUrl: url } };
    for (const field of ['relay.url', 'ota.repositoryUrl'] as const) {
      const esc = field.replace('.', '\\.');
      for (const [url, why] of [
        ['ftp://relay.example.net', /must be https, not ftp$/],
        ['file:///etc/passwd', /must be https, not file$/],
        ['ws://relay.example.net', /must be https, not ws$/],
        ['http://relay.example.net', /must be https \(http only to a loopback or link-local/],
        ['http://192.168.77.1:8080', /must be https \(http only to a loopback or link-local/],
        ['https://user:secret@relay.example.net', /must not carry a user name or password$/],
        ['https://relay.example.net/#x', /must not have a #fragment$/],
        ['relay.example.net', /is not a URL$/],
      ] as const) {
        let err: unknown;
        try {
          parseConfig(withUrl(field, url));
        } catch (e) {
          err = e;
        }
        t.ok(err instanceof ConfigError && err.field === field, `${field} ${url}: refused`);
        const message = err instanceof Error ? err.message : '';
        t.match(message, new RegExp(`^config: field "${esc}": `), 'names the field');
        t.match(message, why);
        t.notMatch(message, /\n/, 'one line');
        t.notMatch(message, /secret/, 'the password is not repeated');
      }
      for (const url of [
        'https://relay.example.net',
        'https://relay.example.net:8443/vigil',
        'http://127.0.0.1:8080',
        'http://localhost:8080',
        'http://[::1]:8080',
        'http://169.254.77.1:8080',
        'http://[fe80::1]:8080',
      ]) {
        const c = parseConfig(withUrl(field, url));
        t.equal(field === 'relay.url' ? c.relay.url : c.ota.repositoryUrl, url, `${field} ${url}`);
      }
    }
    t.equal(
      parseConfig({ relay: { url: 'https://relay.example.net/' } }).relay.url,
      'https://relay.example.net',
      'a trailing slash is dropped, as for the bundle (one relay, one spelling)',
    );
  },
);
