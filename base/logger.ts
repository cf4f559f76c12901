/**
 * Structured logging with a redaction layer, in one of two line formats:
 *
 *  - `json` (default): JSON lines on stdout, which journald picks up;
 *  - `human`: one readable line per record for a terminal
 *    (`12:04:05.120 WARN  media: camera unplugged device=/dev/video0`).
 *
 * Secrets never reach the output in either format: fields whose names look
 * secret are replaced, and any string value that contains a registered secret
 * (a key, a PSK, a Wi-Fi password) has it masked wherever it appears. Both
 * formats render the same redacted record.
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

export type LogFormat = 'json' | 'human';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'human'];

/**
 * The format a command-line program logs in: an explicit choice (a flag, then
 * `VIGIL_LOG_FORMAT`) wins; otherwise human lines on a terminal and JSON lines
 * anywhere else (journald, a pipe, a file). Returns undefined for an unknown name.
 */
export function chooseLogFormat(
  flag: string | undefined,
  env: NodeJS.ProcessEnv,
  isTty: boolean,
): LogFormat | undefined {
  const named = flag ?? env.VIGIL_LOG_FORMAT;
  if (named === undefined || named === '') return isTty ? 'human' : 'json';
  return LOG_FORMATS.find((f) => f === named);
}

/** Control characters would break the one-line promise (or drive the terminal): escape them. */
function oneLine(text: string): string {
  let out = '';
  for (const ch of text) {
    const c = ch.charCodeAt(0);
    if (c >= 0x20 && c !== 0x7f) out += ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else out += `\\u${c.toString(16).padStart(4, '0')}`;
  }
  return out;
}

/** A field value as `key=value`: bare when unambiguous, JSON otherwise. */
function humanValue(v: unknown): string {
  if (typeof v === 'string') return /^[\w./:@%+,-]+$/.test(v) ? v : JSON.stringify(v);
  if (v === undefined) return 'undefined';
  return JSON.stringify(v);
}

/** `vigil.media.media.clips` -> `media.clips`: the root name and repeated segments add nothing. */
function humanArea(ns: string): string {
  const parts = ns.split('.');
  const kept: string[] = [];
  for (const p of parts.slice(1)) if (kept[kept.length - 1] !== p) kept.push(p);
  return kept.join('.');
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

function humanLine(
  at: Date,
  level: LogLevel,
  ns: string,
  msg: string,
  fields: Record<string, unknown>,
): string {
  const time =
    `${pad2(at.getHours())}:${pad2(at.getMinutes())}:${pad2(at.getSeconds())}.` +
    String(at.getMilliseconds()).padStart(3, '0');
  const area = humanArea(ns);
  const kv = Object.entries(fields).map(([k, v]) => ` ${k}=${humanValue(v)}`);
  return oneLine(
    `${time} ${level.toUpperCase().padEnd(5)} ${area === '' ? '' : `${area}: `}${msg}${kv.join('')}`,
  );
}

export interface JsonLoggerOptions {
  readonly level?: LogLevel;
  /** Line format (default `json`). */
  readonly format?: LogFormat;
  readonly write?: (line: string) => void;
  readonly secrets?: SecretRegistry;
  readonly now?: () => Date;
}

export class JsonLogger implements Logger {
  readonly #ns: string;
  readonly #min: number;
  readonly #write: (line: string) => void;
  readonly #now: () => Date;
  readonly #format: LogFormat;
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
    this.#format = opts.format ?? 'json';
    this.secrets = opts.secrets ?? new SecretRegistry();
  }

  #log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LEVELS[level] < this.#min) return;
    const extra = fields ? (redactValue(fields, this.secrets, 0) as Record<string, unknown>) : {};
    if (this.#format === 'human') {
      this.#write(humanLine(this.#now(), level, this.#ns, this.secrets.scrub(msg), extra));
      return;
    }
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
    // a module that names its own area under a parent already named so: no "media.media"
    const last = this.#ns.slice(this.#ns.lastIndexOf('.') + 1);
    return new JsonLogger(last === namespace ? this.#ns : `${this.#ns}.${namespace}`, {
      level,
      format: this.#format,
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
