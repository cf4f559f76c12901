import t from 'tap';
import {
  SUBSYSTEM_NEW,
  SUBSYSTEM_READY,
  hubUnlockResult,
  planVolume,
} from '../../../firmware/storage/plan.js';
import type { PlannedRecord, VolumeFacts, VolumeStep } from '../../../firmware/storage/plan.js';

const DEV = '/dev/vdb1';
const base: VolumeFacts = { partLabel: 'vigil-data', mapping: null, device: DEV };
const rec = (phase: PlannedRecord['phase'], device = DEV): PlannedRecord => ({
  device,
  luksUuid: 'u-1',
  phase,
});

/** Answer the planner's look-ups from `world` until it settles; returns the step and the facts it asked for. */
function settle(world: Omit<VolumeFacts, 'partLabel'>): { step: VolumeStep; asked: string[] } {
  let facts: VolumeFacts = { partLabel: 'vigil-data' };
  const asked: string[] = [];
  const key = {
    mapping: 'mapping',
    device: 'device',
    record: 'record',
    'is-luks': 'isLuks',
    header: 'header',
    'same-partition': 'samePartition',
    'fs-type': 'fsType',
    content: 'content',
  } as const;
  for (let i = 0; i < 20; i++) {
    const step = planVolume(facts);
    if (step.kind !== 'look') return { step, asked };
    asked.push(step.at);
    const k = key[step.at];
    if (!(k in world)) throw new Error(`planner asked for ${step.at}, which the test did not give`);
    facts = { ...facts, [k]: world[k] };
  }
  throw new Error('planner never settled');
}

t.test('an open mapping is adopted before anything else is looked at', async (t) => {
  const r = settle({ mapping: { device: DEV } });
  t.same(r.step, { kind: 'adopt', device: DEV });
  t.same(r.asked, ['mapping']);
});

t.test('no device: locked with the partition label, waiting for nothing', async (t) => {
  const r = settle({ mapping: null, device: null });
  t.match(r.step, { kind: 'locked', reason: 'no-device', waitingFor: [] });
  t.match((r.step as { detail: string }).detail, /"vigil-data"/);
});

t.test('a blank device is formatted only after the probe and the sample say so', async (t) => {
  for (const content of ['zero', 'vigil-blank'] as const) {
    const r = settle({
      mapping: null,
      device: DEV,
      record: null,
      isLuks: false,
      fsType: null,
      content,
    });
    t.same(r.step, { kind: 'format', device: DEV, previous: undefined, why: 'blank' });
    t.same(r.asked, ['mapping', 'device', 'record', 'is-luks', 'fs-type', 'content']);
  }
});

t.test('never formats a filesystem or unknown bytes', async (t) => {
  const fs = settle({ mapping: null, device: DEV, record: null, isLuks: false, fsType: 'ext4' });
  t.match(fs.step, { kind: 'locked', reason: 'foreign-data', waitingFor: [] });
  t.notOk(fs.asked.includes('content'), 'a recognised filesystem is not sampled');
  const data = settle({
    mapping: null,
    device: DEV,
    record: null,
    isLuks: false,
    fsType: null,
    content: 'data',
  });
  t.match(data.step, { kind: 'locked', reason: 'foreign-data', waitingFor: ['recovery'] });
});

t.test('our completed volume without a header is a corrupt header, never a format', async (t) => {
  const r = settle({ ...base, record: rec('ready'), isLuks: false });
  t.match(r.step, { kind: 'locked', reason: 'header-corrupt', waitingFor: ['recovery'] });
  t.notOk(r.asked.includes('fs-type'));
});

t.test('our own interrupted luksFormat is formatted again with the record', async (t) => {
  const r = settle({ ...base, record: rec('formatting'), isLuks: false });
  t.match(r.step, { kind: 'format', why: 'interrupted-format', previous: { luksUuid: 'u-1' } });
});

t.test('a record for another path counts only when the partition UUID matches', async (t) => {
  const moved = settle({
    ...base,
    record: rec('ready', '/dev/sda1'),
    isLuks: false,
    samePartition: true,
  });
  t.match(moved.step, { kind: 'locked', reason: 'header-corrupt' });
  t.ok(moved.asked.includes('same-partition'));
  const other = settle({
    ...base,
    record: rec('ready', '/dev/sda1'),
    isLuks: false,
    samePartition: false,
    fsType: null,
    content: 'zero',
  });
  t.match(other.step, { kind: 'format', why: 'blank' });
});

t.test('a LUKS volume: resume our vigil-new first boot, otherwise unlock', async (t) => {
  const resume = settle({
    ...base,
    record: rec('formatting'),
    isLuks: true,
    header: { uuid: 'u-1', subsystem: SUBSYSTEM_NEW },
  });
  t.match(resume.step, { kind: 'resume-first-boot', device: DEV, luksUuid: 'u-1' });
  for (const [record, header] of [
    [rec('ready'), { uuid: 'u-1', subsystem: SUBSYSTEM_READY }],
    [rec('formatting'), { uuid: 'other', subsystem: SUBSYSTEM_NEW }],
    [null, { uuid: 'u-1', subsystem: SUBSYSTEM_NEW }],
  ] as const) {
    const r = settle({ ...base, record, isLuks: true, header });
    t.same(r.step, { kind: 'unlock', device: DEV, luksUuid: header.uuid });
  }
});

t.test('hubUnlockResult: the supervisor shape', async (t) => {
  t.same(
    hubUnlockResult({ state: 'unlocked', mountPoint: '/d', source: 'otp', firstBoot: false }),
    {
      ok: true,
      dataDir: '/d',
    },
  );
  t.same(
    hubUnlockResult({
      state: 'locked',
      reason: 'no-key',
      detail: 'x',
      waitingFor: ['phone', 'recovery'],
    }),
    { ok: false, reason: 'no-key: x', waitingFor: 'phone or recovery' },
  );
  t.same(hubUnlockResult({ state: 'locked', reason: 'no-device', detail: 'y', waitingFor: [] }), {
    ok: false,
    reason: 'no-device: y',
  });
});
