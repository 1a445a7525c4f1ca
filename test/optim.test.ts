// Optimisers and schedules against PyTorch 1.13 (Debian's /usr/bin/python3), state-dict resume, leaks.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, tensor, zeros, tidy, disposeAll, liveTensorCount, type DType } from '../src/tensor/index.js';
import {
  SGD, Adam, AdamW, StepLR, CosineAnnealingLR, OneCycleLR, stepLrAt, cosineLrAt, oneCycleLrAt, oneCycleMomentumAt,
  type Optimizer, type OptimizerStateDict, type LRSchedule,
} from '../src/optim/index.js';
import { pythonMissing, runPythonJson } from './helpers/python.js';

// ---- a small least-squares problem, identical on both sides -----------------------------------------------

const rows = 8, inputs = 4, outputs = 3;
const X = Array.from({ length: rows }, (_, i) => Array.from({ length: inputs }, (_, j) => Math.sin(1 + 4 * i + j)));
const Y = Array.from({ length: rows }, (_, i) => Array.from({ length: outputs }, (_, k) => Math.cos(2 + 3 * i + k)));
const W0 = Array.from({ length: outputs }, (_, k) => Array.from({ length: inputs }, (_, j) => 0.1 * (k - j) + 0.05 * Math.sin(k * j + 0.5)));
const B0 = Array.from({ length: outputs }, (_, k) => 0.01 * k - 0.02);

interface Problem { x: Tensor; y: Tensor; w: Tensor; b: Tensor }

function makeProblem(dtype: DType, w = W0, b = B0): Problem {
  return {
    x: tensor(X, { dtype }), y: tensor(Y, { dtype }),
    w: tensor(w, { dtype, requiresGrad: true }), b: tensor(b, { dtype, requiresGrad: true }),
  };
}

/** objective = sign · mean((x wᵀ + b − y)²), back-propagated into w.grad and b.grad. */
function backward(p: Problem, sign = 1): void {
  tidy(() => p.x.matmul(p.w.transpose(0, 1)).add(p.b).sub(p.y).square().mean().mul(sign).backward());
}

function train(p: Problem, opt: Optimizer<{ lr: number }>, steps: number, sign = 1, schedule?: LRSchedule): void {
  for (let s = 0; s < steps; s++) {
    opt.zeroGrad();
    backward(p, sign);
    opt.step();
    schedule?.step();
  }
}

// ---- cases run on both sides ------------------------------------------------------------------------------

type Options = Record<string, number | boolean | number[]>;
interface Case {
  name: string;
  optimizer: 'SGD' | 'Adam' | 'AdamW';
  defaults: Options;
  /** Options of the second group (the bias b); the first (w) takes the defaults. */
  groupB: Options;
  sign: number;
  dtype: DType;
  steps: number;
}

const optimizerCases: Omit<Case, 'dtype' | 'steps' | 'sign'>[] = [
  { name: 'SGD plain', optimizer: 'SGD', defaults: { lr: 0.1 }, groupB: { lr: 0.05 } },
  { name: 'SGD momentum', optimizer: 'SGD', defaults: { lr: 0.1, momentum: 0.9 }, groupB: { lr: 0.03 } },
  { name: 'SGD nesterov', optimizer: 'SGD', defaults: { lr: 0.05, momentum: 0.9, nesterov: true }, groupB: { lr: 0.02, momentum: 0.5 } },
  { name: 'SGD weight decay + dampening', optimizer: 'SGD', defaults: { lr: 0.1, momentum: 0.8, dampening: 0.3, weightDecay: 0.01 }, groupB: { weightDecay: 0 } },
  { name: 'SGD maximize', optimizer: 'SGD', defaults: { lr: 0.1, momentum: 0.9, weightDecay: 1e-3, maximize: true }, groupB: { lr: 0.2 } },
  { name: 'Adam', optimizer: 'Adam', defaults: { lr: 0.01 }, groupB: { lr: 0.02 } },
  { name: 'Adam amsgrad + L2 + maximize', optimizer: 'Adam', defaults: { lr: 0.01, betas: [0.8, 0.99], weightDecay: 0.01, amsgrad: true, maximize: true }, groupB: { lr: 0.05, amsgrad: false } },
  { name: 'AdamW', optimizer: 'AdamW', defaults: { lr: 0.01 }, groupB: { lr: 0.03, weightDecay: 0.1 } },
  { name: 'AdamW amsgrad', optimizer: 'AdamW', defaults: { lr: 0.02, amsgrad: true, weightDecay: 0.05, eps: 1e-6 }, groupB: { weightDecay: 0 } },
];

const cases: Case[] = [
  ...optimizerCases.map((c) => ({ ...c, sign: c.defaults.maximize ? -1 : 1, dtype: 'float64' as DType, steps: 10 })),
  // float32 takes the same kernels with the same scalars, so it must agree bit for bit.
  ...optimizerCases.map((c) => ({ ...c, name: `${c.name} float32`, sign: c.defaults.maximize ? -1 : 1, dtype: 'float32' as DType, steps: 10 })),
];

function makeOptimizer(kind: Case['optimizer'], params: Tensor[] | { params: Tensor[] }[], options: Options): Optimizer<{ lr: number }> {
  switch (kind) {
    case 'SGD': return new SGD(params, options as { lr: number });
    case 'Adam': return new Adam(params, options);
    case 'AdamW': return new AdamW(params, options);
  }
}

function runOurs(c: Case): { w: number[]; b: number[] } {
  const p = makeProblem(c.dtype);
  const opt = makeOptimizer(c.optimizer, [{ params: [p.w] }, { params: [p.b], ...c.groupB }], c.defaults);
  train(p, opt, c.steps, c.sign);
  const result = { w: p.w.toArray(), b: p.b.toArray() };
  opt.dispose();
  disposeAll(p);
  return result;
}

// ---- the PyTorch side: one Python process computes every reference ------------------------------------------

const PYTHON = String.raw`
import json, math, sys
import torch
torch.set_num_threads(1)
spec = json.load(sys.stdin)
names = {'weightDecay': 'weight_decay'}
def kwargs(o):
    return {names.get(k, k): (tuple(v) if k == 'betas' else v) for k, v in o.items()}
out = {'optim': {}, 'sched': {}}
for c in spec['cases']:
    dtype = torch.float64 if c['dtype'] == 'float64' else torch.float32
    X = torch.tensor(spec['X'], dtype=dtype); Y = torch.tensor(spec['Y'], dtype=dtype)
    W = torch.tensor(spec['W0'], dtype=dtype, requires_grad=True)
    b = torch.tensor(spec['B0'], dtype=dtype, requires_grad=True)
    cls = {'SGD': torch.optim.SGD, 'Adam': torch.optim.Adam, 'AdamW': torch.optim.AdamW}[c['optimizer']]
    opt = cls([{'params': [W]}, dict(params=[b], **kwargs(c['groupB']))], **kwargs(c['defaults']))
    for _ in range(c['steps']):
        opt.zero_grad()
        ((X @ W.T + b - Y).square().mean() * c['sign']).backward()
        opt.step()
    out['optim'][c['name']] = {'w': W.detach().flatten().tolist(), 'b': b.detach().tolist()}

S = torch.optim.lr_scheduler
def groups():
    p = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    return [{'params': [p[0]], 'lr': 0.1}, {'params': [p[1]], 'lr': 0.05}]
def record(opt, sched, steps, momentum=None):
    lrs, moms = [sched.get_last_lr()], []
    get = (lambda: [g['betas'][0] for g in opt.param_groups]) if momentum == 'beta1' else (lambda: [g['momentum'] for g in opt.param_groups])
    if momentum: moms.append(get())
    for _ in range(steps):
        opt.step(); sched.step(); lrs.append(sched.get_last_lr())
        if momentum: moms.append(get())
    return {'lr': lrs, 'momentum': moms}
opt = torch.optim.SGD(groups(), lr=0.1)
out['sched']['step'] = record(opt, S.StepLR(opt, step_size=7, gamma=0.3), 30)
opt = torch.optim.SGD(groups(), lr=0.1)
out['sched']['cosine'] = record(opt, S.CosineAnnealingLR(opt, T_max=30, eta_min=1e-3), 30)
opt = torch.optim.SGD(groups(), lr=0.1)
warm = lambda s: s / 5 if s < 5 else (1 + math.cos(math.pi * (s - 5) / 25)) / 2
out['sched']['warmup'] = record(opt, S.LambdaLR(opt, warm), 30)
opt = torch.optim.SGD(groups(), lr=0.1, momentum=0.9)
out['sched']['onecycle_sgd'] = record(opt, S.OneCycleLR(opt, max_lr=[0.1, 0.05], total_steps=30), 30, 'momentum')
opt = torch.optim.Adam(groups(), lr=0.1)
out['sched']['onecycle_adam'] = record(opt, S.OneCycleLR(opt, max_lr=0.02, total_steps=30, pct_start=0.25, anneal_strategy='linear',
    div_factor=10.0, final_div_factor=100.0, three_phase=True, base_momentum=0.8, max_momentum=0.9), 30, 'beta1')
print(json.dumps(out))
`;

interface Reference {
  optim: Record<string, { w: number[]; b: number[] }>;
  sched: Record<string, { lr: number[][]; momentum: number[][] }>;
}
let reference: Reference | null = null;
const skipReason = pythonMissing('torch') ?? '';

before(() => {
  if (!skipReason) reference = runPythonJson<Reference>(PYTHON, { input: { X, Y, W0, B0, cases } });
});

/** |a − b| ≤ rtol·|b| + atol, elementwise, with a message naming the worst element. */
function assertClose(actual: readonly number[], expected: readonly number[], rtol: number, atol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((a, i) => {
    const e = expected[i]!;
    assert.ok(Math.abs(a - e) <= rtol * Math.abs(e) + atol, `${what}[${i}]: got ${a}, PyTorch ${e} (difference ${a - e})`);
  });
}

// ---- optimisers -----------------------------------------------------------------------------------------------

for (const c of cases) {
  test(`${c.optimizer}: ${c.name} matches PyTorch over ${c.steps} steps (two parameter groups)`, (t) => {
    if (!reference) return t.skip(skipReason);
    const ours = runOurs(c);
    const theirs = reference.optim[c.name]!;
    if (c.dtype === 'float64') {
      assertClose(ours.w, theirs.w, 1e-10, 1e-14, `${c.name} w`);
      assertClose(ours.b, theirs.b, 1e-10, 1e-14, `${c.name} b`);
    } else {
      assert.deepEqual(ours, theirs, `${c.name}: float32 results must equal PyTorch's bit for bit`);
    }
    // The parameters did move, by more than the tolerance (so a no-op optimiser fails this test).
    const moved = Math.max(...ours.w.map((v, i) => Math.abs(v - W0.flat()[i]!)));
    assert.ok(moved > 1e-3, `${c.name}: parameters moved only ${moved}`);
  });
}

test('amsgrad changes the trajectory of this problem (so the amsgrad comparisons test something)', () => {
  const base = { name: 'x', optimizer: 'Adam' as const, groupB: {}, sign: 1, dtype: 'float64' as DType, steps: 10 };
  const plain = runOurs({ ...base, defaults: { lr: 0.05 } });
  const ams = runOurs({ ...base, defaults: { lr: 0.05, amsgrad: true } });
  assert.ok(Math.max(...plain.w.map((v, i) => Math.abs(v - ams.w[i]!))) > 1e-6);
});

test('a parameter without a gradient is neither updated nor given state', () => {
  const p = makeProblem('float64');
  const unused = zeros([2], { dtype: 'float64', requiresGrad: true });
  const opt = new Adam([p.w, p.b, unused], { lr: 0.1, weightDecay: 0.1 });
  train(p, opt, 3);
  assert.deepEqual(unused.toArray(), [0, 0]);
  const sd = opt.stateDict();
  assert.deepEqual(Object.keys(sd.json.state), ['0', '1']);
  assert.deepEqual([...sd.tensors.keys()].sort(), ['state.0.exp_avg', 'state.0.exp_avg_sq', 'state.1.exp_avg', 'state.1.exp_avg_sq']);
  assert.deepEqual(sd.json.state['0'], { step: 3 });
  disposeAll(sd.tensors);
  opt.dispose();
  disposeAll([p, unused]);
});

test('zeroGrad drops gradients by default and zero-fills them with setToNone: false', () => {
  const p = makeProblem('float64');
  const opt = new SGD([p.w, p.b], { lr: 0.1 });
  backward(p);
  opt.zeroGrad({ setToNone: false });
  const g = p.w.grad!;
  assert.ok(g.toArray().every((v) => v === 0));
  g.dispose();
  opt.zeroGrad();
  assert.equal(p.w.grad, null);
  disposeAll(p);
});

test('options are validated with clear errors', () => {
  const p = makeProblem('float64');
  assert.throws(() => new SGD([p.w], { lr: -0.1 }), /SGD: invalid learning rate -0.1/);
  assert.throws(() => new SGD([p.w], { lr: 0.1, momentum: -1 }), /invalid momentum/);
  assert.throws(() => new SGD([p.w], { lr: 0.1, nesterov: true }), /Nesterov momentum requires a momentum > 0/);
  assert.throws(() => new SGD([{ params: [p.w] }, { params: [p.b], lr: -1 }], { lr: 0.1 }), /invalid learning rate -1/);
  assert.throws(() => new Adam([p.w], { betas: [1, 0.999] }), /invalid beta parameter at index 0: 1/);
  assert.throws(() => new AdamW([p.w], { betas: [0.9, -0.1] }), /AdamW: invalid beta parameter at index 1/);
  assert.throws(() => new Adam([p.w], { eps: -1e-8 }), /invalid eps/);
  assert.throws(() => new Adam([p.w], { weightDecay: -1 }), /invalid weightDecay/);
  assert.throws(() => new Adam([], {}), /empty parameter list/);
  assert.throws(() => new Adam([{ params: [p.w] }, { params: [p.w] }]), /more than once/);
  const nonLeaf = p.w.mul(2);
  assert.throws(() => new Adam([nonLeaf]), /non-leaf/);
  assert.throws(() => new StepLR(new SGD([p.w], { lr: 0.1 }), { stepSize: 0 }), /stepSize must be a positive integer/);
  assert.throws(() => new CosineAnnealingLR(new SGD([p.w], { lr: 0.1 }), { totalSteps: 10, warmupSteps: 10 }), /warmupSteps/);
  assert.throws(() => new OneCycleLR(new SGD([p.w], { lr: 0.1 }), { maxLr: 0.1, totalSteps: 10, pctStart: 1.5 }), /pctStart/);
  assert.throws(() => new OneCycleLR(new SGD([p.w], { lr: 0.1 }), { maxLr: -1, totalSteps: 10 }), /maxLr/);
  assert.throws(() => new OneCycleLR(new SGD([p.w], { lr: 0.1 }), { maxLr: [0.1, 0.2], totalSteps: 10 }), /expected 1 values for maxLr/);
  assert.throws(() => oneCycleLrAt(0, { maxLr: 0.1, totalSteps: 10, anneal: 'exp' as 'cos' }), /anneal must be 'cos' or 'linear'/);
  disposeAll([p, nonLeaf]);
});

// ---- state dicts --------------------------------------------------------------------------------------------

/** What a checkpoint does to a state dict: copies the tensors out, the JSON through text. */
function saveAndReload(sd: OptimizerStateDict): OptimizerStateDict {
  const tensors = new Map([...sd.tensors].map(([k, v]) => [k, v.clone()] as const));
  disposeAll(sd.tensors);
  return { tensors, json: JSON.parse(JSON.stringify(sd.json)) as OptimizerStateDict['json'] };
}

const resumeCases: { name: string; make: (params: { params: Tensor[]; lr?: number }[]) => Optimizer<{ lr: number }>; schedule?: (o: Optimizer<{ lr: number }>) => LRSchedule }[] = [
  { name: 'SGD nesterov + weight decay', make: (g) => new SGD(g, { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-2 }) },
  { name: 'Adam amsgrad', make: (g) => new Adam(g, { lr: 0.02, amsgrad: true, weightDecay: 1e-3 }) },
  { name: 'AdamW with OneCycleLR (lr and β1 cycled)', make: (g) => new AdamW(g, { lr: 0.02 }), schedule: (o) => new OneCycleLR(o, { maxLr: 0.05, totalSteps: 10 }) },
  { name: 'SGD with StepLR (chainable lr)', make: (g) => new SGD(g, { lr: 0.1, momentum: 0.9 }), schedule: (o) => new StepLR(o, { stepSize: 3, gamma: 0.5 }) },
];

for (const rc of resumeCases) {
  test(`${rc.name}: 5 steps, save, load into a fresh optimiser, 5 more == 10 straight steps, bit for bit`, () => {
    const straight = makeProblem('float32');
    const optStraight = rc.make([{ params: [straight.w] }, { params: [straight.b], lr: 0.01 }]);
    const schedStraight = rc.schedule?.(optStraight);
    train(straight, optStraight, 10, 1, schedStraight);

    const first = makeProblem('float32');
    const optFirst = rc.make([{ params: [first.w] }, { params: [first.b], lr: 0.01 }]);
    const schedFirst = rc.schedule?.(optFirst);
    train(first, optFirst, 5, 1, schedFirst);
    const saved = saveAndReload(optFirst.stateDict());
    const savedSchedule = schedFirst ? JSON.parse(JSON.stringify(schedFirst.stateDict())) : undefined;

    // A new process would rebuild the model from the checkpoint: same values, new tensors, other lrs.
    const second = makeProblem('float32', chunks(first.w.toArray(), inputs), first.b.toArray());
    const optSecond = rc.make([{ params: [second.w], lr: 123 }, { params: [second.b], lr: 456 }]);
    const schedSecond = rc.schedule?.(optSecond);
    optSecond.loadStateDict(saved);
    if (schedSecond) schedSecond.loadStateDict(savedSchedule);
    disposeAll(saved.tensors);
    train(second, optSecond, 5, 1, schedSecond);

    assert.ok(second.w.equal(straight.w) && second.b.equal(straight.b), 'resumed parameters differ from the straight run');
    assert.deepEqual(optSecond.paramGroups.map((g) => g.lr), optStraight.paramGroups.map((g) => g.lr));
    const [a, b] = [optSecond.stateDict(), optStraight.stateDict()];
    assert.deepEqual(a.json, b.json);
    for (const [name, t] of b.tensors) assert.ok(a.tensors.get(name)?.equal(t), `state ${name} differs`);
    for (const o of [optStraight, optFirst, optSecond]) o.dispose();
    disposeAll([straight, first, second, a.tensors, b.tensors]);
  });
}

test('loadStateDict refuses a state that does not fit, and changes nothing', () => {
  const p = makeProblem('float64');
  const adam = new Adam([{ params: [p.w] }, { params: [p.b] }], { lr: 0.01 });
  train(p, adam, 2);
  const sd = adam.stateDict();
  const q = makeProblem('float64');
  assert.throws(() => new SGD([p.w, p.b], { lr: 0.1 }).loadStateDict(sd), /cannot load a state dict saved by Adam/);
  assert.throws(() => new Adam([p.w, p.b]).loadStateDict(sd), /2 parameter groups, the optimiser 1/);
  const target = new Adam([{ params: [q.w] }, { params: [q.b] }], { lr: 0.5 });
  const badShape = { tensors: new Map(sd.tensors), json: sd.json };
  badShape.tensors.set('state.1.exp_avg', zeros([7], { dtype: 'float64' }));
  assert.throws(() => target.loadStateDict(badShape), /'state.1.exp_avg' has shape \[7\], its parameter \[3\]/);
  const missing = { tensors: new Map([...sd.tensors].filter(([k]) => k !== 'state.0.exp_avg_sq')), json: sd.json };
  assert.throws(() => target.loadStateDict(missing), /parameter 0 needs step, exp_avg and exp_avg_sq/);
  assert.equal(target.paramGroups[0]!.lr, 0.5);
  assert.equal(target.stateDict().tensors.size, 0);
  adam.dispose();
  disposeAll([p, q, sd.tensors, badShape.tensors.get('state.1.exp_avg')]);
});

// ---- leaks ---------------------------------------------------------------------------------------------------

test('no tensor leaks across 100 steps (state made once, temporaries freed)', () => {
  const p = makeProblem('float32');
  const q = makeProblem('float32');
  const adam = new Adam([p.w, p.b], { lr: 1e-3, amsgrad: true, weightDecay: 1e-2, maximize: true });
  const sgd = new SGD([q.w, q.b], { lr: 1e-3, momentum: 0.9, nesterov: true, weightDecay: 1e-2 });
  const schedule = new OneCycleLR(sgd, { maxLr: 1e-2, totalSteps: 101 });
  train(p, adam, 1, -1);
  train(q, sgd, 1, 1, schedule);
  const live = liveTensorCount();
  train(p, adam, 100, -1);
  train(q, sgd, 100, 1, schedule);
  disposeAll(adam.stateDict().tensors);
  adam.zeroGrad({ setToNone: false });
  assert.equal(liveTensorCount(), live);
  adam.dispose();
  sgd.dispose();
  disposeAll([p, q]);
});

// ---- schedules -----------------------------------------------------------------------------------------------

function twoGroups(kind: 'SGD' | 'Adam'): Optimizer<{ lr: number }> {
  const groups = [{ params: [zeros([1], { requiresGrad: true })], lr: 0.1 }, { params: [zeros([1], { requiresGrad: true })], lr: 0.05 }];
  return kind === 'SGD' ? new SGD(groups, { lr: 0.1, momentum: 0.9 }) : new Adam(groups, { lr: 0.1 });
}

function recordSchedule(opt: Optimizer<{ lr: number }>, schedule: LRSchedule, steps: number, momentum?: 'momentum' | 'beta1') {
  const momenta = () => opt.paramGroups.map((g) => momentum === 'beta1' ? (g as unknown as { betas: number[] }).betas[0]! : (g as unknown as { momentum: number }).momentum);
  const lr = [[...schedule.lastLr]];
  const mom = momentum ? [momenta()] : [];
  for (let s = 0; s < steps; s++) {
    schedule.step();
    lr.push([...schedule.lastLr]);
    assert.deepEqual(opt.paramGroups.map((g) => g.lr), schedule.lastLr);
    if (momentum) mom.push(momenta());
  }
  return { lr, momentum: mom };
}

test('StepLR equals PyTorch exactly over 30 steps; lrAt is its closed form', (t) => {
  if (!reference) return t.skip(skipReason);
  const opt = twoGroups('SGD');
  const schedule = new StepLR(opt, { stepSize: 7, gamma: 0.3 });
  const ours = recordSchedule(opt, schedule, 30);
  assert.deepEqual(ours.lr, reference.sched.step!.lr);
  for (let s = 0; s <= 30; s++) {
    assertClose(schedule.lrAt(s), ours.lr[s]!, 1e-15, 0, `lrAt(${s})`);
    assert.equal(schedule.lrAt(s)[1], stepLrAt(s, { baseLr: 0.05, stepSize: 7, gamma: 0.3 }));
  }
  assert.equal(stepLrAt(14, { baseLr: 1, stepSize: 7 }), 0.1 ** 2);
});

test('CosineAnnealingLR without warmup matches PyTorch\'s CosineAnnealingLR over 30 steps', (t) => {
  if (!reference) return t.skip(skipReason);
  const opt = twoGroups('SGD');
  const ours = recordSchedule(opt, new CosineAnnealingLR(opt, { totalSteps: 30, minLr: 1e-3 }), 30);
  // PyTorch's recursive form drifts from the closed form by a few ulps.
  ours.lr.forEach((lrs, s) => assertClose(lrs, reference!.sched.cosine!.lr[s]!, 1e-13, 1e-17, `step ${s}`));
  assert.equal(ours.lr[30]![0], 1e-3);
});

test('CosineAnnealingLR with warmup matches PyTorch\'s LambdaLR of the same formula, and holds minLr after', (t) => {
  if (!reference) return t.skip(skipReason);
  const opt = twoGroups('SGD');
  const schedule = new CosineAnnealingLR(opt, { totalSteps: 30, warmupSteps: 5 });
  const ours = recordSchedule(opt, schedule, 30);
  ours.lr.forEach((lrs, s) => assertClose(lrs, reference!.sched.warmup!.lr[s]!, 1e-15, 1e-18, `step ${s}`));
  assert.deepEqual(ours.lr[0], [0, 0]);
  assert.deepEqual(ours.lr[5], [0.1, 0.05]);
  assert.deepEqual(schedule.lrAt(40), [0, 0]);
  assert.equal(cosineLrAt(45, { baseLr: 1, totalSteps: 30, minLr: 0.01 }), 0.01);
  assert.equal(cosineLrAt(3, { baseLr: 1, totalSteps: 30, warmupSteps: 6 }), 0.5);
});

test('OneCycleLR matches PyTorch (rates and SGD momentum; cos, two phases, per-group maxLr)', (t) => {
  if (!reference) return t.skip(skipReason);
  const opt = twoGroups('SGD');
  const schedule = new OneCycleLR(opt, { maxLr: [0.1, 0.05], totalSteps: 30 });
  const ours = recordSchedule(opt, schedule, 30, 'momentum');
  const theirs = reference.sched.onecycle_sgd!;
  ours.lr.forEach((lrs, s) => assertClose(lrs, theirs.lr[s]!, 1e-13, 1e-18, `lr at step ${s}`));
  ours.momentum.forEach((m, s) => assertClose(m, theirs.momentum[s]!, 1e-13, 1e-16, `momentum at step ${s}`));
  assert.throws(() => schedule.step(), /step\(\) called 31 times, more than totalSteps \(30\)/);
  for (const s of [0, 9, 17, 30]) {
    assert.equal(oneCycleLrAt(s, { maxLr: 0.05, totalSteps: 30 }), ours.lr[s]![1]);
    assert.equal(oneCycleMomentumAt(s, { maxLr: 0.05, totalSteps: 30 }), ours.momentum[s]![1]);
  }
});

test('OneCycleLR matches PyTorch (rates and Adam β1; linear, three phases)', (t) => {
  if (!reference) return t.skip(skipReason);
  const opt = twoGroups('Adam');
  const schedule = new OneCycleLR(opt, {
    maxLr: 0.02, totalSteps: 30, pctStart: 0.25, anneal: 'linear', divFactor: 10, finalDivFactor: 100, threePhase: true,
    baseMomentum: 0.8, maxMomentum: 0.9,
  });
  const ours = recordSchedule(opt, schedule, 30, 'beta1');
  const theirs = reference.sched.onecycle_adam!;
  ours.lr.forEach((lrs, s) => assertClose(lrs, theirs.lr[s]!, 1e-13, 1e-18, `lr at step ${s}`));
  ours.momentum.forEach((m, s) => assertClose(m, theirs.momentum[s]!, 1e-13, 1e-16, `β1 at step ${s}`));
  assert.equal((opt.paramGroups[0] as unknown as { betas: number[] }).betas[1], 0.999, 'β2 untouched');
});

function chunks(values: number[], size: number): number[][] {
  return Array.from({ length: values.length / size }, (_, i) => values.slice(i * size, (i + 1) * size));
}
