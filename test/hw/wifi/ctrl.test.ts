import t from 'tap';
import { mkdtemp, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createUnixDgramSocket } from '../../../hw/os/unix-dgram.js';
import { spawnProcess } from '../../../hw/os/run.js';
import { WpaCtrl, WifiCtrlError, parseCtrlEvent } from '../../../hw/wifi/ctrl.js';
import type { CtrlEvent } from '../../../hw/wifi/ctrl.js';

void t.test('parseCtrlEvent', async (t) => {
  t.same(parseCtrlEvent('<3>AP-STA-CONNECTED 02:00:00:00:01:00\n'), {
    level: 3,
    name: 'AP-STA-CONNECTED',
    args: '02:00:00:00:01:00',
  });
  t.same(parseCtrlEvent('<2>CTRL-EVENT-TERMINATING'), {
    level: 2,
    name: 'CTRL-EVENT-TERMINATING',
    args: '',
  });
  t.equal(parseCtrlEvent('OK'), undefined);
});

void t.test('against a real hostapd control socket (driver none)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-ctrl-'));
  await writeFile(
    join(dir, 'h.conf'),
    `driver=none\ninterface=vigilctl0\nctrl_interface=${dir}/ctrl\nssid=t\n`,
  );
  const h = spawnProcess('hostapd', [join(dir, 'h.conf')]);
  t.teardown(() => h.stop(1000));
  let ctrl: WpaCtrl | undefined;
  for (let i = 0; i < 100 && !ctrl; i++) {
    ctrl = await WpaCtrl.open(join(dir, 'ctrl', 'vigilctl0'), join(dir, 'client')).catch(
      () => undefined,
    );
    if (!ctrl) await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(ctrl, 'connected (PING/PONG)');
  if (!ctrl) return;
  await ctrl.attach();
  const [a, b] = await Promise.all([ctrl.request('STATUS'), ctrl.request('PING')]);
  t.match(a, /^state=ENABLED$/m, 'concurrent requests are serialised: STATUS got its reply');
  t.equal(b.trim(), 'PONG');
  await t.rejects(ctrl.command('NO-SUCH-COMMAND'), { code: 'ECTRL_FAILED' });
  const events: CtrlEvent[] = [];
  ctrl.on('event', (e) => events.push(e));
  await ctrl.command('DISABLE');
  for (let i = 0; i < 50 && !events.some((e) => e.name === 'AP-DISABLED'); i++)
    await new Promise((r) => setTimeout(r, 20));
  t.ok(
    events.some((e) => e.name === 'AP-DISABLED'),
    'unsolicited event after ATTACH',
  );
  await ctrl.close();
  await ctrl.close();
  await t.rejects(ctrl.request('PING'), { code: 'ECTRL_CLOSED' });
  t.same(await readdir(join(dir, 'client')), [], 'local socket removed');
});

void t.test('timeouts, a missing socket, and a silent daemon', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-ctrl-'));
  await t.rejects(WpaCtrl.open(join(dir, 'nope'), join(dir, 'client'), 200), WifiCtrlError);
  // a "daemon" that answers PING and then goes quiet
  const server = createUnixDgramSocket();
  server.bind(join(dir, 'srv'));
  t.teardown(() => {
    server.close();
  });
  server.on('message', (buf: Buffer, rinfo) => {
    const from = rinfo.path ?? '';
    if (buf.toString() === 'PING') server.send(Buffer.from('PONG\n'), 0, 5, from);
    if (buf.toString() === 'EV')
      server.send(Buffer.from('<3>AP-STA-CONNECTED 02:00:00:00:01:00'), 0, 37, from);
  });
  const c = await WpaCtrl.open(join(dir, 'srv'), join(dir, 'client'), 200);
  await t.rejects(c.request('STATUS', 100), { code: 'ECTRL_TIMEOUT' });
  const got = new Promise<CtrlEvent>((r) => c.once('event', r));
  const pending = c.request('EV', 100).catch((e: unknown) => e);
  t.same(
    await got,
    { level: 3, name: 'AP-STA-CONNECTED', args: '02:00:00:00:01:00' },
    'an event is not taken for a reply',
  );
  t.ok((await pending) instanceof WifiCtrlError);
  await c.close();
});
