import t from 'tap';
import { canonicalize as theirs } from '@tufjs/canonical-json';
import { canonicalBytes, canonicalize } from '../../ota/canonical-json.js';

t.test('matches the OLPC canonical form used by tuf-js', async (tt) => {
  const cases: unknown[] = [
    { b: 1, a: [true, false, null], c: { z: 'x', y: '"quoted" \\ back' } },
    { é: 'ünïcode ✓', A: 'upper', a: 'lower', _type: 'root' },
    [],
    {},
    'line\nbreak and \t tab',
    -42,
  ];
  for (const c of cases) tt.equal(canonicalize(c), theirs(c), JSON.stringify(c));
  tt.equal(canonicalize({ b: 2, a: 1 }), '{"a":1,"b":2}');
  tt.same(canonicalBytes('é'), Buffer.from('"é"', 'utf8'));
  tt.equal(canonicalize({ a: undefined, b: 1 }), '{"b":1}', 'undefined members are skipped');
});

t.test('refuses what canonical JSON cannot express', async (tt) => {
  tt.throws(() => canonicalize(1.5), /integers only/);
  tt.throws(() => canonicalize({ f: () => 1 }), /cannot encode/);
  let deep: unknown = 1;
  for (let i = 0; i < 70; i++) deep = [deep];
  tt.throws(() => canonicalize(deep), /nested too deeply/);
});
