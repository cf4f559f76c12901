/**
 * The one error base for Vigil. Subclasses carry a literal `code` so callers
 * switch on codes, never on messages. Always pass `{ cause }` when wrapping.
 */
export class VigilError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VigilError';
    this.code = code;
  }
}

/**
 * A VigilError whose `code` is one of a closed set of literals: the base of
 * every coded error family (`class ContainerError extends
 * CodedError<ContainerErrorCode> {}`). `name` is the subclass's own name.
 */
export class CodedError<C extends string> extends VigilError {
  declare readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = new.target.name;
  }
}

/** Input from outside (a file, a frame, an argument) failed validation. */
export class ValidationError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EVALIDATION', message, options);
    this.name = 'ValidationError';
  }
}

/** Render an unknown thrown value as a one-line reason. */
export function reasonOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** A system error code (ECONNREFUSED, ENOTFOUND, ...) says it all; others get their message. */
const ERRNO_CODE = /^E[A-Z0-9]+$/;

/**
 * What lies under a failed request ("request failed", "fetch failed" say nothing): the first error code on its
 * cause chain (or among an AggregateError's errors: one per address tried), with the message
 * when the code is not a system one (`CERT_HAS_EXPIRED: certificate has expired`); a timeout of
 * the request's own deadline is ETIMEDOUT. Undefined when there is no code to name.
 */
export function networkCause(err: unknown, depth = 0): string | undefined {
  if (!(err instanceof Error) || depth > 8) return undefined;
  if (err.name === 'TimeoutError') return 'ETIMEDOUT';
  // base/http.ts's "request failed" only wraps the socket's or TLS layer's error: name that
  if (err instanceof VigilError && err.code === 'EHTTP_FAILED')
    return networkCause(err.cause, depth + 1);
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code !== '')
    return ERRNO_CODE.test(code) ? code : `${code}: ${err.message.replace(/\s*\n\s*/g, ' ')}`;
  if (err instanceof AggregateError)
    for (const e of err.errors as unknown[]) {
      const c = networkCause(e, depth + 1);
      if (c !== undefined) return c;
    }
  return networkCause(err.cause, depth + 1);
}
