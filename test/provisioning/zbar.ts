/** Test helper: decode QR codes with Debian's zbarimg (an independent decoder). */
import { run } from '../../hw/os/run.js';

/** One decoded payload per input file, in file order ('' when a file had no code). */
export async function zbarDecode(files: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  // zbarimg prints codes in input order; one call per file keeps the mapping exact.
  for (let i = 0; i < files.length; i += 1) {
    const f = files[i]!;
    const r = await run('zbarimg', ['-q', '--raw', '-Sdisable', '-Sqrcode.enable', f], {
      okExitCodes: [0, 4],
      timeoutMs: 30_000,
    });
    out.push(r.stdout.toString('utf8').trim());
  }
  return out;
}
