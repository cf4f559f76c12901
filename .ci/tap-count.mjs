// Counts test cases in a TAP stream from tap 21 (or a flat TAP stream).
// In tap's output a file is a depth-0 point and each t.test() inside it a
// depth-1 point; a failing assertion fails its test case. A file (or a flat
// scenario) without subtests counts as one case, and a failed file whose cases
// all passed (crash, leak, timeout) counts as one extra failure: nothing hides.
import { Parser } from 'tap-parser';

export function createCounter(label) {
  const counts = { pass: 0, fail: 0, failures: [] };
  const tally = (ok, what) => {
    if (ok) counts.pass++;
    else {
      counts.fail++;
      counts.failures.push(`${label}: ${what}`);
    }
  };
  const parser = new Parser({ bail: false, passes: true });
  let fileCases = { pass: 0, fail: 0 };
  parser.on('child', (file) => {
    fileCases = { pass: 0, fail: 0 };
    const cases = fileCases;
    file.on('assert', (a) => {
      if (a.skip || a.todo) return;
      if (a.ok) cases.pass++;
      else cases.fail++;
      tally(a.ok, `${file.name ?? ''} > ${a.name}`);
    });
  });
  parser.on('assert', (a) => {
    if (a.skip || a.todo) return;
    const cases = fileCases;
    fileCases = { pass: 0, fail: 0 };
    if (cases.pass + cases.fail === 0) tally(a.ok, a.name);
    else if (!a.ok && cases.fail === 0) tally(false, `${a.name} (failed outside its test cases)`);
  });
  return { parser, counts };
}
