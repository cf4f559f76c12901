/**
 * The relay's one error type: an HTTP status, a stable code and a one-line
 * message, plus optional extra fields for the answer body (e.g. the upload
 * `status` a client resumes from).
 */
import { VigilError } from '../base/errors.js';

export class RelayError extends VigilError {
  readonly status: number;
  readonly extra: Readonly<Record<string, unknown>> | undefined;
  constructor(
    status: number,
    code: string,
    message: string,
    extra?: Readonly<Record<string, unknown>>,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'RelayError';
    this.status = status;
    this.extra = extra;
  }
}
