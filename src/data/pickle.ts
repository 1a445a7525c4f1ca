// A safe reader for the Python pickles of the CIFAR python releases: dicts of numpy uint8 arrays, label lists
// and file names (protocol 2, written by Python 2's cPickle; Python 3 writes the same objects with a few other
// opcodes, also read here). Nothing is executed: the only callables are a fixed set of numpy/codecs
// constructors re-implemented below, and any other opcode or global is an error.

/** A numpy array: raw little-endian element bytes in C (or Fortran) order. */
export class NumpyArray {
  constructor(
    /** Sizes of each dimension. */
    readonly shape: number[],
    /** numpy's short code, e.g. 'u1', 'i8', 'f4'. */
    readonly dtype: string,
    /** The element bytes. */
    readonly data: Uint8Array,
    /** True when stored column-major (numpy's fortran_order). */
    readonly fortranOrder: boolean,
  ) {}

  /** Number of elements. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** The elements as numbers (int64 values must be safe integers). */
  toNumbers(): number[] {
    const view = new DataView(this.data.buffer, this.data.byteOffset, this.data.byteLength);
    const read = ELEMENT_READERS[this.dtype];
    if (!read) throw new Error(`numpy dtype '${this.dtype}' is not supported`);
    const out = new Array<number>(this.size);
    for (let i = 0; i < out.length; i++) out[i] = read.get(view, i * read.bytes);
    return out;
  }
}

const ELEMENT_READERS: Record<string, { bytes: number; get: (v: DataView, o: number) => number }> = {
  u1: { bytes: 1, get: (v, o) => v.getUint8(o) },
  i1: { bytes: 1, get: (v, o) => v.getInt8(o) },
  b1: { bytes: 1, get: (v, o) => v.getUint8(o) },
  u2: { bytes: 2, get: (v, o) => v.getUint16(o, true) },
  i2: { bytes: 2, get: (v, o) => v.getInt16(o, true) },
  u4: { bytes: 4, get: (v, o) => v.getUint32(o, true) },
  i4: { bytes: 4, get: (v, o) => v.getInt32(o, true) },
  u8: { bytes: 8, get: (v, o) => safeNumber(v.getBigUint64(o, true)) },
  i8: { bytes: 8, get: (v, o) => safeNumber(v.getBigInt64(o, true)) },
  f4: { bytes: 4, get: (v, o) => v.getFloat32(o, true) },
  f8: { bytes: 8, get: (v, o) => v.getFloat64(o, true) },
};

function safeNumber(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw new RangeError(`integer ${v} is not exactly representable`);
  return Number(v);
}

/**
 * What a pickle can hold here. Python 2 `str` (and Python 3 `bytes`) read as Uint8Array, as Python 3 reads
 * them with encoding='bytes'; dict keys that are bytes are decoded as Latin-1 strings.
 */
export type PickleValue = null | boolean | number | bigint | string | Uint8Array | NumpyArray | PickleValue[] | PickleDict;
/** A Python dict as read from a pickle (string or integer keys). */
export type PickleDict = Map<string | number, PickleValue>;

/** Text of a str/bytes value (Latin-1 for bytes, as in Python 2's str). */
export function pickleText(value: PickleValue): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return latin1(value);
  throw new TypeError(`expected a string, got ${describe(value)}`);
}

/** A short description of a value's Python type, for error messages ('None', 'bytes[3072]', ...). */
export function describe(value: unknown): string {
  if (value === null) return 'None';
  if (value instanceof Uint8Array) return `bytes[${value.length}]`;
  if (value instanceof NumpyArray) return `numpy array ${value.dtype} [${value.shape.join(', ')}]`;
  if (value instanceof Map) return 'dict';
  if (Array.isArray(value)) return `list[${value.length}]`;
  if (value instanceof Marker) return value.what;
  return typeof value;
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

// Objects that exist only while reading: the allowed globals, and arrays/dtypes between REDUCE and BUILD.
class Marker {
  constructor(readonly what: string) {}
}
class GlobalRef extends Marker {}
class PendingDtype extends Marker {
  byteOrder = '|';
  constructor(readonly code: string) { super(`numpy dtype ${code}`); }
}
class PendingArray extends Marker {
  built: NumpyArray | null = null;
}
const MARK = new Marker('MARK');

const ALLOWED_GLOBALS = new Set([
  'numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct', 'numpy.ndarray', 'numpy.dtype',
  'numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar', '_codecs.encode', '__builtin__.bytes', 'builtins.bytes',
]);

type Item = PickleValue | Marker;

/** Parses a pickle. `file` names it in errors. */
export function loadPickle(bytes: Uint8Array, file: string): PickleValue {
  return new PickleReader(bytes, file).run();
}

class PickleReader {
  private pos = 0;
  private stack: Item[] = [];
  private readonly memo = new Map<number, Item>();
  private readonly view: DataView;

  private readonly bytes: Uint8Array;

  constructor(input: Uint8Array, private readonly file: string) {
    // A plain Uint8Array view (not a Buffer), so that arrays read out of it are plain too.
    this.bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    const bytes = this.bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private fail(message: string): never {
    throw new Error(`${this.file}: ${message} (at byte ${this.pos}; not a CIFAR python pickle, or corrupt?)`);
  }

  private need(n: number): number {
    if (this.pos + n > this.bytes.length) this.fail(`truncated: needs ${n} more bytes, ${this.bytes.length - this.pos} left`);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  private u8(): number { return this.bytes[this.need(1)]!; }
  private u16(): number { return this.view.getUint16(this.need(2), true); }
  private i32(): number { return this.view.getInt32(this.need(4), true); }
  private u32(): number { return this.view.getUint32(this.need(4), true); }
  private u64(): number {
    const v = this.view.getBigUint64(this.need(8), true);
    if (v > BigInt(this.bytes.length)) this.fail(`length ${v} exceeds the file`);
    return Number(v);
  }
  private take(n: number): Uint8Array {
    const at = this.need(n);
    return this.bytes.subarray(at, at + n);
  }
  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) this.fail('truncated: unterminated text line');
    const text = latin1(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return text;
  }
  private utf8(n: number): string { return Buffer.from(this.take(n)).toString('utf8'); }

  private pop(): Item {
    if (this.stack.length === 0) this.fail('stack underflow');
    return this.stack.pop()!;
  }
  private top(): Item {
    if (this.stack.length === 0) this.fail('stack underflow');
    return this.stack[this.stack.length - 1]!;
  }
  /** Pops everything above the topmost MARK, and the MARK. */
  private popMark(): Item[] {
    const at = this.stack.lastIndexOf(MARK);
    if (at < 0) this.fail('no MARK on the stack');
    const items = this.stack.slice(at + 1);
    this.stack.length = at;
    return items;
  }
  /**
   * An item as a value inside a container. Globals and dtypes pass through (they are arguments of the numpy
   * constructors); `checkResult` makes sure none of them reaches the caller.
   */
  private value(item: Item): PickleValue {
    if (item === MARK) this.fail('MARK cannot be used as a value');
    if (item instanceof PendingArray) {
      if (!item.built) this.fail('numpy array used before its state was set');
      return item.built;
    }
    return item as PickleValue;
  }

  private checkResult(value: unknown): void {
    if (value instanceof Marker) this.fail(`${value.what} is not data`);
    if (Array.isArray(value)) for (const v of value) this.checkResult(v);
    if (value instanceof Map) for (const v of value.values()) this.checkResult(v);
  }
  private key(item: Item): string | number {
    const v = this.value(item);
    if (typeof v === 'string' || typeof v === 'number') return v;
    if (v instanceof Uint8Array) return latin1(v);
    return this.fail(`unsupported dict key type ${describe(v)}`);
  }
  private setItems(dict: Item, items: Item[]): void {
    if (!(dict instanceof Map)) this.fail(`SETITEM(S) on ${describe(dict)}`);
    if (items.length % 2 !== 0) this.fail('odd number of items for SETITEMS');
    for (let i = 0; i < items.length; i += 2) dict.set(this.key(items[i]!), this.value(items[i + 1]!));
  }
  private append(list: Item, items: Item[]): void {
    if (!Array.isArray(list)) this.fail(`APPEND(S) on ${describe(list)}`);
    for (const item of items) list.push(this.value(item));
  }

  run(): PickleValue {
    for (;;) {
      const opcode = this.u8();
      switch (opcode) {
        case 0x80: { // PROTO
          const protocol = this.u8();
          if (protocol > 5) this.fail(`pickle protocol ${protocol} is newer than this reader`);
          break;
        }
        case 0x95: this.need(8); break; // FRAME: a length hint only
        case 0x2e: { // STOP
          const result = this.value(this.pop());
          if (this.stack.length !== 0) this.fail(`${this.stack.length} items left on the stack at STOP`);
          this.checkResult(result);
          return result;
        }
        case 0x28: this.stack.push(MARK); break; // MARK
        case 0x30: this.pop(); break; // POP
        case 0x31: this.popMark(); break; // POP_MARK
        case 0x4e: this.stack.push(null); break; // NONE
        case 0x88: this.stack.push(true); break; // NEWTRUE
        case 0x89: this.stack.push(false); break; // NEWFALSE
        case 0x4b: this.stack.push(this.u8()); break; // BININT1
        case 0x4d: this.stack.push(this.u16()); break; // BININT2
        case 0x4a: this.stack.push(this.i32()); break; // BININT
        case 0x8a: this.stack.push(this.long(this.u8())); break; // LONG1
        case 0x47: this.stack.push(this.view.getFloat64(this.need(8), false)); break; // BINFLOAT
        case 0x49: { // INT (text; protocol 0, also how Python 2 writes bools there)
          const text = this.line();
          if (text === '01' || text === '00') this.stack.push(text === '01');
          else if (/^-?\d+$/.test(text)) this.stack.push(Number(text));
          else this.fail(`bad INT '${text}'`);
          break;
        }
        case 0x55: this.stack.push(this.take(this.u8())); break; // SHORT_BINSTRING
        case 0x54: { // BINSTRING
          const n = this.i32();
          if (n < 0) this.fail(`negative BINSTRING length ${n}`);
          this.stack.push(this.take(n));
          break;
        }
        case 0x43: this.stack.push(this.take(this.u8())); break; // SHORT_BINBYTES
        case 0x42: this.stack.push(this.take(this.u32())); break; // BINBYTES
        case 0x8e: this.stack.push(this.take(this.u64())); break; // BINBYTES8
        case 0x8c: this.stack.push(this.utf8(this.u8())); break; // SHORT_BINUNICODE
        case 0x58: this.stack.push(this.utf8(this.u32())); break; // BINUNICODE
        case 0x8d: this.stack.push(this.utf8(this.u64())); break; // BINUNICODE8
        case 0x7d: this.stack.push(new Map()); break; // EMPTY_DICT
        case 0x5d: this.stack.push([]); break; // EMPTY_LIST
        case 0x29: this.stack.push([]); break; // EMPTY_TUPLE
        case 0x64: { // DICT
          const dict: PickleDict = new Map();
          this.setItems(dict, this.popMark());
          this.stack.push(dict);
          break;
        }
        case 0x6c: // LIST
        case 0x74: this.stack.push(this.popMark().map((i) => this.value(i))); break; // TUPLE
        case 0x85: this.stack.push([this.value(this.pop())]); break; // TUPLE1
        case 0x86: { // TUPLE2
          const b = this.value(this.pop());
          this.stack.push([this.value(this.pop()), b]);
          break;
        }
        case 0x87: { // TUPLE3
          const c = this.value(this.pop());
          const b = this.value(this.pop());
          this.stack.push([this.value(this.pop()), b, c]);
          break;
        }
        case 0x61: { // APPEND
          const item = this.pop();
          this.append(this.top(), [item]);
          break;
        }
        case 0x65: { // APPENDS
          const items = this.popMark();
          this.append(this.top(), items);
          break;
        }
        case 0x73: { // SETITEM
          const v = this.pop();
          const k = this.pop();
          this.setItems(this.top(), [k, v]);
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark();
          this.setItems(this.top(), items);
          break;
        }
        case 0x71: this.memo.set(this.u8(), this.top()); break; // BINPUT
        case 0x72: this.memo.set(this.u32(), this.top()); break; // LONG_BINPUT
        case 0x94: this.memo.set(this.memo.size, this.top()); break; // MEMOIZE
        case 0x70: this.memo.set(Number(this.line()), this.top()); break; // PUT
        case 0x68: this.stack.push(this.memoGet(this.u8())); break; // BINGET
        case 0x6a: this.stack.push(this.memoGet(this.u32())); break; // LONG_BINGET
        case 0x67: this.stack.push(this.memoGet(Number(this.line()))); break; // GET
        case 0x63: { // GLOBAL
          const module = this.line();
          this.stack.push(this.global(module, this.line()));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') this.fail('STACK_GLOBAL needs two strings');
          this.stack.push(this.global(module, name));
          break;
        }
        case 0x52: { // REDUCE
          const args = this.pop();
          const callable = this.pop();
          if (!Array.isArray(args)) this.fail('REDUCE arguments are not a tuple');
          this.stack.push(this.call(callable, args));
          break;
        }
        case 0x62: { // BUILD
          const state = this.value(this.pop());
          this.build(this.top(), state);
          break;
        }
        default:
          this.fail(`unsupported pickle opcode 0x${opcode.toString(16).padStart(2, '0')} ('${String.fromCharCode(opcode)}')`);
      }
    }
  }

  private long(n: number): number | bigint {
    const b = this.take(n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (n > 0 && (b[n - 1]! & 0x80) !== 0) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private memoGet(index: number): Item {
    if (!this.memo.has(index)) this.fail(`memo entry ${index} was never stored`);
    return this.memo.get(index)!;
  }

  private global(module: string, name: string): GlobalRef {
    const full = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(full)) {
      this.fail(`refusing pickle global '${full}' (only numpy arrays, lists, dicts, strings and numbers are read; nothing is executed)`);
    }
    return new GlobalRef(full);
  }

  private call(callable: Item, args: PickleValue[]): Item {
    if (!(callable instanceof GlobalRef)) this.fail(`REDUCE on ${describe(callable)}`);
    const name = callable.what.replace('numpy._core.', 'numpy.core.').replace('builtins.', '__builtin__.');
    switch (name) {
      case 'numpy.core.multiarray._reconstruct':
        if (!(args[0] as unknown instanceof GlobalRef) || (args[0] as unknown as GlobalRef).what !== 'numpy.ndarray') {
          this.fail('_reconstruct is read for numpy.ndarray only');
        }
        return new PendingArray('numpy array');
      case 'numpy.dtype': {
        const code = args[0];
        if (typeof code !== 'string' && !(code instanceof Uint8Array)) this.fail('numpy.dtype needs a type code');
        return new PendingDtype(pickleText(code));
      }
      case 'numpy.core.multiarray.scalar': {
        const [dtype, raw] = args as unknown as [unknown, PickleValue];
        if (!(dtype instanceof PendingDtype) || !(raw instanceof Uint8Array || typeof raw === 'string')) this.fail('bad numpy scalar');
        const data = raw instanceof Uint8Array ? raw : this.latin1Bytes(raw);
        return new NumpyArray([], this.dtypeName(dtype), data, false).toNumbers()[0]!;
      }
      case '_codecs.encode': {
        // Python 3 writes bytes under protocol 2 as _codecs.encode(text, 'latin1').
        const [text, encoding] = args;
        if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) this.fail('_codecs.encode is read for latin1 only');
        return this.latin1Bytes(text);
      }
      case '__builtin__.bytes':
        if (args.length !== 0) this.fail('bytes() is read without arguments only');
        return new Uint8Array(0);
      default:
        return this.fail(`'${callable.what}' cannot be called`);
    }
  }

  private latin1Bytes(text: string): Uint8Array {
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c > 255) this.fail('latin1 text with a character above U+00FF');
      out[i] = c;
    }
    return out;
  }

  private dtypeName(dtype: PendingDtype): string {
    const code = dtype.code.replace(/^[<>|=]/, '');
    if (dtype.byteOrder === '>' || dtype.code.startsWith('>')) this.fail(`big-endian numpy dtype '${dtype.code}' is not supported`);
    if (!ELEMENT_READERS[code]) this.fail(`numpy dtype '${dtype.code}' is not supported (numbers only)`);
    return code;
  }

  private build(target: Item, state: PickleValue): void {
    if (target instanceof PendingDtype) {
      // numpy dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
      if (!Array.isArray(state) || state.length < 2) this.fail('bad numpy dtype state');
      target.byteOrder = pickleText(state[1]!);
      return;
    }
    if (target instanceof PendingArray) {
      // numpy ndarray state: (version, shape, dtype, is_fortran, raw bytes)
      if (!Array.isArray(state) || state.length !== 5) this.fail('bad numpy array state');
      const [, shape, dtype, fortran, raw] = state as unknown as [number, PickleValue, unknown, PickleValue, PickleValue];
      if (!Array.isArray(shape) || !shape.every((s) => typeof s === 'number' && Number.isInteger(s) && s >= 0)) this.fail('bad numpy shape');
      if (!(dtype instanceof PendingDtype)) this.fail('numpy array without a dtype');
      const name = this.dtypeName(dtype);
      const data = raw instanceof Uint8Array ? raw : typeof raw === 'string' ? this.latin1Bytes(raw) : this.fail('numpy object arrays are not supported');
      const dims = shape as number[];
      const expected = dims.reduce((a, b) => a * b, 1) * ELEMENT_READERS[name]!.bytes;
      if (data.length !== expected) this.fail(`numpy array [${dims.join(', ')}] ${name} needs ${expected} bytes, has ${data.length} (truncated?)`);
      target.built = new NumpyArray(dims, name, data, fortran === true || fortran === 1);
      return;
    }
    this.fail(`BUILD on ${describe(target)} is not supported`);
  }
}
