// Module, layers and init against PyTorch 1.13 (names and order, BatchNorm statistics, default initial
// weights), plus the state-dict, device/dtype and memory contracts.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  Generator, liveTensorCount, manualSeed, noGrad, ones, randn, tensor, tidy, disposeAll, zeros, Tensor,
} from '../src/tensor/index.js';
import {
  AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Embedding, Flatten, Identity, LayerNorm, Linear,
  MaxPool2d, Module, ReLU, Sequential, calculateFanInAndFanOut, calculateGain, constant_, kaimingNormal_, kaimingUniform_, normal_, ones_,
  uniform_, xavierNormal_, xavierUniform_, zeros_, type BatchNorm,
} from '../src/nn/index.js';
import { pythonMissing, runPythonJson } from './helpers/python.js';

const torchMissing = pythonMissing('torch');

/** A small model touching every registration kind: own parameter, non-persistent buffer, nested Sequential. */
class Net extends Module {
  readonly conv = this.registerModule('conv', new Conv2d(3, 4, 3, { padding: 1 }));
  readonly bn = this.registerModule('bn', new BatchNorm2d(4));
  readonly head = this.registerModule('head', new Sequential(new Flatten(), new Linear(4 * 4 * 4, 8), new ReLU(), new Dropout(0.5), new Linear(8, 2)));
  readonly scale = this.registerParameter('scale', ones([1]));
  readonly cache = this.registerBuffer('cache', zeros([2]), { persistent: false });

  forward(x: Tensor): Tensor {
    return tidy(() => this.head.forward(this.bn.forward(this.conv.forward(x)).relu()).mul(this.scale));
  }
}

const netInPyTorch = String.raw`
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
        self.scale = nn.Parameter(torch.ones(1))
        self.register_buffer('cache', torch.zeros(2), persistent=False)
`;

// Fixed, irregular data that both sides compute from the same formula.
const wave = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

interface BatchNormCase { kind: '1d' | '2d'; momentum: number | null; shape: number[]; steps: number[][]; coefficients: number[]; evalInput: number[] }
const batchNormCases: BatchNormCase[] = [
  { kind: '2d', momentum: 0.1, shape: [4, 3, 2, 2] },
  { kind: '2d', momentum: null, shape: [4, 3, 2, 2] },
  { kind: '1d', momentum: 0.3, shape: [5, 3] },
].map((c) => ({
  ...c, kind: c.kind as '1d' | '2d',
  steps: [wave(numel(c.shape), (i) => Math.sin(0.37 * i) * 2 + (i % 3)), wave(numel(c.shape), (i) => Math.cos(0.11 * i) * 3 - 1)],
  coefficients: wave(numel(c.shape), (i) => Math.sin(0.5 * i)),
  evalInput: wave(numel(c.shape), (i) => Math.sin(1.3 * i) + 0.5),
}));

// LayerNorm over the last two of three dimensions, with the weights set to irregular values after construction.
const layerNormCase = {
  shape: [2, 3, 4], normalizedShape: [3, 4], eps: 1e-3,
  x: wave(24, (i) => Math.sin(0.7 * i) * 3 + (i % 5)), weight: wave(12, (i) => Math.cos(0.3 * i) + 0.5), bias: wave(12, (i) => Math.sin(2.1 * i)),
};
const embeddingCase = { seed: 5, numEmbeddings: 10, embeddingDim: 3, indices: [[0, 9, 3], [3, 3, 1]] };

const referenceScript = String.raw`
import json, sys, torch
from torch import nn
torch.set_num_threads(1)
spec = json.loads(sys.stdin.read())
cases = spec['batchNorm']
${netInPyTorch}
net = Net()
out = {
    'parameters': [k for k, _ in net.named_parameters()],
    'buffers': [k for k, _ in net.named_buffers()],
    'stateDict': list(net.state_dict().keys()),
    'modules': [k for k, _ in net.named_modules()],
}

# Two training steps (forward, backward, SGD with lr 0.1), then one eval forward.
results = []
for c in cases:
    bn = (nn.BatchNorm2d if c['kind'] == '2d' else nn.BatchNorm1d)(c['shape'][1], momentum=c['momentum'])
    coefficients = torch.tensor(c['coefficients']).view(c['shape'])
    for step in c['steps']:
        (bn(torch.tensor(step).view(c['shape'])) * coefficients).sum().backward()
        with torch.no_grad():
            for p in bn.parameters():
                p -= 0.1 * p.grad
        bn.zero_grad()
    bn.eval()
    with torch.no_grad():
        y = bn(torch.tensor(c['evalInput']).view(c['shape']))
    results.append({'running_mean': bn.running_mean.tolist(), 'running_var': bn.running_var.tolist(),
                    'num_batches_tracked': bn.num_batches_tracked.item(), 'weight': bn.weight.tolist(),
                    'bias': bn.bias.tolist(), 'eval': y.flatten().tolist()})
out['batchNorm'] = results

torch.manual_seed(123)
layers = [nn.Linear(7, 5), nn.Conv2d(3, 4, 3), nn.Conv2d(4, 6, (3, 2), groups=2, bias=False)]
out['defaultInit'] = [[p.flatten().tolist() for p in m.parameters()] for m in layers]

c = spec['layerNorm']
ln = nn.LayerNorm(c['normalizedShape'], eps=c['eps'])
out['layerNorm'] = {'parameters': [[k, list(p.shape), p.flatten().tolist()] for k, p in ln.named_parameters()]}
with torch.no_grad():
    ln.weight.copy_(torch.tensor(c['weight']).view(c['normalizedShape']))
    ln.bias.copy_(torch.tensor(c['bias']).view(c['normalizedShape']))
    x = torch.tensor(c['x']).view(c['shape'])
    plain = nn.LayerNorm(c['normalizedShape'], eps=c['eps'], elementwise_affine=False)
    out['layerNorm'].update(output=ln(x).flatten().tolist(), plainParameters=[k for k, _ in plain.named_parameters()],
                            plainOutput=plain(x).flatten().tolist())

c = spec['embedding']
torch.manual_seed(c['seed'])
emb = nn.Embedding(c['numEmbeddings'], c['embeddingDim'])
with torch.no_grad():
    out['embedding'] = {'parameters': [k for k, _ in emb.named_parameters()], 'weight': emb.weight.flatten().tolist(),
                        'output': emb(torch.tensor(c['indices'])).flatten().tolist()}
print(json.dumps(out))
`;

interface Reference {
  parameters: string[];
  buffers: string[];
  stateDict: string[];
  modules: string[];
  batchNorm: { running_mean: number[]; running_var: number[]; num_batches_tracked: number; weight: number[]; bias: number[]; eval: number[] }[];
  defaultInit: number[][][];
  layerNorm: { parameters: [string, number[], number[]][]; output: number[]; plainParameters: string[]; plainOutput: number[] };
  embedding: { parameters: string[]; weight: number[]; output: number[] };
}
let reference: Reference | null = null;

before(() => {
  if (torchMissing) return;
  reference = runPythonJson<Reference>(referenceScript, { input: { batchNorm: batchNormCases, layerNorm: layerNormCase, embedding: embeddingCase } });
});

function assertClose(actual: number[], expected: number[], tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((a, i) => assert.ok(Math.abs(a - expected[i]!) <= tolerance, `${what}[${i}]: ${a} vs ${expected[i]}`));
}

// ---- names and order ----------------------------------------------------------------------------------------

test('parameter, buffer, module and state-dict names and order equal PyTorch\'s', (t) => {
  if (!reference) return t.skip(torchMissing!);
  using net = new Net();
  assert.deepEqual(net.namedParameters().map(([n]) => n), reference.parameters);
  assert.deepEqual(net.namedBuffers().map(([n]) => n), reference.buffers);
  assert.deepEqual(net.namedModules().map(([n]) => n), reference.modules);
  const state = net.stateDict();
  assert.deepEqual([...state.keys()], reference.stateDict);
  disposeAll(state);
  assert.deepEqual(net.namedChildren().map(([n]) => n), ['conv', 'bn', 'head']);
  assert.equal(net.children()[2], net.head);
  assert.equal(net.getSubmodule('head.4'), net.head.at(4));
  assert.equal(net.getParameter('head.4.bias'), (net.head.at(4) as Linear).bias);
  assert.equal(net.getBuffer('bn.running_var'), net.bn.runningVar);
  assert.throws(() => net.getSubmodule('head.9'), /no sub-module 'head.9'/);
});

test('registration rejects duplicate and dotted names', () => {
  using net = new Net();
  assert.throws(() => net.registerParameter('scale', ones([1])), /'scale' is already registered/);
  assert.throws(() => net.registerModule('conv', new ReLU()), /'conv' is already registered/);
  assert.throws(() => net.registerBuffer('a.b', ones([1])), /invalid name 'a.b'/);
});

test('parameters require gradients; buffers do not; both survive the tidy scope that made them', () => {
  const before = liveTensorCount();
  const net = tidy(() => new Net());
  assert.equal(liveTensorCount() - before, net.parameters().length + net.buffers().length);
  assert.ok(net.parameters().every((p) => p.requiresGrad && p.isLeaf));
  assert.ok(net.buffers().every((b) => !b.requiresGrad));
  net.dispose();
  assert.equal(liveTensorCount(), before);
});

// ---- modes ----------------------------------------------------------------------------------------------------

test('train()/eval() set the mode recursively and change Dropout and BatchNorm', () => {
  using net = new Net();
  assert.ok(net.modules().every((m) => m.training));
  net.eval();
  assert.ok(net.modules().every((m) => !m.training));
  using x = randn([4, 8]);
  using dropout = new Dropout(0.5);
  tidy(() => assert.ok(dropout.train().forward(x).eq(0).any().item() === 1, 'dropout zeroes elements in training'));
  tidy(() => assert.ok(dropout.eval().forward(x).equal(x), 'dropout is the identity in eval'));
  using bn = new BatchNorm1d(8).eval();
  tidy(() => assert.ok(bn.forward(x).allclose(x.div(Math.sqrt(1 + 1e-5))), 'eval uses running statistics'));
  assert.equal(bn.numBatchesTracked!.item(), 0);
  net.train();
  assert.ok(net.head.at(3).training);
});

test('zeroGrad drops gradients, or fills them with zeros', () => {
  using net = new Net();
  using x = randn([2, 3, 4, 4]);
  const backward = () => tidy(() => net.forward(x).sum().backward());
  backward();
  assert.ok(net.parameters().every((p) => tidy(() => p.grad !== null)));
  net.zeroGrad({ setToNone: false });
  for (const p of net.parameters()) tidy(() => assert.equal(p.grad!.abs().sum().item(), 0));
  backward();
  net.zeroGrad();
  assert.ok(net.parameters().every((p) => p.grad === null));
});

// ---- state dict ---------------------------------------------------------------------------------------------

test('stateDict shares memory, is detached and round-trips into another model', () => {
  manualSeed(1);
  using a = new Net().eval();
  manualSeed(2);
  using b = new Net().eval();
  using x = randn([2, 3, 4, 4]);
  const state = a.stateDict();
  try {
    assert.ok(!state.has('cache'), 'non-persistent buffers stay out');
    assert.ok([...state.values()].every((t) => !t.requiresGrad));
    noGrad(() => state.get('scale')!.fill_(2));
    assert.equal(a.scale.item(), 2);
    tidy(() => assert.ok(!a.forward(x).allclose(b.forward(x))));
    const result = b.loadStateDict(state);
    assert.deepEqual(result, { missingKeys: [], unexpectedKeys: [] });
    tidy(() => assert.ok(a.forward(x).equal(b.forward(x))));
    assert.ok(b.conv.weight.requiresGrad, 'loading keeps parameters trainable');
  } finally {
    disposeAll(state);
  }
});

test('loadStateDict reports missing and unexpected keys, shape and dtype mismatches, and changes nothing then', () => {
  using net = new Net();
  const good = tidy(() => new Map([...net.stateDict()].map(([k, v]) => [k, v.add(1)])));
  const withChanges = (change: (m: Map<string, Tensor>) => void) => {
    const m = new Map(good);
    change(m);
    return m;
  };
  const weightBefore = net.conv.weight.clone();
  try {
    assert.throws(() => net.loadStateDict(withChanges((m) => { m.delete('bn.bias'); m.delete('head.4.weight'); })),
      (e: Error) => /Error\(s\) in loading state dict for Net/.test(e.message)
        && e.message.includes('Missing key(s): "bn.bias", "head.4.weight".'));
    using extra = zeros([3]);
    assert.throws(() => net.loadStateDict(withChanges((m) => { m.set('fc.weight', extra); m.set('bn.extra', extra); })),
      (e: Error) => e.message.includes('Unexpected key(s): "fc.weight", "bn.extra".'));
    using wrongShape = zeros([8, 2]);
    assert.throws(() => net.loadStateDict(withChanges((m) => m.set('head.4.weight', wrongShape))),
      (e: Error) => e.message.includes('size mismatch for head.4.weight: expected shape [2, 8], got [8, 2]'));
    using wrongDtype = zeros([4, 3, 3, 3], { dtype: 'float64' });
    assert.throws(() => net.loadStateDict(withChanges((m) => m.set('conv.weight', wrongDtype))),
      (e: Error) => e.message.includes('dtype mismatch for conv.weight: expected float32, got float64'));
    assert.ok(net.conv.weight.equal(weightBefore), 'a failed load changes nothing');

    const partial = withChanges((m) => { m.delete('scale'); m.set('unused', extra); });
    assert.deepEqual(net.loadStateDict(partial, { strict: false }), { missingKeys: ['scale'], unexpectedKeys: ['unused'] });
    assert.equal(net.scale.item(), 1);
    tidy(() => assert.ok(net.conv.weight.equal(weightBefore.add(1)), 'strict: false loads the keys present'));
    assert.throws(() => net.loadStateDict(withChanges((m) => m.set('conv.weight', wrongDtype)), { strict: false }), /dtype mismatch/);
  } finally {
    disposeAll([good, weightBefore]);
  }
});

test('a checkpoint without num_batches_tracked (pre-0.4.1 PyTorch) loads, with the counter at 0', () => {
  using bn = new BatchNorm2d(3);
  using x = randn([2, 3, 2, 2]);
  tidy(() => bn.forward(x));
  assert.equal(bn.numBatchesTracked!.item(), 1);
  const state = bn.stateDict();
  state.get('num_batches_tracked')!.dispose();
  state.delete('num_batches_tracked');
  assert.deepEqual(bn.loadStateDict(state), { missingKeys: [], unexpectedKeys: [] });
  assert.equal(bn.numBatchesTracked!.item(), 0);
  disposeAll(state);
});

// ---- device, dtype, memory -------------------------------------------------------------------------------

test('to(dtype) converts floating tensors in place, keeps identities and integer buffers, frees the old memory', () => {
  using net = new Net();
  using x = randn([2, 3, 4, 4]);
  tidy(() => net.forward(x).sum().backward());
  const tensorsBefore = [...net.parameters(), ...net.buffers()];
  const live = liveTensorCount();
  assert.equal(net.to('float64'), net);
  assert.equal(liveTensorCount(), live);
  assert.deepEqual([...net.parameters(), ...net.buffers()], tensorsBefore);
  assert.ok(net.parameters().every((p) => p.dtype === 'float64' && p.requiresGrad && p.isLeaf));
  assert.ok(tidy(() => net.parameters().every((p) => p.grad!.dtype === 'float64')), 'gradients move too');
  assert.equal(net.bn.runningMean!.dtype, 'float64');
  assert.equal(net.bn.numBatchesTracked!.dtype, 'int64');
  assert.equal(net.cache.dtype, 'float64');
  tidy(() => assert.equal(net.forward(x.double()).dtype, 'float64'));
  net.to({ device: 'cpu', dtype: 'float32' });
  assert.equal(net.conv.weight.dtype, 'float32');
  assert.throws(() => net.to('int32'), /floating-point/);
});

test('dispose frees every parameter and buffer', () => {
  const before = liveTensorCount();
  const net = new Net();
  assert.ok(liveTensorCount() > before);
  net.dispose();
  assert.equal(liveTensorCount(), before);
  assert.ok(net.conv.weight.disposed);
});

// ---- layers --------------------------------------------------------------------------------------------------

test('Sequential names its children "0", "1", ... and frees outputs between layers', () => {
  using seq = new Sequential(new Linear(4, 6), new ReLU(), new Identity(), new Linear(6, 2));
  assert.deepEqual(seq.namedChildren().map(([n]) => n), ['0', '1', '2', '3']);
  assert.equal(seq.length, 4);
  using x = randn([3, 4]);
  const before = liveTensorCount();
  const y = noGrad(() => seq.forward(x));
  assert.equal(liveTensorCount(), before + 1);
  tidy(() => {
    const manual = seq.at(3).forward(seq.at(0).forward(x).relu());
    assert.ok(y.allclose(manual));
  });
  y.dispose();
});

test('layer shapes, options and parameter names', () => {
  tidy(() => {
    const x = randn([2, 4, 9, 9]);
    const conv = new Conv2d(4, 6, [3, 2], { stride: 2, padding: 1, dilation: [1, 2], groups: 2, bias: false });
    assert.deepEqual(conv.weight.shape, [6, 2, 3, 2]);
    assert.deepEqual(conv.namedParameters().map(([n]) => n), ['weight']);
    assert.deepEqual(conv.forward(x).shape, [2, 6, 5, 5]); // width: (9 + 2 - dilated kernel 3) / 2 + 1
    conv.dispose();
    assert.throws(() => new Conv2d(3, 6, 3, { groups: 2 }), /divisible by groups/);
    assert.deepEqual(new MaxPool2d(3, { stride: 2, padding: 1 }).forward(x).shape, [2, 4, 5, 5]);
    assert.deepEqual(new MaxPool2d(2).forward(x).shape, [2, 4, 4, 4]);
    assert.deepEqual(new AvgPool2d(3).forward(x).shape, [2, 4, 3, 3]);
    assert.deepEqual(new AdaptiveAvgPool2d([1, 2]).forward(x).shape, [2, 4, 1, 2]);
    assert.deepEqual(new Flatten().forward(x).shape, [2, 324]);
    assert.deepEqual(new Flatten({ startDim: 2 }).forward(x).shape, [2, 4, 81]);
    assert.equal(new Identity().forward(x), x);
    const linear = new Linear(5, 3, { bias: false, dtype: 'float64' });
    assert.equal(linear.bias, null);
    assert.equal(linear.weight.dtype, 'float64');
    linear.dispose();
    const bn = new BatchNorm2d(4, { affine: false, trackRunningStats: false });
    assert.equal(bn.stateDict().size, 0);
    assert.equal(bn.parameters().length + bn.buffers().length, 0);
    assert.ok(bn.eval().forward(x).mean().abs().item() < 1e-5, 'without running statistics, eval uses batch statistics');
    using bn2d = new BatchNorm2d(4);
    assert.throws(() => bn2d.forward(randn([2, 4])), /BatchNorm2d expects a 4-d input/);
    using bn1d = new BatchNorm1d(4);
    assert.throws(() => bn1d.forward(x), /BatchNorm1d expects a 2-d or 3-d input/);
  });
});

test('BatchNorm running statistics, num_batches_tracked and affine updates match PyTorch over 2 training steps', (t) => {
  if (!reference) return t.skip(torchMissing!);
  batchNormCases.forEach((c, i) => {
    const expected = reference!.batchNorm[i]!;
    const config = { momentum: c.momentum };
    using bn: BatchNorm = c.kind === '2d' ? new BatchNorm2d(c.shape[1]!, config) : new BatchNorm1d(c.shape[1]!, config);
    tidy(() => {
      const coefficients = tensor(c.coefficients).reshape(c.shape);
      for (const step of c.steps) {
        bn.forward(tensor(step).reshape(c.shape)).mul(coefficients).sum().backward();
        noGrad(() => { for (const p of bn.parameters()) p.sub_(p.grad!.mul(0.1)); });
        bn.zeroGrad();
      }
      bn.eval();
      const what = `BatchNorm${c.kind} momentum ${c.momentum}`;
      assertClose(bn.runningMean!.toArray(), expected.running_mean, 1e-6, `${what} running_mean`);
      assertClose(bn.runningVar!.toArray(), expected.running_var, 1e-6, `${what} running_var`);
      assert.equal(bn.numBatchesTracked!.item(), expected.num_batches_tracked);
      assert.equal(bn.numBatchesTracked!.dtype, 'int64');
      assertClose(bn.weight!.toArray(), expected.weight, 1e-6, `${what} weight`);
      assertClose(bn.bias!.toArray(), expected.bias, 1e-6, `${what} bias`);
      assertClose(bn.forward(tensor(c.evalInput).reshape(c.shape)).toArray(), expected.eval, 1e-5, `${what} eval output`);
    });
  });
});

test('LayerNorm: parameters, default values and outputs (with and without elementwise affine) match PyTorch', (t) => {
  if (!reference) return t.skip(torchMissing!);
  const c = layerNormCase;
  const expected = reference.layerNorm;
  using ln = new LayerNorm(c.normalizedShape, { eps: c.eps });
  assert.deepEqual(ln.namedParameters().map(([n, p]) => [n, p.shape, p.toArray()]), expected.parameters);
  using plain = new LayerNorm(c.normalizedShape, { eps: c.eps, elementwiseAffine: false });
  assert.deepEqual(plain.namedParameters().map(([n]) => n), expected.plainParameters);
  tidy(() => {
    noGrad(() => {
      ln.weight!.copy_(tensor(c.weight).reshape(c.normalizedShape));
      ln.bias!.copy_(tensor(c.bias).reshape(c.normalizedShape));
    });
    const x = tensor(c.x).reshape(c.shape);
    assertClose(ln.forward(x).toArray(), expected.output, 1e-5, 'LayerNorm output');
    assertClose(plain.forward(x).toArray(), expected.plainOutput, 1e-5, 'LayerNorm output without affine');
  });
  using last = new LayerNorm(4);
  assert.deepEqual(last.weight!.shape, [4], 'an integer normalizedShape is the last dimension');
});

test('Embedding: the same seed gives PyTorch\'s N(0, 1) weights, and lookups equal PyTorch\'s', (t) => {
  if (!reference) return t.skip(torchMissing!);
  const c = embeddingCase;
  manualSeed(c.seed);
  using emb = new Embedding(c.numEmbeddings, c.embeddingDim);
  assert.deepEqual(emb.namedParameters().map(([n]) => n), reference.embedding.parameters);
  assert.deepEqual(emb.weight.toArray(), reference.embedding.weight);
  tidy(() => {
    const y = emb.forward(tensor(c.indices, { dtype: 'int64' }));
    assert.deepEqual(y.shape, [2, 3, c.embeddingDim]);
    assert.deepEqual(y.toArray(), reference!.embedding.output);
  });
  using narrow = new Embedding(2000, 8, { initStd: 0.02, generator: new Generator(3) });
  tidy(() => assert.ok(Math.abs(narrow.weight.std().item() - 0.02) < 0.001, 'initStd sets the spread'));
});

// ---- init ----------------------------------------------------------------------------------------------------

test('default Linear and Conv2d weights equal PyTorch\'s for the same seed', (t) => {
  if (!reference) return t.skip(torchMissing!);
  manualSeed(123);
  const layers = [new Linear(7, 5), new Conv2d(3, 4, 3), new Conv2d(4, 6, [3, 2], { groups: 2, bias: false })];
  layers.forEach((layer, i) => {
    assert.deepEqual(layer.parameters().map((p) => p.toArray()), reference!.defaultInit[i], `layer ${i}`);
    layer.dispose();
  });
});

test('a Generator makes initialisation reproducible and independent of the global seed', () => {
  const draw = (seed: number) => {
    using layer = new Conv2d(3, 8, 3, { generator: new Generator(seed) });
    return layer.weight.toArray();
  };
  manualSeed(1);
  const a = draw(5);
  manualSeed(2);
  assert.deepEqual(draw(5), a);
  assert.notDeepEqual(draw(6), a);
});

test('default Linear bound is 1/sqrt(fan_in) for weight and bias', () => {
  using layer = new Linear(400, 300);
  const bound = 1 / Math.sqrt(400);
  tidy(() => {
    for (const p of [layer.weight, layer.bias!]) {
      const max = p.abs().max().item();
      assert.ok(max <= bound && max > 0.98 * bound, `max |w| ${max} vs bound ${bound}`);
    }
    assert.ok(Math.abs(layer.weight.std().item() - bound / Math.sqrt(3)) < 0.01 * bound);
  });
});

test('kaiming, xavier and simple fills have torch.nn.init\'s statistics', () => {
  tidy(() => {
    const w = zeros([1000, 250, 2, 2]); // fan_in 1000, fan_out 4000
    const std = (t: Tensor) => t.std().item();
    const maxAbs = (t: Tensor) => t.abs().max().item();
    const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 0.01 * b, `${what}: ${a} vs ${b}`);

    near(std(kaimingNormal_(w)), Math.sqrt(2 / 1000), 'kaimingNormal_ fan_in');
    near(std(kaimingNormal_(w, { mode: 'fan_out', nonlinearity: 'relu' })), Math.sqrt(2 / 4000), 'kaimingNormal_ fan_out relu');
    const bound = Math.sqrt(3) * Math.sqrt(2 / (1 + 0.2 ** 2)) / Math.sqrt(1000);
    kaimingUniform_(w, { a: 0.2 });
    assert.ok(maxAbs(w) <= bound && maxAbs(w) > 0.999 * bound, 'kaimingUniform_ bound');
    near(std(xavierNormal_(w, { gain: 2 })), 2 * Math.sqrt(2 / 5000), 'xavierNormal_');
    const xavierBound = Math.sqrt(6 / 5000);
    xavierUniform_(w);
    assert.ok(maxAbs(w) <= xavierBound && maxAbs(w) > 0.999 * xavierBound, 'xavierUniform_ bound');
    uniform_(w, { a: 2, b: 3 });
    assert.ok(w.min().item() >= 2 && w.max().item() <= 3);
    near(std(normal_(w, { mean: 5, std: 0.5 })), 0.5, 'normal_ std');
    near(w.mean().item(), 5, 'normal_ mean');
    assert.equal(constant_(w, 0.25).sum().item(), 0.25 * w.numel);
    assert.equal(ones_(w).sum().item(), w.numel);
    assert.equal(zeros_(w).abs().sum().item(), 0);
  });
  // init works on parameters (leaves that require gradients) without recording
  using layer = new Linear(3, 2);
  kaimingNormal_(layer.weight);
  assert.ok(layer.weight.isLeaf);
});

test('calculateGain and calculateFanInAndFanOut', () => {
  assert.equal(calculateGain('relu'), Math.sqrt(2));
  assert.equal(calculateGain('tanh'), 5 / 3);
  assert.equal(calculateGain('leaky_relu'), Math.sqrt(2 / (1 + 0.01 ** 2)));
  assert.equal(calculateGain('leaky_relu', Math.sqrt(5)), Math.sqrt(1 / 3));
  assert.equal(calculateGain('conv2d'), 1);
  assert.equal(calculateGain('selu'), 0.75);
  assert.deepEqual(calculateFanInAndFanOut([64, 3, 7, 7]), { fanIn: 147, fanOut: 3136 });
  assert.deepEqual(calculateFanInAndFanOut([10, 20]), { fanIn: 20, fanOut: 10 });
  assert.throws(() => calculateFanInAndFanOut([5]), /fewer than 2 dimensions/);
});
