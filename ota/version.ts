/** Semantic version ordering for bundle versions (x.y.z with an optional pre-release). */

const RE = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$/;

export function isVersion(v: string): boolean {
  return RE.test(v);
}

function cmpIdent(a: string, b: string): number {
  const na = /^\d+$/.test(a);
  const nb = /^\d+$/.test(b);
  if (na && nb) return Math.sign(Number(a) - Number(b));
  if (na) return -1;
  if (nb) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** -1, 0 or 1. Throws on malformed input (callers validate at the boundary). */
export function compareVersions(a: string, b: string): number {
  const x = RE.exec(a);
  const y = RE.exec(b);
  if (!x || !y) throw new TypeError(`not a semantic version: ${!x ? a : b}`);
  for (let i = 1; i <= 3; i++) {
    const d = Math.sign(Number(x[i]) - Number(y[i]));
    if (d !== 0) return d;
  }
  const pa = x[4];
  const pb = y[4];
  if (pa === undefined && pb === undefined) return 0;
  if (pa === undefined) return 1;
  if (pb === undefined) return -1;
  const ia = pa.split('.');
  const ib = pb.split('.');
  for (let i = 0; i < Math.max(ia.length, ib.length); i++) {
    const s = ia[i];
    const t = ib[i];
    if (s === undefined) return -1;
    if (t === undefined) return 1;
    const d = cmpIdent(s, t);
    if (d !== 0) return d;
  }
  return 0;
}
