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
