// Ops against PyTorch: every case builds its inputs here (deterministically, without either library's RNG),
// sends them to one /usr/bin/python3 process as JSON, and compares our outputs with torch 1.13's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Tensor, tensor, zeros, ones, rand, randn, randint, randperm, cat, stack, where, manualSeed, Generator, tidy,
} from '../src/tensor/index.js';
import * as F from '../src/nn/functional.js';
import { pythonMissing, runPythonJson } from './helpers/python.js';

// ---- deterministic inputs ------------------------------------------------------------------------------------

/** mulberry32: a tiny seeded PRNG, so inputs do not depend on libtorch's generator. */
function uniform(n: number, seed: number, lo: number, hi: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let r = Math.imul(s ^ (s >>> 15), 1 | s);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    out[i] = lo + (hi - lo) * (((r ^ (r >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}
const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
/** Uniform in [lo, hi), float32. */
const r = (shape: number[], seed: number, lo = -1, hi = 1) => tensor(uniform(count(shape), seed, lo, hi), { shape });
const pos = (shape: number[], seed: number) => r(shape, seed, 0.1, 2);
const longs = (values: number[], shape = [values.length]) => tensor(BigInt64Array.from(values, (v) => BigInt(v)), { shape });
const bools = (values: number[], shape = [values.length]) => tensor(Uint8Array.from(values), { shape, dtype: 'bool' });

// ---- the PyTorch side -----------------------------------------------------------------------------------------

const PYTHON = String.raw`
import json, math, sys
import torch
import torch.nn.functional as F
torch.set_num_threads(1)

def decode(v):
    return float(v) if isinstance(v, str) else v

def to_tensor(spec):
    flat = [decode(v) for v in spec['data']]
    return torch.tensor(flat, dtype=getattr(torch, spec['dtype'])).reshape(spec['shape'])

def enc_number(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and not math.isfinite(v):
        return 'NaN' if math.isnan(v) else ('Infinity' if v > 0 else '-Infinity')
    return v

def flatten(out, acc):
    if isinstance(out, torch.Tensor):
        t = out.detach().contiguous()
        acc.append({'data': [enc_number(v) for v in t.reshape(-1).tolist()], 'shape': list(t.shape),
                    'dtype': str(t.dtype).replace('torch.', '')})
    elif isinstance(out, (tuple, list)):
        for o in out:
            flatten(o, acc)
    else:
        acc.append({'scalar': enc_number(out)})
    return acc

results = {}
for case in json.load(sys.stdin):
    env = {'torch': torch, 'F': F, 'math': math}
    env.update({k: to_tensor(v) for k, v in case['inputs'].items()})
    try:
        code = case['python']
        if 'out =' in code:
            exec(code, env)
            out = env['out']
        else:
            out = eval(code, env)
        results[case['name']] = {'outputs': flatten(out, [])}
    except Exception as e:
        results[case['name']] = {'error': repr(e)}
print(json.dumps(results))
`;

interface Encoded { data: (number | string)[]; shape: number[]; dtype: string }
type Output = Encoded | { scalar: number | string };
type Result = Tensor | number | boolean | { values: Tensor; indices: Tensor } | Result[];

interface Case {
  name: string;
  inputs: Record<string, Tensor>;
  /** A Python expression over the inputs (or statements assigning `out`). */
  python: string;
  run: (i: Record<string, Tensor>) => Result;
  todo?: string;
}
const cases: Case[] = [];
function check(name: string, inputs: Record<string, Tensor>, python: string, run: Case['run'], options: { todo?: string } = {}): void {
  cases.push({ name, inputs, python, run, todo: options.todo });
}

const encodeNumber = (v: number): number | string => (Number.isFinite(v) ? v : String(v));
const decodeNumber = (v: number | string): number => (typeof v === 'string' ? Number(v) : v);

function encode(t: Tensor): Encoded {
  return { data: t.toArray().map(encodeNumber), shape: t.shape, dtype: t.dtype };
}

function flatten(result: Result, acc: Output[] = []): Output[] {
  if (result instanceof Tensor) acc.push(encode(result));
  else if (Array.isArray(result)) for (const r of result) flatten(r, acc);
  else if (typeof result === 'number' || typeof result === 'boolean') acc.push({ scalar: Number(result) });
  else { flatten(result.values, acc); flatten(result.indices, acc); }
  return acc;
}

/** float32 tolerance: 1e-5 relative, with a small absolute floor for values near zero. */
function assertClose(actual: Output[], expected: Output[]): void {
  assert.equal(actual.length, expected.length, 'number of outputs');
  for (let k = 0; k < expected.length; k++) {
    const a = actual[k]!;
    const e = expected[k]!;
    if ('scalar' in e) {
      assert.ok('scalar' in a, `output ${k}: expected a scalar`);
      assertValuesClose([a.scalar], [e.scalar], `output ${k}`);
      continue;
    }
    assert.ok(!('scalar' in a), `output ${k}: expected a tensor`);
    assert.deepEqual(a.shape, e.shape, `output ${k}: shape`);
    assert.equal(a.dtype, e.dtype, `output ${k}: dtype`);
    assertValuesClose(a.data, e.data, `output ${k}`);
  }
}

function assertValuesClose(actual: (number | string)[], expected: (number | string)[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: element count`);
  for (let i = 0; i < expected.length; i++) {
    const a = decodeNumber(actual[i]!);
    const e = decodeNumber(expected[i]!);
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (a === e) continue;
    const tol = 1e-6 + 1e-5 * Math.abs(e);
    assert.ok(Math.abs(a - e) <= tol, `${what}[${i}]: got ${a}, PyTorch ${e} (|diff| ${Math.abs(a - e)} > ${tol})`);
  }
}

// ---- cases ----------------------------------------------------------------------------------------------------

// Broadcasting arithmetic and scalar handling.
{
  const a = r([2, 3, 4], 1);
  const b = r([3, 1], 2);
  const c = r([2, 1, 4], 3);
  const p = pos([3, 1], 4);
  check('add broadcasts [2,3,4] + [3,1]', { a, b }, 'a + b', (i) => i.a.add(i.b));
  check('add with alpha', { a, b }, 'torch.add(a, b, alpha=2.5)', (i) => i.a.add(i.b, 2.5));
  check('sub with integer alpha', { a, b }, 'torch.sub(a, b, alpha=2)', (i) => i.a.sub(i.b, 2));
  check('mul broadcasts [2,1,4] * [3,1]', { c, b }, 'c * b', (i) => i.c.mul(i.b));
  check('div broadcasts', { a, p }, 'a / p', (i) => i.a.div(i.p));
  check('rsub', { a }, 'torch.rsub(a, 3)', (i) => i.a.rsub(3));
  check('float tensor with integer and float scalars stays float32', { a },
    '(a + 1, a - 2, a * 3, a / 4, a * 0.5, a + 1e-3)',
    (i) => [i.a.add(1), i.a.sub(2), i.a.mul(3), i.a.div(4), i.a.mul(0.5), i.a.add(1e-3)]);
  const n = longs([-7, -1, 0, 3, 8, 12]);
  check('int64 tensor with integer scalars stays int64', { n },
    '(n + 1, n * 3, n - 2, n.pow(2), n.remainder(5), torch.add(n, n, alpha=2))',
    (i) => [i.n.add(1), i.n.mul(3), i.n.sub(2), i.n.pow(2), i.n.remainder(5), i.n.add(i.n, 2)]);
  check('int64 tensor with float scalars becomes float32', { n }, '(n + 1.5, n * 0.5, n / 2, n.pow(0.5))',
    (i) => [i.n.add(1.5), i.n.mul(0.5), i.n.div(2), i.n.pow(0.5)]);
  const m = tensor(new Int32Array([4, -3, 9]));
  check('int32 tensor with integer scalars stays int32', { m }, '(m + 1, m * 2, m - 7)', (i) => [i.m.add(1), i.m.mul(2), i.m.sub(7)]);
  const u = tensor(new Uint8Array([0, 7, 200]));
  check('uint8 tensor + 1 stays uint8 (wrapping)', { u }, 'u + 60', (i) => i.u.add(60));
  const f = r([6], 5);
  check('float32 tensor + int64 tensor promotes to float32', { f, n }, 'f + n', (i) => i.f.add(i.n));
  const q = pos([2, 3, 4], 6);
  check('pow, exp, log, sqrt and friends', { q, a },
    '(q.pow(1.5), q.pow(2), q.pow(-0.5), torch.pow(q, a), q.exp(), q.log(), q.sqrt(), q.rsqrt(), q.log1p(), q.reciprocal(), a.square())',
    (i) => [i.q.pow(1.5), i.q.pow(2), i.q.pow(-0.5), i.q.pow(i.a), i.q.exp(), i.q.log(), i.q.sqrt(), i.q.rsqrt(),
      i.q.log1p(), i.q.reciprocal(), i.a.square()]);
  const x5 = r([3, 7], 7, -5, 5);
  check('rounding, sign, abs, neg, sin, cos', { x5 },
    '(x5.floor(), x5.ceil(), x5.round(), x5.sign(), x5.abs(), x5.neg(), x5.sin(), x5.cos())',
    (i) => [i.x5.floor(), i.x5.ceil(), i.x5.round(), i.x5.sign(), i.x5.abs(), i.x5.neg(), i.x5.sin(), i.x5.cos()]);
  check('maximum and minimum broadcast', { a, b }, '(torch.maximum(a, b), torch.minimum(a, b))',
    (i) => [i.a.maximum(i.b), i.a.minimum(i.b)]);
  check('comparisons and where', { a, b }, '(a > b, a <= 0.1, a.eq(a), a.ne(b), torch.where(a > 0, a, b), torch.where(a > 0, a, torch.tensor(0.0)))',
    (i) => [i.a.gt(i.b), i.a.le(0.1), i.a.eq(i.a), i.a.ne(i.b), where(i.a.gt(0), i.a, i.b), where(i.a.gt(0), i.a, 0)]);
}

// Activations.
{
  const a = r([4, 6], 11, -4, 4);
  check('relu, gelu, sigmoid, tanh, silu', { a },
    '(F.relu(a), F.gelu(a), F.gelu(a, approximate="tanh"), torch.sigmoid(a), torch.tanh(a), F.silu(a))',
    (i) => [i.a.relu(), i.a.gelu(), i.a.gelu({ approximate: 'tanh' }), i.a.sigmoid(), i.a.tanh(), i.a.silu()]);
  check('softmax and logSoftmax', { a }, '(a.softmax(1), a.softmax(0), a.log_softmax(-1), a.log_softmax(0))',
    (i) => [i.a.softmax(1), i.a.softmax(0), i.a.logSoftmax(-1), i.a.logSoftmax(0)]);
  check('clamp with number bounds', { a }, '(a.clamp(-0.5, 0.5), a.clamp(min=0), a.clamp(max=0.2))',
    (i) => [i.a.clamp(-0.5, 0.5), i.a.clamp(0), i.a.clamp(null, 0.2)]);
  const lo = r([4, 1], 12, -2, 0);
  const hi = r([6], 13, 0, 2);
  check('clamp with tensor bounds (broadcast)', { a, lo, hi }, '(torch.clamp(a, lo, hi), torch.clamp(a, lo, torch.tensor(1.0)))',
    (i) => [i.a.clamp(i.lo, i.hi), i.a.clamp(i.lo, 1)]);
}

// Losses.
{
  const z = r([6, 5], 21, -3, 3);
  const y = longs([0, 4, 2, 2, 1, 3]);
  const w = pos([5], 22);
  check('crossEntropy, reductions', { z, y }, "(F.cross_entropy(z, y), F.cross_entropy(z, y, reduction='sum'), F.cross_entropy(z, y, reduction='none'))",
    (i) => [F.crossEntropy(i.z, i.y), F.crossEntropy(i.z, i.y, { reduction: 'sum' }), F.crossEntropy(i.z, i.y, { reduction: 'none' })]);
  check('crossEntropy with label smoothing', { z, y },
    "(F.cross_entropy(z, y, label_smoothing=0.1), F.cross_entropy(z, y, label_smoothing=0.3, reduction='none'))",
    (i) => [F.crossEntropy(i.z, i.y, { labelSmoothing: 0.1 }), F.crossEntropy(i.z, i.y, { labelSmoothing: 0.3, reduction: 'none' })]);
  check('crossEntropy with class weights, ignoreIndex and smoothing', { z, y, w },
    '(F.cross_entropy(z, y, weight=w), F.cross_entropy(z, y, ignore_index=2), F.cross_entropy(z, y, weight=w, label_smoothing=0.2))',
    (i) => [F.crossEntropy(i.z, i.y, { weight: i.w }), F.crossEntropy(i.z, i.y, { ignoreIndex: 2 }),
      F.crossEntropy(i.z, i.y, { weight: i.w, labelSmoothing: 0.2 })]);
  const t = r([6, 5], 23);
  check('nllLoss and mseLoss', { z, y, t }, "(F.nll_loss(z.log_softmax(1), y), F.mse_loss(z, t), F.mse_loss(z, t, reduction='sum'))",
    (i) => [F.nllLoss(i.z.logSoftmax(1), i.y), F.mseLoss(i.z, i.t), F.mseLoss(i.z, i.t, { reduction: 'sum' })]);
}

// Reductions.
{
  const x = r([3, 4, 5], 31, -2, 2);
  check('sum over all, dims and keepdim', { x }, '(x.sum(), x.sum(dim=(0, 2)), x.sum(dim=1, keepdim=True), x.sum(dim=-1))',
    (i) => [i.x.sum(), i.x.sum({ dim: [0, 2] }), i.x.sum({ dim: 1, keepdim: true }), i.x.sum({ dim: -1 })]);
  check('mean over all, dims and keepdim', { x }, '(x.mean(), x.mean(dim=(0, 1)), x.mean(dim=2, keepdim=True))',
    (i) => [i.x.mean(), i.x.mean({ dim: [0, 1] }), i.x.mean({ dim: 2, keepdim: true })]);
  check('max and min with indices', { x }, '(x.max(), x.max(dim=1), x.max(dim=-1, keepdim=True), x.min(), x.min(dim=0))',
    (i) => [i.x.max(), i.x.max({ dim: 1 }), i.x.max({ dim: -1, keepdim: true }), i.x.min(), i.x.min({ dim: 0 })]);
  check('amax and amin', { x }, '(x.amax(), x.amax(dim=(0, 1)), x.amin(dim=2, keepdim=True))',
    (i) => [i.x.amax(), i.x.amax({ dim: [0, 1] }), i.x.amin({ dim: 2, keepdim: true })]);
  check('argmax and argmin', { x }, '(x.argmax(), x.argmax(dim=1), x.argmax(dim=1, keepdim=True), x.argmin(dim=0), x.argmin())',
    (i) => [i.x.argmax(), i.x.argmax({ dim: 1 }), i.x.argmax({ dim: 1, keepdim: true }), i.x.argmin({ dim: 0 }), i.x.argmin()]);
  check('std and var with correction', { x },
    '(x.std(), x.std(dim=1), torch.std(x, dim=(0, 2), correction=0, keepdim=True), torch.var(x, dim=-1, correction=0), x.var(), torch.var(x, dim=0, correction=2))',
    (i) => [i.x.std(), i.x.std({ dim: 1 }), i.x.std({ dim: [0, 2], correction: 0, keepdim: true }),
      i.x.var({ dim: -1, correction: 0 }), i.x.var(), i.x.var({ dim: 0, correction: 2 })]);
  check('norm', { x }, "(x.norm(), x.norm(p=1, dim=1), x.norm(p=2, dim=(1, 2), keepdim=True), x.norm(p=float('inf')), x.norm(p=3, dim=0), x.norm(p=1.5))",
    (i) => [i.x.norm(), i.x.norm({ p: 1, dim: 1 }), i.x.norm({ dim: [1, 2], keepdim: true }), i.x.norm({ p: Infinity }),
      i.x.norm({ p: 3, dim: 0 }), i.x.norm({ p: 1.5 })]);
  const s = r([6], 32, 0.5, 1.5);
  check('prod, logsumexp, cumsum', { x, s }, '(s.prod(), x.logsumexp(dim=1), x.logsumexp(dim=(0, 2), keepdim=True), x.cumsum(2), x.cumsum(0))',
    (i) => [i.s.prod(), i.x.logsumexp({ dim: 1 }), i.x.logsumexp({ dim: [0, 2], keepdim: true }), i.x.cumsum(2), i.x.cumsum(0)]);
  const bo = bools([1, 0, 1, 1]);
  check('any, all, isnan, isfinite', { bo, x }, '(bo.any(), bo.all(), (x / 0).isnan(), (x / 0).isfinite())',
    (i) => [i.bo.any(), i.bo.all(), i.x.div(0).isnan(), i.x.div(0).isfinite()]);
}

// Sorting and order statistics.
{
  const x = r([4, 6], 41, -3, 3);
  check('sort', { x }, '(x.sort(), x.sort(dim=0, descending=True))', (i) => [i.x.sort(), i.x.sort({ dim: 0, descending: true })]);
  check('argsort', { x }, '(x.argsort(), x.argsort(dim=0, descending=True))', (i) => [i.x.argsort(), i.x.argsort({ dim: 0, descending: true })]);
  check('topk', { x }, '(x.topk(3), x.topk(2, dim=0, largest=False))', (i) => [i.x.topk(3), i.x.topk(2, { dim: 0, largest: false })]);
  check('kthvalue', { x }, '(x.kthvalue(2), x.kthvalue(3, dim=0, keepdim=True))',
    (i) => [i.x.kthvalue(2), i.x.kthvalue(3, { dim: 0, keepdim: true })]);
  check('median (lower middle for even counts)', { x }, '(x.median(), x.median(dim=1), x.median(dim=0, keepdim=True))',
    (i) => [i.x.median(), i.x.median({ dim: 1 }), i.x.median({ dim: 0, keepdim: true })]);
}

// Indexing.
{
  const x = r([3, 4], 51);
  const idx = longs([0, 3, 2, 2, 1, 0], [3, 2]);
  const zero = zeros([3, 5]);
  const sidx = longs([0, 2, 4, 1, 3, 0], [3, 2]);
  const aidx = longs([1, 1, 0, 4, 2, 2], [3, 2]);
  const src = r([3, 2], 52);
  const rows = longs([2, 0, 2]);
  const cols = longs([3, 1]);
  const mask = bools([1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1], [3, 4]);
  check('gather', { x, idx }, 'x.gather(1, idx)', (i) => i.x.gather(1, i.idx));
  check('scatter (src and value) and scatterAdd', { zero, sidx, aidx, src },
    '(zero.scatter(1, sidx, src), zero.scatter(1, sidx, 2.5), zero.scatter_add(1, aidx, src))',
    (i) => [i.zero.scatter(1, i.sidx, i.src), i.zero.scatter(1, i.sidx, 2.5), i.zero.scatterAdd(1, i.aidx, i.src)]);
  check('indexSelect', { x, rows, cols }, '(x.index_select(0, rows), x.index_select(1, cols))',
    (i) => [i.x.indexSelect(0, i.rows), i.x.indexSelect(1, i.cols)]);
  check('maskedFill with numbers, -inf and a tensor', { x, mask }, "(x.masked_fill(mask, -1.5), x.masked_fill(mask, float('-inf')), x.masked_fill(mask, torch.tensor(3.0)))",
    (i) => [i.x.maskedFill(i.mask, -1.5), i.x.maskedFill(i.mask, -Infinity), i.x.maskedFill(i.mask, tensor(3))]);
  check('maskedSelect and nonzero', { x, mask }, '(x.masked_select(mask), mask.nonzero())', (i) => [i.x.maskedSelect(i.mask), i.mask.nonzero()]);
  const pick = longs([0, 1]);
  check('index with index tensors', { x, rows, pick }, '(x[rows], x[pick, pick])', (i) => [i.x.index([i.rows]), i.x.index([i.pick, i.pick])]);
  check('index with a trailing null (whole dimension)', { x, rows }, 'x[rows, :]', (i) => i.x.index([i.rows, null]));
  check('index with a leading null (x[:, cols])', { x, cols }, 'x[:, cols]', (i) => i.x.index([null, i.cols]), {
  });
  const y = longs([0, 4, 2, 2, 1]);
  check('oneHot', { y }, '(F.one_hot(y), F.one_hot(y, 7))', (i) => [i.y.oneHot(), i.y.oneHot(7)]);
}

// Shapes.
{
  const x = r([2, 3, 4], 61);
  check('reshape and view', { x }, '(x.reshape(6, 4), x.reshape(-1), x.view(4, -1))', (i) => [i.x.reshape([6, 4]), i.x.reshape([-1]), i.x.view([4, -1])]);
  check('permute and transpose', { x }, '(x.permute(2, 0, 1), x.transpose(0, 2), x.transpose(-1, -2))',
    (i) => [i.x.permute([2, 0, 1]), i.x.transpose(0, 2), i.x.transpose(-1, -2)]);
  check('flatten and unflatten', { x }, '(x.flatten(), x.flatten(1), x.flatten(0, 1), x.unflatten(2, (2, 2)))',
    (i) => [i.x.flatten(), i.x.flatten(1), i.x.flatten(0, 1), i.x.unflatten(2, [2, 2])]);
  const s = r([2, 1, 3, 1], 62);
  check('squeeze and unsqueeze', { s }, '(s.squeeze(), s.squeeze(1), s.squeeze(0), s.unsqueeze(0), s.unsqueeze(-1))',
    (i) => [i.s.squeeze(), i.s.squeeze(1), i.s.squeeze(0), i.s.unsqueeze(0), i.s.unsqueeze(-1)]);
  const e = r([3, 1], 63);
  check('expand, repeat, repeatInterleave', { e },
    '(e.expand(2, 3, 4), e.expand(-1, 5), e.repeat(2, 3), e.repeat(2, 1, 2), e.repeat_interleave(2, dim=0), e.repeat_interleave(3))',
    (i) => [i.e.expand([2, 3, 4]), i.e.expand([-1, 5]), i.e.repeat([2, 3]), i.e.repeat([2, 1, 2]), i.e.repeatInterleave(2, 0), i.e.repeatInterleave(3)]);
  check('slice, narrow, select', { x },
    '(x[:, 1:3], x[..., ::2], x[:, -2:], x[1:, :, 1:4:2], x[:, :-1], x.narrow(2, 1, 2), x.select(1, 2), x.select(-1, -1))',
    (i) => [i.x.slice(1, 1, 3), i.x.slice(2, null, null, 2), i.x.slice(1, -2), i.x.slice(0, 1).slice(2, 1, 4, 2), i.x.slice(1, null, -1),
      i.x.narrow(2, 1, 2), i.x.select(1, 2), i.x.select(-1, -1)]);
  const a = r([2, 3], 64);
  const b = r([1, 3], 65);
  const c = r([2, 2], 66);
  check('cat and stack', { a, b, c }, '(torch.cat([a, b], 0), torch.cat([a, c], 1), torch.cat([a, b, a], -2), torch.stack([a, a], 0), torch.stack([a, a * 2], -1))',
    (i) => [cat([i.a, i.b], 0), cat([i.a, i.c], 1), cat([i.a, i.b, i.a], -2), stack([i.a, i.a], 0), stack([i.a, i.a.mul(2)], -1)]);
  check('chunk and split', { x }, '(x.chunk(2, 2), x.chunk(3, 1), x.split(3, 2), x.split([1, 3], 2), x.split(1))',
    (i) => [i.x.chunk(2, 2), i.x.chunk(3, 1), i.x.split(3, 2), i.x.split([1, 3], 2), i.x.split(1)]);
  check('flip and roll', { x }, '(x.flip(0), x.flip([1, 2]), x.roll(1, 2), x.roll((1, -1), (0, 2)), x.roll(-2, 1))',
    (i) => [i.x.flip([0]), i.x.flip([1, 2]), i.x.roll(1, 2), i.x.roll([1, -1], [0, 2]), i.x.roll(-2, 1)]);
  const sq = r([4, 4], 67);
  check('tril and triu', { sq }, '(sq.tril(), sq.tril(-1), sq.triu(), sq.triu(2))', (i) => [i.sq.tril(), i.sq.tril(-1), i.sq.triu(), i.sq.triu(2)]);
  check('contiguous of a transposed view', { x }, 'x.transpose(0, 2).contiguous()', (i) => i.x.transpose(0, 2).contiguous());
}

// Matrix products and dense layers.
{
  const a = r([3, 4], 71);
  const b = r([4, 5], 72);
  const bat = r([2, 3, 4], 73);
  const bat2 = r([2, 4, 2], 74);
  const v = r([4], 75);
  const v2 = r([5], 76);
  check('matmul (2-d, batched broadcast, vectors), mm, bmm, outer', { a, b, bat, bat2, v, v2 },
    '(a @ b, bat @ b, v @ b, a @ v, a.mm(b), bat.bmm(bat2), torch.outer(v, v2))',
    (i) => [i.a.matmul(i.b), i.bat.matmul(i.b), i.v.matmul(i.b), i.a.matmul(i.v), i.a.mm(i.b), i.bat.bmm(i.bat2), i.v.outer(i.v2)]);
  const w = r([5, 4], 77);
  const bias = r([5], 78);
  check('linear with and without bias', { bat, w, bias }, '(F.linear(bat, w, bias), F.linear(bat, w))',
    (i) => [F.linear(i.bat, i.w, i.bias), F.linear(i.bat, i.w)]);
  const lw = pos([4], 79);
  const lb = r([4], 80);
  check('layerNorm', { bat, lw, lb }, '(F.layer_norm(bat, (4,)), F.layer_norm(bat, (3, 4)), F.layer_norm(bat, (4,), lw, lb, eps=1e-3))',
    (i) => [F.layerNorm(i.bat, [4]), F.layerNorm(i.bat, [3, 4]), F.layerNorm(i.bat, [4], { weight: i.lw, bias: i.lb, eps: 1e-3 })]);
  const table = r([6, 3], 81);
  const ids = longs([5, 0, 2, 2], [2, 2]);
  check('embedding', { table, ids }, 'F.embedding(ids, table)', (i) => F.embedding(i.table, i.ids));
}

// Convolution and normalisation.
{
  const x = r([2, 4, 9, 9], 91);
  const w = r([6, 4, 3, 3], 92, -0.5, 0.5);
  const bias = r([6], 93);
  const wg = r([6, 2, 3, 3], 94, -0.5, 0.5);
  const wd = r([4, 1, 3, 3], 95, -0.5, 0.5);
  check('conv2d with bias', { x, w, bias }, 'F.conv2d(x, w, bias)', (i) => F.conv2d(i.x, i.w, { bias: i.bias }));
  check('conv2d stride 2, padding 1', { x, w }, 'F.conv2d(x, w, stride=2, padding=1)', (i) => F.conv2d(i.x, i.w, { stride: 2, padding: 1 }));
  check('conv2d dilation 2, padding [2, 1]', { x, w }, 'F.conv2d(x, w, dilation=2, padding=(2, 1))',
    (i) => F.conv2d(i.x, i.w, { dilation: 2, padding: [2, 1] }));
  check('conv2d groups 2', { x, wg, bias }, 'F.conv2d(x, wg, bias, padding=1, groups=2)', (i) => F.conv2d(i.x, i.wg, { bias: i.bias, padding: 1, groups: 2 }));
  check('conv2d depthwise, stride [1, 2]', { x, wd }, 'F.conv2d(x, wd, stride=(1, 2), groups=4)', (i) => F.conv2d(i.x, i.wd, { stride: [1, 2], groups: 4 }));

  const bx = r([4, 3, 5, 5], 96, -2, 3);
  const rm = r([3], 97);
  const rv = pos([3], 98);
  const gamma = pos([3], 99);
  const beta = r([3], 100);
  check('batchNorm training: batch statistics, running statistics updated in place', { bx, rm, rv, gamma, beta },
    'm = rm.clone(); v = rv.clone(); y = F.batch_norm(bx, m, v, gamma, beta, training=True, momentum=0.2); out = (y, m, v)',
    (i) => {
      const m = i.rm.clone();
      const v = i.rv.clone();
      const y = F.batchNorm(i.bx, { runningMean: m, runningVar: v, weight: i.gamma, bias: i.beta, training: true, momentum: 0.2 });
      return [y, m, v];
    });
  check('batchNorm eval uses (and keeps) running statistics', { bx, rm, rv, gamma, beta },
    'm = rm.clone(); v = rv.clone(); y = F.batch_norm(bx, m, v, gamma, beta, training=False, eps=1e-3); out = (y, m, v)',
    (i) => {
      const m = i.rm.clone();
      const v = i.rv.clone();
      const y = F.batchNorm(i.bx, { runningMean: m, runningVar: v, weight: i.gamma, bias: i.beta, eps: 1e-3 });
      return [y, m, v];
    });
  check('batchNorm training without running statistics', { bx }, 'F.batch_norm(bx, None, None, training=True)',
    (i) => F.batchNorm(i.bx, { training: true }));
}

// Pooling, resizing, padding.
{
  const x = r([2, 3, 9, 9], 111, -2, 2);
  check('maxPool2d', { x }, '(F.max_pool2d(x, 2), F.max_pool2d(x, 3, stride=2, padding=1), F.max_pool2d(x, 2, ceil_mode=True), F.max_pool2d(x, 3, stride=1, dilation=2))',
    (i) => [F.maxPool2d(i.x, 2), F.maxPool2d(i.x, 3, { stride: 2, padding: 1 }), F.maxPool2d(i.x, 2, { ceilMode: true }),
      F.maxPool2d(i.x, 3, { stride: 1, dilation: 2 })]);
  check('avgPool2d', { x },
    '(F.avg_pool2d(x, 2), F.avg_pool2d(x, 3, stride=2, padding=1), F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False), F.avg_pool2d(x, 2, ceil_mode=True), F.avg_pool2d(x, (2, 3)))',
    (i) => [F.avgPool2d(i.x, 2), F.avgPool2d(i.x, 3, { stride: 2, padding: 1 }), F.avgPool2d(i.x, 3, { stride: 2, padding: 1, countIncludePad: false }),
      F.avgPool2d(i.x, 2, { ceilMode: true }), F.avgPool2d(i.x, [2, 3])]);
  check('adaptiveAvgPool2d', { x }, '(F.adaptive_avg_pool2d(x, 4), F.adaptive_avg_pool2d(x, (4, 2)), F.adaptive_avg_pool2d(x, 1))',
    (i) => [F.adaptiveAvgPool2d(i.x, 4), F.adaptiveAvgPool2d(i.x, [4, 2]), F.adaptiveAvgPool2d(i.x, 1)]);
  check('interpolate nearest', { x }, "(F.interpolate(x, size=13, mode='nearest'), F.interpolate(x, size=(4, 6)))",
    (i) => [F.interpolate(i.x, { size: 13, mode: 'nearest' }), F.interpolate(i.x, { size: [4, 6] })]);
  for (const mode of ['bilinear', 'bicubic'] as const) {
    for (const alignCorners of [false, true]) {
      const py = alignCorners ? 'True' : 'False';
      check(`interpolate ${mode}, alignCorners ${alignCorners}`, { x },
        `(F.interpolate(x, size=14, mode='${mode}', align_corners=${py}), F.interpolate(x, size=(4, 5), mode='${mode}', align_corners=${py}))`,
        (i) => [F.interpolate(i.x, { size: 14, mode, alignCorners }), F.interpolate(i.x, { size: [4, 5], mode, alignCorners })]);
      check(`interpolate ${mode} with antialias, alignCorners ${alignCorners}`, { x },
        `(F.interpolate(x, size=(4, 5), mode='${mode}', align_corners=${py}, antialias=True), F.interpolate(x, size=3, mode='${mode}', align_corners=${py}, antialias=True))`,
        (i) => [F.interpolate(i.x, { size: [4, 5], mode, alignCorners, antialias: true }), F.interpolate(i.x, { size: 3, mode, alignCorners, antialias: true })]);
    }
  }
  check('interpolate area', { x }, "(F.interpolate(x, size=4, mode='area'), F.interpolate(x, size=(3, 5), mode='area'))",
    (i) => [F.interpolate(i.x, { size: 4, mode: 'area' }), F.interpolate(i.x, { size: [3, 5], mode: 'area' })]);
  check('pad constant', { x }, '(F.pad(x, (1, 2)), F.pad(x, (1, 1, 2, 0), value=0.5), F.pad(x, (0, 0, 0, 0, 1, 1)))',
    (i) => [F.pad(i.x, [1, 2]), F.pad(i.x, [1, 1, 2, 0], { value: 0.5 }), F.pad(i.x, [0, 0, 0, 0, 1, 1])]);
  check('pad reflect and replicate', { x }, "(F.pad(x, (1, 2, 2, 1), mode='reflect'), F.pad(x, (3, 0, 1, 2), mode='replicate'))",
    (i) => [F.pad(i.x, [1, 2, 2, 1], { mode: 'reflect' }), F.pad(i.x, [3, 0, 1, 2], { mode: 'replicate' })]);
}

// In-place arithmetic.
{
  const x = r([3, 4], 121);
  const b = r([4], 122);
  const p = pos([3, 4], 123);
  check('in-place add_, mul_, addcmul_, addcdiv_, lerp_, clamp_, sqrt_', { x, b, p },
    'y = x.clone(); y.add_(b, alpha=0.5); y.mul_(2); y.addcmul_(x, p, value=0.3); y.addcdiv_(x, p, value=0.1); y.lerp_(p, 0.25); y.clamp_(-0.8, 0.8); y.sub_(1); y.div_(p); z = p.clone(); z.sqrt_(); out = (y, z)',
    (i) => {
      const y = i.x.clone().add_(i.b, 0.5).mul_(2).addcmul_(i.x, i.p, 0.3).addcdiv_(i.x, i.p, 0.1).lerp_(i.p, 0.25).clamp_(-0.8, 0.8).sub_(1).div_(i.p);
      return [y, i.p.clone().sqrt_()];
    });
}

// Random streams: the same libtorch generators as PyTorch, so the same seed gives the same numbers.
check('manualSeed: rand, randn, randint, randperm equal PyTorch', {},
  'torch.manual_seed(123); out = (torch.rand(7), torch.randn(5), torch.randint(0, 10, (6,)), torch.randperm(8))',
  () => { manualSeed(123); return [rand([7]), randn([5]), randint(0, 10, [6]), randperm(8)]; });
check('Generator: rand and randn equal PyTorch', {},
  'g = torch.Generator().manual_seed(5); out = (torch.rand(4, generator=g), torch.randn(20, generator=g))',
  () => { const g = new Generator(5); return [rand([4], { generator: g }), randn([20], { generator: g })]; });

// ---- run ------------------------------------------------------------------------------------------------------

const torchMissing = pythonMissing('torch');
const reference = torchMissing ? null : runPythonJson<Record<string, { outputs?: Output[]; error?: string }>>(PYTHON, {
  input: cases.map((c) => ({ name: c.name, python: c.python, inputs: Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, encode(v)])) })),
});

test('every case has a unique name', () => {
  assert.equal(new Set(cases.map((c) => c.name)).size, cases.length);
});

for (const c of cases) {
  test(c.name, { todo: c.todo }, (t) => {
    if (!reference) {
      t.skip(torchMissing!);
      return;
    }
    const expected = reference[c.name];
    assert.ok(expected, 'no PyTorch result');
    assert.equal(expected.error, undefined, `PyTorch raised ${expected.error}`);
    const actual = tidy(() => flatten(c.run(c.inputs)));
    assertClose(actual, expected.outputs!);
  });
}

// ---- dropout (random, so checked by its identities) -----------------------------------------------------------

test('dropout: p = 0 is the identity, p = 1 gives zeros, training false is the identity', () => {
  tidy(() => {
    const x = r([4, 5], 131);
    assert.deepEqual(F.dropout(x, { p: 0 }).toArray(), x.toArray());
    assert.ok(F.dropout(x, { p: 1 }).toArray().every((v) => v === 0), 'all zeros');
    assert.deepEqual(F.dropout(x, { p: 0.5, training: false }).toArray(), x.toArray());
    assert.deepEqual(F.dropout(x, { p: 1, training: false }).toArray(), x.toArray());
  });
});

test('dropout p = 0.5 zeroes about half and scales the rest by 2', () => {
  tidy(() => {
    manualSeed(0);
    const x = ones([100, 100]);
    const y = F.dropout(x, { p: 0.5 }).toArray();
    const kept = y.filter((v) => v !== 0);
    assert.ok(kept.every((v) => v === 2), 'kept elements are scaled by 1/(1-p)');
    assert.ok(Math.abs(kept.length / y.length - 0.5) < 0.03, `kept fraction ${kept.length / y.length}`);
  });
});

test('dropout rejects p outside [0, 1]', () => {
  assert.throws(() => F.dropout(ones([2]), { p: 1.5 }), RangeError);
  assert.throws(() => F.dropout(ones([2]), { p: -0.1 }), RangeError);
});

test('interpolate rejects options that do not apply to the mode', () => {
  assert.throws(() => F.interpolate(ones([1, 1, 4, 4]), { size: 2, mode: 'nearest', antialias: true }), /antialias/);
  assert.throws(() => F.interpolate(ones([1, 1, 4, 4]), { size: 2, mode: 'area', alignCorners: true }), /alignCorners/);
});
