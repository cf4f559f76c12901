/**
 * Structured JSON-lines logging with a redaction layer. journald picks the
 * lines up from stdout. Secrets never reach the output: fields whose names look
 * secret are replaced, and any string value that contains a registered secret
 * (a key, a PSK, a Wi-Fi password) has it masked wherever it appears.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(namespace: string): Logger;
}

/** Field names whose values are always redacted, whatever they hold. */
const SECRET_KEY =
  /(pass(word|phrase)?|secret|psk|key(?!Id|_id|Package)|token|credential|private|seed|otp)/i;
const REDACTED = '[redacted]';

/**
 * Registry of secret values seen at runtime. Anything registered is masked out
 * of every log line, even when embedded in a message or an error string.
 */
export class SecretRegistry {
  #values = new Set<string>();

  add(secret: string | Uint8Array): void {
    if (typeof secret === 'string') {
      if (secret.length >= 4) this.#values.add(secret);
      return;
    }
    const b = Buffer.from(secret);
    if (b.length < 4) return;
    this.#values.add(b.toString('hex'));
    this.#values.add(b.toString('base64'));
    this.#values.add(b.toString('base64url'));
  }

  scrub(text: string): string {
    let out = text;
    for (const v of this.#values) if (out.includes(v)) out = out.split(v).join(REDACTED);
    return out;
  }
}

function redactValue(v: unknown, reg: SecretRegistry, depth: number): unknown {
  if (depth > 6) return '[depth]';
  if (typeof v === 'string') return reg.scrub(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return v;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return `[${v.length} bytes]`;
  if (v instanceof Error) {
    const o: Record<string, unknown> = { name: v.name, message: reg.scrub(v.message) };
    const code = (v as { code?: unknown }).code;
    if (typeof code === 'string') o.code = code;
    return o;
  }
  if (Array.isArray(v)) return v.slice(0, 50).map((x) => redactValue(x, reg, depth + 1));
  if (typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      o[k] = SECRET_KEY.test(k) ? REDACTED : redactValue(x, reg, depth + 1);
    }
    return o;
  }
  return `[${typeof v}]`;
}

export interface JsonLoggerOptions {
  readonly level?: LogLevel;
  readonly write?: (line: string) => void;
  readonly secrets?: SecretRegistry;
  readonly now?: () => Date;
}

export class JsonLogger implements Logger {
  readonly #ns: string;
  readonly #min: number;
  readonly #write: (line: string) => void;
  readonly #now: () => Date;
  readonly secrets: SecretRegistry;

  constructor(namespace = 'vigil', opts: JsonLoggerOptions = {}) {
    this.#ns = namespace;
    this.#min = LEVELS[opts.level ?? 'info'];
    this.#write =
      opts.write ??
      ((line) => {
        process.stdout.write(line + '\n');
      });
    this.#now = opts.now ?? (() => new Date());
    this.secrets = opts.secrets ?? new SecretRegistry();
  }

  #log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LEVELS[level] < this.#min) return;
    const extra = fields ? (redactValue(fields, this.secrets, 0) as Record<string, unknown>) : {};
    const rec = {
      ts: this.#now().toISOString(),
      level,
      ns: this.#ns,
      msg: this.secrets.scrub(msg),
      ...extra,
    };
    this.#write(JSON.stringify(rec));
  }

  debug(msg: string, fields?: LogFields): void {
    this.#log('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#log('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#log('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.#log('error', msg, fields);
  }

  child(namespace: string): Logger {
    const level =
      (Object.keys(LEVELS) as LogLevel[]).find((l) => LEVELS[l] === this.#min) ?? 'info';
    return new JsonLogger(`${this.#ns}.${namespace}`, {
      level,
      write: this.#write,
      secrets: this.secrets,
      now: this.#now,
    });
  }
}

/** A logger that keeps lines in memory (tests). */
export class MemoryLogger extends JsonLogger {
  readonly lines: string[];
  constructor(namespace = 'test', secrets?: SecretRegistry) {
    const lines: string[] = [];
    super(namespace, {
      level: 'debug',
      write: (l) => lines.push(l),
      ...(secrets ? { secrets } : {}),
    });
    this.lines = lines;
  }
}

/** Discards everything (for code paths that need a logger but tests don't care). */
export const SILENT: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => SILENT,
};
