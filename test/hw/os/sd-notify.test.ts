import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  NOOP_NOTIFIER,
  NotifyListener,
  SdNotify,
  watchdogInterval,
} from '../../../hw/os/sd-notify.js';

t.test('watchdog interval is half of WATCHDOG_USEC, only for our pid', async (t) => {
  t.equal(watchdogInterval({ WATCHDOG_USEC: '30000000' }), 15_000);
  t.equal(
    watchdogInterval({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid) }),
    15_000,
  );
  t.equal(watchdogInterval({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }), undefined);
  t.equal(watchdogInterval({ WATCHDOG_USEC: 'x' }), undefined);
  t.equal(watchdogInterval({}), undefined);
});

t.test('messages arrive on a real unix datagram socket', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-notify-'));
  const path = join(dir, 'notify');
  const l = new NotifyListener(path);
  t.teardown(() => {
    l.close();
  });
  const n = SdNotify.fromEnv({ NOTIFY_SOCKET: path, WATCHDOG_USEC: '100000' });
  t.equal(n.watchdogIntervalMs, 50);
  await n.ready('booting');
  await n.status('running');
  const stop = n.startWatchdog();
  await l.waitFor((m) => m.WATCHDOG === '1');
  stop();
  await n.stopping();
  t.same(await l.waitFor((m) => m.READY === '1'), {
    READY: '1',
    MAINPID: String(process.pid),
    STATUS: 'booting',
  });
  t.ok(l.messages.some((m) => m.STATUS === 'running'));
  await l.waitFor((m) => m.STOPPING === '1');
  await t.rejects(n.notify({ 'bad key': '1' }), { code: 'ENOTIFY' });
  await t.rejects(n.notify({ STATUS: 'two\nlines' }), { code: 'ENOTIFY' });
  await t.rejects(new SdNotify(join(dir, 'nobody-listens')).ready(), { code: 'ENOTIFY' });
  await t.rejects(
    l.waitFor((m) => m.NEVER === '1', 50),
    { code: 'ETIMEOUT' },
  );
});

t.test('outside systemd the notifier is a no-op', async (t) => {
  const n = SdNotify.fromEnv({});
  t.equal(n, NOOP_NOTIFIER);
  await n.ready();
  await n.status('x');
  await n.stopping();
  await n.notify({ A: '1' });
  n.startWatchdog()();
  t.equal(n.watchdogIntervalMs, undefined);
});
