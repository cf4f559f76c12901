import t from 'tap';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../../firmware/config/config.js';
import {
  RELAY_OVERRIDE_FILE,
  ServiceContacts,
  ServicesError,
  readRelayOverride,
  resolveOta,
  resolveRelay,
  saveRelayOverride,
} from '../../../firmware/config/services.js';
import { DurableFs } from '../../../hw/os/fs.js';

const bundle = {
  relay: { url: 'https://factory-relay.example', enrollToken: 'factory-token' },
  ota: { repositoryUrl: 'https://updates.example/vigil', channel: 'beta' },
};

void t.test('relay: the phone > the config file > the bundle', async (t) => {
  const empty = parseConfig({});
  const configured = parseConfig({ relay: { url: 'https://config-relay.example' } });
  const phone = { url: 'https://my-relay.example', enrollToken: 'mine' };
  t.equal(resolveRelay(empty, undefined, undefined), undefined, 'none anywhere');
  t.same(resolveRelay(empty, bundle, undefined), { ...bundle.relay, source: 'bundle' });
  t.same(resolveRelay(configured, bundle, undefined), {
    url: 'https://config-relay.example',
    source: 'config',
  });
  t.same(resolveRelay(configured, bundle, phone), { ...phone, source: 'pairing' });
});

void t.test('OTA: the config file > the bundle > the default channel', async (t) => {
  t.same(resolveOta(parseConfig({}), undefined), { channel: 'stable', channelSource: 'default' });
  t.same(resolveOta(parseConfig({}), bundle), {
    repositoryUrl: 'https://updates.example/vigil',
    repositorySource: 'bundle',
    channel: 'beta',
    channelSource: 'bundle',
  });
  t.same(
    resolveOta(
      parseConfig({ ota: { repositoryUrl: 'https://mine.example/', channel: 'stable' } }),
      bundle,
    ),
    {
      repositoryUrl: 'https://mine.example', // trailing slash dropped, as in the bundle
      repositorySource: 'config',
      channel: 'stable',
      channelSource: 'config',
    },
  );
  t.same(resolveOta(parseConfig({ ota: { channel: 'nightly' } }), bundle), {
    repositoryUrl: 'https://updates.example/vigil',
    repositorySource: 'bundle',
    channel: 'nightly',
    channelSource: 'config',
  });
});

void t.test('config: a bad ota.channel is a one-line error naming the field', async (t) => {
  t.throws(() => parseConfig({ ota: { channel: 'Stable Channel' } }), {
    field: 'ota.channel',
    message: /^config: field "ota\.channel": must be 1-32 of a-z 0-9 -/,
  });
  t.equal(parseConfig({}).ota.channel, undefined, 'unset: the bundle or the default decides');
});

void t.test('the phone’s relay choice is kept in the volume across a restart', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-services-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  t.equal(await readRelayOverride(new DurableFs(), dir), undefined, 'none chosen');
  await saveRelayOverride(new DurableFs(), dir, {
    url: 'https://my-relay.example/',
    enrollToken: 'mine',
  });
  t.equal((await stat(join(dir, RELAY_OVERRIDE_FILE))).mode & 0o777, 0o600);
  // a new process: nothing in memory, only the file
  const back = await readRelayOverride(new DurableFs(), dir);
  t.same(back, { url: 'https://my-relay.example', enrollToken: 'mine' });
  t.same(resolveRelay(parseConfig({ relay: { url: 'https://config.example' } }), bundle, back), {
    url: 'https://my-relay.example',
    enrollToken: 'mine',
    source: 'pairing',
  });
  await t.rejects(
    saveRelayOverride(new DurableFs(), dir, { url: 'http://relay.example' }),
    /must be https/,
    'never stores a refused URL',
  );
  t.match(await readFile(join(dir, RELAY_OVERRIDE_FILE), 'utf8'), /my-relay/, 'old choice kept');
  await writeFile(join(dir, RELAY_OVERRIDE_FILE), '{"url":"ftp://x"}');
  await t.rejects(readRelayOverride(new DurableFs(), dir), {
    constructor: ServicesError,
    message: /relay-override\.json: field "url" must be https, not ftp$/,
  });
  await writeFile(join(dir, RELAY_OVERRIDE_FILE), '{');
  await t.rejects(readRelayOverride(new DurableFs(), dir), /not valid JSON/);
});

void t.test('last contact: any answer from the relay counts', async (t) => {
  let now = Date.parse('2026-12-06T10:00:00Z');
  const c = new ServiceContacts(() => now);
  t.equal(c.lastRelayContact, null);
  const f = c.relayHttp(() =>
    Promise.resolve({
      status: 503,
      ok: false,
      header: () => undefined,
      bytes: () => Promise.resolve(Buffer.from('nope')),
      text: () => Promise.resolve('nope'),
      json: () => Promise.reject(new Error('not JSON')),
      chunks: async function* () {
        yield Buffer.from('nope');
      },
      discard: () => undefined,
    }),
  );
  await f('https://relay.example/v1/x');
  t.equal(c.lastRelayContact, '2026-12-06T10:00:00.000Z');
  now += 1000;
  const down = c.relayHttp(() => Promise.reject(new Error('ECONNREFUSED')));
  await t.rejects(down('https://relay.example/v1/x'));
  t.equal(c.lastRelayContact, '2026-12-06T10:00:00.000Z', 'no answer, no contact');
});
