import t from 'tap';
import type { Test } from 'tap';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { MotionFrameSocket } from '../../../hw/encoder/motion-socket.js';

async function runDir(t: Test): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'vigil-motion-sock-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

function dial(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path, () => {
      resolve(s);
    });
    s.once('error', reject);
  });
}

t.test('a byte stream is cut into whole frames, however it arrives', async (t) => {
  const frames: number[][] = [];
  let wake: (() => void) | undefined;
  const sock = await MotionFrameSocket.open({
    runDir: await runDir(t),
    frameBytes: 4,
    onFrame: (f) => {
      frames.push([...f]);
      if (frames.length === 3) wake?.();
    },
  });
  t.teardown(() => sock.close());
  const three = new Promise<void>((r) => (wake = r));
  const c = await dial(sock.path);
  c.write(Buffer.from([1, 2, 3]));
  c.write(Buffer.from([4, 5, 6, 7, 8, 9]));
  c.write(Buffer.from([10, 11, 12, 13]));
  await three;
  t.same(frames, [
    [1, 2, 3, 4],
    [5, 6, 7, 8],
    [9, 10, 11, 12],
  ]);
  c.destroy();
});

t.test('a newer encoder connection replaces the older one', async (t) => {
  const sock = await MotionFrameSocket.open({
    runDir: await runDir(t),
    frameBytes: 2,
    onFrame: () => undefined,
  });
  t.teardown(() => sock.close());
  const first = await dial(sock.path);
  const closed = new Promise<void>((r) =>
    first.once('close', () => {
      r();
    }),
  );
  const second = await dial(sock.path);
  first.write(Buffer.from([0, 0]));
  await closed;
  t.ok(first.destroyed, 'the older connection was dropped');
  second.destroy();
});

t.test('close removes the private directory', async (t) => {
  const parent = await runDir(t);
  const sock = await MotionFrameSocket.open({
    runDir: parent,
    frameBytes: 2,
    onFrame: () => undefined,
  });
  t.equal(dirname(dirname(sock.path)), parent);
  t.equal((await readdir(parent)).length, 1);
  await sock.close();
  t.same(await readdir(parent), []);
});
