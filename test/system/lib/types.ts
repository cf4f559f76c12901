/** Shared types of the system-test harness (host side). See test/system/README.md. */

export type ScenarioKind = 'sh' | 'ts' | 'host';

export interface DiskSpec {
  /** Name in the guest: /dev/vt/<name>; also the virtio serial. */
  readonly name: string;
  readonly sizeMiB: number;
}

export interface ScenarioHeader {
  /** Guest seconds for one boot of this scenario. */
  readonly timeoutSec: number;
  readonly boots: number;
  /** boot number -> marker; the host SIGKILLs qemu when "VT-MARK <marker>" shows. */
  readonly killAt: ReadonlyMap<number, string>;
  readonly disks: readonly DiskSpec[];
  readonly group: string | undefined;
  readonly memoryMiB: number;
  /**
   * `@quarantine REASON`: not yet proven to pass; reported as SKIP with the reason
   * (never as a pass) unless VIGIL_SYSTEM_ALL=1 runs it anyway.
   */
  readonly quarantine: string | undefined;
  /**
   * `@beside` (host scenarios only): runs in a second lane, beside the rest of the suite
   * (which runs one scenario at a time), instead of after it; it starts at once (before the
   * harness's guest is built) and gets no `guest` or `stage2`.
   */
  readonly beside: boolean;
}

export interface Scenario {
  readonly name: string;
  readonly kind: ScenarioKind;
  /** Absolute path of the source file. */
  readonly file: string;
  readonly header: ScenarioHeader;
}

/** The cached guest: what a boot needs. */
export interface GuestImage {
  readonly dir: string;
  readonly kernel: string;
  readonly initrdBase: string;
  readonly rootfs: string;
  readonly kernelRelease: string;
}

export interface BootDisk {
  readonly file: string;
  /** virtio serial: the guest's stage 2 links /dev/vt/<serial>. Max 20 characters. */
  readonly serial?: string;
  readonly format?: 'raw' | 'qcow2';
  readonly readonly?: boolean;
  /** Writes go to a temporary overlay and are discarded (qemu snapshot=on). */
  readonly snapshot?: boolean;
}

export interface BootSpec {
  readonly kernel: string;
  readonly initrd?: string;
  readonly append: string;
  readonly disks: readonly BootDisk[];
  readonly memoryMiB?: number;
  readonly cpus?: number;
  readonly timeoutMs: number;
  /** Where the serial console is written (created/truncated). */
  readonly consoleLog: string;
  /** SIGKILL qemu (a power cut) as soon as a console line contains this text. */
  readonly killAtLine?: string;
  /** Stop qemu (outcome "done") as soon as a console line contains this text, e.g. "login:". */
  readonly doneLine?: string;
  /** Extra qemu arguments (e.g. a network device). */
  readonly extraArgs?: readonly string[];
  /** Called for every console line (without the line ending). */
  readonly onLine?: (line: string) => void;
  /** Listen on qemu's QMP socket and return its events (BootResult.events). */
  readonly qmpEvents?: boolean;
}

export interface BootResult {
  /**
   * exited: qemu ended by itself (guest powered off / rebooted / panicked);
   * killed: killAtLine seen; done: doneLine seen; timeout: timeoutMs passed.
   */
  readonly outcome: 'exited' | 'killed' | 'done' | 'timeout';
  readonly consoleLog: string;
  readonly lines: readonly string[];
  /**
   * With BootSpec.qmpEvents: qemu's events in order, `NAME {data}`, e.g.
   * `WATCHDOG {"action":"reset"}` or `SHUTDOWN {"guest":true,"reason":"guest-shutdown"}`.
   */
  readonly events: readonly string[];
  readonly wallMs: number;
}

export interface HostContext {
  /** The harness's guest; not for `@beside` scenarios (they start before it is built). */
  readonly guest?: GuestImage;
  /**
   * The harness's guest for a host scenario that boots it itself: the staged project disk
   * (mount it as serial "project": /vigil in the guest) and an initramfs whose stage 2 runs
   * `script` (a `_helper.sh` or `.ts` in scenarios/, like a guest scenario) on boot N of M.
   */
  readonly stage2?: {
    readonly projectImage: string;
    initrd(script: string, timeoutSec: number, boot: number, boots: number): Promise<string>;
  };
  /** A fresh directory for this scenario's files (under .cache/last-run/). */
  readonly workDir: string;
  readonly boot: (spec: BootSpec) => Promise<BootResult>;
  readonly log: (text: string) => void;
}

/** Default export of a `<area>-<name>.host.ts` scenario: resolve = pass, throw = fail. */
/** Resolve to pass; `{ skip }` when there is nothing to run here (reported as TAP SKIP, never as a pass). */
export type HostScenario = (h: HostContext) => Promise<{ readonly skip: string } | undefined>;

export interface ScenarioResult {
  readonly name: string;
  readonly ok: boolean;
  readonly reason?: string;
  /** Set when the scenario had nothing to run: TAP `# SKIP`, not counted as a pass. */
  readonly skip?: string;
  readonly ms: number;
  readonly consoleLogs: readonly string[];
  readonly log?: string;
}
