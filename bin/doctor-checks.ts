/**
 * `vigil doctor`'s checks: what this device has and what the hub would choose,
 * each a pass / warn / fail with a one-line hint. Everything goes through the
 * hw/ adapters (the V4L2 binding, the process runner with argv arrays, host
 * paths under one root); the tests replace only those lowest ports.
 *
 * Never a secret: no key, OTP value, passphrase or token is read or printed.
 * The JSON report (`DoctorReport`, format "vigil-doctor/1") is documented in
 * docs/doctor.md and stable: fields are added, never renamed or removed.
 */
import { access, readdir, readFile } from 'node:fs/promises';
import { networkCause, reasonOf } from '../base/errors.js';
import type { V4l2Binding } from '../hw/camera/v4l2-binding.js';
import { BUF_TYPE, FMT_FLAG } from '../hw/camera/v4l2-binding.js';
import { discoverCameras } from '../hw/camera/v4l2-camera.js';
import { isH264 } from '../hw/camera/camera.js';
import type { PixelFormatInfo } from '../hw/camera/camera.js';
import { isH264Encoder, parseFfmpegEncoders, selectEncoder } from '../hw/encoder/encoder.js';
import type { EncoderPreference, M2mDevice } from '../hw/encoder/encoder.js';
import { probeM2mDevices } from '../hw/encoder/v4l2-m2m.js';
import type { HostPaths } from '../hw/os/host-paths.js';
import { DATA_VOLUME_NAME } from '../protocol/data-volume.js';

export const DOCTOR_FORMAT = 'vigil-doctor/1';

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface CheckResult {
  /** Stable identifier (docs/doctor.md). */
  readonly id: string;
  readonly title: string;
  readonly status: CheckStatus;
  /** What was found, one line. */
  readonly summary: string;
  /** What to do about it, one line ('' when nothing). */
  readonly hint: string;
  /** Machine-readable facts (per check, documented). */
  readonly details: Readonly<Record<string, unknown>>;
}

export interface DoctorReport {
  readonly format: typeof DOCTOR_FORMAT;
  readonly generatedAt: string;
  readonly checks: readonly CheckResult[];
  readonly counts: Readonly<Record<CheckStatus, number>>;
}

/** The lowest ports: replace these (only these) in tests. */
export interface DoctorDeps {
  readonly binding: V4l2Binding;
  /** A system tool with an argv array (hw/os/run.ts); stdout, or a rejection. */
  readonly run: (command: string, args: readonly string[]) => Promise<string>;
  /** Every host path (device tree, /sys) under one root. */
  readonly paths: HostPaths;
  /** An HTTP GET with a timeout: the status code, or a rejection (unreachable). */
  readonly httpStatus: (url: string) => Promise<number>;
  readonly now: () => Date;
}

export interface DoctorSettings {
  readonly encoder: EncoderPreference;
  readonly dataDir: string;
  readonly minFreeMiB: number;
  readonly relayUrl: string | undefined;
  readonly otaUrl: string | undefined;
  /** A problem with the config file ('' when it loaded or was absent). */
  readonly configProblem: string;
  readonly configSource: string;
}

const check = (
  id: string,
  title: string,
  status: CheckStatus,
  summary: string,
  hint: string,
  details: Record<string, unknown> = {},
): CheckResult => ({ id, title, status, summary, hint, details });

async function hostText(deps: DoctorDeps, path: string): Promise<string | undefined> {
  try {
    return (await readFile(deps.paths.host(path), 'utf8')).replace(/\0/g, '').trim();
  } catch {
    return undefined;
  }
}

async function tool(deps: DoctorDeps, cmd: string, args: readonly string[]) {
  try {
    return { ok: true as const, out: await deps.run(cmd, args) };
  } catch (e) {
    return { ok: false as const, why: reasonOf(e).split('\n')[0] ?? '' };
  }
}

async function board(deps: DoctorDeps): Promise<CheckResult> {
  const model =
    (await hostText(deps, '/proc/device-tree/model')) ??
    (await hostText(deps, '/sys/class/dmi/id/product_name')) ??
    'unknown board';
  const k = await tool(deps, 'uname', ['-r']);
  const kernel = k.ok ? k.out.trim() : 'unknown';
  return check('board', 'Board and kernel', 'pass', `${model}, kernel ${kernel}`, '', {
    model,
    kernel,
  });
}

interface CameraInfo {
  readonly path: string;
  readonly driver: string;
  readonly card: string;
  readonly formats: readonly PixelFormatInfo[];
}

async function cameras(deps: DoctorDeps): Promise<CameraInfo[]> {
  const out: CameraInfo[] = [];
  for (const d of await discoverCameras(deps.binding).catch(() => [])) {
    const raw = await deps.binding
      .enumFormats(d.path, d.caps.multiplanar ? BUF_TYPE.captureMplane : BUF_TYPE.capture)
      .catch(() => []);
    out.push({
      path: d.path,
      driver: d.caps.driver,
      card: d.caps.card,
      formats: raw.map((f) => ({
        fourcc: f.fourcc,
        description: f.description,
        compressed: (f.flags & FMT_FLAG.compressed) !== 0,
        emulated: (f.flags & FMT_FLAG.emulated) !== 0,
        sizes: [],
      })),
    });
  }
  return out;
}

function cameraCheck(cams: readonly CameraInfo[]): CheckResult {
  const details = {
    cameras: cams.map((c) => ({
      path: c.path,
      driver: c.driver,
      card: c.card,
      formats: c.formats.map((f) => f.fourcc),
      h264: c.formats.some((f) => isH264(f.fourcc) && !f.emulated),
    })),
  };
  if (cams.length === 0)
    return check(
      'camera',
      'Camera',
      'fail',
      'no V4L2 camera found',
      'connect the camera and check `ls /dev/video*` (and the camera overlay in config.txt)',
      details,
    );
  const first = details.cameras[0];
  return check(
    'camera',
    'Camera',
    'pass',
    `${cams.length} camera(s); ${first?.path ?? ''} (${first?.driver ?? ''}) offers ${first?.formats.join(', ') || 'no formats'}${first?.h264 === true ? ' (H.264)' : ''}`,
    '',
    details,
  );
}

function m2mCheck(m2m: readonly M2mDevice[]): CheckResult {
  const encoders = m2m.filter(isH264Encoder);
  const details = {
    devices: m2m.map((d) => ({
      path: d.path,
      driver: d.driver,
      h264Encoder: isH264Encoder(d),
      outputFormats: d.outputFormats,
      captureFormats: d.captureFormats,
    })),
  };
  if (encoders.length > 0)
    return check(
      'm2m',
      'Hardware encoders (V4L2 M2M)',
      'pass',
      `H.264 encoder ${encoders.map((e) => `${e.path} (${e.driver})`).join(', ')}`,
      '',
      details,
    );
  return check(
    'm2m',
    'Hardware encoders (V4L2 M2M)',
    'warn',
    m2m.length === 0
      ? 'no memory-to-memory device'
      : `no H.264 encoder among ${m2m.length} M2M device(s)`,
    'without one the hub encodes in software (more CPU); on a Pi use the Raspberry Pi kernel (bcm2835-codec)',
    details,
  );
}

async function encoderCheck(
  deps: DoctorDeps,
  s: DoctorSettings,
  cams: readonly CameraInfo[],
  m2m: readonly M2mDevice[],
): Promise<CheckResult> {
  const cam = cams[0];
  if (!cam)
    return check('encoder', 'Encoder path', 'fail', 'no camera: nothing to encode', '', {
      path: null,
    });
  const ff = await tool(deps, 'ffmpeg', ['-hide_banner', '-encoders']);
  const encoders = ff.ok ? parseFfmpegEncoders(ff.out) : new Set<string>();
  try {
    const choice = selectEncoder(
      {
        camera: { id: cam.path, kind: 'v4l2', formats: cam.formats },
        m2m,
        ffmpegEncoders: encoders,
      },
      s.encoder,
    );
    const details = {
      path: choice.path,
      device: choice.device ?? null,
      inputPixelFormat: choice.inputPixelFormat,
      reason: choice.reason,
      rejected: choice.rejected,
      preference: s.encoder,
      ffmpeg: ff.ok,
    };
    return check(
      'encoder',
      'Encoder path',
      choice.path === 'software' ? 'warn' : 'pass',
      `${choice.path}: ${choice.reason}`,
      choice.path === 'software'
        ? choice.rejected.map((r) => `${r.path}: ${r.why}`).join('; ') ||
            'software encoding costs CPU'
        : '',
      details,
    );
  } catch (e) {
    return check(
      'encoder',
      'Encoder path',
      'fail',
      reasonOf(e),
      ff.ok ? 'check camera.encoder in the config' : 'install ffmpeg (the hub needs it)',
      { path: null, preference: s.encoder, ffmpeg: ff.ok },
    );
  }
}

async function keySource(deps: DoctorDeps): Promise<CheckResult> {
  // Only whether a source is there, never its value.
  const vcmailbox = await tool(deps, 'which', ['vcmailbox']);
  const serial = await hostText(deps, '/proc/device-tree/serial-number');
  const source = vcmailbox.ok ? 'otp' : serial !== undefined ? 'board-serial' : null;
  const details = { source, vcmailbox: vcmailbox.ok, boardSerial: serial !== undefined };
  if (source === 'otp')
    return check('key-source', 'Storage key source', 'pass', 'OTP through vcmailbox', '', details);
  if (source === 'board-serial')
    return check(
      'key-source',
      'Storage key source',
      'warn',
      'board serial only (weaker than OTP)',
      'install raspi-utils (vcmailbox) to derive the key from the OTP',
      details,
    );
  return check(
    'key-source',
    'Storage key source',
    'warn',
    'no OTP and no board serial',
    'the volume unlocks only from a phone, the recovery key or a development key file',
    details,
  );
}

async function tryboot(deps: DoctorDeps): Promise<CheckResult> {
  // the node ota/rauc-backend.ts (PiFirmware) reads: present only when the Pi firmware booted us
  const node = await access(deps.paths.host('/proc/device-tree/chosen/bootloader')).then(
    () => true,
    () => false,
  );
  if (node)
    return check(
      'tryboot',
      'A/B boot (tryboot)',
      'pass',
      'Raspberry Pi bootloader: tryboot A/B slots supported',
      '',
      { supported: true },
    );
  return check(
    'tryboot',
    'A/B boot (tryboot)',
    'warn',
    'no Raspberry Pi bootloader: no tryboot',
    'updates use the app slots only (normal off a Pi)',
    { supported: false },
  );
}

/** "Supported interface modes" of `iw list`: does any phy offer AP? */
export function apModeOf(iwList: string): boolean {
  const m = /Supported interface modes:\n((?:\s+\* .+\n?)+)/.exec(iwList);
  return m !== null && /^\s+\* AP$/m.test(m[1] ?? '');
}

async function wifiAp(deps: DoctorDeps): Promise<CheckResult> {
  const iw = await tool(deps, 'iw', ['list']);
  if (!iw.ok)
    return check(
      'wifi-ap',
      'Wi-Fi hotspot (AP mode)',
      'fail',
      `iw list failed: ${iw.why}`,
      'install iw and check the Wi-Fi adapter',
      { ap: false },
    );
  const phys = (iw.out.match(/^Wiphy /gm) ?? []).length;
  const ap = apModeOf(iw.out);
  return ap
    ? check(
        'wifi-ap',
        'Wi-Fi hotspot (AP mode)',
        'pass',
        `AP mode supported (${phys} radio(s))`,
        '',
        { ap, phys },
      )
    : check(
        'wifi-ap',
        'Wi-Fi hotspot (AP mode)',
        'fail',
        phys === 0 ? 'no Wi-Fi radio' : 'no radio offers AP mode',
        'pairing needs a hotspot: use an adapter with AP mode',
        { ap, phys },
      );
}

interface LsblkNode {
  name?: string;
  fstype?: string | null;
  type?: string;
  mountpoint?: string | null;
  children?: LsblkNode[];
}

/**
 * Where the data volume is mounted in another process's mount namespace. The hub unit runs
 * with its own (ProtectSystem=full): its mount of the volume does not show in the caller's
 * namespace, so lsblk sees the mapping open but unmounted while the hub uses it.
 */
async function mountedElsewhere(
  paths: HostPaths,
): Promise<{ readonly pid: string; readonly at: string } | null> {
  const source = `/dev/mapper/${DATA_VOLUME_NAME}`;
  const pids = await readdir(paths.host('/proc')).catch(() => [] as string[]);
  for (const pid of pids.filter((p) => /^\d+$/.test(p))) {
    const info = await readFile(paths.host(`/proc/${pid}/mountinfo`), 'utf8').catch(() => '');
    for (const line of info.split('\n')) {
      // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
      const [left, right] = line.split(' - ');
      const at = left?.split(' ')[4];
      if (right?.split(' ')[1] === source && at !== undefined) return { pid, at };
    }
  }
  return null;
}

async function luks(deps: DoctorDeps, s: DoctorSettings): Promise<CheckResult> {
  const r = await tool(deps, 'lsblk', ['--json', '-o', 'NAME,FSTYPE,TYPE,MOUNTPOINT']);
  if (!r.ok)
    return check('luks', 'Encrypted data volume', 'fail', `lsblk failed: ${r.why}`, '', {
      state: 'unknown',
    });
  const all: LsblkNode[] = [];
  const walk = (ns: readonly LsblkNode[] | undefined): void => {
    for (const n of ns ?? []) {
      all.push(n);
      walk(n.children);
    }
  };
  try {
    walk((JSON.parse(r.out) as { blockdevices?: LsblkNode[] }).blockdevices);
  } catch {
    return check('luks', 'Encrypted data volume', 'fail', 'lsblk gave no JSON', '', {
      state: 'unknown',
    });
  }
  const containers = all.filter((n) => n.fstype === 'crypto_LUKS').map((n) => n.name ?? '?');
  const mapping = all.find((n) => n.type === 'crypt' && n.name === DATA_VOLUME_NAME);
  const mountedAt =
    mapping === undefined
      ? null
      : (mapping.mountpoint ?? (await mountedElsewhere(deps.paths))?.at ?? null);
  const state = mapping
    ? mountedAt !== null
      ? 'open-mounted'
      : 'open'
    : containers.length > 0
      ? 'locked'
      : 'absent';
  const details = {
    state,
    containers,
    mapping: mapping ? DATA_VOLUME_NAME : null,
    mountedAt,
    dataDir: s.dataDir,
  };
  switch (state) {
    case 'open-mounted':
      return check(
        'luks',
        'Encrypted data volume',
        'pass',
        `LUKS volume open, mounted at ${mountedAt ?? ''}`,
        '',
        details,
      );
    case 'open':
      return check(
        'luks',
        'Encrypted data volume',
        'warn',
        'LUKS volume open but not mounted',
        'the hub mounts it when it starts; vigil storage status shows more',
        details,
      );
    case 'locked':
      return check(
        'luks',
        'Encrypted data volume',
        'warn',
        `LUKS volume locked (${containers.join(', ')})`,
        'vigil storage unlock (or unlock from the paired phone)',
        details,
      );
    case 'absent':
      return check(
        'luks',
        'Encrypted data volume',
        'fail',
        'no LUKS volume',
        'first boot creates it on the data partition (docs/storage.md)',
        details,
      );
  }
}

async function freeSpace(deps: DoctorDeps, s: DoctorSettings): Promise<CheckResult> {
  let target = deps.paths.host(s.dataDir);
  let r = await tool(deps, 'df', ['-P', '-B1', target]);
  // the data directory is no mount here but the volume is mounted there in the hub unit's
  // own mount namespace: its free space, seen through that process's root
  const mountedAt = r.ok ? r.out.trim().split('\n').at(-1)?.trim().split(/\s+/)[5] : undefined;
  if (mountedAt !== s.dataDir) {
    const there = await mountedElsewhere(deps.paths);
    if (there?.at === s.dataDir) {
      const via = deps.paths.host(`/proc/${there.pid}/root${s.dataDir}`);
      const r2 = await tool(deps, 'df', ['-P', '-B1', via]);
      if (r2.ok) r = r2;
    }
  }
  if (!r.ok) {
    target = deps.paths.host('/');
    r = await tool(deps, 'df', ['-P', '-B1', target]);
  }
  if (!r.ok) return check('free-space', 'Free space', 'fail', `df failed: ${r.why}`, '', {});
  const cols = r.out.trim().split('\n').at(-1)?.trim().split(/\s+/) ?? [];
  const size = Number(cols[1]);
  const avail = Number(cols[3]);
  if (!Number.isFinite(avail) || !Number.isFinite(size))
    return check('free-space', 'Free space', 'fail', 'df output not understood', '', {});
  const mib = Math.floor(avail / 1048576);
  const details = { path: target, freeBytes: avail, sizeBytes: size, minFreeMiB: s.minFreeMiB };
  const line = `${mib} MiB free of ${Math.floor(size / 1048576)} MiB at ${target}`;
  if (mib < s.minFreeMiB / 8)
    return check(
      'free-space',
      'Free space',
      'fail',
      line,
      'retention is deleting undelivered clips: free space or use a larger card',
      details,
    );
  if (mib < s.minFreeMiB)
    return check(
      'free-space',
      'Free space',
      'warn',
      line,
      `below retention.minFreeMiB (${s.minFreeMiB}): old clips go first`,
      details,
    );
  return check('free-space', 'Free space', 'pass', line, '', details);
}

/** fetch says only "fetch failed": name the network cause beside it (ECONNREFUSED, ENOTFOUND, ...). */
function unreachableWhy(e: unknown): string {
  const first = reasonOf(e).split('\n')[0] ?? '';
  const cause = networkCause(e);
  return cause === undefined || first.includes(cause) ? first : `${first} (${cause})`;
}

async function reach(
  deps: DoctorDeps,
  id: string,
  title: string,
  url: string | undefined,
  what: string,
): Promise<CheckResult> {
  if (url === undefined)
    return check(
      id,
      title,
      'warn',
      `no ${what} configured`,
      `set it in the config or the provisioning bundle`,
      { url: null, reachable: false },
    );
  try {
    const status = await deps.httpStatus(url);
    return check(id, title, 'pass', `${url} answers (HTTP ${status})`, '', {
      url,
      reachable: true,
      httpStatus: status,
    });
  } catch (e) {
    return check(
      id,
      title,
      'fail',
      `${url} unreachable: ${unreachableWhy(e)}`,
      'check the network, DNS and the URL',
      { url, reachable: false, cause: networkCause(e) ?? null },
    );
  }
}

async function clock(deps: DoctorDeps): Promise<CheckResult> {
  const r = await tool(deps, 'timedatectl', ['show', '-p', 'NTPSynchronized', '--value']);
  const now = deps.now().toISOString();
  if (!r.ok)
    return check(
      'clock',
      'Clock sync',
      'warn',
      `unknown (timedatectl: ${r.why}); clock says ${now}`,
      'without NTP, clip times and TLS may be wrong',
      { synchronized: null, now },
    );
  const synced = r.out.trim() === 'yes';
  return synced
    ? check('clock', 'Clock sync', 'pass', `synchronized (NTP); ${now}`, '', {
        synchronized: true,
        now,
      })
    : check(
        'clock',
        'Clock sync',
        'warn',
        `not synchronized; clock says ${now}`,
        'check systemd-timesyncd and the network',
        { synchronized: false, now },
      );
}

function configCheck(s: DoctorSettings): CheckResult {
  if (s.configProblem !== '')
    return check(
      'config',
      'Configuration',
      'fail',
      s.configProblem,
      'fix the fields named (docs/config.example.jsonc)',
      { source: s.configSource },
    );
  return check('config', 'Configuration', 'pass', s.configSource, '', {
    source: s.configSource,
  });
}

/** Run every check. Independent checks run one after another (the device is small). */
export async function runDoctor(deps: DoctorDeps, s: DoctorSettings): Promise<DoctorReport> {
  const cams = await cameras(deps);
  const m2m = await probeM2mDevices(deps.binding).catch(() => []);
  const checks = [
    configCheck(s),
    await board(deps),
    cameraCheck(cams),
    m2mCheck(m2m),
    await encoderCheck(deps, s, cams, m2m),
    await keySource(deps),
    await tryboot(deps),
    await wifiAp(deps),
    await luks(deps, s),
    await freeSpace(deps, s),
    await reach(deps, 'relay', 'Relay reachable', s.relayUrl, 'relay'),
    await reach(deps, 'ota', 'Update server reachable', s.otaUrl, 'update repository'),
    await clock(deps),
  ];
  const counts = { pass: 0, warn: 0, fail: 0 };
  for (const c of checks) counts[c.status]++;
  return { format: DOCTOR_FORMAT, generatedAt: deps.now().toISOString(), checks, counts };
}

/** The human form: one line per check, hints indented under it. */
export function formatReport(r: DoctorReport): string {
  const mark: Record<CheckStatus, string> = { pass: 'PASS', warn: 'WARN', fail: 'FAIL' };
  const lines: string[] = [];
  for (const c of r.checks) {
    lines.push(`${mark[c.status]}  ${c.title.padEnd(30)} ${c.summary}`);
    if (c.hint !== '') lines.push(`      ${''.padEnd(30)} -> ${c.hint}`);
  }
  lines.push('', `${r.counts.pass} pass, ${r.counts.warn} warn, ${r.counts.fail} fail`);
  return lines.join('\n') + '\n';
}
