/**
 * openmls-wasm 0.1.0 as a benchmark peer: its own create / add / join and
 * application messages (it cannot persist state or use PSKs, so it is not
 * usable for Vigil itself). The package targets bundlers; in Node we
 * instantiate the .wasm by hand and hand its exports to the JS glue.
 * Run: npx tsx bench/mls-openmls.ts
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { randomBytes, webcrypto } from 'node:crypto';

interface OpenMls {
  Provider: new () => object;
  Identity: new (provider: object, name: string) => { key_package(p: object): object };
  Group: {
    create_new(p: object, founder: object, id: string): OpenMlsGroup;
    join(p: object, welcome: Uint8Array, tree: object): OpenMlsGroup;
  };
}
interface OpenMlsGroup {
  export_ratchet_tree(): object;
  propose_and_commit_add(
    p: object,
    sender: object,
    kp: object,
  ): { commit: Uint8Array; welcome: Uint8Array; proposal: Uint8Array };
  merge_pending_commit(p: object): void;
  create_message(p: object, sender: object, msg: Uint8Array): Uint8Array;
  process_message(p: object, msg: Uint8Array): Uint8Array;
  export_key(p: object, label: string, ctx: Uint8Array, len: number): Uint8Array;
}

async function loadOpenMls(): Promise<OpenMls> {
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('openmls-wasm/package.json'));
  // The glue expects a browser-like `crypto.getRandomValues` on globalThis.
  (globalThis as { crypto?: unknown }).crypto ??= webcrypto;
  const glue = (await import(join(dir, 'openmls_wasm_bg.js'))) as Record<string, unknown> & {
    __wbg_set_wasm(w: unknown): void;
  };
  const bytes = readFileSync(join(dir, 'openmls_wasm_bg.wasm'));
  const { instance } = await WebAssembly.instantiate(bytes, {
    './openmls_wasm_bg.js': glue as WebAssembly.ModuleImports,
  });
  glue.__wbg_set_wasm(instance.exports);
  const start = instance.exports.__wbindgen_start as (() => void) | undefined;
  start?.();
  return glue as unknown as OpenMls;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

const m = await loadOpenMls();
const setups: number[] = [];
let alice!: OpenMlsGroup;
let bob!: OpenMlsGroup;
let provA!: object;
let provB!: object;
let idA!: object;
for (let i = 0; i < 10; i++) {
  const t0 = performance.now();
  provA = new m.Provider();
  provB = new m.Provider();
  idA = new m.Identity(provA, 'alice');
  const idB = new m.Identity(provB, 'bob');
  alice = m.Group.create_new(provA, idA, `g${i}`);
  const add = alice.propose_and_commit_add(provA, idA, idB.key_package(provB));
  alice.merge_pending_commit(provA);
  bob = m.Group.join(provB, add.welcome, alice.export_ratchet_tree());
  setups.push(performance.now() - t0);
}
const ka = alice.export_key(provA, 'vigil', new Uint8Array(0), 32);
const kb = bob.export_key(provB, 'vigil', new Uint8Array(0), 32);
if (Buffer.from(ka).toString('hex') !== Buffer.from(kb).toString('hex'))
  throw new Error('openmls exporters disagree');
console.log(
  `openmls-wasm 0.1.0 (its fixed built-in suite, not selectable from JS): create + add + join median ${median(setups).toFixed(1)} ms`,
);

const item = randomBytes(5 * 1024 * 1024);
const msgs: Uint8Array[] = [];
const s = performance.now();
for (let off = 0; off < item.length; off += 64 * 1024)
  msgs.push(alice.create_message(provA, idA, item.subarray(off, off + 64 * 1024)));
const enc = performance.now() - s;
const r = performance.now();
let n = 0;
for (const msg of msgs) n += bob.process_message(provB, msg).length;
const dec = performance.now() - r;
if (n !== item.length) throw new Error(`openmls delivered ${n} of ${item.length} bytes`);
const mb = item.length / 1024 / 1024;
console.log(
  `openmls-wasm application messages (64 KiB): send ${(mb / (enc / 1000)).toFixed(1)} MiB/s, receive ${(mb / (dec / 1000)).toFixed(1)} MiB/s`,
);
