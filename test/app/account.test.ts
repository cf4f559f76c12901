import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { DurableFs } from '../../hw/os/fs.js';
import { SILENT } from '../../base/logger.js';
import {
  accountPath,
  defaultAppDir,
  devPairRelay,
  loadAccount,
  saveAccount,
} from '../../app/account.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { startRelay } from '../../relay/server.js';
import { tempDir } from '../relay/fixtures.js';

t.test('account file round trip and validation', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-app-');
  t.teardown(cleanup);
  const fs = new DurableFs();
  t.equal(await loadAccount(fs, dir), undefined);
  const acct = { url: 'http://127.0.0.1:1', deviceId: 'dev-1', phoneId: 'ph-1', token: 'p.ph-1.x' };
  await saveAccount(fs, dir, acct);
  t.same(await loadAccount(fs, dir), acct);
  await writeFile(accountPath(dir), '{"url":"not a url"}');
  await t.rejects(loadAccount(fs, dir), { code: 'ECONFIG' });
  t.equal(defaultAppDir({ VIGIL_APP_DIR: '/x' }), '/x');
  t.equal(defaultAppDir({ XDG_CONFIG_HOME: '/c' }), '/c/vigil-app');
});

t.test('development pairing creates a hub and a phone account that work together', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-app-');
  const relay = await startRelay({ dataDir: dir, logger: SILENT });
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const { device, phone } = await devPairRelay(relay.url, 'dev-pair-1');
  const hub = new RelayClient({ url: relay.url, token: device.token });
  t.same(
    (await hub.phones()).map((p) => p.phoneId),
    [phone.phoneId],
  );
  await hub.append(
    'item-1',
    { group: 'motion', kind: 'clip', offset: 0, final: true },
    Buffer.from('x'),
  );
  const ph = new RelayClient({ url: relay.url, token: phone.token });
  t.equal((await ph.list({})).items.length, 1);
});
