// Autograd: backward and grad(), gradient modes, higher-order gradients, and a conv net's gradients against PyTorch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Tensor, tensor, ones, full, grad, backward, noGrad, enableGrad, inferenceMode, isGradEnabled, tidy,
} from '../src/tensor/index.js';
import * as F from '../src/nn/functional.js';
import { pythonMissing, runPythonJson } from './helpers/python.js';

const close = (actual: number[], expected: number[], what = '', rtol = 1e-5, atol = 1e-6) => {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((v, i) => {
    const tol = atol + rtol * Math.abs(expected[i]!);
    assert.ok(Math.abs(v - expected[i]!) <= tol, `${what}[${i}]: ${v} vs ${expected[i]}`);
  });
};
const leaf = (values: number[]) => tensor(values, { requiresGrad: true });

test('backward on a scalar accumulates into leaves (twice: doubled)', () => tidy(() => {
  const x = leaf([1, -2, 3]);
  assert.equal(x.grad, null, 'no grad before backward');
  x.mul(x).sum().backward();
  assert.deepEqual(x.grad!.toArray(), [2, -4, 6]);
  x.mul(x).sum().backward();
  assert.deepEqual(x.grad!.toArray(), [4, -8, 12], 'accumulates');
  x.grad = null;
  assert.equal(x.grad, null, 'setting grad to null clears it');
  x.sum().backward();
  assert.deepEqual(x.grad!.toArray(), [1, 1, 1]);
  x.grad!.zero_();
  assert.deepEqual(x.grad!.toArray(), [0, 0, 0], 'grad shares the accumulated memory');
}));

test('assigning a gradient of the wrong shape to .grad is refused', {
}, () => tidy(() => {
  const x = leaf([1, 2]);
  assert.throws(() => { x.grad = ones([5]); }, /size|shape/);
}));

test('backward with a gradient for a non-scalar output', () => tidy(() => {
  const x = leaf([1, 2, 3]);
  const y = x.mul(2);
  y.backward(tensor([1, 10, 100]));
  assert.deepEqual(x.grad!.toArray(), [2, 20, 200]);
  const z = leaf([1, 2]).mul(3);
  assert.throws(() => z.backward(), /only for scalar outputs/, 'a non-scalar needs a gradient');
}));

test('backward() over several outputs, restricted to some inputs', () => tidy(() => {
  const a = leaf([2]);
  const b = leaf([3]);
  const y1 = a.mul(b).sum();
  const y2 = a.mul(a).sum();
  backward([y1, y2], { inputs: [a] });
  assert.deepEqual(a.grad!.toArray(), [3 + 4]);
  assert.equal(b.grad, null, 'inputs not listed are left alone');
}));

test('grad() returns gradients and leaves .grad untouched', () => tidy(() => {
  const x = leaf([1, 2, 3]);
  const w = leaf([0.5, -1, 2]);
  const y = x.mul(w).sum();
  const [gx, gw] = grad(y, [x, w]);
  assert.deepEqual(gx!.toArray(), [0.5, -1, 2]);
  assert.deepEqual(gw!.toArray(), [1, 2, 3]);
  assert.equal(x.grad, null);
  assert.equal(w.grad, null);
  assert.equal(gx!.requiresGrad, false, 'without createGraph the gradient is not differentiable');
}));

test('grad() with gradOutputs for a non-scalar output', () => tidy(() => {
  const x = leaf([1, 2]);
  const y = x.mul(x);
  const [gx] = grad(y, [x], { gradOutputs: [tensor([3, 5])] });
  assert.deepEqual(gx!.toArray(), [6, 20]);
}));

test('grad() with allowUnused gives null for an input the output does not use', () => tidy(() => {
  const x = leaf([1]);
  const unused = leaf([1]);
  const [gx, gu] = grad(x.mul(3).sum(), [x, unused], { allowUnused: true });
  assert.deepEqual(gx!.toArray(), [3]);
  assert.equal(gu, null);
  assert.throws(() => grad(x.mul(3).sum(), [x, unused]), /appears to not have been used in the graph/);
}));

test('a second backward through a freed graph is a JS error; retainGraph keeps it', () => tidy(() => {
  const x = leaf([1, 2]);
  const y = x.exp().sum();
  y.backward();
  assert.throws(() => y.backward(), (e: unknown) => e instanceof Error && /backward through the graph a second time/.test(e.message));
  const z = x.exp().sum();
  x.grad = null;
  z.backward(undefined, { retainGraph: true });
  z.backward();
  close(x.grad!.toArray(), [2 * Math.E, 2 * Math.E ** 2], 'twice');
  const u = x.exp().sum();
  grad(u, [x], { retainGraph: true });
  assert.doesNotThrow(() => grad(u, [x]));
}));

test('createGraph gives higher-order derivatives (x^3)', () => tidy(() => {
  const x = leaf([2, -1]);
  const y = x.pow(3).sum();
  const [g1] = grad(y, [x], { createGraph: true });
  assert.deepEqual(g1!.toArray(), [12, 3]);
  assert.equal(g1!.requiresGrad, true);
  const [g2] = grad(g1!.sum(), [x], { createGraph: true });
  assert.deepEqual(g2!.toArray(), [12, -6], '6x');
  const [g3] = grad(g2!.sum(), [x]);
  assert.deepEqual(g3!.toArray(), [6, 6]);
  const z = leaf([3]);
  z.pow(3).sum().backward(undefined, { createGraph: true });
  assert.equal(z.grad!.requiresGrad, true, 'backward with createGraph leaves a differentiable grad');
  assert.deepEqual(z.grad!.toArray(), [27]);
  z.grad = null; // breaks the parameter <-> gradient cycle libtorch warns about
}));

test('noGrad: nothing is recorded; the mode is restored, even after a throw', () => tidy(() => {
  const x = leaf([1, 2]);
  assert.equal(isGradEnabled(), true);
  const y = noGrad(() => {
    assert.equal(isGradEnabled(), false);
    return x.mul(2);
  });
  assert.equal(y.requiresGrad, false);
  assert.equal(isGradEnabled(), true);
  assert.throws(() => noGrad(() => { throw new Error('boom'); }), /boom/);
  assert.equal(isGradEnabled(), true, 'restored after a throw');
  assert.equal(noGrad(() => noGrad(() => 1)), 1);
  assert.equal(isGradEnabled(), true, 'restored after nesting');
}));

test('enableGrad inside noGrad records again', () => tidy(() => {
  const x = leaf([1, 2]);
  noGrad(() => {
    const y = enableGrad(() => {
      assert.equal(isGradEnabled(), true);
      return x.mul(2);
    });
    assert.equal(y.requiresGrad, true);
    assert.equal(isGradEnabled(), false, 'back to noGrad');
  });
}));

test('inferenceMode: no recording; its tensors cannot be saved for backward later', () => tidy(() => {
  const x = leaf([1, 2]);
  const t = inferenceMode(() => {
    assert.equal(isGradEnabled(), false);
    const y = x.mul(2);
    assert.equal(y.requiresGrad, false);
    return ones([2]).add(1);
  });
  assert.equal(isGradEnabled(), true);
  assert.throws(() => x.mul(t).sum().backward(), /[Ii]nference tensors/);
  assert.throws(() => inferenceMode(() => { throw new Error('boom'); }), /boom/);
  assert.equal(isGradEnabled(), true, 'restored after a throw');
  assert.equal(inferenceMode(() => inferenceMode(() => isGradEnabled())), false, 'nests');
  assert.equal(isGradEnabled(), true);
}));

test('in-place parameter update under noGrad keeps the leaf; outside it is refused', () => tidy(() => {
  const w = leaf([1, 2, 3]);
  w.mul(w).sum().backward();
  const v0 = w.version;
  noGrad(() => w.sub_(w.grad!, 0.1));
  close(w.toArray(), [0.8, 1.6, 2.4], 'w - 0.1 * 2w');
  assert.equal(w.isLeaf, true);
  assert.equal(w.requiresGrad, true);
  assert.equal(w.version, v0 + 1);
  assert.throws(() => w.sub_(1), /leaf Variable that requires grad is being used in an in-place operation/);
  w.grad = null;
  w.sum().backward();
  assert.deepEqual(w.grad!.toArray(), [1, 1, 1], 'the updated leaf still trains');
}));

test('an in-place change of a saved tensor is detected at backward', () => tidy(() => {
  const x = leaf([1, 2]);
  const y = x.mul(1);
  const z = y.mul(y);
  y.add_(1);
  assert.throws(() => z.sum().backward(), /modified by an inplace operation/);
}));

test('detach stops gradients', () => tidy(() => {
  const x = leaf([2, 3]);
  const y = x.detach().mul(x).sum();
  y.backward();
  assert.deepEqual(x.grad!.toArray(), [2, 3], 'only the attached factor contributes');
  const d = x.detach();
  assert.throws(() => d.sum().backward(), /does not require grad/);
}));

test('retainGrad keeps a non-leaf gradient', () => tidy(() => {
  const x = leaf([1, 2]);
  const h = x.mul(3).retainGrad();
  h.mul(h).sum().backward();
  assert.deepEqual(h.grad!.toArray(), [6, 12]);
  assert.deepEqual(x.grad!.toArray(), [18, 36]);
}));

test('setRequiresGrad turns a tensor into a leaf that trains', () => tidy(() => {
  const x = full([2], 3).setRequiresGrad();
  assert.equal(x.requiresGrad, true);
  assert.equal(x.isLeaf, true);
  x.square().sum().backward();
  assert.deepEqual(x.grad!.toArray(), [6, 6]);
}));

// ---- a small conv net against PyTorch ------------------------------------------------------------------------------

function deterministic(shape: number[], seed: number, scale: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = scale * Math.sin(seed * 12.9898 + i * 78.233);
  return tensor(data, { shape });
}

const NET_PYTHON = String.raw`
import json, sys
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
req = json.load(sys.stdin)
p = {k: torch.tensor(v['data'], dtype=torch.float32).reshape(v['shape']) for k, v in req.items() if k != 'y'}
y = torch.tensor(req['y']['data'], dtype=torch.int64)
for k in p:
    p[k].requires_grad_(True)
h = F.relu(F.conv2d(p['x'], p['w1'], p['b1'], padding=1))
h = F.max_pool2d(h, 2)
h = F.relu(F.conv2d(h, p['w2'], p['b2'], stride=2, padding=1, groups=2))
h = F.adaptive_avg_pool2d(h, 1).flatten(1)
loss = F.cross_entropy(F.linear(h, p['w3'], p['b3']), y, label_smoothing=0.1)
names = ['x', 'w1', 'b1', 'w2', 'b2', 'w3', 'b3']
grads = torch.autograd.grad(loss, [p[k] for k in names])
print(json.dumps({'loss': loss.item(), 'grads': {k: g.reshape(-1).tolist() for k, g in zip(names, grads)}}))
`;

test('input and weight gradients of a small conv net equal PyTorch', (t) => tidy(() => {
  const torchMissing = pythonMissing('torch');
  if (torchMissing) {
    t.skip(torchMissing);
    return;
  }
  const p: Record<string, Tensor> = {
    x: deterministic([2, 3, 8, 8], 1, 1),
    w1: deterministic([4, 3, 3, 3], 2, 0.3),
    b1: deterministic([4], 3, 0.1),
    w2: deterministic([6, 2, 3, 3], 4, 0.3),
    b2: deterministic([6], 5, 0.1),
    w3: deterministic([5, 6], 6, 0.5),
    b3: deterministic([5], 7, 0.1),
  };
  const y = tensor([1, 4], { dtype: 'int64' });
  const request = Object.fromEntries([...Object.entries(p).map(([k, v]) => [k, { data: v.toArray(), shape: v.shape }]), ['y', { data: y.toArray() }]]);
  const reference = runPythonJson<{ loss: number; grads: Record<string, number[]> }>(NET_PYTHON, { input: request });
  for (const v of Object.values(p)) v.setRequiresGrad(true);
  let h = F.conv2d(p.x!, p.w1!, { bias: p.b1!, padding: 1 }).relu();
  h = F.maxPool2d(h, 2);
  h = F.conv2d(h, p.w2!, { bias: p.b2!, stride: 2, padding: 1, groups: 2 }).relu();
  h = F.adaptiveAvgPool2d(h, 1).flatten(1);
  const loss = F.crossEntropy(F.linear(h, p.w3!, p.b3!), y, { labelSmoothing: 0.1 });
  close([loss.item()], [reference.loss], 'loss');
  const names = ['x', 'w1', 'b1', 'w2', 'b2', 'w3', 'b3'];
  const grads = grad(loss, names.map((k) => p[k]!));
  names.forEach((k, i) => close(grads[i]!.toArray(), reference.grads[k]!, `d loss / d ${k}`));
}));
