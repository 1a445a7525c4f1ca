// src/data: CIFAR binary and python releases, the safe pickle reader, image folders and their cache,
// tar.gz + MD5 download path, the seeded loader and augmentation. Data sets are built here, tiny.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';
import { liveTensorCount } from '../src/tensor/index.js';
import {
  DataLoader, InMemoryImageDataset, RandomStream, type ArchiveSpec, ensureCifar, ensureDataset, extractTarGz,
  loadImageFolder, loadPickle, NumpyArray, parseCifarPythonBatch, projectRoot, randomCropFlip, readCifarBinary,
  readCifarPython, loadDefaultCifar10, naturalCompare, pickleText,
} from '../src/data/index.js';
import { pythonMissing, runPython } from './helpers/python.js';

const work = mkdtempSync(join(tmpdir(), 'crossmax-data-test-'));
after(() => rmSync(work, { recursive: true, force: true }));
let dirCount = 0;
function freshDir(name: string): string {
  const dir = join(work, `${name}-${dirCount++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

const CIFAR10_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

/** A deterministic 3072-byte image for (file, record). */
function pixels(seed: number): Uint8Array {
  return Uint8Array.from({ length: 3072 }, (_, i) => (i * 7 + seed * 31) & 0xff);
}

function binaryRecords(labels: number[][], seed: number): Buffer {
  const size = labels[0]!.length + 3072;
  const out = Buffer.alloc(labels.length * size);
  labels.forEach((l, r) => {
    out.set(l, r * size);
    out.set(pixels(seed + r), r * size + l.length);
  });
  return out;
}

/** A CIFAR-10 binary release with `perFile` records per file; file f record r has label (f + r) % 10. */
function writeCifar10Binary(perFile = 3): string {
  const dir = freshDir('cifar-10-batches-bin');
  writeFileSync(join(dir, 'batches.meta.txt'), CIFAR10_NAMES.join('\n') + '\n\n');
  const files = ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin', 'test_batch.bin'];
  files.forEach((file, f) => {
    writeFileSync(join(dir, file), binaryRecords(Array.from({ length: perFile }, (_, r) => [(f + r) % 10]), 100 * f));
  });
  return dir;
}

// ---- CIFAR binary ------------------------------------------------------------------------------------------

test('CIFAR-10 binary: records, class names, splits and the float batch', () => {
  const dir = writeCifar10Binary();
  const ds = readCifarBinary(dir, { name: 'cifar10', split: 'test', checkCounts: false });
  assert.equal(ds.name, 'cifar10/test');
  assert.deepEqual([...ds.classes], CIFAR10_NAMES);
  assert.equal(ds.length, 3);
  assert.deepEqual([...ds.labels], [5, 6, 7]);
  assert.deepEqual(ds.images.subarray(3072, 6144), pixels(501));
  assert.match(ds.source, /cifar-10-batches-bin.*official CIFAR-10 binary release/);
  const train = readCifarBinary(dir, { name: 'cifar10', split: 'train', checkCounts: false });
  assert.equal(train.length, 15);
  assert.deepEqual([...train.labels.subarray(3, 6)], [1, 2, 3]);
  assert.deepEqual(train.images.subarray(3 * 3072, 4 * 3072), pixels(100));

  const before = liveTensorCount();
  const batch = ds.batch([2, 0]);
  assert.deepEqual(batch.images.shape, [2, 3, 32, 32]);
  assert.equal(batch.images.dtype, 'float32');
  assert.equal(batch.labels.dtype, 'int64');
  assert.deepEqual(batch.labels.toArray(), [7, 5]);
  const values = batch.images.toTypedArray() as Float32Array;
  const expected = pixels(502);
  for (const i of [0, 1, 1000, 3071]) assert.equal(values[i], Math.fround(expected[i]! / 255));
  assert.equal(values[3072], Math.fround(pixels(500)[0]! / 255));
  batch.dispose();
  assert.equal(liveTensorCount(), before);
  assert.throws(() => ds.batch([3]), /index 3 out of range/);
});

test('CIFAR-10 binary: truncated, corrupt and missing files are errors that name the file', () => {
  const dir = writeCifar10Binary();
  assert.throws(() => readCifarBinary(dir, { name: 'cifar10', split: 'test' }), /test_batch\.bin: 3 images, expected 10,000 \(truncated/);
  writeFileSync(join(dir, 'test_batch.bin'), binaryRecords([[1], [2], [3]], 0).subarray(0, 3 * 3073 - 1));
  assert.throws(() => readCifarBinary(dir, { name: 'cifar10', split: 'test', checkCounts: false }),
    /test_batch\.bin: 9218 bytes is not a multiple of 3073 \(truncated\?\)/);
  writeFileSync(join(dir, 'test_batch.bin'), binaryRecords([[1], [17], [3]], 0));
  assert.throws(() => readCifarBinary(dir, { name: 'cifar10', split: 'test', checkCounts: false }),
    /test_batch\.bin: label 17 out of range for CIFAR-10 \(record 1/);
  unlinkSync(join(dir, 'data_batch_3.bin'));
  assert.throws(() => readCifarBinary(dir, { name: 'cifar10', split: 'train', checkCounts: false }), /data_batch_3\.bin: missing/);
  writeFileSync(join(dir, 'batches.meta.txt'), 'airplane\nautomobile\n');
  assert.throws(() => readCifarBinary(dir, { name: 'cifar10', split: 'test', checkCounts: false }), /batches\.meta\.txt: 2 class names, expected 10/);
  unlinkSync(join(dir, 'batches.meta.txt'));
  assert.throws(() => readCifarBinary(dir, { name: 'cifar10', split: 'test', checkCounts: false }), /batches\.meta\.txt: missing/);
});

test('CIFAR-100 binary: coarse and fine labels, names from fine/coarse_label_names.txt', () => {
  const dir = freshDir('cifar-100-binary');
  const fine = Array.from({ length: 100 }, (_, i) => `fine${i}`);
  const coarse = Array.from({ length: 20 }, (_, i) => `coarse${i}`);
  writeFileSync(join(dir, 'fine_label_names.txt'), fine.join('\n'));
  writeFileSync(join(dir, 'coarse_label_names.txt'), coarse.join('\n'));
  writeFileSync(join(dir, 'train.bin'), binaryRecords([[19, 99], [0, 3], [4, 42]], 7));
  writeFileSync(join(dir, 'test.bin'), binaryRecords([[1, 2]], 9));
  const ds = readCifarBinary(dir, { name: 'cifar100', checkCounts: false });
  assert.equal(ds.name, 'cifar100/train');
  assert.equal(ds.classes.length, 100);
  assert.equal(ds.classes[99], 'fine99');
  assert.deepEqual([...ds.labels], [99, 3, 42]);
  assert.deepEqual(ds.images.subarray(3072 * 2), pixels(9));
  const coarseDs = readCifarBinary(dir, { name: 'cifar100', labelKind: 'coarse', checkCounts: false });
  assert.deepEqual([...coarseDs.labels], [19, 0, 4]);
  assert.deepEqual([...coarseDs.classes], coarse);
  assert.equal(readCifarBinary(dir, { name: 'cifar100', split: 'test', checkCounts: false }).labels[0], 2);
  assert.throws(() => readCifarBinary(dir, { name: 'cifar100' }), /train\.bin: 3 images, expected 50,000/);
  writeFileSync(join(dir, 'test.bin'), binaryRecords([[1, 100]], 9));
  assert.throws(() => readCifarBinary(dir, { name: 'cifar100', split: 'test', checkCounts: false }), /fine label 100 out of range for CIFAR-100/);
  writeFileSync(join(dir, 'test.bin'), binaryRecords([[20, 1]], 9));
  assert.throws(() => readCifarBinary(dir, { name: 'cifar100', split: 'test', checkCounts: false }), /coarse label 20 out of range/);
});

// ---- pickles -----------------------------------------------------------------------------------------------

/** Writes pickles the way Python 2's cPickle (protocol 2) wrote the official CIFAR python files. */
class Py2Pickler {
  private parts: Buffer[] = [Buffer.from([0x80, 0x02])];
  private memo = 0;
  op(...bytes: number[]): this { this.parts.push(Buffer.from(bytes)); return this; }
  put(): this { return this.op(0x71, ++this.memo & 0xff); }
  str(s: string | Uint8Array): this {
    const b = typeof s === 'string' ? Buffer.from(s, 'latin1') : Buffer.from(s);
    if (b.length < 256) this.parts.push(Buffer.from([0x55, b.length]), b);
    else { const h = Buffer.alloc(5); h[0] = 0x54; h.writeInt32LE(b.length, 1); this.parts.push(h, b); }
    return this.put();
  }
  int(v: number): this {
    if (v >= 0 && v < 256) return this.op(0x4b, v);
    if (v >= 0 && v < 65536) return this.op(0x4d, v & 0xff, v >> 8);
    const b = Buffer.alloc(5); b[0] = 0x4a; b.writeInt32LE(v, 1); this.parts.push(b); return this;
  }
  global(module: string, name: string): this { this.parts.push(Buffer.from(`c${module}\n${name}\n`, 'latin1')); return this.put(); }
  uint8Array(rows: number, cols: number, data: Uint8Array): this {
    this.global('numpy.core.multiarray', '_reconstruct').global('numpy', 'ndarray').int(0).op(0x85).put().str('b').op(0x87).put().op(0x52).put();
    this.op(0x28).int(1).int(rows).int(cols).op(0x86).put();
    this.global('numpy', 'dtype').str('u1').int(0).int(1).op(0x87).put().op(0x52).put();
    this.op(0x28).int(3).str('|').op(0x4e, 0x4e, 0x4e).int(-1).int(-1).int(0).op(0x74).put().op(0x62);
    return this.op(0x89).str(data).op(0x74).put().op(0x62);
  }
  intList(values: number[]): this {
    this.op(0x5d).put();
    for (let i = 0; i < values.length; i += 1000) { // cPickle's batches of 1000 APPENDS
      this.op(0x28);
      for (const v of values.slice(i, i + 1000)) this.int(v);
      this.op(0x65);
    }
    return this;
  }
  strList(values: string[]): this {
    this.op(0x5d).put().op(0x28);
    for (const v of values) this.str(v);
    return this.op(0x65);
  }
  bytes(): Buffer { return Buffer.concat([...this.parts, Buffer.from('.')]); }
}

function py2CifarBatch(labels: number[], seed: number, labelKeys: { key: string; values: number[] }[] = [{ key: 'labels', values: labels }]): Buffer {
  const data = new Uint8Array(labels.length * 3072);
  labels.forEach((_, r) => data.set(pixels(seed + r), r * 3072));
  const p = new Py2Pickler().op(0x7d).put().op(0x28);
  p.str('data').uint8Array(labels.length, 3072, data);
  for (const { key, values } of labelKeys) p.str(key).intList(values);
  p.str('batch_label').str('testing batch 1 of 1');
  p.str('filenames').strList(labels.map((_, i) => `image_${i}.png`));
  return p.op(0x75).bytes();
}

test('pickle: a Python 2 cPickle CIFAR-10 batch (as in cifar-10-batches-py)', () => {
  const labels = Array.from({ length: 1001 }, (_, i) => (i * 3) % 10);
  const batch = parseCifarPythonBatch(py2CifarBatch(labels, 5), 'data_batch_1', 'cifar10');
  assert.deepEqual(batch.labels, labels);
  assert.equal(batch.images.length, 1001 * 3072);
  assert.deepEqual(batch.images.subarray(3072 * 7, 3072 * 8), pixels(12));
  assert.equal(batch.filenames[1000], 'image_1000.png');

  const dir = freshDir('cifar-10-batches-py');
  const meta = new Py2Pickler().op(0x7d).put().op(0x28).str('num_cases_per_batch').int(10000)
    .str('label_names').strList(CIFAR10_NAMES).str('num_vis').int(3072).op(0x75).bytes();
  writeFileSync(join(dir, 'batches.meta'), meta);
  writeFileSync(join(dir, 'test_batch'), py2CifarBatch([3, 1, 4, 1, 5], 40));
  const ds = readCifarPython(dir, { name: 'cifar10', split: 'test', checkCounts: false });
  assert.deepEqual([...ds.classes], CIFAR10_NAMES);
  assert.deepEqual([...ds.labels], [3, 1, 4, 1, 5]);
  assert.deepEqual(ds.images.subarray(3072 * 4), pixels(44));
  assert.throws(() => readCifarPython(dir, { name: 'cifar10', split: 'test' }), /test_batch: 5 images, expected 10,000/);
  writeFileSync(join(dir, 'test_batch'), py2CifarBatch([3, 12], 40));
  assert.throws(() => readCifarPython(dir, { name: 'cifar10', split: 'test', checkCounts: false }), /test_batch: label 12 out of range for CIFAR-10/);
  const good = py2CifarBatch([3, 1], 40);
  writeFileSync(join(dir, 'test_batch'), good.subarray(0, 3000));
  assert.throws(() => readCifarPython(dir, { name: 'cifar10', split: 'test', checkCounts: false }), /test_batch: truncated/);
  assert.throws(() => readCifarPython(dir, { name: 'cifar10', split: 'train', checkCounts: false }), /data_batch_1: missing/);
});

test('pickle: refuses anything but data (no code execution), and unknown opcodes', () => {
  const evil = Buffer.from("cos\nsystem\n(S'echo owned'\ntR.", 'latin1');
  assert.throws(() => loadPickle(evil, 'evil.pkl'), /evil\.pkl: refusing pickle global 'os\.system'/);
  const builtinsEval = Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from('c__builtin__\neval\n', 'latin1'), Buffer.from('.')]);
  assert.throws(() => loadPickle(builtinsEval, 'b.pkl'), /refusing pickle global '__builtin__\.eval'/);
  // NEWOBJ (0x81) is a valid opcode that these files never use.
  assert.throws(() => loadPickle(Buffer.from([0x80, 0x02, 0x81, 0x2e]), 'x.pkl'), /x\.pkl: unsupported pickle opcode 0x81/);
  // A global that is allowed as an argument is still not data.
  assert.throws(() => loadPickle(Buffer.from('cnumpy\nndarray\n.', 'latin1'), 'y.pkl'), /not data/);
  const simple = loadPickle(new Py2Pickler().op(0x7d).put().op(0x28).str('k').int(70000).str('s').str('\xe9').op(0x75).bytes(), 's.pkl');
  assert.ok(simple instanceof Map);
  assert.equal(simple.get('k'), 70000);
  assert.equal(pickleText(simple.get('s')!), '\xe9');
});

test('pickle: files written by Python 3 pickle + numpy (protocols 2 and 4), a CIFAR-100 python release', (t) => {
  const numpyMissing = pythonMissing('numpy, pickle');
  if (numpyMissing) { t.skip(numpyMissing); return; }
  const dir = freshDir('cifar-100-python');
  const script = `
import numpy as np, pickle, sys, os
d = sys.argv[1]
def px(seed): return ((np.arange(3072) * 7 + seed * 31) & 255).astype(np.uint8)
def batch(n, seed, proto, path):
    data = np.stack([px(seed + r) for r in range(n)])
    obj = {b'filenames': [('f%d.png' % i).encode() for i in range(n)], b'batch_label': b'x',
           b'fine_labels': [(r * 37) % 100 for r in range(n)], b'coarse_labels': [(r * 7) % 20 for r in range(n)], b'data': data}
    with open(path, 'wb') as f: pickle.dump(obj, f, protocol=proto)
batch(4, 3, 2, os.path.join(d, 'train'))
batch(2, 9, 4, os.path.join(d, 'test'))
meta = {b'fine_label_names': [('fine%d' % i).encode() for i in range(100)], b'coarse_label_names': [('c%d' % i).encode() for i in range(20)]}
with open(os.path.join(d, 'meta'), 'wb') as f: pickle.dump(meta, f, protocol=2)
with open(os.path.join(d, 'arrays'), 'wb') as f:
    pickle.dump({'i64': np.array([[-5, 2**40], [7, 0]], dtype=np.int64), 'f4': np.array([0.5, -2.25], dtype=np.float32), 'e': b''}, f, protocol=2)
`;
  runPython(script, { args: [dir] });
  const train = readCifarPython(dir, { name: 'cifar100', checkCounts: false });
  assert.deepEqual([...train.labels], [0, 37, 74, 11]);
  assert.equal(train.classes[5], 'fine5');
  assert.deepEqual(train.images.subarray(3072 * 3), pixels(6));
  const test4 = readCifarPython(dir, { name: 'cifar100', split: 'test', labelKind: 'coarse', checkCounts: false });
  assert.deepEqual([...test4.labels], [0, 7]);
  assert.equal(test4.classes.length, 20);
  assert.deepEqual(test4.images.subarray(0, 3072), pixels(9));
  const arrays = loadPickle(readFileSync(join(dir, 'arrays')), 'arrays') as Map<string, unknown>;
  const i64 = arrays.get('i64') as NumpyArray;
  assert.ok(i64 instanceof NumpyArray);
  assert.deepEqual(i64.shape, [2, 2]);
  assert.deepEqual(i64.toNumbers(), [-5, 2 ** 40, 7, 0]);
  assert.deepEqual((arrays.get('f4') as NumpyArray).toNumbers(), [0.5, -2.25]);
  assert.deepEqual(arrays.get('e'), new Uint8Array(0));
});

// ---- image folders -----------------------------------------------------------------------------------------

function pngBytes(height: number, width: number, seed: number): Buffer {
  const png = new PNG({ width, height });
  for (let i = 0; i < width * height; i++) {
    png.data[4 * i] = (seed + i) & 0xff;
    png.data[4 * i + 1] = (seed * 3 + 2 * i) & 0xff;
    png.data[4 * i + 2] = (seed * 5 + 3 * i) & 0xff;
    png.data[4 * i + 3] = 255;
  }
  return PNG.sync.write(png);
}

function makeImageFolder(): string {
  const root = freshDir('folder');
  for (const [cls, seeds] of [['dog', [1, 2, 3]], ['cat', [10, 11]]] as const) {
    mkdirSync(join(root, 'train', cls), { recursive: true });
    // img10 after img2: natural order, not code-point order.
    seeds.forEach((s, i) => writeFileSync(join(root, 'train', cls, `img${i === 2 ? 10 : i}.png`), pngBytes(4, 5, s)));
  }
  writeFileSync(join(root, 'train', 'cat', 'notes.txt'), 'not an image');
  return join(root, 'train');
}

test('image folder: sorted classes, CHW pixels, JPEG too, and the decoded cache (hit, miss, invalidation)', () => {
  const dir = makeImageFolder();
  const cacheDir = freshDir('cache');
  const first = loadImageFolder(dir, { cacheDir });
  assert.equal(first.cache.status, 'miss');
  assert.deepEqual([...first.classes], ['cat', 'dog']);
  assert.deepEqual([...first.labels], [0, 0, 1, 1, 1]);
  assert.equal(first.height, 4);
  assert.equal(first.width, 5);
  assert.match(first.name, /folder-\d+\/train/);
  // Image 2 is dog/img0.png (seed 1): planar R, G, B.
  const img = first.images.subarray(2 * 60, 3 * 60);
  assert.deepEqual([...img.subarray(0, 3)], [1, 2, 3]);
  assert.deepEqual([...img.subarray(20, 23)], [3, 5, 7]);
  assert.deepEqual([...img.subarray(40, 43)], [5, 8, 11]);
  assert.deepEqual(first.images.subarray(4 * 60, 4 * 60 + 1)[0], 3); // dog/img10.png is last

  const second = loadImageFolder(dir, { cacheDir });
  assert.equal(second.cache.status, 'hit');
  assert.equal(second.cache.path, first.cache.path);
  assert.deepEqual(second.images, first.images);
  assert.deepEqual(second.labels, first.labels);
  assert.deepEqual([...second.classes], ['cat', 'dog']);

  // A changed file (new content and mtime) invalidates the cache.
  const changed = join(dir, 'dog', 'img1.png');
  writeFileSync(changed, pngBytes(4, 5, 50));
  utimesSync(changed, new Date(), new Date(Date.now() + 5000));
  const third = loadImageFolder(dir, { cacheDir });
  assert.equal(third.cache.status, 'invalidated');
  assert.equal(third.images[3 * 60], 50);
  assert.equal(loadImageFolder(dir, { cacheDir }).cache.status, 'hit');
  // A new file too.
  writeFileSync(join(dir, 'cat', 'img9.png'), pngBytes(4, 5, 60));
  const fourth = loadImageFolder(dir, { cacheDir });
  assert.equal(fourth.cache.status, 'invalidated');
  assert.equal(fourth.length, 6);
  // A damaged cache file is rebuilt, not trusted.
  writeFileSync(fourth.cache.path!, readFileSync(fourth.cache.path!).subarray(0, 100));
  assert.equal(loadImageFolder(dir, { cacheDir }).cache.status, 'invalidated');
  assert.equal(loadImageFolder(dir, { cacheDir: null }).cache.status, 'disabled');

  // A given class list fixes the label order.
  const reordered = loadImageFolder(dir, { cacheDir, classes: ['dog', 'cat'] });
  assert.deepEqual([...reordered.labels], [0, 0, 0, 1, 1, 1]);
  assert.equal(reordered.cache.status, 'miss');
  assert.throws(() => loadImageFolder(dir, { cacheDir: null, classes: ['dog', 'cat', 'bird'] }), /no folder for class bird/);
  assert.throws(() => loadImageFolder(dir, { cacheDir: null, classes: ['dog'] }), /folder cat not in the given class list/);

  // JPEG, decoded by jpeg-js: close to the encoded pixels (lossy).
  const jpegDir = freshDir('jpeg');
  mkdirSync(join(jpegDir, 'a'));
  const rgba = Buffer.alloc(8 * 8 * 4);
  for (let i = 0; i < 64; i++) rgba.set([200, 100, 50, 255], 4 * i);
  writeFileSync(join(jpegDir, 'a', 'x.jpg'), jpeg.encode({ data: rgba, width: 8, height: 8 }, 95).data);
  const j = loadImageFolder(jpegDir, { cacheDir: null });
  assert.ok(Math.abs(j.images[0]! - 200) <= 3 && Math.abs(j.images[64]! - 100) <= 3 && Math.abs(j.images[128]! - 50) <= 3, `${j.images[0]} ${j.images[64]} ${j.images[128]}`);
});

test('image folder: errors name the odd file', () => {
  const dir = makeImageFolder();
  writeFileSync(join(dir, 'dog', 'img5.png'), pngBytes(6, 5, 1));
  assert.throws(() => loadImageFolder(dir, { cacheDir: null }), /dog\/img5\.png: 6×5 pixels, but .*cat\/img0\.png .* are 4×5/);
  writeFileSync(join(dir, 'dog', 'img5.png'), 'garbage');
  assert.throws(() => loadImageFolder(dir, { cacheDir: null }), /dog\/img5\.png: neither PNG nor JPEG/);
  writeFileSync(join(dir, 'dog', 'img5.png'), pngBytes(4, 5, 1).subarray(0, 40));
  assert.throws(() => loadImageFolder(dir, { cacheDir: null }), /dog\/img5\.png: cannot decode image/);
  assert.throws(() => loadImageFolder(join(dir, 'nope'), { cacheDir: null }), /nope: no such image folder/);
  mkdirSync(join(dir, 'empty'));
  assert.throws(() => loadImageFolder(dir, { cacheDir: null }), /empty: no \.png\/\.jpg\/\.jpeg images/);
});

test('naturalCompare orders digit runs as numbers', () => {
  assert.deepEqual(['img10.png', 'img2.png', 'img1.png', 'a.png'].sort(naturalCompare), ['a.png', 'img1.png', 'img2.png', 'img10.png']);
});

// ---- tar.gz, MD5, download ---------------------------------------------------------------------------------

/** One ustar header block for `name` (used to build archives GNU tar would refuse to write). */
function tarHeader(name: string, size: number, type = '0', linkName = ''): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 'utf8');
  h.write(linkName, 157, 'utf8');
  h.write('0000644\0', 100); h.write('0000000\0', 108); h.write('0000000\0', 116);
  h.write(size.toString(8).padStart(11, '0') + '\0', 124);
  h.write('00000000000\0', 136);
  h.write(type, 156);
  h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

function tarFile(entries: { name: string; data: Buffer; type?: string; linkName?: string }[]): Buffer {
  const parts: Buffer[] = [];
  for (const { name, data, type, linkName } of entries) {
    parts.push(tarHeader(name, data.length, type, linkName), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(parts));
}

const hasTar = spawnSync('tar', ['--version']).status === 0;
const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const longName = `${'very-long-file-name-'.repeat(6)}.bin`;

/** A tiny release: folder tiny-release/ with three files, one with a >100-character name. */
function makeTinyArchive(): { archive: Buffer; spec: ArchiveSpec } {
  const src = freshDir('tar-src');
  mkdirSync(join(src, 'tiny-release'));
  writeFileSync(join(src, 'tiny-release', 'a.bin'), Buffer.alloc(1000, 7));
  writeFileSync(join(src, 'tiny-release', 'b.txt'), 'hello\n');
  writeFileSync(join(src, 'tiny-release', longName), Buffer.alloc(513, 1));
  const out = join(src, 'tiny.tar.gz');
  const r = spawnSync('tar', ['-czf', out, '-C', src, 'tiny-release']);
  assert.equal(r.status, 0, String(r.stderr));
  const archive = readFileSync(out);
  return {
    archive,
    spec: { description: 'tiny test release', archive: 'tiny.tar.gz', url: 'http://127.0.0.1:9/tiny.tar.gz', md5: md5(archive), folder: 'tiny-release', files: ['a.bin', 'b.txt', longName] },
  };
}

test('tar.gz: extraction (GNU long names) and path safety', async (t) => {
  if (!hasTar) { t.skip('no tar command to build the archive'); return; }
  const { archive } = makeTinyArchive();
  const path = join(freshDir('tgz'), 'tiny.tar.gz');
  writeFileSync(path, archive);
  const dest = freshDir('out');
  const files = await extractTarGz(path, dest);
  assert.deepEqual(files.sort(), ['tiny-release/a.bin', 'tiny-release/b.txt', `tiny-release/${longName}`].sort());
  assert.deepEqual(readFileSync(join(dest, 'tiny-release', 'a.bin')), Buffer.alloc(1000, 7));
  assert.equal(readFileSync(join(dest, 'tiny-release', longName)).length, 513);

  const evil = join(freshDir('evil'), 'evil.tar.gz');
  writeFileSync(evil, tarFile([{ name: '../escaped.txt', data: Buffer.from('x') }]));
  const evilDest = freshDir('evil-out');
  await assert.rejects(extractTarGz(evil, evilDest), /refusing unsafe path '\.\.\/escaped\.txt'/);
  assert.equal(existsSync(resolve(evilDest, '..', 'escaped.txt')), false);
  writeFileSync(evil, tarFile([{ name: '/abs.txt', data: Buffer.from('x') }]));
  await assert.rejects(extractTarGz(evil, evilDest), /refusing unsafe path '\/abs\.txt'/);
  writeFileSync(evil, archive.subarray(0, archive.length - 20));
  await assert.rejects(extractTarGz(evil, evilDest), /evil\.tar\.gz: (not a valid \.tar\.gz|truncated)/);
  writeFileSync(evil, gzipSync(Buffer.concat([Buffer.from('garbage!'), Buffer.alloc(504)])));
  await assert.rejects(extractTarGz(evil, evilDest), /bad tar header checksum/);
  await assert.rejects(extractTarGz(join(dest, 'none.tar.gz'), evilDest), /none\.tar\.gz: missing/);

  // Folders and regular files are written; links and special files are skipped.
  const mixed = join(freshDir('mixed'), 'mixed.tar.gz');
  writeFileSync(mixed, tarFile([
    { name: 'release/', data: Buffer.alloc(0), type: '5' },
    { name: 'release/a.txt', data: Buffer.from('a') },
    { name: 'release/link', data: Buffer.alloc(0), type: '2', linkName: '/etc/passwd' },
    { name: 'release/hard', data: Buffer.alloc(0), type: '1', linkName: 'release/a.txt' },
    { name: 'release/fifo', data: Buffer.alloc(0), type: '6' },
  ]));
  const mixedDest = freshDir('mixed-out');
  assert.deepEqual(await extractTarGz(mixed, mixedDest), ['release/a.txt']);
  assert.deepEqual(readdirSync(join(mixedDest, 'release')), ['a.txt']);
});

test('ensureDataset: found, extracted after MD5 check, downloaded (local server), offline message', async (t) => {
  if (!hasTar) { t.skip('no tar command to build the archive'); return; }
  const { archive, spec } = makeTinyArchive();

  // An archive on disk with the right MD5 is extracted; afterwards the folder is found.
  const root = freshDir('root');
  writeFileSync(join(root, 'tiny.tar.gz'), archive);
  const extracted = await ensureDataset(spec, { root, download: false });
  assert.equal(extracted.how, 'extracted');
  assert.equal(extracted.dir, join(root, 'tiny-release'));
  assert.equal((await ensureDataset(spec, { root, download: false })).how, 'found');
  assert.deepEqual(readdirNoHidden(root).sort(), ['tiny-release', 'tiny.tar.gz']);
  // Found in a search path too.
  assert.equal((await ensureDataset(spec, { root: freshDir('empty'), searchPaths: [root], download: false })).dir, join(root, 'tiny-release'));

  // Wrong MD5: an error, nothing extracted.
  const root2 = freshDir('root');
  writeFileSync(join(root2, 'tiny.tar.gz'), archive);
  await assert.rejects(ensureDataset({ ...spec, md5: '0'.repeat(32) }, { root: root2, download: false }),
    /tiny\.tar\.gz: md5 [0-9a-f]{32}, expected 0{32} \(corrupt or incomplete download/);
  assert.equal(existsSync(join(root2, 'tiny-release')), false);

  // Downloaded from a local HTTP server, MD5-checked, extracted.
  const server = createServer((req, res) => {
    if (req.url === '/tiny.tar.gz') { res.writeHead(200); res.end(archive); } else { res.writeHead(404); res.end(); }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as AddressInfo).port;
    const root3 = freshDir('root');
    const got = await ensureDataset({ ...spec, url: `http://127.0.0.1:${port}/tiny.tar.gz` }, { root: root3 });
    assert.equal(got.how, 'downloaded');
    assert.deepEqual(readFileSync(join(got.dir, 'b.txt'), 'utf8'), 'hello\n');
    await assert.rejects(ensureDataset({ ...spec, url: `http://127.0.0.1:${port}/tiny.tar.gz`, md5: 'f'.repeat(32) }, { root: freshDir('root') }),
      /has md5 [0-9a-f]{32}, expected f{32}/);
    await assert.rejects(ensureDataset({ ...spec, url: `http://127.0.0.1:${port}/missing.tar.gz` }, { root: freshDir('root') }), /HTTP 404/);
  } finally {
    server.close();
  }

  // Offline (nothing listens on the port): the error says so and where to put the files.
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const closedPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const root4 = freshDir('root');
  await assert.rejects(ensureDataset({ ...spec, url: `http://127.0.0.1:${closedPort}/tiny.tar.gz` }, { root: root4 }), (err: Error) => {
    assert.match(err.message, /could not download http:\/\/127\.0\.0\.1:\d+\/tiny\.tar\.gz: .*looks offline/);
    assert.ok(err.message.includes(`Put tiny.tar.gz (md5 ${spec.md5}) in ${root4}, or its extracted folder tiny-release/ in ${root4}`), err.message);
    return true;
  });
});

function readdirNoHidden(dir: string): string[] {
  return readdirSync(dir).filter((n) => !n.startsWith('.'));
}

test('ensureCifar: official names and MD5s; with downloads off, says where to put the files', async () => {
  const root = freshDir('nothing');
  await assert.rejects(ensureCifar({ name: 'cifar10', format: 'binary', root, download: false }),
    /official CIFAR-10 binary release not found and downloading is off\. Put cifar-10-binary\.tar\.gz \(md5 c32a1d4ab5d03f1284b67883e8d87530\) in .*, or its extracted folder cifar-10-batches-bin\//);
  await assert.rejects(ensureCifar({ name: 'cifar100', format: 'python', root, download: false }), /cifar-100-python\.tar\.gz \(md5 eb9058c3a382ffc7106e4002c42a8d85\)/);
  await assert.rejects(ensureCifar({ name: 'cifar100', format: 'binary', root, download: false }), /cifar-100-binary\.tar\.gz \(md5 03b5dce01913d631647c71ecec9e9cb8\)/);
  await assert.rejects(ensureCifar({ name: 'cifar10', format: 'python', root, download: false }), /cifar-10-python\.tar\.gz \(md5 c58f30108f718f92721af3b95e74349a\)/);
  // A tiny but complete binary folder in a search path is found.
  const dir = writeCifar10Binary(1);
  const found = await ensureCifar({ name: 'cifar10', root, searchPaths: [dir], download: false });
  assert.equal(found.how, 'found');
  assert.equal(found.dir, dir);
});

// ---- loader and augmentation -------------------------------------------------------------------------------

function tinyDataset(n = 10, h = 6, w = 5): InMemoryImageDataset {
  const images = Uint8Array.from({ length: n * 3 * h * w }, (_, i) => (i * 13 + 1) & 0xff);
  return new InMemoryImageDataset({
    name: 'tiny', classes: ['a', 'b', 'c'], images, labels: Uint8Array.from({ length: n }, (_, i) => i % 3),
    height: h, width: w, source: 'made in the test',
  });
}

test('loader: seed and epoch determine the order exactly; batches, dropLast, resume', () => {
  const ds = tinyDataset();
  const a = new DataLoader(ds, { batchSize: 4, seed: 7 });
  const b = new DataLoader(ds, { batchSize: 4, seed: 7 });
  assert.equal(a.length, 3);
  assert.equal(new DataLoader(ds, { batchSize: 4, dropLast: true }).length, 2);
  assert.deepEqual(a.order(3), b.order(3));
  assert.notDeepEqual([...a.order(3)], [...a.order(4)]);
  assert.notDeepEqual([...a.order(3)], [...new DataLoader(ds, { batchSize: 4, seed: 8 }).order(3)]);
  assert.deepEqual([...a.order(3)].sort((x, y) => x - y), [...Array(10).keys()]);
  assert.deepEqual([...new DataLoader(ds, { shuffle: false }).order(5)], [...Array(10).keys()]);
  // Pinned: the order must not change between versions (resumed runs and published seeds depend on it).
  assert.deepEqual([...a.order(3)], PINNED_ORDER);

  const before = liveTensorCount();
  const seen: number[] = [];
  const sizes: number[] = [];
  for (const batch of a.epoch(3)) {
    seen.push(...batch.indices);
    sizes.push(batch.labels.shape[0]!);
    assert.deepEqual(batch.labels.toArray(), [...batch.indices].map((i) => i % 3));
    batch.dispose();
  }
  assert.deepEqual(seen, [...a.order(3)]);
  assert.deepEqual(sizes, [4, 4, 2]);
  const dropped: number[] = [];
  for (const batch of new DataLoader(ds, { batchSize: 4, dropLast: true, seed: 7 }).epoch(3)) {
    dropped.push(...batch.indices);
    batch.dispose();
  }
  assert.deepEqual(dropped, [...a.order(3)].slice(0, 8));
  // Resuming at batch 1 yields exactly the batches 1.. of an uninterrupted epoch, augmentation included.
  const aug = new DataLoader(ds, { batchSize: 4, seed: 7, augment: true });
  const full = [...aug.epoch(2)].map((x) => { const r = [x.images.toArray(), x.labels.toArray()]; x.dispose(); return r; });
  const resumed = [...new DataLoader(ds, { batchSize: 4, seed: 7, augment: true }).epoch(2, { startBatch: 1 })]
    .map((x) => { const r = [x.images.toArray(), x.labels.toArray()]; x.dispose(); return r; });
  assert.deepEqual(resumed, full.slice(1));
  assert.equal(liveTensorCount(), before);
});

// Epoch 3's order for seed 7 over 10 items (recorded from this implementation).
const PINNED_ORDER = [4, 8, 0, 1, 3, 6, 9, 7, 5, 2];

/** Straightforward reference: zero-pad, crop at (dy+p, dx+p), then flip. */
function referenceCropFlip(img: Uint8Array, c: number, h: number, w: number, p: number, dy: number, dx: number, flip: boolean): Uint8Array {
  const out = new Uint8Array(c * h * w);
  for (let ch = 0; ch < c; ch++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const cx = flip ? w - 1 - x : x;
    const sy = y + dy - p;
    const sx = cx + dx - p;
    out[(ch * h + y) * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w ? img[(ch * h + sy) * w + sx]! : 0;
  }
  return out;
}

test('augmentation: random crop with zero padding + flip, seeded, matches a reference', () => {
  const ds = tinyDataset(12, 6, 5);
  const shape = { count: 12, channels: 3, height: 6, width: 5 };
  const out = randomCropFlip(ds.images, shape, new RandomStream(1, 2), { padding: 2 });
  assert.deepEqual(out, randomCropFlip(ds.images, shape, new RandomStream(1, 2), { padding: 2 }));
  assert.notDeepEqual(out, randomCropFlip(ds.images, shape, new RandomStream(1, 3), { padding: 2 }));
  const replay = new RandomStream(1, 2);
  let flips = 0;
  let shifted = 0;
  for (let n = 0; n < 12; n++) {
    const dy = replay.nextInt(5);
    const dx = replay.nextInt(5);
    const flip = replay.nextFloat() < 0.5;
    flips += flip ? 1 : 0;
    shifted += dy !== 2 || dx !== 2 ? 1 : 0;
    const expected = referenceCropFlip(ds.images.subarray(n * 90, (n + 1) * 90), 3, 6, 5, 2, dy, dx, flip);
    assert.deepEqual(out.subarray(n * 90, (n + 1) * 90), expected, `image ${n}`);
  }
  assert.ok(flips > 0 && flips < 12 && shifted > 0, 'the draws exercise flips, no-flips and shifts');
  // No crop, always flip: an exact mirror image.
  const mirrored = randomCropFlip(ds.images, shape, new RandomStream(0), { padding: 0, flipProbability: 1 });
  assert.equal(mirrored[0], ds.images[4]);
  assert.equal(mirrored[4], ds.images[0]);
  assert.deepEqual(randomCropFlip(ds.images, shape, new RandomStream(0), { padding: 0, flipProbability: 0 }), ds.images);
  assert.throws(() => randomCropFlip(ds.images, shape, new RandomStream(0), { padding: -1 }), /padding/);

  // Through the loader: shapes, determinism per (seed, epoch, batch), values still bytes/255.
  const loader = new DataLoader(ds, { batchSize: 5, seed: 3, augment: true });
  const x = loader.batch(1, 0);
  const y = loader.batch(1, 0);
  const z = loader.batch(2, 0);
  assert.deepEqual(x.images.shape, [5, 3, 6, 5]);
  assert.deepEqual(x.images.toArray(), y.images.toArray());
  assert.notDeepEqual(x.images.toArray(), z.images.toArray());
  assert.ok(x.images.toArray().every((v) => Math.abs(v * 255 - Math.round(v * 255)) < 1e-4));
  for (const b of [x, y, z]) b.dispose();
});

// ---- the real CIFAR-10 -------------------------------------------------------------------------------------

const sharedBinary = resolve(projectRoot(), '..', 'shared', 'datasets', 'cifar-10-batches-bin');

test('real CIFAR-10 test_batch.bin (../shared/datasets): 10,000 images, 1,000 per class', async (t) => {
  if (!existsSync(join(sharedBinary, 'test_batch.bin'))) { t.skip(`${sharedBinary}/test_batch.bin not present`); return; }
  const ds = readCifarBinary(sharedBinary, { name: 'cifar10', split: 'test' });
  assert.equal(ds.length, 10000);
  assert.deepEqual(ds.classCounts(), new Array(10).fill(1000));
  assert.deepEqual([...ds.classes], CIFAR10_NAMES);
  // The official test set starts cat, ship, ship, airplane.
  assert.deepEqual([...ds.labels.subarray(0, 4)], [3, 8, 8, 0]);
  const def = await loadDefaultCifar10({ split: 'test' });
  assert.match(def.source, /cifar-10-batches-bin \(official CIFAR-10 binary release\)/);
  assert.equal(def.length, 10000);
});

test('loadDefaultCifar10: binary copy first, then the JPEG folder, then the download path', async () => {
  const base = freshDir('machine');
  const project = join(base, 'project');
  const shared = join(base, 'shared', 'datasets');
  mkdirSync(project);
  for (const cls of CIFAR10_NAMES) {
    mkdirSync(join(shared, 'cifar10-jpeg', 'test', cls), { recursive: true });
    writeFileSync(join(shared, 'cifar10-jpeg', 'test', cls, '0000.png'), pngBytes(32, 32, cls.length));
  }
  const jpegCopy = await loadDefaultCifar10({ split: 'test', projectRoot: project, cacheDir: null });
  assert.equal(jpegCopy.name, 'cifar10-jpeg/test');
  assert.match(jpegCopy.source, /cifar10-jpeg\/test \(image folder\)/);
  assert.deepEqual([...jpegCopy.labels], [...Array(10).keys()]);

  // The test split needs only test_batch.bin (official size: 10,000 records) and the class names.
  const binary = join(shared, 'cifar-10-batches-bin');
  mkdirSync(binary);
  writeFileSync(join(binary, 'batches.meta.txt'), CIFAR10_NAMES.join('\n'));
  writeFileSync(join(binary, 'test_batch.bin'), Buffer.alloc(10000 * 3073));
  const binaryCopy = await loadDefaultCifar10({ split: 'test', projectRoot: project });
  assert.match(binaryCopy.source, /shared\/datasets\/cifar-10-batches-bin \(official CIFAR-10 binary release\)/);

  rmSync(shared, { recursive: true });
  await assert.rejects(loadDefaultCifar10({ split: 'test', projectRoot: project, ensure: { root: join(base, 'cache'), download: false } }),
    /CIFAR-10 binary release not found and downloading is off\. Put cifar-10-binary\.tar\.gz/);
});
