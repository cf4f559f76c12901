import t from 'tap';
import { ProgressBar } from '../../provisioning/progress.js';

void t.test('redraws at most once per percent and ends with a newline', async (t) => {
  const out: string[] = [];
  const bar = new ProgressBar((s) => out.push(s), 1000, 'devices', 10);
  for (let i = 1; i <= 1000; i++) bar.update(i);
  bar.finish();
  bar.update(5);
  t.equal(out.length, 101 + 1, 'one draw per percent 0..100, plus the newline (100% not redrawn)');
  t.equal(out.at(-1), '\n');
  t.equal(out.at(-2), '\r[##########] 100% 1000/1000 devices');
  t.equal(bar.render(250), '[###.......]  25%  250/1000 devices');
  t.equal(new ProgressBar(() => undefined, 0, 'x', 4).render(0), '[####] 100% 0/0 x');
});
