// JSON text that other tools can read (typed arrays, bigints and non-finite numbers handled, keys optionally
// sorted), result files replaced atomically (a reader never sees half of one), and an append-only log in JSON Lines (training metrics): written one whole line per write() call, so a
// killed process loses at most the line being written, and the reader skips such a cut-off last line.
import { writeFileAtomic } from './atomic-write.js';
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, writeSync, fsyncSync } from 'node:fs';

/** How values become JSON text. */
export interface JsonOptions {
  /** Object keys in code-point order at every depth, so equal results give byte-identical files. Default false. */
  sortKeys?: boolean;
  /** Spaces per level; 0 writes one line. Default 2 (writeJsonAtomic), 0 (JSON Lines). */
  indent?: number;
  /**
   * NaN and ±Infinity, which JSON cannot hold: 'null' (default, as JSON.stringify and pandas read them),
   * 'string' ("NaN", "Infinity", "-Infinity"), or 'error' (throw, naming where the value is).
   */
  nonFinite?: 'null' | 'string' | 'error';
}

/**
 * JSON text of `value`. Beyond JSON.stringify: typed arrays become arrays, bigints numbers (strings when not
 * exactly representable), non-finite numbers follow `nonFinite`, keys can be sorted, and a tensor or a
 * circular reference is an error that says where it is.
 */
export function toJson(value: unknown, options: JsonOptions = {}): string {
  const normalized = normalize(value, '$', options, new Set());
  return JSON.stringify(normalized, null, options.indent ?? 2) ?? 'null';
}

/** Writes `value` as JSON (with a final newline) to `path`, atomically: the old file or the new, never half. */
export function writeJsonAtomic(path: string, value: unknown, options: JsonOptions = {}): void {
  writeFileAtomic(path, toJson(value, options) + '\n');
}

function normalize(value: unknown, where: string, options: JsonOptions, ancestors: Set<object>): unknown {
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return value;
    const mode = options.nonFinite ?? 'null';
    if (mode === 'error') throw new RangeError(`${where} is ${value}, which JSON cannot hold`);
    return mode === 'string' ? String(value) : null;
  }
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value === null || typeof value !== 'object') return value;
  if ((value as { isTensor?: boolean }).isTensor === true) {
    throw new TypeError(`${where} is a tensor; convert it with .toArray() or .item() first`);
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    return normalize((value as { toJSON: () => unknown }).toJSON(), where, options, ancestors);
  }
  if (ancestors.has(value)) throw new TypeError(`${where} refers back to an enclosing object (circular reference)`);
  ancestors.add(value);
  try {
    if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
      return Array.from(value as unknown as ArrayLike<number | bigint>, (v, i) => normalize(v, `${where}[${i}]`, options, ancestors));
    }
    if (Array.isArray(value)) {
      // undefined and functions in arrays become null, as in JSON.stringify.
      return value.map((v, i) => (v === undefined || typeof v === 'function' ? null : normalize(v, `${where}[${i}]`, options, ancestors)));
    }
    const entries = value instanceof Map ? [...value.entries()].map(([k, v]) => [String(k), v] as const) : Object.entries(value);
    if (options.sortKeys) entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const out: Record<string, unknown> = {};
    for (const [k, v] of entries) {
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
      out[k] = normalize(v, `${where}.${k}`, options, ancestors);
    }
    return out;
  } finally {
    ancestors.delete(value);
  }
}

/** Settings of a {@link JsonLinesWriter}. */
export interface JsonLinesWriterOptions extends Omit<JsonOptions, 'indent'> {
  /**
   * fsync after every line: survives a power loss, not just a killed process, at the cost of a disk flush per
   * line. Default false (a killed process loses nothing written: each line goes to the kernel in one write).
   */
  fsync?: boolean;
  /**
   * Start the log afresh holding these records (written atomically: the old log or the new, never half), instead
   * of appending to what the file holds. [] empties it. Default: append.
   */
  replace?: readonly unknown[];
}

/**
 * An append-only log of JSON objects, one per line (metrics per step or epoch). Reopening an existing log
 * appends to it; a cut-off last line left by a killed writer is removed first, so the next line starts clean.
 */
export class JsonLinesWriter implements Disposable {
  /** The log file's path. */
  readonly path: string;
  private fd: number | undefined;
  private readonly options: JsonLinesWriterOptions;

  constructor(path: string, options: JsonLinesWriterOptions = {}) {
    this.path = path;
    this.options = options;
    if (options.replace) writeFileAtomic(path, options.replace.map((record) => this.line(record)).join(''));
    else if (existsSync(path)) dropPartialLastLine(path);
    this.fd = openSync(path, 'a');
  }

  /** Appends `record` as one line; it is in the kernel (and, with fsync, on disk) when this returns. */
  write(record: unknown): void {
    if (this.fd === undefined) throw new Error(`JSON Lines writer for ${this.path} is closed`);
    const line = Buffer.from(this.line(record), 'utf8');
    let written = 0;
    while (written < line.length) written += writeSync(this.fd, line, written, line.length - written);
    if (this.options.fsync) fsyncSync(this.fd);
  }

  private line(record: unknown): string {
    const { fsync: _, replace: __, ...json } = this.options;
    return toJson(record, { ...json, indent: 0 }) + '\n';
  }

  /** Closes the file; later writes throw. Calling it again does nothing. */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }

  /** Same as close(), for `using log = new JsonLinesWriter(...)`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Cuts the file after its last newline (an empty file if it has none). */
function dropPartialLastLine(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    const size = fstatSync(fd).size;
    const chunk = Buffer.alloc(64 * 1024);
    let end = size;
    while (end > 0) {
      const start = Math.max(0, end - chunk.length);
      const n = readSync(fd, chunk, 0, end - start, start);
      const newline = chunk.subarray(0, n).lastIndexOf(0x0a);
      if (newline >= 0) {
        if (start + newline + 1 < size) ftruncateSync(fd, start + newline + 1);
        return;
      }
      end = start;
    }
    if (size > 0) ftruncateSync(fd, 0);
  } finally {
    closeSync(fd);
  }
}

/** Settings of {@link readJsonLines}. */
export interface ReadJsonLinesOptions {
  /**
   * Throw on a last line that is cut off (no final newline and not valid JSON) instead of skipping it.
   * Default false: such a line is what a killed writer leaves behind.
   */
  strict?: boolean;
}

/**
 * The records of a JSON Lines file, in order. Blank lines are skipped; a cut-off last line is dropped unless
 * `strict`; any other line that is not JSON is an error naming its line number.
 */
export function readJsonLines<T = unknown>(path: string, options: ReadJsonLinesOptions = {}): T[] {
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  const complete = text.endsWith('\n');
  const last = lines.length - 1;
  const records: T[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      records.push(JSON.parse(line) as T);
    } catch (err) {
      if (i === last && !complete && !options.strict) return;
      throw new SyntaxError(`${path}:${i + 1}: not a JSON line (${(err as Error).message})`);
    }
  });
  return records;
}
