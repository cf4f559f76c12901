/**
 * THE CRASH SUITE. A short workload (two items of different kinds, each
 * opened and acknowledged by the phone, then a heartbeat round) is first run
 * with tracing to enumerate every numbered durable-write point on the hub's
 * and on the phone's path. Then, for each point and each mode (kill,
 * power-loss), the workload runs again from the same paired state, the chosen
 * side "dies" at that point (SimulatedCrash, 'throw' delivery), is reopened
 * from disk, and the workload continues. At the end both sides must agree on
 * every group's epoch and every acknowledged item must still decrypt.
 * In the hub's schedules a second phone (the laggard, paired by invite) misses
 * every item: it is already behind in both item groups before the workload
 * starts, so at every hub crash point it is behind across the hub's restart;
 * at the end it catches up from the hub's journal with one heartbeat, with
 * zero desyncs (the only scenario that reads journal records written before a
 * crash back to a phone; docs/e2ee.md, "Mutation checks"). The phone's
 * schedules start without it: no hub restarts there, and the suite stays short.
 * A few schedules use real SIGKILLs ('exit' delivery) in a child process.
 * New durable writes are covered automatically (the points are enumerated).
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CrashController, DurableFs, SimulatedCrash, type CrashMode } from '../../hw/os/fs.js';
import { spawnProcess } from '../../hw/os/run.js';
import type { MlsHub } from '../../firmware/mls/hub.js';
import { DesyncError, E2eePhone, PhoneError } from '../../app/e2ee/phone.js';
import { unb64 } from '../../protocol/e2ee-frames.js';
import { GROUP_KINDS, loadMlsProfile, type MlsProfile } from '../../protocol/mls-profile.js';
import {
  MemorySink,
  heartbeatRound,
  newDevicePsk,
  openHub,
  pair,
  sealerFor,
  tempDir,
} from '../../dev/fixtures/paired-hub.js';

type Side = 'hub' | 'phone';

/** Items sealed while pairing the base state: the first phone holds them, the laggard missed them. */
interface BaseItem {
  readonly id: string;
  readonly kind: 'clip' | 'thumbnail';
  readonly bytes: Buffer;
  readonly payload: Buffer;
}

/**
 * The paired state a schedule starts from (in `dir`): the admin phone
 * (`phone/`), with `laggard` a second phone paired by invite (`laggard/`),
 * then one clip and one thumbnail that only the admin phone takes.
 */
async function pairedBase(p: MlsProfile, dir: string, laggard: boolean): Promise<BaseItem[]> {
  const hub = await openHub(p, join(dir, 'hub'));
  const devicePsk = newDevicePsk();
  const first = await pair({ p, hub, devicePsk, phoneDir: join(dir, 'phone') });
  if (first.phone === undefined) throw new Error('first phone did not pair');
  if (laggard) {
    const inv = await hub.createInvite(first.phone.phoneId);
    const second = await pair({
      p,
      hub,
      devicePsk,
      phonePsk: { id: unb64(inv.pskId), secret: unb64(inv.psk) },
      phoneDir: join(dir, 'laggard'),
    });
    if (second.phone === undefined) throw new Error('laggard did not pair');
  }
  const sink = new MemorySink();
  const items: BaseItem[] = [];
  for (const [i, kind] of (['clip', 'thumbnail'] as const).entries()) {
    const payload = payloadOf(-1 - i, 0);
    const w = await sealerFor(hub, sink, 512).begin({
      kind,
      startedAt: 1_789_000_000_000,
      codec: 'video/mp4',
    });
    await w.write(payload);
    await w.close(100);
    await first.phone.decryptItem(sink.bytes(w.itemId));
    await first.phone.acknowledge(w.itemId);
    items.push({ id: w.itemId, kind, bytes: sink.bytes(w.itemId), payload });
  }
  return items;
}

function reasonOf(e: unknown): string {
  return e instanceof Error
    ? `${e.name} ${(e as { code?: string }).code ?? ''} ${e.message}`
    : String(e);
}

function payloadOf(step: number, attempt: number): Buffer {
  const seed = createHash('sha256').update(`item-${step}-${attempt}`).digest();
  return Buffer.concat(Array.from({ length: 40 }, () => seed)); // 1280 bytes, 3 chunks at 512
}

class World {
  hub!: MlsHub;
  phone!: E2eePhone;
  /** The second phone, when the base has one: misses every item, catches up in verify(). */
  laggard: E2eePhone | undefined;
  /** Set once the laggard has caught up in verify(). */
  laggardCaughtUp = false;
  readonly sink = new MemorySink();
  readonly payloads = new Map<string, Buffer>();
  crashes = 0;
  readonly p: MlsProfile;
  readonly root: string;
  readonly crash: { side: Side; controller: CrashController } | undefined;
  constructor(
    p: MlsProfile,
    root: string,
    crash: { side: Side; controller: CrashController } | undefined,
    base: readonly BaseItem[],
  ) {
    this.p = p;
    this.root = root;
    this.crash = crash;
    for (const b of base) {
      void this.sink.append(b.id, b.kind, b.bytes, true);
      this.payloads.set(b.id, b.payload);
    }
  }

  fsFor(side: Side): DurableFs {
    return new DurableFs(
      this.crash?.side === side && this.crashes === 0 ? this.crash.controller : undefined,
    );
  }

  async open(): Promise<void> {
    this.hub = await openHubWith(this.p, join(this.root, 'hub'), this.fsFor('hub'));
    const ph = await E2eePhone.open({
      dir: join(this.root, 'phone'),
      fs: this.fsFor('phone'),
      profile: this.p,
    });
    if (ph === undefined) throw new Error('phone not paired');
    this.phone = ph;
    if (!existsSync(join(this.root, 'laggard'))) return;
    this.laggard = await E2eePhone.open({
      dir: join(this.root, 'laggard'),
      fs: new DurableFs(),
      profile: this.p,
    });
    if (this.laggard === undefined) throw new Error('laggard not paired');
  }

  /** Run a step; on a simulated crash reopen the crashed side from disk and retry once. */
  async step(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      if (!(e instanceof SimulatedCrash)) throw e;
      this.crashes += 1;
      const side = this.crash?.side;
      if (side === 'hub')
        this.hub = await openHubWith(this.p, join(this.root, 'hub'), new DurableFs());
      else {
        const ph = await E2eePhone.open({
          dir: join(this.root, 'phone'),
          fs: new DurableFs(),
          profile: this.p,
        });
        if (ph === undefined) throw new Error('phone lost its pairing in a crash', { cause: e });
        this.phone = ph;
      }
      await fn();
    }
  }

  async sealOne(step: number, attempt: number, kind: 'clip' | 'thumbnail'): Promise<string> {
    const sealer = sealerFor(this.hub, this.sink, 512);
    const w = await sealer.begin({ kind, startedAt: 1_790_000_000_000 + step, codec: 'video/mp4' });
    const payload = payloadOf(step, attempt);
    await w.write(payload);
    await w.close(100);
    this.payloads.set(w.itemId, payload);
    return w.itemId;
  }

  /** The phone's app loop for one item: open, verify, acknowledge; catch up on a gap. */
  async take(id: string): Promise<void> {
    let opened;
    try {
      opened = await this.phone.decryptItem(this.sink.bytes(id));
    } catch (e) {
      if (!(e instanceof PhoneError) || e.code !== 'EEPOCH_GAP') throw e;
      await heartbeatRound(this.hub, this.phone);
      opened = await this.phone.decryptItem(this.sink.bytes(id));
    }
    if (!opened.plaintext.equals(this.payloads.get(id) ?? Buffer.alloc(0)))
      throw new Error(`item ${id} decrypted to wrong bytes`);
    await this.phone.acknowledge(id);
  }

  async workload(): Promise<void> {
    const kinds = ['clip', 'thumbnail'] as const;
    for (const [i, kind] of kinds.entries()) {
      let id: string | undefined;
      let attempt = 0;
      await this.step(async () => {
        id = await this.sealOne(i, attempt++, kind);
      });
      await this.step(() => this.take(id as string));
    }
    await this.step(async () => {
      await heartbeatRound(this.hub, this.phone);
    });
  }

  /** Invariants: epochs agree (after a final sync) and every acknowledged item decrypts. */
  async verify(): Promise<string[]> {
    const problems: string[] = [];
    const sync = await heartbeatRound(this.hub, this.phone);
    if (sync.out.desync.length > 0) problems.push(`desync: ${JSON.stringify(sync.out.desync)}`);
    for (const k of GROUP_KINDS) {
      const h = this.hub.epoch(this.phone.phoneId, k);
      const ph = this.phone.epoch(k);
      if (h !== ph) problems.push(`${k}: hub epoch ${h} != phone epoch ${ph}`);
    }
    const acked = await this.phone.acknowledgedItems();
    if (acked.length < 4) problems.push(`only ${acked.length} item(s) acknowledged`);
    for (const id of acked) {
      const got = await this.phone.decryptStored(this.sink.bytes(id));
      if (!got.plaintext.equals(this.payloads.get(id) ?? Buffer.alloc(0)))
        problems.push(`acked item ${id} does not decrypt`);
    }
    const lag = this.laggard;
    if (lag !== undefined) problems.push(...(await this.laggardCatchesUp(lag)));
    // and the system keeps working: one more item end to end, for both phones
    const id = await this.sealOne(99, 0, 'clip');
    await this.take(id);
    if (lag !== undefined) {
      try {
        const got = await lag.decryptItem(this.sink.bytes(id));
        if (!got.plaintext.equals(this.payloads.get(id) ?? Buffer.alloc(0)))
          problems.push(`laggard: item ${id} decrypted to wrong bytes`);
      } catch (e) {
        problems.push(`laggard: next item after catch-up: ${reasonOf(e)}`);
      }
    }
    return problems;
  }

  /**
   * The laggard missed every item (the base ones and the workload's, whatever
   * the hub journalled before and after its crash): one heartbeat must bring
   * each group to the hub's epoch from the journal, with no desync on either side.
   */
  async laggardCatchesUp(lag: E2eePhone): Promise<string[]> {
    const problems: string[] = [];
    const behind = GROUP_KINDS.filter((k) => lag.epoch(k) < this.hub.epoch(lag.phoneId, k));
    if (!behind.includes('motion') || !behind.includes('thumbnail'))
      problems.push(`laggard was not behind in both item groups (behind: ${behind.join(',')})`);
    const out = await this.hub.handleConfig(await lag.heartbeat());
    if (out.desync.length > 0) problems.push(`laggard desync (hub): ${JSON.stringify(out.desync)}`);
    for (const r of out.replies) {
      try {
        await lag.receive(r);
      } catch (e) {
        if (!(e instanceof DesyncError)) throw e;
        problems.push(`laggard desync (phone): ${e.message}`);
      }
    }
    for (const k of GROUP_KINDS) {
      const h = this.hub.epoch(lag.phoneId, k);
      const ph = lag.epoch(k);
      if (h !== ph) problems.push(`laggard ${k}: hub epoch ${h} != phone epoch ${ph}`);
    }
    this.laggardCaughtUp = problems.length === 0;
    return problems;
  }
}

async function openHubWith(p: MlsProfile, dir: string, fs: DurableFs): Promise<MlsHub> {
  const { MlsHub } = await import('../../firmware/mls/hub.js');
  const { DEVICE_ID } = await import('../../dev/fixtures/paired-hub.js');
  return MlsHub.open({ dir, fs, deviceId: DEVICE_ID, profile: p });
}

void t.test(
  'crash suite: every durable point on the hub and phone paths, kill and power loss',
  async (t) => {
    const p = await loadMlsProfile();
    const base = tempDir('vigil-crash-base-');
    const scratch = tempDir('vigil-crash-run-');
    t.teardown(() => {
      rmSync(base, { recursive: true, force: true });
      rmSync(scratch, { recursive: true, force: true });
    });
    // the hub's schedules start with the laggard, the phone's without (see the top)
    const baseItems: Record<Side, BaseItem[]> = {
      hub: await pairedBase(p, join(base, 'hub-side'), true),
      phone: await pairedBase(p, join(base, 'phone-side'), false),
    };
    t.ok(
      existsSync(join(base, 'hub-side', 'laggard')),
      'hub side: a second phone paired by invite',
    );

    let run = 0;
    const fresh = (side: Side): string => {
      const dir = join(scratch, String(run++));
      cpSync(join(base, `${side}-side`), dir, { recursive: true });
      return dir;
    };

    // 1. trace: learn the points on each side
    const counts: Record<Side, number> = { hub: 0, phone: 0 };
    const labels: Record<Side, string[]> = { hub: [], phone: [] };
    for (const side of ['hub', 'phone'] as const) {
      const c = new CrashController();
      const w = new World(p, fresh(side), { side, controller: c }, baseItems[side]);
      await w.open();
      const before = c.count;
      await w.workload();
      counts[side] = c.count;
      labels[side] = c.trace.map((x) => x.label);
      t.ok(c.count > before, `${side}: ${c.count} crash points traced`);
      t.same(await w.verify(), [], `${side}: clean run is consistent`);
    }
    t.ok(
      labels.hub.some((l) => l.startsWith('mls-journal:')),
      'hub path includes the journal',
    );
    t.ok(
      labels.phone.some((l) => l.startsWith('phone-item-key:')),
      'phone path includes the item key',
    );

    // 2. crash at every point, both modes
    let schedules = 0;
    let caughtUp = 0;
    const failures: string[] = [];
    for (const side of ['hub', 'phone'] as const) {
      for (let at = 1; at <= counts[side]; at++) {
        for (const mode of ['kill', 'power-loss'] as CrashMode[]) {
          const c = new CrashController({ at, mode, delivery: 'throw' });
          const w = new World(p, fresh(side), { side, controller: c }, baseItems[side]);
          schedules += 1;
          try {
            await w.open();
            await w.workload();
            if (!c.fired) failures.push(`${side}@${at}/${mode}: crash never fired`);
            const problems = await w.verify();
            if (w.laggardCaughtUp) caughtUp += 1;
            for (const pr of problems)
              failures.push(`${side}@${at} (${labels[side][at - 1] ?? '?'})/${mode}: ${pr}`);
          } catch (e) {
            failures.push(`${side}@${at} (${labels[side][at - 1] ?? '?'})/${mode}: ${reasonOf(e)}`);
          }
          rmSync(w.root, { recursive: true, force: true });
        }
      }
    }
    t.comment(
      `crash suite: ${counts.hub} hub points + ${counts.phone} phone points, ${schedules} in-process schedules (kill + power-loss)`,
    );
    console.log(
      `# crash suite: ${counts.hub + counts.phone} points (hub ${counts.hub}, phone ${counts.phone}), ${schedules} schedules`,
    );
    t.same(failures, [], 'every schedule ends consistent');
    t.equal(caughtUp, 2 * counts.hub, 'after every hub crash the laggard caught up');
  },
);

void t.test('crash suite: real SIGKILLs in a child process', async (t) => {
  const p = await loadMlsProfile();
  const base = tempDir('vigil-crash-exit-');
  t.teardown(() => {
    rmSync(base, { recursive: true, force: true });
  });
  const baseItems = await pairedBase(p, join(base, 'base'), true);
  const child = fileURLToPath(new URL('./e2ee-crash-child.ts', import.meta.url));
  // Kill points: hub journal written, hub group file renamed, phone key renamed, phone state fsynced.
  const schedules: { side: Side; label: string; mode: CrashMode }[] = [
    { side: 'hub', label: 'mls-journal:fsynced', mode: 'kill' },
    { side: 'hub', label: 'mls-group-motion:renamed', mode: 'power-loss' },
    { side: 'phone', label: 'phone-item-key:renamed', mode: 'kill' },
    { side: 'phone', label: 'phone-group-motion:fsynced', mode: 'power-loss' },
  ];
  let round = 0;
  for (const s of schedules) {
    const dir = join(base, `run${round++}`);
    cpSync(join(base, 'base'), dir, { recursive: true });
    const proc = spawnProcess(process.execPath, ['--import', 'tsx', child, dir, s.side, s.label], {
      env: { ...process.env, VIGIL_CRASH_MODE: s.mode, VIGIL_CRASH_LABEL: s.label },
      stdout: 'pipe',
      stderr: 'pipe',
    });
    let out = '';
    proc.child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    proc.child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const res = await proc.exited;
    t.equal(
      res.signal,
      'SIGKILL',
      `${s.side} killed at ${s.label} (${s.mode}) ${res.signal === 'SIGKILL' ? '' : out.slice(-800)}`,
    );
    // Parent: reopen both sides from disk, rebuild the sink from the child's durable queue, continue.
    const w = new World(p, dir, undefined, baseItems);
    await w.open();
    const seqOf = (f: string): number => Number(f.split('.')[1] ?? 0);
    const files = readdirSync(join(dir, 'sink')).filter((f) => !f.endsWith('.payload'));
    for (const f of files.sort((a, b) => seqOf(a) - seqOf(b))) {
      const m = /^([0-9a-f]{32})\.(\d+)\.(part|final)$/.exec(f);
      if (m)
        await w.sink.append(m[1]!, 'clip', readFileSync(join(dir, 'sink', f)), m[3] === 'final');
    }
    for (const f of readdirSync(join(dir, 'sink')).filter((x) => x.endsWith('.payload'))) {
      w.payloads.set(f.slice(0, 32), readFileSync(join(dir, 'sink', f)));
    }
    // the phone finishes whatever the child left (the item is complete in the queue for phone kills)
    for (const id of w.sink.order) if (w.sink.items.get(id)?.final === true) await w.take(id);
    await w.workload();
    t.same(await w.verify(), [], `consistent after a real kill at ${s.label}`);
  }
});
