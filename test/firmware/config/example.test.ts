/**
 * docs/config.example.jsonc against the real parser: it parses, it names every
 * field the schema has (a new field without an example fails here), and every
 * field has a comment above it.
 */
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { configSchema, parseConfig } from '../../../firmware/config/config.js';

const FILE = new URL('../../../docs/config.example.jsonc', import.meta.url);

interface Def {
  readonly type: string;
  readonly shape?: Record<string, { _zod: { def: Def } }>;
  readonly innerType?: { _zod: { def: Def } };
  readonly element?: { _zod: { def: Def } };
}

/** Every field path of a zod schema ("camera.width", "motion.masks[].x"). */
function schemaPaths(def: Def, prefix: string, out: Set<string>): void {
  switch (def.type) {
    case 'default':
    case 'optional':
      if (def.innerType) schemaPaths(def.innerType._zod.def, prefix, out);
      return;
    case 'object':
      for (const [k, v] of Object.entries(def.shape ?? {})) {
        const p = prefix === '' ? k : `${prefix}.${k}`;
        out.add(p);
        schemaPaths(v._zod.def, p, out);
      }
      return;
    case 'array':
      if (def.element) schemaPaths(def.element._zod.def, `${prefix}[]`, out);
      return;
    default:
      return;
  }
}

/** Every field path of the example (arrays: their first element). */
function valuePaths(v: unknown, prefix: string, out: Set<string>, record: Set<string>): void {
  if (Array.isArray(v)) {
    if (v.length > 0) valuePaths(v[0], `${prefix}[]`, out, record);
    return;
  }
  if (v === null || typeof v !== 'object' || record.has(prefix)) return;
  for (const [k, x] of Object.entries(v)) {
    const p = prefix === '' ? k : `${prefix}.${k}`;
    out.add(p);
    valuePaths(x, p, out, record);
  }
}

void t.test('the example config parses and shows every field, each commented', async (t) => {
  const text = await readFile(FILE, 'utf8');
  const lines = text.split('\n');
  const json = lines.filter((l) => !/^\s*\/\//.test(l)).join('\n');
  const value = JSON.parse(json) as unknown;
  const parsed = parseConfig(value, 'docs/config.example.jsonc');
  t.equal(parsed.deviceName, 'Front door', 'the real parser accepts it');

  const want = new Set<string>();
  schemaPaths((configSchema as unknown as { _zod: { def: Def } })._zod.def, '', want);
  t.ok(want.size > 50, `the schema walk finds the fields (${want.size})`);
  const have = new Set<string>();
  valuePaths(value, '', have, new Set(['children[].env']));
  t.same(
    [...want].filter((p) => !have.has(p)),
    [],
    'every schema field appears in the example',
  );
  t.same(
    [...have].filter((p) => !want.has(p)),
    [],
    'nothing in the example the schema lacks',
  );

  for (const [i, line] of lines.entries()) {
    if (!/^\s*("[A-Za-z]+":|\{ ")/.test(line)) continue;
    if (/^\s*"[A-Z_]+":/.test(line)) continue; // an env variable inside children[].env
    t.match(lines[i - 1] ?? '', /^\s*\/\/ /, `line ${i + 1} has a comment above: ${line.trim()}`);
  }
});
