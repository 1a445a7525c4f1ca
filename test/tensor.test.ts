// Tensor creation, dtypes, seeded randomness, conversion, memory sharing and data access.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Tensor, tensor, zeros, ones, full, empty, rand, randn, randint, randperm, arange, linspace, eye,
  zerosLike, onesLike, fullLike, emptyLike, randLike, randnLike, manualSeed, Generator, tidy, type DType,
} from '../src/tensor/index.js';

const close = (actual: number[], expected: number[], tol = 1e-6) => {
  assert.equal(actual.length, expected.length, 'length');
  actual.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) <= tol, `[${i}]: ${v} vs ${expected[i]}`));
};

// ---- creation ---------------------------------------------------------------------------------------------------

test('zeros, ones, full, empty: shape, dtype, values', () => tidy(() => {
  const z = zeros([2, 3]);
  assert.deepEqual(z.shape, [2, 3]);
  assert.equal(z.dtype, 'float32');
  assert.equal(z.device, 'cpu');
  assert.deepEqual(z.toArray(), [0, 0, 0, 0, 0, 0]);
  const o = ones([4], { dtype: 'int32' });
  assert.equal(o.dtype, 'int32');
  assert.ok(o.toTypedArray() instanceof Int32Array);
  assert.deepEqual(o.toArray(), [1, 1, 1, 1]);
  const f = full([2, 2], 2.5, { dtype: 'float64' });
  assert.equal(f.dtype, 'float64');
  assert.deepEqual(f.toArray(), [2.5, 2.5, 2.5, 2.5]);
  assert.deepEqual(full([3], 7, { dtype: 'int64' }).toTypedArray(), BigInt64Array.from([7n, 7n, 7n]));
  const e = empty([3, 0, 2]);
  assert.deepEqual(e.shape, [3, 0, 2]);
  assert.equal(e.numel, 0);
  assert.deepEqual(empty([5], { dtype: 'uint8' }).shape, [5]);
  assert.deepEqual(zeros([]).shape, [], 'a 0-d tensor');
  assert.equal(ones([]).item(), 1);
}));

test('requiresGrad creation option', () => tidy(() => {
  assert.equal(zeros([2], { requiresGrad: true }).requiresGrad, true);
  assert.equal(zeros([2]).requiresGrad, false);
  assert.equal(tensor([1, 2], { requiresGrad: true }).requiresGrad, true);
  assert.equal(tensor(new Int32Array([1]), { dtype: 'float32', requiresGrad: true }).requiresGrad, true);
}));

test('rand, randn, randint, randperm: shape, dtype and range', () => tidy(() => {
  manualSeed(1);
  const u = rand([1000]);
  assert.equal(u.dtype, 'float32');
  const us = u.toArray();
  assert.ok(us.every((v) => v >= 0 && v < 1));
  assert.ok(Math.abs(u.mean().item() - 0.5) < 0.05);
  const n = randn([2000], { dtype: 'float64' });
  assert.equal(n.dtype, 'float64');
  assert.ok(Math.abs(n.mean().item()) < 0.1);
  assert.ok(Math.abs(n.std().item() - 1) < 0.1);
  const k = randint(-3, 4, [500]);
  assert.equal(k.dtype, 'int64');
  const ks = k.toArray();
  assert.ok(ks.every((v) => Number.isInteger(v) && v >= -3 && v < 4));
  assert.equal(new Set(ks).size, 7, 'every value in [low, high) appears');
  assert.equal(randint(0, 5, [3], { dtype: 'int32' }).dtype, 'int32');
  const p = randperm(10);
  assert.equal(p.dtype, 'int64');
  assert.deepEqual([...p.toArray()].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
}));

test('arange, linspace, eye', () => tidy(() => {
  const a = arange(5);
  assert.equal(a.dtype, 'float32');
  assert.deepEqual(a.toArray(), [0, 1, 2, 3, 4]);
  assert.deepEqual(arange(1, 2, 0.25).toArray(), [1, 1.25, 1.5, 1.75]);
  assert.deepEqual(arange(10, 0, -3).toArray(), [10, 7, 4, 1]);
  const ai = arange(0, 4, 1, { dtype: 'int64' });
  assert.equal(ai.dtype, 'int64');
  assert.deepEqual(ai.toTypedArray(), BigInt64Array.from([0n, 1n, 2n, 3n]));
  close(linspace(0, 1, 5).toArray(), [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(linspace(-1, 1, 1).toArray(), [-1]);
  const i = eye(3);
  assert.deepEqual(i.shape, [3, 3]);
  assert.deepEqual(i.toArray(), [1, 0, 0, 0, 1, 0, 0, 0, 1]);
  assert.equal(eye(2, { dtype: 'bool' }).dtype, 'bool');
}));

test('tensor from nested arrays: shape from the nesting, float32 unless a dtype is given', () => tidy(() => {
  const t = tensor([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(t.shape, [2, 3]);
  assert.equal(t.dtype, 'float32');
  assert.deepEqual(t.toArray(), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(tensor([[[1], [2]]]).shape, [1, 2, 1]);
  const s = tensor(3.5);
  assert.deepEqual(s.shape, []);
  assert.equal(s.item(), 3.5);
  assert.deepEqual(tensor([]).shape, [0]);
  const l = tensor([[1, -2], [3, 2 ** 40]], { dtype: 'int64' });
  assert.equal(l.dtype, 'int64');
  assert.deepEqual(l.toTypedArray(), BigInt64Array.from([1n, -2n, 3n, 2n ** 40n]));
  const b = tensor([[1, 0], [0, 3]], { dtype: 'bool' });
  assert.equal(b.dtype, 'bool');
  assert.deepEqual(b.toArray(), [1, 0, 0, 1]);
  for (const dtype of ['float64', 'int32', 'int16', 'int8', 'uint8'] as DType[]) {
    const x = tensor([[1, 2], [3, 4]], { dtype });
    assert.equal(x.dtype, dtype);
    assert.deepEqual(x.toArray(), [1, 2, 3, 4]);
  }
  assert.deepEqual(tensor([1, 2, 3, 4], { shape: [2, 2] }).shape, [2, 2], 'explicit shape');
  assert.throws(() => tensor([1, 2], { dtype: 'float16' }), TypeError, 'no nested-array path to float16');
}));

test('tensor from each TypedArray kind takes its dtype and copies its data', () => tidy(() => {
  const kinds: [ArrayLike<number> & { length: number }, DType][] = [
    [new Float32Array([1.5, -2, 3]), 'float32'],
    [new Float64Array([1.5, -2, 3]), 'float64'],
    [new Int32Array([1, -2, 3]), 'int32'],
    [new Int16Array([1, -2, 3]), 'int16'],
    [new Int8Array([1, -2, 3]), 'int8'],
    [new Uint8Array([1, 2, 255]), 'uint8'],
  ];
  for (const [data, dtype] of kinds) {
    const t = tensor(data as Float32Array);
    assert.equal(t.dtype, dtype);
    assert.deepEqual(t.shape, [3]);
    assert.deepEqual(t.toArray(), Array.from(data));
    assert.equal(t.toTypedArray().constructor, data.constructor, `${dtype} reads back as the same TypedArray kind`);
  }
  const big = BigInt64Array.from([2n ** 62n, -5n, 0n]);
  const l = tensor(big);
  assert.equal(l.dtype, 'int64');
  assert.deepEqual(l.toTypedArray(), big, 'int64 beyond 2^53 survives');
  const src = new Float32Array([1, 2, 3, 4, 5, 6]);
  const copied = tensor(src, { shape: [2, 3] });
  src[0] = 100;
  assert.equal(copied.toArray()[0], 1, 'the tensor is a copy');
  assert.deepEqual(tensor(src.subarray(2, 5)).toArray(), [3, 4, 5], 'a subarray view starts at its own offset');
  const bool = tensor(new Uint8Array([1, 0, 1]), { dtype: 'bool' });
  assert.equal(bool.dtype, 'bool');
  assert.deepEqual(bool.toArray(), [1, 0, 1]);
}));

test('tensor from a TypedArray with another dtype converts the values', () => tidy(() => {
  const t = tensor(new Int32Array([1, -2, 7]), { dtype: 'float32' });
  assert.equal(t.dtype, 'float32');
  assert.deepEqual(t.toArray(), [1, -2, 7]);
  assert.deepEqual(tensor(new Float32Array([1.7, -2.7]), { dtype: 'int64' }).toTypedArray(), BigInt64Array.from([1n, -2n]));
  assert.deepEqual(tensor(new Float64Array([0, 2, -1]), { dtype: 'bool' }).toArray(), [0, 1, 1]);
  assert.deepEqual(tensor(BigInt64Array.from([3n, 4n]), { dtype: 'float64', shape: [2, 1] }).shape, [2, 1]);
}));

test('tensor from a Uint8Array as bool normalises non-zero bytes to true', () => tidy(() => {
  const b = tensor(new Uint8Array([0, 2, 255]), { dtype: 'bool' });
  assert.deepEqual(b.toArray(), [0, 1, 1]);
  assert.equal(b.sum().item(), 2);
}));

test('tensor from a Uint16Array with dtype float16 or bfloat16 (raw bits)', () => tidy(() => {
  // 0x3c00 is 1.0 in IEEE half; 0x3f80 is 1.0 in bfloat16.
  const h = tensor(new Uint16Array([0x3c00, 0xc000]), { dtype: 'float16' });
  assert.equal(h.dtype, 'float16');
  assert.deepEqual(h.float().toArray(), [1, -2]);
  assert.deepEqual(tensor(new Uint16Array([0x3f80]), { dtype: 'bfloat16' }).float().toArray(), [1]);
  assert.throws(() => tensor(new Uint16Array([1])), TypeError, 'a Uint16Array needs an explicit dtype');
}));

test('creation rejects a shape that does not match the data', () => {
  assert.throws(() => tensor(new Float32Array(3), { shape: [2, 2] }), RangeError);
  assert.throws(() => tensor([[1, 2], [3]]), RangeError, 'ragged nested arrays');
});

test('ragged nested arrays are rejected even when the element count happens to fit', {
}, () => {
  assert.throws(() => tensor([[1], [2, 3], []]), RangeError);
});

test('like-creators keep shape and dtype', () => tidy(() => {
  const x = ones([2, 3], { dtype: 'float64' });
  for (const [t, value] of [[zerosLike(x), 0], [onesLike(x), 1], [fullLike(x, 4), 4]] as const) {
    assert.deepEqual(t.shape, [2, 3]);
    assert.equal(t.dtype, 'float64');
    assert.ok(t.toArray().every((v) => v === value));
  }
  assert.deepEqual(emptyLike(x).shape, [2, 3]);
  assert.equal(randLike(x).dtype, 'float64');
  assert.deepEqual(randnLike(x).shape, [2, 3]);
}));

// ---- seeded randomness --------------------------------------------------------------------------------------------

test('manualSeed: the same seed gives the same numbers, another seed others', () => tidy(() => {
  manualSeed(42);
  const a = [rand([5]).toArray(), randn([5]).toArray(), randint(0, 100, [5]).toArray(), randperm(8).toArray()];
  manualSeed(42);
  const b = [rand([5]).toArray(), randn([5]).toArray(), randint(0, 100, [5]).toArray(), randperm(8).toArray()];
  assert.deepEqual(a, b);
  manualSeed(43);
  assert.notDeepEqual(rand([5]).toArray(), a[0]);
}));

test('Generator: private streams, independent of the default generator', () => tidy(() => {
  const g1 = new Generator(7);
  const g2 = new Generator(7);
  assert.equal(g1.seed, 7);
  const a = rand([6], { generator: g1 }).toArray();
  manualSeed(0);
  rand([100]);
  const b = rand([6], { generator: g2 }).toArray();
  assert.deepEqual(a, b, 'the default stream does not disturb a Generator');
  assert.notDeepEqual(rand([6], { generator: g1 }).toArray(), a, 'a stream moves on');
  g1.manualSeed(7);
  assert.deepEqual(rand([6], { generator: g1 }).toArray(), a, 'reseeding restarts the stream');
  assert.notDeepEqual(rand([6], { generator: new Generator(8) }).toArray(), a);
  const g3 = new Generator(3);
  const g4 = new Generator(3);
  assert.deepEqual(zeros([8]).uniform_(-2, 2, g3).toArray(), zeros([8]).uniform_(-2, 2, g4).toArray());
  assert.deepEqual(zeros([8]).normal_(1, 3, g3).toArray(), zeros([8]).normal_(1, 3, g4).toArray());
}));

test('Generator state save/restore reproduces the stream', () => tidy(() => {
  const g = new Generator(11);
  rand([3], { generator: g });
  randn([3], { generator: g }); // leaves a cached normal sample in some libtorch versions
  const state = g.getState();
  const draw = () => [rand([5], { generator: g }).toArray(), randn([7], { generator: g }).toArray(),
    randn([33], { generator: g }).toArray(), randint(0, 1000, [5], { generator: g }).toArray(), randperm(20, { generator: g }).toArray()];
  const first = draw();
  g.setState(state);
  assert.deepEqual(draw(), first);
  const other = new Generator(999);
  other.setState(state);
  assert.deepEqual(rand([5], { generator: other }).toArray(), first[0], 'a state moves between generators');
}));

// ---- conversion and memory sharing --------------------------------------------------------------------------------

test('to(dtype) and the shorthand conversions', () => tidy(() => {
  const x = tensor([1.7, -2.2, 0, 3]);
  const l = x.to('int64');
  assert.equal(l.dtype, 'int64');
  assert.deepEqual(l.toArray(), [1, -2, 0, 3], 'truncates toward zero');
  assert.deepEqual(x.to({ dtype: 'bool' }).toArray(), [1, 1, 0, 1]);
  assert.equal(x.double().dtype, 'float64');
  assert.equal(x.long().dtype, 'int64');
  assert.equal(x.int().dtype, 'int32');
  assert.equal(x.bool().dtype, 'bool');
  assert.equal(l.float().dtype, 'float32');
  assert.equal(x.to('cpu').device, 'cpu');
  assert.equal(x.to({ device: 'cpu', dtype: 'float64' }).dtype, 'float64');
  assert.ok(x.to('float32').handle.sameStorage(x.handle), 'same dtype: no copy');
  assert.ok(!x.to('float32', { copy: true }).handle.sameStorage(x.handle), 'copy: true forces one');
  assert.ok(!x.to('float64').handle.sameStorage(x.handle));
}));

test('detach shares storage and leaves the graph; clone copies and stays in it', () => tidy(() => {
  const x = tensor([1, 2, 3], { requiresGrad: true });
  const d = x.detach();
  assert.ok(d.handle.sameStorage(x.handle));
  assert.equal(d.requiresGrad, false);
  d.add_(10);
  assert.deepEqual(x.toArray(), [11, 12, 13], 'an in-place change through detach() is visible in the original');
  const c = x.clone();
  assert.ok(!c.handle.sameStorage(x.handle));
  assert.equal(c.requiresGrad, true, 'clone is differentiable');
  assert.equal(c.isLeaf, false);
  const plain = tensor([1, 2]);
  const pc = plain.clone();
  pc.add_(1);
  assert.deepEqual(plain.toArray(), [1, 2], 'changing a clone leaves the original');
  assert.ok(plain.reshape([2, 1]).handle.sameStorage(plain.handle), 'views share storage');
}));

// ---- data out -----------------------------------------------------------------------------------------------------

test('toTypedArray and toArray copy in row-major logical order', () => tidy(() => {
  const x = arange(6).reshape([2, 3]);
  const t = x.transpose(0, 1);
  assert.equal(t.isContiguous(), false);
  assert.deepEqual(t.toArray(), [0, 3, 1, 4, 2, 5]);
  const a = x.toTypedArray() as Float32Array;
  a[0] = 99;
  assert.equal(x.toArray()[0], 0, 'toTypedArray is a copy');
  assert.deepEqual(tensor([3, -4], { dtype: 'int64' }).toArray(), [3, -4], 'int64 as numbers');
  assert.ok(tensor([1, 0], { dtype: 'bool' }).toTypedArray() instanceof Uint8Array);
  assert.deepEqual(zeros([0]).toArray(), []);
}));

test('toArray of float16 and bfloat16 gives the values', () => tidy(() => {
  assert.deepEqual(ones([2], { dtype: 'float16' }).toArray(), [1, 1]);
  assert.deepEqual(full([1], -2, { dtype: 'bfloat16' }).toArray(), [-2]);
}));

test('dataView is zero-copy: sees in-place changes, writes through, outlives dispose', () => {
  const x = arange(4);
  const v = x.dataView() as Float32Array;
  assert.ok(v instanceof Float32Array);
  assert.deepEqual(Array.from(v), [0, 1, 2, 3]);
  x.mul_(2);
  assert.deepEqual(Array.from(v), [0, 2, 4, 6], 'sees in-place changes');
  v[0] = -1;
  assert.equal(x.toArray()[0], -1, 'writes through');
  x.dispose();
  assert.deepEqual(Array.from(v), [-1, 2, 4, 6], 'still valid after dispose');
  v[1] = 5;
  assert.equal(v[1], 5);
  const l = tensor([5], { dtype: 'int64' });
  assert.ok(l.dataView() instanceof BigInt64Array);
  l.dispose();
  const t = arange(6).reshape([2, 3]);
  assert.throws(() => t.transpose(0, 1).dataView(), /contiguous/);
  t.dispose();
});

test('item', () => tidy(() => {
  assert.equal(tensor(2.5).item(), 2.5);
  assert.equal(tensor([[7]], { dtype: 'int64' }).item(), 7);
  assert.equal(tensor([1], { dtype: 'bool' }).item(), 1);
  assert.equal(tensor([0], { dtype: 'bool' }).item(), 0);
  assert.throws(() => tensor([1, 2]).item(), /2 elements cannot be converted to Scalar/);
}));

test('shape helpers', () => tidy(() => {
  const x = zeros([2, 3, 4]);
  assert.deepEqual(x.shape, [2, 3, 4]);
  assert.equal(x.ndim, 3);
  assert.equal(x.numel, 24);
  assert.equal(x.size(0), 2);
  assert.equal(x.size(-1), 4);
  assert.throws(() => x.size(3), RangeError);
  assert.throws(() => x.size(-4), RangeError);
  assert.deepEqual(x.strides, [12, 4, 1]);
  assert.equal(x.isContiguous(), true);
  assert.deepEqual(x.permute([2, 0, 1]).strides, [1, 12, 4]);
  assert.equal(x.toString(), 'Tensor(shape=[2,3,4], dtype=float32, device=cpu)');
  assert.equal(x.isTensor, true);
  assert.ok(x instanceof Tensor);
  const v0 = x.version;
  x.add_(1);
  assert.equal(x.version, v0 + 1, 'in-place ops bump the version');
}));

test('size() rejects a non-integer dimension', () => tidy(() => {
  assert.throws(() => zeros([2, 3]).size(1.5), RangeError);
}));
