import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Tensor, tensor, arange, zeros, disposeAll, liveTensorCount, setNumThreads, type DType,
} from '../src/tensor/index.js';
import {
  encodeSafetensors, decodeSafetensors, saveSafetensors, loadSafetensors, readSafetensorsHeader,
} from '../src/serialize/safetensors.js';
import { writeFileAtomic, writeFileAtomicAsync } from '../src/util/atomic-write.js';
import { PYTHON_DIR, pythonMissing, runPythonJson } from './helpers/python.js';

setNumThreads(1);

const dir = mkdtempSync(join(tmpdir(), 'crossmax-safetensors-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
let fileCounter = 0;
const freshPath = (name = 'file.safetensors') => join(dir, `${fileCounter++}-${name}`);

const concat = (chunks: Uint8Array[]) => Buffer.concat(chunks);
const rawBytes = (t: Tensor) => {
  const a = t.toTypedArray();
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
};

function assertSameTensor(actual: Tensor | undefined, expected: Tensor, name: string): void {
  assert.ok(actual, `missing tensor '${name}'`);
  assert.equal(actual.dtype, expected.dtype, `dtype of '${name}'`);
  assert.deepEqual(actual.shape, expected.shape, `shape of '${name}'`);
  // Bit patterns, so NaN payloads, -0 and float16/bfloat16 compare exactly.
  assert.deepEqual(rawBytes(actual), rawBytes(expected), `data of '${name}'`);
}

/** One tensor of every dtype with edge values, plus empty, scalar and awkwardly named ones. */
function fixtures(): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  m.set('f64', tensor(new Float64Array([0.1, -0, Infinity, -Infinity, NaN, 5e-324, Number.MAX_VALUE]), { shape: [7] }));
  m.set('f32', tensor(new Float32Array([1.5, -0, NaN, Infinity, 1e-45, 3.4e38]), { shape: [2, 3] }));
  m.set('f16', tensor(new Float32Array([1 / 3, -2, 65504, 6e-8, NaN, -Infinity])).to('float16').reshape([3, 2]));
  m.set('bf16', tensor(new Float32Array([1 / 3, -2, 3e38, 1e-40, NaN, 7])).to('bfloat16').reshape([1, 6]));
  m.set('i64', tensor(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n]), { shape: [2, 2] }));
  m.set('i32', tensor(new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0]), { shape: [3] }));
  m.set('i16', tensor(new Int16Array([-32768, 32767, -1]), { shape: [3, 1] }));
  m.set('i8', tensor(new Int8Array([-128, 127, 0, -1]), { shape: [2, 1, 2] }));
  m.set('u8', tensor(new Uint8Array([0, 1, 128, 255]), { shape: [4] }));
  m.set('bool', tensor(new Uint8Array([1, 0, 0, 1, 1]), { shape: [5], dtype: 'bool' }));
  m.set('empty.f32', zeros([0, 3]));
  m.set('empty.i64', zeros([2, 0], { dtype: 'int64' }));
  m.set('empty.f16', zeros([0], { dtype: 'float16' }));
  m.set('scalar.f32', tensor(new Float32Array([2.5]), { shape: [] }));
  m.set('scalar.bool', tensor(new Uint8Array([1]), { shape: [], dtype: 'bool' }));
  m.set('scalar.i64', tensor(new BigInt64Array([-7n]), { shape: [] }));
  m.set('0', tensor(new Float32Array([42]))); // integer-like: JS objects would enumerate it first
  m.set('ünïcode.λ "quoted" \\ \n', tensor(new Int32Array([1, 2])));
  return m;
}

/** A file from a hand-written header and data, for corruption cases. */
function rawFile(header: string | object, data: Uint8Array = new Uint8Array(0), declaredLength?: number): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(declaredLength ?? json.length));
  return Buffer.concat([prefix, json, data]);
}

describe('safetensors round trip', () => {
  test('every dtype, empty tensors, scalars and odd names survive encode/decode bit for bit', () => {
    const tensors = fixtures();
    const { tensors: back, metadata } = decodeSafetensors(concat(encodeSafetensors(tensors)));
    assert.deepEqual(metadata, {});
    assert.deepEqual([...back.keys()].sort(), [...tensors.keys()].sort());
    for (const [name, t] of tensors) assertSameTensor(back.get(name), t, name);
    disposeAll([tensors, back]);
  });

  test('save/load through a file, with metadata', () => {
    const tensors = fixtures();
    const metadata = { format: 'pt', 'config.json': '{"arch":"resnet18","width":64}', '1': 'integer-like key', 'ü': 'ß' };
    const path = freshPath();
    saveSafetensors(path, tensors, metadata);
    const loaded = loadSafetensors(path);
    assert.deepEqual(loaded.metadata, metadata);
    for (const [name, t] of tensors) assertSameTensor(loaded.tensors.get(name), t, name);
    // The same bytes as the in-memory encoding.
    assert.deepEqual(readFileSync(path), concat(encodeSafetensors(tensors, metadata)));
    disposeAll([tensors, loaded.tensors]);
  });

  test('an empty metadata object and no metadata both read back as {}', () => {
    for (const metadata of [undefined, {}]) {
      const bytes = concat(encodeSafetensors({}, metadata));
      assert.deepEqual(decodeSafetensors(bytes).metadata, {});
    }
  });

  test('non-contiguous, offset and broadcast views are written as their row-major values', () => {
    const base = arange(0, 12, 1, { dtype: 'float32' }).reshape([3, 4]);
    const views = {
      transposed: base.transpose(0, 1),
      narrowed: base.narrow(0, 1, 2), // contiguous, but starting inside the storage
      strided: base.slice(1, 0, null, 2),
      expanded: tensor(new Int16Array([1, 2, 3])).reshape([1, 3]).expand([4, 3]),
    };
    const back = decodeSafetensors(concat(encodeSafetensors(views))).tensors;
    for (const [name, view] of Object.entries(views)) {
      const contiguous = view.contiguous();
      assertSameTensor(back.get(name), contiguous, name);
      contiguous.dispose();
    }
    assert.deepEqual(back.get('transposed')!.toArray(), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    assert.deepEqual(back.get('narrowed')!.toArray(), [4, 5, 6, 7, 8, 9, 10, 11]);
    disposeAll([base, views, back]);
  });

  test('data need not be aligned in memory: decoding from an odd byte offset', () => {
    const tensors = { x: tensor(new Float64Array([1, 2, 3])), y: tensor(new Int32Array([4, 5])) };
    const bytes = concat(encodeSafetensors(tensors));
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    const back = decodeSafetensors(shifted.subarray(3)).tensors;
    assert.deepEqual(back.get('x')!.toArray(), [1, 2, 3]);
    assert.deepEqual(back.get('y')!.toArray(), [4, 5]);
    disposeAll([tensors, back]);
  });

  test('decoding and loading leak no native tensors', () => {
    const tensors = fixtures();
    const path = freshPath();
    saveSafetensors(path, tensors);
    const before = liveTensorCount();
    disposeAll(loadSafetensors(path).tensors);
    disposeAll(decodeSafetensors(readFileSync(path)).tensors);
    assert.equal(liveTensorCount(), before);
    disposeAll(tensors);
  });

  test('loading onto an explicit device', () => {
    const t = tensor(new Float32Array([1, 2]));
    const back = decodeSafetensors(concat(encodeSafetensors({ t })), { device: 'cpu' }).tensors.get('t')!;
    assert.equal(back.device, 'cpu');
    disposeAll([t, back]);
  });
});

describe('safetensors layout matches the reference writer', () => {
  // Expected bytes from huggingface/safetensors' own tests (safetensors/src/tensor.rs).
  test('a single F32 tensor (test_serialization)', () => {
    const t = tensor(new Float32Array([0, 1, 2, 3, 4, 5]), { shape: [1, 2, 3] });
    const json = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    const expected = Buffer.concat([Buffer.from([64, 0, 0, 0, 0, 0, 0, 0]), Buffer.from(json), rawBytes(t)]);
    assert.deepEqual(concat(encodeSafetensors({ 'attn.0': t })), expected);
    t.dispose();
  });

  test('the header is padded with spaces to a multiple of 8 (test_serialization_forced_alignement)', () => {
    const t = tensor(new Float32Array([0, 1, 2, 3, 4, 5]), { shape: [1, 1, 2, 3] });
    const json = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ';
    const expected = Buffer.concat([Buffer.from([72, 0, 0, 0, 0, 0, 0, 0]), Buffer.from(json), rawBytes(t)]);
    assert.deepEqual(concat(encodeSafetensors({ attn0: t })), expected);
    t.dispose();
  });

  test('no tensors, with and without metadata (test_empty)', () => {
    assert.deepEqual(concat(encodeSafetensors({})), Buffer.from([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]));
    const withMetadata = Buffer.concat([Buffer.from([40, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"__metadata__":{"framework":"pt"}}     ')]);
    assert.deepEqual(concat(encodeSafetensors({}, { framework: 'pt' })), withMetadata);
  });

  test('tensors are ordered by descending dtype alignment, then by name; every tensor starts aligned', () => {
    const tensors = fixtures();
    const bytes = concat(encodeSafetensors(tensors, { b: '2', a: '1' }));
    const n = Number(bytes.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    const header = bytes.subarray(8, 8 + n).toString('utf8');
    assert.ok(header.startsWith('{"__metadata__":{"a":"1","b":"2"},'), header.slice(0, 40));
    const names = Object.keys(JSON.parse(header)).filter((k) => k !== '__metadata__');
    const order = ['I64', 'F64', 'F32', 'I32', 'BF16', 'F16', 'I16', 'I8', 'U8', 'BOOL'];
    const dtypeOf = (name: string) => (JSON.parse(header) as Record<string, { dtype: string }>)[name]!.dtype;
    const expected = [...names].sort((a, b) => order.indexOf(dtypeOf(a)) - order.indexOf(dtypeOf(b)) || Buffer.compare(Buffer.from(a), Buffer.from(b)));
    // Object.keys puts the integer-like '0' first; compare the header text order instead.
    const positions = names.map((name) => [name, header.indexOf(`${JSON.stringify(name)}:{"dtype"`)] as const);
    const textOrder = positions.sort((a, b) => a[1] - b[1]).map(([name]) => name);
    assert.deepEqual(textOrder, expected);
    for (const name of expected) {
      const info = readHeaderEntry(header, name);
      assert.equal(info.data_offsets[0] % sizeOf(info.dtype), 0, `'${name}' is aligned`);
    }
    disposeAll(tensors);
  });
});

function readHeaderEntry(header: string, name: string): { dtype: string; data_offsets: [number, number] } {
  return (JSON.parse(header) as Record<string, { dtype: string; data_offsets: [number, number] }>)[name]!;
}
function sizeOf(dtype: string): number {
  return { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, I16: 2 }[dtype] ?? 1;
}

describe('safetensors header-only reading', () => {
  test('readSafetensorsHeader gives names, dtypes, shapes, offsets and metadata', () => {
    const tensors = { weight: zeros([4, 3], { dtype: 'float16' }), step: tensor(new BigInt64Array([10n]), { shape: [] }) };
    const path = freshPath();
    saveSafetensors(path, tensors, { epoch: '3' });
    const header = readSafetensorsHeader(path);
    assert.deepEqual(header.metadata, { epoch: '3' });
    assert.deepEqual([...header.tensors.keys()], ['step', 'weight']);
    assert.deepEqual(header.tensors.get('step'), { dtype: 'int64' as DType, shape: [], dataOffsets: [0, 8] });
    assert.deepEqual(header.tensors.get('weight'), { dtype: 'float16' as DType, shape: [4, 3], dataOffsets: [8, 32] });
    assert.equal(header.dataStart, statSync(path).size - 32);
    disposeAll(tensors);
  });
});

describe('safetensors rejects corrupt input', () => {
  const f32 = (shape: number[], offsets: number[]) => ({ dtype: 'F32', shape, data_offsets: offsets });
  const eight = new Uint8Array(8);
  const cases: [string, Uint8Array, RegExp][] = [
    ['fewer than 8 bytes', new Uint8Array([1, 0, 0]), /truncated.*shorter than the 8-byte header length/],
    ['empty file', new Uint8Array(0), /truncated/],
    ['header length beyond the file', rawFile({}, new Uint8Array(0), 100), /truncated: header length 100 runs past/],
    ['absurd header length', rawFile({}, new Uint8Array(0), 2 ** 40), /truncated or not safetensors/],
    ['header not JSON', rawFile('{"a": '), /header is not valid JSON/],
    ['header not an object', rawFile('[1,2]'), /header is not a JSON object/],
    ['header not UTF-8', rawFile(Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1')), /not valid (UTF-8|JSON)/],
    ['unknown dtype', rawFile({ a: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), /tensor 'a': unknown dtype "F8_E4M3"/],
    ['missing dtype', rawFile({ a: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), /unknown dtype undefined/],
    ['negative shape', rawFile({ a: f32([-1, 2], [0, 0]) }), /shape \[-1,2\] must be a list of non-negative integers/],
    ['fractional shape', rawFile({ a: f32([1.5], [0, 4]) }, new Uint8Array(4)), /shape \[1.5\]/],
    ['shape not a list', rawFile({ a: f32(4 as unknown as number[], [0, 16]) }, new Uint8Array(16)), /shape 4 must be/],
    ['three data_offsets', rawFile({ a: f32([2], [0, 4, 8]) }, eight), /data_offsets \[0,4,8\] must be two/],
    ['data_offsets wrong length for dtype x shape', rawFile({ a: f32([3], [0, 8]) }, eight), /span 8 bytes but F32 \[3\] needs 12/],
    ['data_offsets end before begin', rawFile({ a: f32([0], [4, 0]), b: f32([1], [0, 4]) }, new Uint8Array(4)), /out of order/],
    ['overlapping tensors', rawFile({ a: f32([2], [0, 8]), b: f32([1], [4, 8]) }, eight), /'b' data_offsets \[4, 8\] overlap tensor 'a'/],
    ['hole in the buffer', rawFile({ a: f32([1], [0, 4]), b: f32([1], [8, 12]) }, new Uint8Array(12)), /hole in the data buffer: bytes \[4, 8\)/],
    ['hole at the start', rawFile({ a: f32([1], [4, 8]) }, eight), /hole in the data buffer: bytes \[0, 4\)/],
    ['offsets beyond the buffer', rawFile({ a: f32([2], [0, 8]) }, new Uint8Array(6)), /truncated: the tensors need 8 bytes of data but only 6/],
    ['trailing bytes', rawFile({ a: f32([1], [0, 4]) }, eight), /4 bytes after the last tensor belong to no tensor/],
    ['duplicate names', rawFile('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', new Uint8Array(2)), /key 'a' more than once/],
    ['duplicate names written differently', rawFile('{"\\u0061":{"dtype":"U8","shape":[],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[],"data_offsets":[1,2]}}', new Uint8Array(2)), /key 'a' more than once/],
    ['metadata value not a string', rawFile({ __metadata__: { epoch: 3 } }), /metadata value for 'epoch' must be a string, got 3/],
    ['metadata not an object', rawFile({ __metadata__: ['x'] }), /'__metadata__' must be an object of strings/],
    ['entry not an object', rawFile({ a: 5 }), /tensor 'a': entry must be an object/],
  ];
  for (const [label, bytes, pattern] of cases) {
    test(label, () => {
      assert.throws(() => decodeSafetensors(bytes, { source: 'case.safetensors' }), (err: Error) => {
        assert.match(err.message, /^case\.safetensors: /);
        assert.match(err.message, pattern);
        return true;
      });
    });
  }

  test('a cut-short file is reported as truncated, naming the file, by load and by header read', () => {
    const tensors = { w: arange(0, 100, 1, { dtype: 'float32' }), b: zeros([3]) };
    const full = concat(encodeSafetensors(tensors));
    for (const cut of [3, 20, full.length - 1]) {
      const path = freshPath(`cut-${cut}.safetensors`);
      writeFileSync(path, full.subarray(0, cut));
      for (const read of [() => loadSafetensors(path), () => readSafetensorsHeader(path)]) {
        assert.throws(read, (err: Error) => {
          assert.ok(err.message.startsWith(`safetensors file '${path}': `), err.message);
          assert.match(err.message, /truncated/);
          return true;
        });
      }
    }
    disposeAll(tensors);
  });

  test('duplicate keys inside nested objects are found; values that look like keys are not', () => {
    const ok = rawFile('{"__metadata__":{"k":"a","a":"k"},"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":["a","a",{"a":1}]}}', new Uint8Array(1));
    const back = decodeSafetensors(ok);
    assert.deepEqual(back.metadata, { k: 'a', a: 'k' });
    disposeAll(back.tensors);
    const bad = rawFile('{"__metadata__":{"k":"a","k":"b"}}');
    assert.throws(() => decodeSafetensors(bad), /key 'k' more than once/);
  });

  test('writing refuses what cannot be stored', () => {
    const t = tensor(new Float32Array([1]));
    assert.throws(() => encodeSafetensors({ __metadata__: t }), /reserved for metadata/);
    assert.throws(() => encodeSafetensors({ t }, { epoch: 3 as unknown as string }), /metadata value for 'epoch' must be a string/);
    const gone = tensor(new Float32Array([1]));
    gone.dispose();
    assert.throws(() => encodeSafetensors({ gone }), /tensor 'gone' has been disposed/);
    t.dispose();
  });
});

describe('atomic file writing', () => {
  const leftovers = (folder: string) => readdirSync(folder).filter((f) => f.endsWith('.tmp'));

  test('writes strings, bytes and chunks; replaces the old file and keeps its permissions', async () => {
    const folder = mkdtempSync(join(dir, 'atomic-'));
    const path = join(folder, 'out.txt');
    writeFileAtomic(path, 'héllo');
    assert.equal(readFileSync(path, 'utf8'), 'héllo');
    chmodSync(path, 0o640);
    writeFileAtomic(path, [Buffer.from('ab'), new Uint8Array(0), Buffer.from('cd')]);
    assert.equal(readFileSync(path, 'utf8'), 'abcd');
    assert.equal(statSync(path).mode & 0o777, 0o640);
    await writeFileAtomicAsync(path, new Uint8Array([65, 66]));
    assert.equal(readFileSync(path, 'utf8'), 'AB');
    assert.deepEqual(leftovers(folder), []);
  });

  test('a symbolic link is followed: its target is replaced and the link stays', () => {
    const folder = mkdtempSync(join(dir, 'atomic-'));
    writeFileSync(join(folder, 'real.txt'), 'old');
    symlinkSync('real.txt', join(folder, 'latest.txt'));
    writeFileAtomic(join(folder, 'latest.txt'), 'new');
    assert.ok(lstatSync(join(folder, 'latest.txt')).isSymbolicLink());
    assert.equal(readFileSync(join(folder, 'real.txt'), 'utf8'), 'new');
  });

  test('a failed rename leaves the target untouched and no temporary file', async () => {
    const folder = mkdtempSync(join(dir, 'atomic-'));
    const target = join(folder, 'taken');
    mkdirSync(target);
    writeFileSync(join(target, 'inside'), 'keep');
    assert.throws(() => writeFileAtomic(target, 'data'), /EISDIR|EEXIST|ENOTEMPTY|EPERM/);
    await assert.rejects(writeFileAtomicAsync(target, 'data'), /EISDIR|EEXIST|ENOTEMPTY|EPERM/);
    assert.equal(readFileSync(join(target, 'inside'), 'utf8'), 'keep');
    assert.deepEqual(leftovers(folder), []);
  });

  test('a write that fails part-way (file size limit, as a full disk) leaves the old file intact', (t) => {
    const folder = mkdtempSync(join(dir, 'atomic-'));
    const path = join(folder, 'model.safetensors');
    writeFileSync(path, 'the good old checkpoint');
    // RLIMIT_FSIZE makes writes past 64 KiB fail with EFBIG, even for root (Node ignores SIGXFSZ).
    const moduleUrl = new URL('../src/util/atomic-write.js', import.meta.url).href;
    const script = `
      const { writeFileAtomic, writeFileAtomicAsync } = await import(${JSON.stringify(moduleUrl)});
      const big = [new Uint8Array(40000).fill(1), new Uint8Array(40000).fill(2), new Uint8Array(40000).fill(3)];
      const codes = [];
      try { writeFileAtomic(process.argv[1], big); codes.push('written'); } catch (e) { codes.push(e.code); }
      try { await writeFileAtomicAsync(process.argv[1], big); codes.push('written'); } catch (e) { codes.push(e.code); }
      console.log(codes.join(','));`;
    const result = spawnSync('/bin/sh', ['-c', 'ulimit -f 128 && exec "$0" --input-type=module -e "$1" "$2"', process.execPath, script, path], { encoding: 'utf8' });
    if (result.error || (result.status !== 0 && /ulimit/.test(result.stderr))) {
      t.skip(`cannot limit the file size here: ${result.error?.message ?? result.stderr}`);
      return;
    }
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'EFBIG,EFBIG');
    assert.equal(readFileSync(path, 'utf8'), 'the good old checkpoint');
    assert.deepEqual(leftovers(folder), []);
  });

  test('a chunk that is not bytes is refused before anything is written', () => {
    const folder = mkdtempSync(join(dir, 'atomic-'));
    const path = join(folder, 'x');
    assert.throws(() => writeFileAtomic(path, [Buffer.from('a'), 'b' as unknown as Uint8Array]), /every chunk must be a Uint8Array/);
    assert.equal(existsSync(path), false);
    assert.deepEqual(readdirSync(folder), []);
  });

  test('saveSafetensors that fails keeps the previous checkpoint', () => {
    const folder = mkdtempSync(join(dir, 'atomic-'));
    const path = join(folder, 'ckpt.safetensors');
    const good = { w: tensor(new Float32Array([1, 2, 3])) };
    saveSafetensors(path, good);
    const before = readFileSync(path);
    const gone = tensor(new Float32Array([1]));
    gone.dispose();
    assert.throws(() => saveSafetensors(path, { w: good.w, gone }), /disposed/);
    assert.deepEqual(readFileSync(path), before);
    assert.deepEqual(leftovers(folder), []);
    disposeAll(good);
  });
});

// ---- PyTorch cross-check ---------------------------------------------------------------------------------------

// safetensors is not installed with Debian's torch 1.13: the file is read by python/crossmax_ref's minimal reader, and
// written by a writer that keeps the reference implementation's layout (tensors by dtype, widest first, then by name;
// metadata sorted and not ASCII-escaped), which crossmax follows byte for byte and safetensors_lite.save does not.
const PYTHON_REFERENCE = String.raw`
import json, struct, sys, torch
sys.path.insert(0, ${JSON.stringify(PYTHON_DIR)})
from crossmax_ref.safetensors_lite import NAMES, load
torch.set_num_threads(1)
RANK = {'BOOL': 0, 'U8': 1, 'I8': 2, 'I16': 5, 'F16': 7, 'BF16': 8, 'I32': 9, 'F32': 11, 'F64': 12, 'I64': 13}

def write(path, tensors, metadata=None):
    items = sorted(tensors.items(), key=lambda kv: (-RANK[NAMES[kv[1].dtype]], kv[0].encode()))
    header, chunks, offset = {}, [], 0
    if metadata is not None:
        header['__metadata__'] = dict(sorted(metadata.items()))
    for name, t in items:
        raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {'dtype': NAMES[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(',', ':'), ensure_ascii=False).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + b''.join(chunks))

crossmax_file, rewritten_file, torch_file = sys.argv[1:4]
tensors, metadata = load(crossmax_file)
write(rewritten_file, tensors, metadata)
seen = {name: [NAMES[t.dtype], list(t.shape), t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()]
        for name, t in tensors.items()}

g = {}
g['f32.transposed'] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
g['f64'] = torch.tensor([0.1, -0.0, float('inf'), float('nan')], dtype=torch.float64)
g['bf16'] = (torch.arange(6, dtype=torch.float32) / 3).to(torch.bfloat16).reshape(2, 3)
g['f16'] = (torch.arange(6, dtype=torch.float32) / 7).to(torch.float16)
g['i64'] = torch.tensor([-2**63, 2**63 - 1, 0])
g['i32'] = torch.arange(-3, 3, dtype=torch.int32)
g['i16'] = torch.tensor([-32768, 32767], dtype=torch.int16)
g['i8'] = torch.tensor([-128, 127], dtype=torch.int8)
g['u8'] = torch.arange(250, 256, dtype=torch.uint8)
g['bool'] = torch.tensor([True, False, True])
g['empty'] = torch.zeros(0, 4)
g['scalar'] = torch.tensor(2.5, dtype=torch.float64)
write(torch_file, g, {'framework': 'pt', 'epoch': '3'})
print(json.dumps({'metadata': metadata, 'tensors': seen}))
`;

describe('safetensors files agree with PyTorch', () => {
  test('crossmax -> PyTorch and PyTorch -> crossmax, with identical bytes', (t) => {
    const why = pythonMissing('torch');
    if (why) {
      t.skip(why);
      return;
    }
    const tensors = fixtures();
    const metadata = { format: 'pt', note: 'ünïcode' };
    const crossmaxFile = freshPath('crossmax.safetensors');
    const rewrittenFile = freshPath('rewritten.safetensors');
    const torchFile = freshPath('torch.safetensors');
    saveSafetensors(crossmaxFile, tensors, metadata);
    const seen = runPythonJson<{ metadata: Record<string, string>; tensors: Record<string, [string, number[], string]> }>(
      PYTHON_REFERENCE, { args: [crossmaxFile, rewrittenFile, torchFile] });

    // (a) PyTorch reads what crossmax wrote: same names, dtypes, shapes and bits.
    assert.deepEqual(seen.metadata, metadata);
    assert.deepEqual(Object.keys(seen.tensors).sort(), [...tensors.keys()].sort());
    const safetensorsName: Record<DType, string> = {
      float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16', int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
    };
    for (const [name, expected] of tensors) {
      assert.deepEqual(seen.tensors[name], [safetensorsName[expected.dtype], expected.shape, rawBytes(expected).toString('hex')], name);
    }
    // The reference layout written in Python is byte for byte crossmax's.
    assert.deepEqual(readFileSync(rewrittenFile), readFileSync(crossmaxFile));

    // (b) crossmax reads what PyTorch wrote.
    const loaded = loadSafetensors(torchFile);
    assert.deepEqual(loaded.metadata, { framework: 'pt', epoch: '3' });
    const expected = new Map<string, Tensor>([
      ['f32.transposed', arange(0, 12, 1, { dtype: 'float32' }).reshape([3, 4]).transpose(0, 1).contiguous()],
      ['f64', tensor(new Float64Array([0.1, -0, Infinity, NaN]))],
      ['bf16', arange(0, 6, 1, { dtype: 'float32' }).div(3).to('bfloat16').reshape([2, 3])],
      ['f16', arange(0, 6, 1, { dtype: 'float32' }).div(7).to('float16')],
      ['i64', tensor(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n]))],
      ['i32', tensor(new Int32Array([-3, -2, -1, 0, 1, 2]))],
      ['i16', tensor(new Int16Array([-32768, 32767]))],
      ['i8', tensor(new Int8Array([-128, 127]))],
      ['u8', tensor(new Uint8Array([250, 251, 252, 253, 254, 255]))],
      ['bool', tensor(new Uint8Array([1, 0, 1]), { dtype: 'bool' })],
      ['empty', zeros([0, 4])],
      ['scalar', tensor(new Float64Array([2.5]), { shape: [] })],
    ]);
    assert.deepEqual([...loaded.tensors.keys()].sort(), [...expected.keys()].sort());
    for (const [name, e] of expected) assertSameTensor(loaded.tensors.get(name), e, name);
    // Re-encoding what was loaded reproduces PyTorch's file exactly.
    assert.deepEqual(concat(encodeSafetensors(loaded.tensors, loaded.metadata)), readFileSync(torchFile));
    disposeAll([tensors, loaded.tensors, expected]);
  });
});
