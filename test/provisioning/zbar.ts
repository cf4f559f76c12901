/** Test helper: decode QR codes with Debian's zbarimg (an independent decoder). */
import { run } from '../../hw/os/run.js';

const ARGS = ['-q', '--raw', '-Sdisable', '-Sqrcode.enable'];

async function zbar(files: readonly string[]): Promise<string[]> {
  const r = await run('zbarimg', [...ARGS, ...files], { okExitCodes: [0, 4], timeoutMs: 120_000 });
  return r.stdout
    .toString('utf8')
    .split('\n')
    .filter((l) => l !== '');
}

/**
 * One decoded payload per input file, in file order ('' when a file had no
 * code). One zbarimg run for all files (it prints codes in input order); if the
 * count does not match, file by file so the caller sees which one failed.
 */
export async function zbarDecode(files: readonly string[]): Promise<string[]> {
  const all = await zbar(files);
  if (all.length === files.length) return all;
  const out: string[] = [];
  for (const f of files) out.push((await zbar([f])).join('|'));
  return out;
}
