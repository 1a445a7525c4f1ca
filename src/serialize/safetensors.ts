/**
 * Reading and writing safetensors files (the format of Hugging Face's `safetensors`), the format of crossmax's
 * model files and checkpoints.
 *
 * @module crossmax/serialize
 */
// The safetensors format (huggingface/safetensors): an 8-byte little-endian u64 N, N bytes of UTF-8 JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}, then the tensors' bytes,
// offsets relative to the first byte after the header, elements little-endian and row-major.
//
// Files are written as the reference writer (safetensors/src/tensor.rs, `prepare`) writes them, so the same
// tensors give the same bytes: tensors ordered by descending dtype (the reference's Dtype enum order, which is
// increasing alignment) then by name, compact JSON with "__metadata__" first and each entry's fields in the
// order dtype, shape, data_offsets, the header padded with spaces to a multiple of 8 so every tensor starts
// aligned. One difference: the reference writes metadata keys in hash-map order, we sort them.
// Reading is as strict as the reference reader (`read_metadata` + `validate`): the tensors must tile the
// buffer exactly, without holes, overlaps or trailing bytes.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { native } from '../tensor/native.js';
import { Tensor, type Device } from '../tensor/tensor.js';
import { type DType, dtypeCode, elementSize } from '../tensor/dtype.js';
import { disposeAll } from '../tensor/scope.js';
import { writeFileAtomic } from '../util/atomic-write.js';

/** Element types as safetensors names them in the header; each maps to one {@link DType}. */
export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const fromSafetensors: Record<SafetensorsDType, DType> = {
  F64: 'float64', F32: 'float32', F16: 'float16', BF16: 'bfloat16', I64: 'int64', I32: 'int32', I16: 'int16',
  I8: 'int8', U8: 'uint8', BOOL: 'bool',
};
const toSafetensors: Record<DType, SafetensorsDType> = {
  float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16', int64: 'I64', int32: 'I32', int16: 'I16',
  int8: 'I8', uint8: 'U8', bool: 'BOOL',
};
// Positions in the reference's Dtype enum (with the types crossmax lacks: F8_E5M2 3, F8_E4M3 4, U16 6, U32 10,
// U64 14); the writer puts higher positions first.
const referenceOrder: Record<SafetensorsDType, number> = {
  BOOL: 0, U8: 1, I8: 2, I16: 5, F16: 7, BF16: 8, I32: 9, F32: 11, F64: 12, I64: 13,
};

const METADATA_KEY = '__metadata__';
/** The reference reader's limit; a larger header is far more likely a corrupt length than a real file. */
const MAX_HEADER_BYTES = 100_000_000;

/** Named tensors to save: a Map (keeps its order) or a plain object. */
export type TensorDict = Map<string, Tensor> | Record<string, Tensor>;

/** One tensor as the header describes it. `dataOffsets` are relative to the start of the data buffer. */
export interface SafetensorsTensorInfo {
  /** Element type. */
  dtype: DType;
  /** Sizes of each dimension. */
  shape: number[];
  /** [begin, end) byte offsets of the tensor's elements. */
  dataOffsets: [number, number];
}

/** A file's parsed header: what it holds and where, without reading the tensors. */
export interface SafetensorsHeader {
  /** Tensors in the order of their data in the file. */
  tensors: Map<string, SafetensorsTensorInfo>;
  /** The "__metadata__" strings ({} when the file has none). */
  metadata: Record<string, string>;
  /** Byte offset of the data buffer in the file: 8 + the header length. */
  dataStart: number;
}

/** Where loaded tensors go. */
export interface SafetensorsLoadOptions {
  /** Where the loaded tensors live. Default 'cpu'. */
  device?: Device;
}

/** Settings for decoding safetensors bytes held in memory. */
export interface SafetensorsDecodeOptions extends SafetensorsLoadOptions {
  /** What the bytes are, for error messages (a file name, say). Default 'safetensors data'. */
  source?: string;
}

/** What a safetensors file holds: named tensors and string metadata. */
export interface Safetensors {
  /** The tensors by name, in the file's order; the caller owns (and disposes) them. */
  tensors: Map<string, Tensor>;
  /** The "__metadata__" strings ({} when the file has none). */
  metadata: Record<string, string>;
}

// ---- writing ---------------------------------------------------------------------------------------------------

/**
 * The safetensors file for `tensors` as byte chunks (8-byte length and header, then one chunk per tensor), to be
 * written in order. Contiguous CPU tensors are not copied: their chunks view the tensors' memory, so write them
 * out before changing those tensors in place. Other tensors (non-contiguous, on a GPU) are copied, row-major.
 */
export function encodeSafetensors(tensors: TensorDict, metadata?: Record<string, string>): Uint8Array[] {
  assertLittleEndianHost();
  const source = 'encodeSafetensors';
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const prepared = entries.map(([name, t]) => {
    if (name === METADATA_KEY) fail(source, `'${METADATA_KEY}' is reserved for metadata and cannot name a tensor`);
    if (!(t instanceof Tensor)) fail(source, `'${name}' is not a Tensor`);
    if (t.disposed) fail(source, `tensor '${name}' has been disposed`);
    return { name, tensor: t, dtype: toSafetensors[t.dtype], key: Buffer.from(name, 'utf8') };
  });
  // Names compared byte-wise, as Rust compares Strings (UTF-16 code-unit order differs above U+FFFF).
  prepared.sort((a, b) => referenceOrder[b.dtype] - referenceOrder[a.dtype] || Buffer.compare(a.key, b.key));

  // Built by hand, not by stringifying one object: JS objects enumerate integer-like keys ("0", "1") first,
  // which would reorder the header. JSON.stringify escapes strings as serde_json does (quote, backslash,
  // control characters as lower-case \u00XX), so the bytes match the reference writer's.
  const fields: string[] = [];
  if (metadata !== undefined) {
    const pairs = checkedMetadata(metadata, source).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    fields.push(`${JSON.stringify(METADATA_KEY)}:{${pairs.join(',')}}`);
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const { name, tensor: t, dtype } of prepared) {
    const bytes = bytesOf(t);
    const expected = t.numel * elementSize[t.dtype];
    if (bytes.byteLength !== expected) fail(source, `tensor '${name}' gave ${bytes.byteLength} bytes, expected ${expected}`);
    const info = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    fields.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    offset += bytes.byteLength;
    if (bytes.byteLength > 0) chunks.push(bytes);
  }
  const json = `{${fields.join(',')}}`;
  const jsonLength = Buffer.byteLength(json, 'utf8');
  // Spaces up to a multiple of 8, so the data buffer starts 8-aligned in the file.
  const headerLength = jsonLength + ((8 - (jsonLength % 8)) % 8);
  const head = Buffer.alloc(8 + headerLength, 0x20);
  head.writeBigUInt64LE(BigInt(headerLength), 0);
  head.write(json, 8, 'utf8');
  return [new Uint8Array(head.buffer, head.byteOffset, head.byteLength), ...chunks];
}

/** Writes `tensors` (and string metadata) to a safetensors file, atomically: a failure leaves any old file intact. */
export function saveSafetensors(path: string, tensors: TensorDict, metadata?: Record<string, string>): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

function bytesOf(t: Tensor): Uint8Array {
  const data = t.device === 'cpu' && t.isContiguous() ? t.dataView() : t.toTypedArray();
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The metadata's entries sorted by key (the reference's order is a hash map's, i.e. arbitrary). */
function checkedMetadata(metadata: Record<string, string>, source: string): [string, string][] {
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) fail(source, 'metadata must be an object of strings');
  const keys = Object.keys(metadata).sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
  return keys.map((key) => {
    const value = metadata[key];
    if (typeof value !== 'string') fail(source, `metadata value for '${key}' must be a string, got ${describe(value)}`);
    return [key, value];
  });
}

// ---- reading ---------------------------------------------------------------------------------------------------

/** Tensors and metadata from the bytes of a whole safetensors file (the tensors are copies). */
export function decodeSafetensors(bytes: Uint8Array, options: SafetensorsDecodeOptions = {}): Safetensors {
  assertLittleEndianHost();
  const source = options.source ?? 'safetensors data';
  const headerLength = readHeaderLength(bytes.subarray(0, 8), bytes.byteLength, source);
  const header = parseHeader(bytes.subarray(8, 8 + headerLength), bytes.byteLength - 8 - headerLength, source);
  return materialise(header, options.device ?? 'cpu', (info) => {
    const begin = header.dataStart + info.dataOffsets[0];
    return bytes.subarray(begin, header.dataStart + info.dataOffsets[1]);
  });
}

/**
 * Loads a safetensors file. Each tensor is read straight from the file into its own memory, so loading needs
 * about one tensor's worth of memory beyond the result, not the whole file's.
 */
export function loadSafetensors(path: string, options: SafetensorsLoadOptions = {}): Safetensors {
  assertLittleEndianHost();
  const source = `safetensors file '${path}'`;
  return withFile(path, (fd) => {
    const header = readHeader(fd, source);
    return materialise(header, options.device ?? 'cpu', (info) => {
      const bytes = new Uint8Array(info.dataOffsets[1] - info.dataOffsets[0]);
      readExactly(fd, bytes, header.dataStart + info.dataOffsets[0], source);
      return bytes;
    });
  });
}

/**
 * The header of a safetensors file (names, dtypes, shapes, offsets, metadata), checked as strictly as by
 * loadSafetensors, without reading any tensor data: to check a checkpoint's configuration before loading it.
 */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  return withFile(path, (fd) => readHeader(fd, `safetensors file '${path}'`));
}

function withFile<T>(path: string, fn: (fd: number) => T): T {
  const fd = openSync(path, 'r');
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

function readHeader(fd: number, source: string): SafetensorsHeader {
  const fileLength = fstatSync(fd).size;
  const prefix = new Uint8Array(Math.min(8, fileLength));
  readExactly(fd, prefix, 0, source);
  const headerLength = readHeaderLength(prefix, fileLength, source);
  const headerBytes = new Uint8Array(headerLength);
  readExactly(fd, headerBytes, 8, source);
  return parseHeader(headerBytes, fileLength - 8 - headerLength, source);
}

function readExactly(fd: number, into: Uint8Array, position: number, source: string): void {
  let done = 0;
  while (done < into.byteLength) {
    const n = readSync(fd, into, done, into.byteLength - done, position + done);
    if (n === 0) fail(source, `truncated: ended at byte ${position + done}, ${into.byteLength - done} bytes short of what the header promises`);
    done += n;
  }
}

/** The header length from the first 8 bytes, checked against the total length. */
function readHeaderLength(prefix: Uint8Array, totalLength: number, source: string): number {
  if (prefix.byteLength < 8) fail(source, `truncated: ${totalLength} bytes, shorter than the 8-byte header length`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    if (n + 8n > BigInt(totalLength)) fail(source, `header length ${n} runs past the end of the ${totalLength}-byte file: truncated or not safetensors`);
    fail(source, `header length ${n} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  }
  const length = Number(n);
  if (8 + length > totalLength) fail(source, `truncated: header length ${length} runs past the end of the ${totalLength}-byte file`);
  return length;
}

/** Parses and checks the JSON header; `dataLength` is the number of bytes after it. */
function parseHeader(headerBytes: Uint8Array, dataLength: number, source: string): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    fail(source, 'header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    fail(source, `header is not valid JSON (${(err as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) fail(source, 'header is not a JSON object');
  // JSON.parse keeps the last of repeated keys; a file naming a tensor twice is ambiguous, so refuse it.
  const duplicate = firstDuplicateKey(text);
  if (duplicate !== undefined) fail(source, `header has the key '${duplicate}' more than once (duplicate name)`);

  const metadata: Record<string, string> = {};
  const entries: [string, SafetensorsTensorInfo][] = [];
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      if (value === null) continue;
      if (typeof value !== 'object' || Array.isArray(value)) fail(source, `'${METADATA_KEY}' must be an object of strings`);
      for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(source, `metadata value for '${key}' must be a string, got ${describe(v)}`);
        metadata[key] = v;
      }
      continue;
    }
    entries.push([name, tensorInfo(name, value, source)]);
  }

  // Like the reference: order by offsets, then the tensors must tile [0, dataLength) exactly.
  entries.sort(([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let end = 0;
  let previous = '';
  for (const [name, info] of entries) {
    const [begin, stop] = info.dataOffsets;
    if (begin < end) fail(source, `tensor '${name}' data_offsets [${begin}, ${stop}] overlap tensor '${previous}' (which ends at ${end})`);
    if (begin > end) fail(source, `hole in the data buffer: bytes [${end}, ${begin}) belong to no tensor (before '${name}')`);
    end = stop;
    previous = name;
  }
  if (end > dataLength) fail(source, `truncated: the tensors need ${end} bytes of data but only ${dataLength} follow the header`);
  if (end < dataLength) fail(source, `${dataLength - end} bytes after the last tensor belong to no tensor`);
  return { tensors: new Map(entries), metadata, dataStart: 8 + headerBytes.byteLength };
}

function tensorInfo(name: string, value: unknown, source: string): SafetensorsTensorInfo {
  const what = `tensor '${name}'`;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(source, `${what}: entry must be an object with dtype, shape and data_offsets`);
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== 'string' || !Object.hasOwn(fromSafetensors, dtype)) {
    fail(source, `${what}: unknown dtype ${describe(dtype)} (supported: ${Object.keys(fromSafetensors).join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every(isIndex)) fail(source, `${what}: shape ${describe(shape)} must be a list of non-negative integers`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex)) {
    fail(source, `${what}: data_offsets ${describe(offsets)} must be two non-negative integers [begin, end]`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) fail(source, `${what}: data_offsets [${begin}, ${end}] are out of order (end before begin)`);
  const crossmaxDType = fromSafetensors[dtype as SafetensorsDType];
  const numel = (shape as number[]).reduce((a, b) => a * b, 1);
  const needed = numel * elementSize[crossmaxDType];
  if (!Number.isSafeInteger(needed)) fail(source, `${what}: shape [${shape}] is too large`);
  if (end - begin !== needed) {
    fail(source, `${what}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype} [${shape}] needs ${needed}`);
  }
  return { dtype: crossmaxDType, shape: [...(shape as number[])], dataOffsets: [begin, end] };
}

function materialise(header: SafetensorsHeader, device: Device, bytesFor: (info: SafetensorsTensorInfo) => Uint8Array): Safetensors {
  const tensors = new Map<string, Tensor>();
  try {
    for (const [name, info] of header.tensors) {
      // fromBuffer copies from any byte offset, so the data need not be aligned for its element type.
      tensors.set(name, new Tensor(native.fromBuffer(bytesFor(info), info.shape, dtypeCode(info.dtype), device)));
    }
  } catch (err) {
    disposeAll(tensors);
    throw err;
  }
  return { tensors, metadata: header.metadata };
}

/**
 * The first key that appears twice in one object of a (valid) JSON text. A scan, not a parse: it tracks
 * strings and nesting, and reads a string as a key when it follows '{' or ',' inside an object.
 */
function firstDuplicateKey(text: string): string | undefined {
  const stack: (Set<string> | null)[] = []; // a Set of keys per open object, null per open array
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        const keys = stack[stack.length - 1]!;
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] != null;
    }
  }
  return undefined;
}

// ---- shared ----------------------------------------------------------------------------------------------------

function assertLittleEndianHost(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error('safetensors: this host is big-endian; crossmax reads and writes safetensors only on little-endian hosts');
  }
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function describe(v: unknown): string {
  const json = JSON.stringify(v);
  return json === undefined ? String(v) : json.length > 60 ? `${json.slice(0, 57)}...` : json;
}

function fail(source: string, problem: string): never {
  throw new Error(`${source}: ${problem}`);
}
