import test from 'node:test';
import assert from 'node:assert/strict';
import { interpolate } from '../src/nn/functional.js';
import { Module } from '../src/nn/module.js';
import { cat, enableGrad, full, grad, Generator, liveTensorCount, rand, randint, tidy, type Tensor } from '../src/tensor/index.js';
import { MultiResolutionPrior, bicubicResize, bicubicResizeWeights, resolvePriorConfig, rollPerImage, type PriorViewDraws } from '../src/prior/index.js';
import { pythonMissing, runPythonJson } from './helpers/python.js';

const images = (n: number, seed = 0) => rand([n, 3, 32, 32], { generator: new Generator(seed) });
const maxAbsDiff = (a: Tensor, b: Tensor) => a.sub(b).abs().max().item();
const maxAbs = (a: Tensor) => a.abs().max().item();

test('output is [N, 12, 32, 32] in [0, 1], views in the order 32, 16, 8, 4', () => {
  tidy(() => {
    const prior = new MultiResolutionPrior({ generator: new Generator(1) });
    assert.ok(prior instanceof Module);
    assert.equal(prior.parameters().length, 0);
    assert.equal(prior.numViews, 4);
    assert.deepEqual(prior.viewSizes(32, 32), [[32, 32], [16, 16], [8, 8], [4, 4]]);
    const y = prior.forward(images(6));
    assert.deepEqual(y.shape, [6, 12, 32, 32]);
    assert.ok(y.min().item() >= 0 && y.max().item() <= 1);
    assert.deepEqual(new MultiResolutionPrior().viewSizes(64, 48), [[64, 48], [32, 24], [16, 12], [8, 6]]);
    assert.deepEqual(new MultiResolutionPrior({ resolutions: [16, 2] }).viewSizes(32, 32), [[16, 16], [2, 2]]);
  });
});

test('deterministic mode is the bicubic down/up-sampling stack (to float rounding: the prior resizes by matrix products)', () => {
  tidy(() => {
    const x = images(3);
    const y = new MultiResolutionPrior({ deterministic: true }).forward(x);
    const expected = cat([32, 16, 8, 4].map((r) => {
      const down = interpolate(x, { size: r, mode: 'bicubic' });
      return interpolate(down, { size: 32, mode: 'bicubic' }).clamp(0, 1);
    }), 1);
    assert.ok(maxAbsDiff(y, expected) < 1e-6, `largest difference ${maxAbsDiff(y, expected)}`);
    // The 4-pixel view really is blurred, so a mix-up of the view order would show.
    assert.ok(maxAbsDiff(y.narrow(1, 9, 3), x) > 0.2);
    // enabled: false is the notebook's unused default_make_multichannel_input: the image repeated.
    assert.ok(new MultiResolutionPrior({ enabled: false }).forward(x).equal(cat([x, x, x, x], 1)));
  });
});

test('seeded priors reproduce each other; successive forwards differ', () => {
  tidy(() => {
    const x = images(4);
    const a = new MultiResolutionPrior({ generator: new Generator(7) });
    const b = new MultiResolutionPrior({ generator: new Generator(7) });
    const first = a.forward(x);
    assert.ok(first.equal(b.forward(x)));
    const second = a.forward(x);
    assert.ok(maxAbsDiff(first, second) > 0.05, 'a new forward pass draws new noise, shifts and jitter');
    // eval() does not switch the randomness off: the paper keeps it at test time and under attack.
    a.eval();
    assert.ok(maxAbsDiff(a.forward(x), a.forward(x)) > 0.05);
  });
});

test("'paper' noise is uniform with mean 0.1 per addition; 'gaussian' is zero-mean with std 0.2", () => {
  tidy(() => {
    // Mid-grey, no shift, no contrast/colour change: each view is 0.5 + (resampled) noise + noise.
    const grey = full([64, 3, 32, 32], 0.5);
    const prior = new MultiResolutionPrior({ shift: 0, jitter: false, generator: new Generator(3) });
    const draws = prior.sampleDraws(grey);
    for (const d of draws) {
      for (const noise of [d.downNoise!, d.upNoise!]) {
        assert.ok(Math.abs(noise.mean().item() - 0.1) < 0.004, `noise mean ${noise.mean().item()}`);
        assert.ok(noise.min().item() >= 0 && noise.max().item() < 0.2);
        assert.ok(Math.abs(noise.std().item() - 0.2 / Math.sqrt(12)) < 0.003, `noise std ${noise.std().item()}`);
      }
      assert.equal(d.rowShift, null);
      assert.equal(d.contrast, null);
    }
    const y = prior.applyDraws(grey, draws);
    // Below 1, so nothing was clipped and the mean is the unclipped one: 0.5 + 0.1 + 0.1.
    assert.ok(y.max().item() < 1);
    for (let v = 0; v < 4; v++) {
      const mean = y.narrow(1, 3 * v, 3).mean().item();
      assert.ok(Math.abs(mean - 0.7) < 0.005, `view ${v} mean ${mean}`);
    }
    const gaussian = new MultiResolutionPrior({ preset: 'corrected', generator: new Generator(4) }).sampleDraws(grey);
    const up = gaussian[0]!.upNoise!;
    assert.ok(Math.abs(up.mean().item()) < 0.003);
    assert.ok(Math.abs(up.std().item() - 0.2) < 0.003);
  });
});

test('shifts are integers in [-3, 3] and move each image circularly as torch.roll does', () => {
  tidy(() => {
    const prior = new MultiResolutionPrior({ generator: new Generator(5) });
    const draws = prior.sampleDraws(images(512));
    for (const d of draws) {
      for (const s of [d.rowShift!, d.colShift!]) {
        assert.equal(s.dtype, 'int64');
        const values = new Set(s.toArray());
        assert.deepEqual([...values].sort((p, q) => p - q), [-3, -2, -1, 0, 1, 2, 3]);
      }
    }
    const x = images(6, 9);
    const rows = randint(-3, 4, [6], { generator: new Generator(6) });
    const cols = randint(-3, 4, [6], { generator: new Generator(7) });
    const rolled = rollPerImage(x, rows, cols);
    const r = rows.toArray();
    const c = cols.toArray();
    for (let i = 0; i < 6; i++) assert.ok(rolled.select(0, i).equal(x.select(0, i).roll([r[i]!, c[i]!], [1, 2])), `image ${i}`);
    // The prior applies exactly those shifts.
    const shiftOnly = new MultiResolutionPrior({ resolutions: [32], noise: false, jitter: false });
    const view: PriorViewDraws = { size: [32, 32], rowShift: rows, colShift: cols, contrast: null, color: null, downNoise: null, upNoise: null };
    assert.ok(maxAbsDiff(shiftOnly.applyDraws(x, [view]), rolled) < 1e-6);
  });
});

test("'paper' contrast and colour are one draw from linspace(0.5, 1, 100); 'corrected' draws them apart", () => {
  tidy(() => {
    const x = images(400);
    for (const d of new MultiResolutionPrior({ generator: new Generator(8) }).sampleDraws(x)) {
      assert.ok(d.contrast!.equal(d.color!));
      const grid = d.contrast!.sub(0.5).mul(99 / 0.5);
      assert.ok(grid.sub(grid.round()).abs().max().item() < 1e-3, 'values on the 100-point grid');
      assert.ok(d.contrast!.min().item() >= 0.5 && d.contrast!.max().item() <= 1);
      assert.ok(new Set(grid.round().toArray()).size > 90);
    }
    for (const d of new MultiResolutionPrior({ preset: 'corrected', generator: new Generator(9) }).sampleDraws(x)) {
      assert.ok(d.contrast!.min().item() >= Math.fround(0.7) && d.contrast!.max().item() <= 1.5 && d.contrast!.max().item() > 1.4);
      assert.ok(d.color!.min().item() >= 0.5 && d.color!.max().item() <= 1);
      assert.ok(!d.contrast!.equal(d.color!));
    }
    assert.throws(() => new MultiResolutionPrior({ jitter: { contrast: [0.7, 1.5] } }), /ranges must agree/);
    assert.throws(() => new MultiResolutionPrior({ shift: -1 }), RangeError);
    assert.throws(() => new MultiResolutionPrior({ downsample: 'nearest', antialias: true }), /antialias/);
    assert.throws(() => new MultiResolutionPrior().forward(rand([3, 32, 32])), /expects images \[N, C, H, W\]/);
  });
});

test('gradients flow to the input, finite and non-zero', () => {
  tidy(() => {
    const x = images(4).setRequiresGrad(true);
    const prior = new MultiResolutionPrior({ generator: new Generator(10) });
    const weights = rand([4, 12, 32, 32], { generator: new Generator(11) });
    const [g] = grad(prior.forward(x).mul(weights).sum(), [x]);
    assert.deepEqual(g!.shape, [4, 3, 32, 32]);
    assert.ok(g!.isfinite().all().item());
    assert.ok(g!.abs().gt(0).float().mean().item() > 0.5, 'most pixels receive gradient');
  });
});

test('forward frees every intermediate', () => {
  const x = images(8);
  const prior = new MultiResolutionPrior({ generator: new Generator(12) });
  prior.forward(x).dispose();
  const before = liveTensorCount();
  prior.forward(x).dispose();
  new MultiResolutionPrior({ deterministic: true }).forward(x).dispose();
  assert.equal(liveTensorCount(), before);
  x.dispose();
});

// A straightforward re-implementation of the notebook's prior (apply_transformations), with the random draws
// passed in rather than taken from numpy, so that both sides see the same shifts, factors and noise.
const notebookPrior = `
import sys, json, torch, torchvision
import torch.nn.functional as F
torch.set_num_threads(1)
d = json.load(sys.stdin)
n, c, h, w = d['shape']
images = torch.tensor(d['images'], dtype=torch.float32).view(n, c, h, w)

def apply_transformations(images, down_res, up_res, jit_x, jit_y, down_noise, up_noise, contrast, color_amount):
    images_collected = []
    for i in range(images.shape[0]):
        image = images[i]
        image = torchvision.transforms.functional.adjust_contrast(image, contrast[i])
        image = torch.roll(image, shifts=(jit_x[i], jit_y[i]), dims=(-2, -1))
        image = color_amount[i] * image + torch.mean(image, axis=0, keepdims=True) * (1 - color_amount[i])
        images_collected.append(image)
    images = torch.stack(images_collected, axis=0)
    images = F.interpolate(images, size=(down_res, down_res), mode='bicubic')
    images = images + down_noise
    images = F.interpolate(images, size=(up_res, up_res), mode='bicubic')
    images = images + up_noise
    return torch.clip(images, 0, 1)

views = []
for v in d['views']:
    r = v['resolution']
    down = torch.tensor(v['downNoise'], dtype=torch.float32).view(n, c, r, r) if v['downNoise'] else 0.0
    up = torch.tensor(v['upNoise'], dtype=torch.float32).view(n, c, h, w) if v['upNoise'] else 0.0
    views.append(apply_transformations(images, r, h, v['rowShift'], v['colShift'], down, up, v['contrast'], v['color']))
print(json.dumps(torch.cat(views, axis=1).reshape(-1).tolist()))
`;

function notebookStack(x: Tensor, draws: PriorViewDraws[]): number[] {
  const n = x.size(0);
  const orDefault = (t: Tensor | null, value: number) => (t ? t.toArray() : new Array<number>(n).fill(value));
  const payload = {
    shape: x.shape,
    images: x.toArray(),
    views: draws.map((d) => ({
      resolution: d.size[0],
      rowShift: orDefault(d.rowShift, 0),
      colShift: orDefault(d.colShift, 0),
      contrast: orDefault(d.contrast, 1),
      color: orDefault(d.color, 1),
      downNoise: d.downNoise?.toArray() ?? null,
      upNoise: d.upNoise?.toArray() ?? null,
    })),
  };
  return runPythonJson<number[]>(notebookPrior, { input: payload });
}

test('matches a PyTorch re-implementation of the notebook prior to 1e-5', (t) => {
  const missing = pythonMissing('torch, torchvision');
  if (missing) {
    t.skip(missing);
    return;
  }
  tidy(() => {
    // Inputs that reach 0 and 1, so adjust_contrast's clamp and the final clip both matter.
    const x = images(3, 13).mul(1.4).sub(0.2).clamp(0, 1);
    for (const [what, prior] of [
      ['deterministic', new MultiResolutionPrior({ deterministic: true })],
      ['paper, random draws', new MultiResolutionPrior({ generator: new Generator(14) })],
      ['corrected, random draws', new MultiResolutionPrior({ preset: 'corrected', generator: new Generator(15) })],
    ] as const) {
      const draws = prior.sampleDraws(x);
      const ours = prior.applyDraws(x, draws);
      const reference = notebookStack(x, draws);
      const worst = ours.flatten().toArray().reduce((m, v, i) => Math.max(m, Math.abs(v - reference[i]!)), 0);
      assert.ok(worst <= 1e-5, `${what}: largest difference ${worst}`);
    }
  });
});

test('resolvePriorConfig: the defaults a prior is built with, without building one; bad options refused alike', () => {
  const before = liveTensorCount();
  assert.deepEqual(resolvePriorConfig({}), {
    preset: 'paper', resolutions: null, resolutionFactors: [1, 1 / 2, 1 / 4, 1 / 8], downsample: 'bicubic', upsample: 'bicubic',
    antialias: false, shift: 3, noise: { kind: 'uniform', downAmplitude: 0.2, upAmplitude: 0.2 },
    jitter: { contrast: [0.5, 1.0], color: [0.5, 1.0], shared: true, steps: 100 }, clip: true,
  });
  assert.equal(liveTensorCount(), before);
  for (const options of [{}, { preset: 'corrected' as const, resolutions: [32, 16] }, { noise: false as const, jitter: { steps: null } }]) {
    const prior = new MultiResolutionPrior(options);
    assert.deepEqual(resolvePriorConfig(options), prior.config);
    prior.dispose();
  }
  assert.throws(() => resolvePriorConfig({ resolutions: [32, 0] }), /resolutions must be positive integers, got \[32, 0\]/);
  assert.throws(() => resolvePriorConfig({ resolutions: [32], resolutionFactors: [1] }), /either resolutions or resolutionFactors/);
  assert.throws(() => resolvePriorConfig({ jitter: { contrast: [0.7, 1.5] } }), /jitter.shared .* must agree/);
});

test('bicubicResize is interpolate(bicubic) as matrix products: values and input gradients agree to float rounding', () => {
  tidy(() => {
    for (const dtype of ['float32', 'float64'] as const) {
      for (const [from, to] of [[[32, 32], [16, 16]], [[32, 32], [4, 4]], [[8, 8], [32, 32]], [[48, 40], [12, 10]], [[7, 5], [32, 3]]] as const) {
        const x = images(2).to(dtype);
        const input = interpolate(x, { size: [from[0], from[1]], mode: 'bicubic' }).detach();
        const weight = rand([2, 3, to[0], to[1]]).to(dtype);
        const run = (resize: (t: Tensor) => Tensor) => enableGrad(() => {
          const leaf = input.detach().setRequiresGrad(true);
          const out = resize(leaf);
          return { out: out.detach(), grad: grad(out.mul(weight).sum(), [leaf])[0]! };
        });
        const ours = run((t) => bicubicResize(t, [to[0], to[1]]));
        const torch = run((t) => interpolate(t, { size: [to[0], to[1]], mode: 'bicubic' }));
        // Relative to the largest value: an input gradient of a 4x up-sampling sums about 16 weighted outputs, so
        // its magnitude (up to ~16) and the rounding of that sum scale together; the summation order differs between
        // CPUs (CI's machine showed 1.6e-5 on gradients of magnitude ~16). A wrong weight would differ by ~1e-1.
        const tolerance = dtype === 'float32' ? 2e-6 : 1e-12;
        const valueScale = Math.max(1, maxAbs(torch.out));
        const gradScale = Math.max(1, maxAbs(torch.grad));
        assert.ok(maxAbsDiff(ours.out, torch.out) < tolerance * valueScale, `${dtype} ${from} -> ${to}: values differ by ${maxAbsDiff(ours.out, torch.out)}`);
        assert.ok(maxAbsDiff(ours.grad, torch.grad) < 5 * tolerance * gradScale, `${dtype} ${from} -> ${to}: gradients differ by ${maxAbsDiff(ours.grad, torch.grad)} (scale ${gradScale})`);
      }
    }
    // Each output is a weighted mean: rows sum to 1. Same size is the identity, returned as is.
    const weights = bicubicResizeWeights(5, 13);
    for (let o = 0; o < 5; o++) assert.ok(Math.abs([...weights.subarray(o * 13, o * 13 + 13)].reduce((a, b) => a + b, 0) - 1) < 1e-6);
    const same = images(1);
    assert.equal(bicubicResize(same, [32, 32]), same);
    assert.throws(() => bicubicResizeWeights(0, 4), /positive integer sizes/);
  });
});
