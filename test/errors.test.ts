// Failures surface as catchable JS errors of the right class and message, and the process carries on after each.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  aten, tensor, ones, zeros, rand, randperm, eye, linspace, cat, grad, manualSeed, Generator, setNumThreads, tidy,
  liveTensorCount, scopeDepth, isGradEnabled,
} from '../src/tensor/index.js';
import * as F from '../src/nn/functional.js';

/** Asserts `fn` throws an error of class `kind` (exactly, not a subclass) whose message matches `message`. */
function assertThrowsKind(fn: () => unknown, kind: typeof Error, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error, 'a JS Error');
    assert.equal(e.constructor, kind, `expected a ${kind.name}, got ${e.constructor.name}: ${e.message}`);
    assert.match(e.message, message);
    return true;
  });
}

// After every failure the runtime must still work: ops run, no scope is left open, grad mode is restored.
afterEach(() => {
  assert.deepEqual(tidy(() => ones([2, 2]).matmul(ones([2, 1])).toArray()), [2, 2]);
  assert.equal(scopeDepth(), 0);
  assert.equal(isGradEnabled(), true);
});

// ---- libtorch errors ---------------------------------------------------------------------------------------------

test('matmul shape mismatch: an Error carrying libtorch\'s message, without its C++ backtrace', () => tidy(() => {
  const a = ones([2, 3]);
  assertThrowsKind(() => a.matmul(ones([2, 3])), Error, /mat1 and mat2 shapes cannot be multiplied \(2x3 and 2x3\)/);
  try {
    a.matmul(a);
  } catch (e) {
    assert.doesNotMatch((e as Error).message, /Exception raised from|frame #/, 'no C++ backtrace');
  }
}));

test('conv2d with the wrong channel count', () => tidy(() => {
  assertThrowsKind(() => F.conv2d(ones([1, 2, 8, 8]), ones([4, 3, 3, 3])), Error, /expected input\[1, 2, 8, 8\] to have 3 channels, but got 2 channels/);
}));

test('cat of mismatched shapes, and of nothing', () => tidy(() => {
  assertThrowsKind(() => cat([ones([2, 3]), ones([2, 4])], 0), Error, /Sizes of tensors must match except in dimension 0/);
  assertThrowsKind(() => cat([], 0), Error, /non-empty list of Tensors/);
}));

test('a sample of other libtorch failures are Errors with its messages', () => tidy(() => {
  const x = ones([2, 3]);
  assertThrowsKind(() => x.reshape([4, 2]), Error, /shape '\[4, 2\]' is invalid for input of size 6/);
  assertThrowsKind(() => x.select(0, 10), Error, /index 10 out of range/);
  assertThrowsKind(() => x.gather(1, tensor([[5]], { dtype: 'int64' })), Error, /index 5 is out of bounds/);
  assertThrowsKind(() => x.transpose(0, 1).view([6]), Error, /view size is not compatible/);
  assertThrowsKind(() => x.softmax(3), Error, /Dimension out of range/);
  assertThrowsKind(() => F.maxPool2d(ones([1, 1, 2, 2]), 3), Error, /Output size is too small/);
  assertThrowsKind(() => x.to('cuda:0').dispose(), Error, /./);
  assertThrowsKind(() => aten('no_such_op')(), Error, /libtorch has no operator aten::no_such_op/);
}));

test('autograd failures are Errors', () => tidy(() => {
  assertThrowsKind(() => grad(ones([1]).sum(), [ones([1])]), Error, /does not require grad/);
  const leaf = ones([2], { requiresGrad: true });
  assertThrowsKind(() => leaf.add_(1), Error, /leaf Variable that requires grad is being used in an in-place operation/);
  assertThrowsKind(() => leaf.mul(2).backward(), Error, /only for scalar outputs/);
}));

// ---- wrong argument types ----------------------------------------------------------------------------------------

test('wrong argument types are TypeErrors naming the argument', () => tidy(() => {
  const x = ones([1, 1, 3, 3]);
  const bad = <T>(v: unknown) => v as T;
  assertThrowsKind(() => x.add(bad<number>('a')), TypeError, /argument 'other' must be a tensor/);
  assertThrowsKind(() => F.conv2d(x, bad('w')), TypeError, /argument 'weight' must be a tensor/);
  assertThrowsKind(() => F.conv2d(x, ones([1, 1, 1, 1]), { stride: bad('a') }), TypeError, /argument 'stride' must be an integer or an array of integers/);
  assertThrowsKind(() => x.reshape(bad(['a'])), TypeError, /argument 'shape' must be an integer/);
  assertThrowsKind(() => x.sum({ dim: 1.5 }), TypeError, /argument 'dim' must be an integer, got 1.5/);
  assertThrowsKind(() => x.gelu({ approximate: bad(5) }), TypeError, /argument 'approximate' must be a string/);
  assertThrowsKind(() => x.sort({ descending: bad('yes') }), TypeError, /argument 'descending' must be a boolean/);
  assertThrowsKind(() => F.crossEntropy(ones([2, 3]), bad([1, 2])), TypeError, /argument 'target' must be a tensor/);
  assertThrowsKind(() => cat(bad([{}, {}])), TypeError, /expected a tensor for tensors/);
  assertThrowsKind(() => zeros([2], { dtype: bad('float8') }), TypeError, /unknown dtype 'float8'/);
  assertThrowsKind(() => aten('relu')(x, 1, 2), TypeError, /3 arguments given, the schema takes 1/);
  assertThrowsKind(() => aten('add', 'Tensor')(x), TypeError, /argument 'other' is required/);
}));

test('tensor() with non-numeric data is a TypeError naming the data', {
}, () => tidy(() => {
  assertThrowsKind(() => tensor('abc' as unknown as number[]), TypeError, /\bdata\b.*(number|array)/i);
  assertThrowsKind(() => tensor([['a']] as unknown as number[][]), TypeError, /\bdata\b.*(number|array)/i);
}));

// ---- disposed tensors ---------------------------------------------------------------------------------------------

test('using a disposed tensor throws "already disposed", wherever it is used', () => {
  const t = ones([2]);
  t.dispose();
  const other = ones([2]);
  assertThrowsKind(() => t.add(1), Error, /tensor passed as self was already disposed/);
  assertThrowsKind(() => other.add(t), Error, /tensor passed as other was already disposed/);
  for (const use of [() => t.shape, () => t.item(), () => t.toArray(), () => t.dataView(), () => t.requiresGrad, () => t.grad]) {
    assertThrowsKind(use, Error, /already disposed/);
  }
  const leaf = ones([2], { requiresGrad: true });
  const y = leaf.sum();
  y.dispose();
  assertThrowsKind(() => y.backward(), Error, /already disposed/);
  leaf.dispose();
  assert.doesNotThrow(() => t.dispose(), 'disposing twice is harmless');
  other.dispose();
});

// ---- range errors ---------------------------------------------------------------------------------------------------

test('invalid shapes are RangeErrors', () => {
  const before = liveTensorCount();
  assertThrowsKind(() => zeros([-1]), RangeError, /invalid shape \[-1\]/);
  assertThrowsKind(() => ones([2, 1.5]), RangeError, /invalid shape/);
  assertThrowsKind(() => rand([NaN]), RangeError, /invalid shape/);
  assertThrowsKind(() => tensor(new Float32Array(3), { shape: [2, 2] }), RangeError, /needs 16 bytes, the buffer has 12/);
  assert.equal(liveTensorCount(), before, 'nothing half-made is left behind');
  tidy(() => {
    assertThrowsKind(() => ones([2, 3]).size(2), RangeError, /dimension 2 out of range/);
    assertThrowsKind(() => F.dropout(ones([2]), { p: 2 }), RangeError, /dropout probability/);
  });
  assertThrowsKind(() => setNumThreads(0), RangeError, /thread count/);
});

test('sizes given as numbers (randperm, eye, linspace steps) reject negatives with RangeError', () => {
  assertThrowsKind(() => randperm(-1), RangeError, /./);
  assertThrowsKind(() => eye(-1), RangeError, /./);
  assertThrowsKind(() => linspace(0, 1, -1), RangeError, /./);
});

test('invalid seeds are RangeErrors: manualSeed', () => {
  assertThrowsKind(() => manualSeed(-1), RangeError, /seed must be a non-negative integer/);
  assertThrowsKind(() => manualSeed(1.5), RangeError, /seed must be a non-negative integer/);
  assertThrowsKind(() => manualSeed(NaN), RangeError, /seed must be a non-negative integer/);
});

test('invalid seeds are RangeErrors: Generator', () => {
  assertThrowsKind(() => new Generator(1.5), RangeError, /seed/);
  assertThrowsKind(() => new Generator(1).manualSeed(-1), RangeError, /seed/);
  assertThrowsKind(() => new Generator(1).manualSeed('5' as unknown as number), TypeError, /seed/);
});

test('a Generator state of the wrong kind is an Error', () => {
  assertThrowsKind(() => new Generator(1).setState(ones([3])), Error, /RNG state must be a torch.ByteTensor/);
});
