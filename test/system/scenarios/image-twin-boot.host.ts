// The image area's amd64 twin boots in qemu exactly as built: its own kernel and initrd from
// its boot partition, its own root by PARTUUID, systemd, the first-boot data-partition growth
// and the Vigil supervisor; the twin's report unit (vigil.report=1) prints the hub state and
// the hotspot state on the console (VIGIL-TWIN lines).
// Then, in the same boot, journey 1 (issue #16): the card was provisioned by the factory code
// with a relay URL (provisionBatch --relay, then provisionImage); the twin-only journey hook
// (vigil.journey=1, a tar of _twin-setup.sh, _twin-journey.sh, gpio-mockup.ko and the test
// board's hub config on a virtio disk with serial "vigil-journey") puts a phone, the home
// router and a real `vigil relay` in network namespaces of the twin: the phone pairs with the
// label's QR payload over the hotspot, the hub joins HomeNet by DHCP and meets the phone at the
// relay; the PIR line (gpio-mockup) goes high, the hub records a vivid clip, the phone lists,
// downloads and decrypts it and ffprobe reads it (VIGIL-JOURNEY lines).
// Uses image/out/qemu-amd64-ci/build-1 (CI's image step) or image/out/qemu-amd64, building the
// twin when neither exists and VIGIL_IMAGE_CI=1 or VIGIL_TWIN_BUILD=1 (else it is reported as SKIP).
// VIGIL_TWIN_IMAGE=path picks another image. The journey is walked by default (CI);
// VIGIL_TWIN_JOURNEY=0 ends the boot at the report (a quicker check of the boot alone).
// Both check the report unit's `vigil doctor --json` (VIGIL-DOCTOR line): vivid found, the
// software encoder chosen, the LUKS volume open and mounted, a radio with AP mode.
// Pass: the supervisor reached the pairing state with hostapd up on a hwsim radio, after opening
// LUKS on the data partition and moving the provisioned bundle into it; and the journey ended
// with result=ok (an H.264 clip, PIR-triggered, decrypted by the phone).
// @timeout 3600
import { copyFile, access, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfig } from '../../../firmware/config/config.js';
import { run } from '../../../hw/os/run.js';
import { boardOf } from '../../../image/boards.js';
import { buildImage, findRepo } from '../../../image/build.js';
import { fatRead, mtoolsTarget, partitionNumbered, readTable } from '../../../image/disk.js';
import { readBundle } from '../../../protocol/provisioning-bundle.js';
import { encodeQrPayload } from '../../../protocol/qr-payload.js';
import { twinCard, twinImage as foundTwinImage } from '../lib/twin-card.js';
import type { GuestImage, HostScenario } from '../lib/types.js';

/** Where the journey's relay listens, as the hub sees it (link-local: plain http is allowed). */
const RELAY_URL = 'http://169.254.77.1:8080';
/** The PIR sensor's line on the twin's gpio-mockup chip. */
const PIR_LINE = 5;

/** `KEY=value` pairs of every console line starting with `prefix`. */
function reportOf(lines: readonly string[], prefix: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of lines) {
    const m = new RegExp(`${prefix} (.*)$`).exec(l);
    if (!m?.[1]) continue;
    for (const kv of m[1].split(' ')) {
      const i = kv.indexOf('=');
      if (i > 0) out.set(kv.slice(0, i), kv.slice(i + 1));
    }
  }
  return out;
}

/**
 * The journey disk: a tar archive on a raw virtio disk (the twin's setup unit unpacks it with
 * `tar -xf /dev/disk/by-id/virtio-vigil-journey`): the two driver scripts, gpio-mockup.ko
 * from the system-test guest (Debian's kernel does not ship it; built for the same release),
 * the test board's hub config, the label's QR payload, the relay URL and the PIR line.
 */
async function journeyDisk(
  workDir: string,
  guest: GuestImage,
  twinKernel: string,
  qr: string,
): Promise<string> {
  if (twinKernel !== guest.kernelRelease)
    throw new Error(
      `the twin runs kernel ${twinKernel}, the system-test guest's gpio-mockup.ko is for ${guest.kernelRelease}: rebuild one of them`,
    );
  const repo = await findRepo();
  const dir = join(workDir, 'journey');
  await mkdir(dir, { recursive: true });
  const scenarios = join(repo, 'test/system/scenarios');
  await copyFile(join(scenarios, '_twin-setup.sh'), join(dir, 'setup.sh'));
  await copyFile(join(scenarios, '_twin-journey.sh'), join(dir, 'journey.sh'));
  await run(
    'debugfs',
    [
      '-R',
      `dump /lib/modules/${guest.kernelRelease}/extra/gpio-mockup.ko ${join(dir, 'gpio-mockup.ko')}`,
      guest.rootfs,
    ],
    { timeoutMs: 60_000 },
  );
  await access(join(dir, 'gpio-mockup.ko'));
  // the test board's hub config: the twin's shipped one, plus what this board has (a small
  // vivid picture for an emulated CPU; a PIR sensor on the mockup chip as the only trigger,
  // so the clip can only come from the PIR line)
  const config = {
    ...boardOf('qemu-amd64').hubConfig,
    camera: {
      width: 320,
      height: 180,
      fps: 5,
      bitrateKbps: 300,
      encoder: 'software',
      preRollSeconds: 1,
      postRollSeconds: 2,
    },
    motion: {
      source: 'pir',
      pir: { chip: 'gpio-mockup-A', line: PIR_LINE, activeLow: false, debounceMs: 20 },
    },
  };
  parseConfig(config);
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  await writeFile(join(dir, 'qr.txt'), qr + '\n');
  await writeFile(join(dir, 'relay-url'), RELAY_URL + '\n');
  await writeFile(join(dir, 'pir-line'), `${PIR_LINE}\n`);
  const tar = join(workDir, 'journey.tar');
  // tar pads to 10 KiB records: a whole number of 512-byte sectors
  await run('tar', ['-cf', tar, '--owner=0', '--group=0', '-C', dir, '.'], { timeoutMs: 60_000 });
  return tar;
}

/**
 * Unpack the twin's diagnostics tar (journal, network state, the home router's and the relay's
 * logs) into `workDir/diagnostics`; says what there is, or why there is nothing.
 */
async function unpackDiagnostics(diskFile: string, workDir: string): Promise<string> {
  const dir = join(workDir, 'diagnostics');
  await mkdir(dir, { recursive: true });
  try {
    await run('tar', ['-xf', diskFile, '-C', dir], { timeoutMs: 60_000 });
  } catch (e) {
    return `none (the twin wrote no archive: ${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
  }
  const names = await readdir(dir);
  return names.length === 0 ? 'none (empty archive)' : `${dir} (${names.sort().join(', ')})`;
}

interface DoctorCheck {
  readonly id: string;
  readonly status: string;
  readonly summary?: string;
  readonly details?: Record<string, unknown>;
}

/**
 * The twin's `vigil doctor --json` report (the `VIGIL-DOCTOR` console line of the report unit,
 * run once the hub is pairing): what the product found and chose on the twin's hardware.
 * Returns the problems, one line each (empty: the report says what the twin is).
 */
export function doctorProblems(lines: readonly string[]): { problems: string[]; summary: string } {
  const line = lines.find((l) => l.includes('VIGIL-DOCTOR '));
  if (line === undefined) return { problems: ['no VIGIL-DOCTOR line on the console'], summary: '' };
  const text = line.slice(line.indexOf('VIGIL-DOCTOR ') + 'VIGIL-DOCTOR '.length);
  if (text.startsWith('error=')) return { problems: [`vigil doctor --json: ${text}`], summary: '' };
  let report: { format?: unknown; checks?: unknown };
  try {
    report = JSON.parse(text) as typeof report;
  } catch (e) {
    return {
      problems: [
        `the VIGIL-DOCTOR line is not JSON (${text.length} chars, ${e instanceof Error ? e.message : String(e)})`,
      ],
      summary: '',
    };
  }
  if (report.format !== 'vigil-doctor/1' || !Array.isArray(report.checks))
    return {
      problems: [`not a vigil-doctor/1 report: format ${String(report.format)}`],
      summary: '',
    };
  const checks = report.checks as DoctorCheck[];
  const by = new Map(checks.map((c) => [c.id, c]));
  const say = (c: DoctorCheck | undefined): string =>
    c === undefined ? 'absent' : `${c.status}: ${c.summary ?? ''}`;
  const problems: string[] = [];
  const camera = by.get('camera');
  const cameras = (camera?.details?.cameras ?? []) as { driver?: unknown }[];
  if (camera?.status !== 'pass' || !cameras.some((c) => c.driver === 'vivid'))
    problems.push(`camera: no vivid camera found (${say(camera)})`);
  const encoder = by.get('encoder');
  if (encoder?.details?.path !== 'software')
    problems.push(`encoder: the software path was not chosen (${say(encoder)})`);
  const luks = by.get('luks');
  if (luks?.details?.state !== 'open-mounted' || luks.status !== 'pass')
    problems.push(`luks: the data volume is not open and mounted (${say(luks)})`);
  const ap = by.get('wifi-ap');
  if (ap?.status !== 'pass' || ap.details?.ap !== true)
    problems.push(`wifi-ap: no radio with AP mode (${say(ap)})`);
  const summary = checks.map((c) => `${c.id}=${c.status}`).join(' ');
  return { problems, summary };
}

async function twinImage(log: (t: string) => void): Promise<string | undefined> {
  const found = await foundTwinImage();
  if (found !== undefined) return found;
  const repo = await findRepo();
  if (process.env.VIGIL_IMAGE_CI !== '1' && process.env.VIGIL_TWIN_BUILD !== '1') return undefined;
  log('no twin image yet: building one (vigil image build --board qemu-amd64)');
  const r = await buildImage({
    board: boardOf('qemu-amd64'),
    outDir: join(repo, 'image/out/qemu-amd64'),
    kernelSource: 'debian',
    sourceDateEpoch: Number(process.env.SOURCE_DATE_EPOCH ?? '1700000000'),
    compress: false,
    print: log,
    repo,
  });
  return r.image;
}

const scenario: HostScenario = async (h) => {
  const image = await twinImage(h.log);
  if (image === undefined) {
    // building the twin takes ~10 min: only CI's image step (default on) or an explicit
    // VIGIL_TWIN_BUILD=1 pays for it; otherwise this scenario has nothing to boot
    return {
      skip: 'no twin image (the CI image step builds one unless VIGIL_IMAGE_CI=0; or VIGIL_TWIN_BUILD=1, or vigil image build --board qemu-amd64)',
    };
  }
  h.log(`twin image: ${image}`);
  const table = await readTable(image);
  const boot = mtoolsTarget(image, partitionNumbered(table, 1, image));
  const { fatList } = await import('../../../image/disk.js');
  const files = await fatList(boot);
  const kernelName = files.find((f) => f.startsWith('vmlinuz-'));
  const initrdName = files.find((f) => f.startsWith('initrd.img-'));
  if (kernelName === undefined || initrdName === undefined) {
    throw new Error(`boot partition lacks kernel/initrd: ${files.join(', ')}`);
  }
  const kernel = join(h.workDir, kernelName);
  const initrd = join(h.workDir, initrdName);
  await writeFile(kernel, await fatRead(boot, kernelName));
  await writeFile(initrd, await fatRead(boot, initrdName));
  const cmdline = (await fatRead(boot, 'cmdline.txt')).toString('utf8').trim();
  // a card bigger than the image (the first boot must grow the data partition into it) with
  // one device, as the factory makes it (`vigil factory provision --relay URL`) and the image
  // step installs it (`vigil image provision`): without an identity the hub cannot open its MLS
  // group nor derive the hotspot's credentials; the relay is where it meets its phones
  const {
    card: disk,
    bundle,
    provisioned,
  } = await twinCard({
    image,
    workDir: h.workDir,
    grow: '512M',
    batchId: 'twin-boot',
    relayUrl: RELAY_URL,
  });
  const identity = await readBundle(bundle);
  if (identity === undefined) throw new Error(`no bundle in ${bundle}`);
  if (provisioned.services.relay !== RELAY_URL)
    throw new Error(`the provisioned card's relay is ${provisioned.services.relay ?? 'none'}`);
  const walk = process.env.VIGIL_TWIN_JOURNEY !== '0';
  const twinKernel = kernelName.slice('vmlinuz-'.length);
  let journey: Awaited<ReturnType<typeof journeyDisk>> | undefined;
  if (walk) {
    if (h.guest === undefined) throw new Error('no harness guest (gpio-mockup comes from it)');
    journey = await journeyDisk(h.workDir, h.guest, twinKernel, encodeQrPayload(identity));
  }
  // the journey's diagnostics (journal, addresses, routes, the home router's logs): a tar the
  // twin writes on this raw disk before its verdict, unpacked into workDir/diagnostics
  const diagDisk = join(h.workDir, 'diagnostics.tar');
  if (walk) await run('truncate', ['-s', '256M', diagDisk]);
  try {
    const r = await h.boot({
      kernel,
      initrd,
      append: `${cmdline} vigil.report=1${walk ? ' vigil.journey=1' : ''} panic=-1 systemd.show_status=1`,
      disks: [
        { file: disk, format: 'raw' },
        ...(journey !== undefined
          ? [
              { file: journey, format: 'raw' as const, readonly: true, serial: 'vigil-journey' },
              { file: diagDisk, format: 'raw' as const, serial: 'vigil-diag' },
            ]
          : []),
      ],
      memoryMiB: 2048,
      // the report unit waits up to 20 min for pairing, then up to 5 min for the doctor
      timeoutMs: walk ? 3_000_000 : 1_800_000,
      consoleLog: join(h.workDir, 'console.log'),
      doneLine: walk ? 'VIGIL-JOURNEY result=' : 'VIGIL-TWIN result=',
    });
    // unpacked first: a twin that never reaches the pairing state explains itself too
    const diagnostics = walk ? await unpackDiagnostics(diagDisk, h.workDir) : 'none';
    const twin = reportOf(r.lines, 'VIGIL-TWIN');
    if (!r.lines.some((l) => l.includes('Linux version')))
      throw new Error(`the twin's kernel did not start (${r.outcome})`);
    if (twin.size === 0) {
      const failed = r.lines
        .filter((l) => /Failed to start|FAILED|Kernel panic|emergency/i.test(l))
        .slice(0, 3);
      throw new Error(
        `no VIGIL-TWIN report on the console (${r.outcome}); ${failed.join(' | ') || 'no failure lines'}`,
      );
    }
    h.log(`twin report: ${[...twin].map(([k, v]) => `${k}=${v}`).join(' ')} (${r.wallMs} ms)`);
    if ((twin.get('state') ?? 'none') === 'none')
      throw new Error('the supervisor never wrote its status (vigil-hub not running?)');
    if (twin.get('machine-id') !== 'generated')
      throw new Error('systemd did not generate a machine-id on first boot');
    const grown = Number(twin.get('data-grown'));
    const before = table.partitions.find((p) => p.number === 7)?.size ?? 0;
    if (!(grown > before))
      throw new Error(
        `data partition not grown on first boot (${twin.get('data-grown') ?? '?'} sectors, image had ${before})`,
      );
    if (twin.get('data-volume') !== 'open')
      throw new Error('the hub did not open LUKS on the data partition (dev-keyfile key source)');
    if (twin.get('bundle-plaintext') !== 'gone')
      throw new Error('the plaintext provisioning bundle is still on the provisioning partition');
    if (twin.get('result') !== 'ok') {
      h.log(`diagnostics: ${diagnostics}`);
      throw new Error(
        `hub state ${twin.get('state') ?? '?'}, hostapd ${twin.get('hostapd') ?? '?'}, AP ${twin.get('ap') ?? '?'}: not pairing with a hotspot`,
      );
    }
    const doctor = doctorProblems(r.lines);
    if (doctor.problems.length > 0)
      throw new Error(`vigil doctor on the twin: ${doctor.problems.join('; ')}`);
    h.log(`vigil doctor: ${doctor.summary}`);
    if (!walk) {
      h.log('journey 1 not walked (VIGIL_TWIN_JOURNEY=0)');
      return undefined;
    }
    // journey 1: every step's time since the journey started, then its verdict
    for (const l of r.lines.filter((x) => x.includes('VIGIL-JOURNEY step=')))
      h.log(l.slice(l.indexOf('VIGIL-JOURNEY')));
    const result = r.lines.find((l) => l.includes('VIGIL-JOURNEY result='));
    const verdict = result?.slice(result.indexOf('VIGIL-JOURNEY result='));
    if (verdict !== undefined) h.log(`${verdict} (boot ${Math.round(r.wallMs / 1000)} s)`);
    const journeyReport = reportOf(verdict === undefined ? [] : [verdict], 'VIGIL-JOURNEY');
    if (journeyReport.get('result') !== 'ok') {
      // what the twin printed about its state at the failure, and where the rest is
      // (the console prefixes the journey's lines with the kernel time and "bash[pid]: ")
      for (const l of r.lines.map((x) => x.replace(/^\[[^\]]*\] \S+\[\d+\]: /, '')))
        if (/^\s+(hub|net|relay|home dhcp|phone|doctor)[^:]*: /.test(l)) h.log(l.trim());
      h.log(`diagnostics: ${diagnostics} (console: ${join(h.workDir, 'console.log')})`);
      throw new Error(
        verdict === undefined
          ? `the journey did not finish (${r.outcome})`
          : `journey 1: ${verdict.replace(/^VIGIL-JOURNEY result=fail reason=/, '')}`,
      );
    }
    if (journeyReport.get('codec') !== 'h264')
      throw new Error(`journey 1: the clip is ${journeyReport.get('codec') ?? '?'}, not H.264`);
  } finally {
    await rm(disk, { force: true });
    await rm(diagDisk, { force: true });
    await rm(join(h.workDir, 'batch'), { recursive: true, force: true });
  }
  return undefined;
};
export default scenario;
