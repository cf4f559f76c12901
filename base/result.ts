/**
 * The one result type for decoders of untrusted bytes (docs/decisions.md,
 * "One decoder convention"). A decoder never throws for bad input: it returns
 * a failure with a literal `code` (what went wrong, for callers to switch on)
 * and a one-line `reason` (for the log or the user). Callers that must throw
 * do so at their boundary, with their own coded error (`unwrap`).
 */
export type Failure<C extends string = string> = {
  readonly ok: false;
  readonly code: C;
  readonly reason: string;
};
export type Ok<T> = { readonly ok: true; readonly value: T };
export type Result<T, C extends string = string> = Ok<T> | Failure<C>;

export function ok<T>(value: T): Ok<T> {
  return { ok: true, value };
}

export function fail<C extends string>(code: C, reason: string): Failure<C> {
  return { ok: false, code, reason };
}

/**
 * The value, or throw the error `toError` makes of the failure: the boundary
 * where a caller that cannot go on turns a result into an exception.
 */
export function unwrap<T, C extends string>(
  r: Result<T, C>,
  toError: (code: C, reason: string) => Error,
): T {
  if (r.ok) return r.value;
  throw toError(r.code, r.reason);
}
