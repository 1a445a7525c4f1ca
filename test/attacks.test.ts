// Attacks pinned on cases with known answers: a linear classifier whose optimal Linf attack is a vertex of the
// box, hand-computed losses, APGD's checkpoint formula, the FAB projection against a 1-d search, plus the
// threat-model check, seeding, EOT wiring and the suite runner's bookkeeping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, cat, tensor, tidy, rand, randn, Generator, zeros, scopeDepth, liveTensorCount } from '../src/tensor/index.js';
import type { Classifier } from '../src/nn/classifier.js';
import {
  APGD, APGDT, FAB, FABT, FGSM, PGD, Square, apgdCheckpoints, checkAdversarial, dlrLoss, marginLoss, perImageNorm,
  projectionLinf, squareSchedule, squareWindowSide, threatModelProjector, targetedDlrLoss, type AttackResult, type RunnableAttack,
} from '../src/attacks/index.js';
import { AutoAttack, autoAttackSuite } from '../src/robustness/index.js';

const EPS = 8 / 255;
const SHAPE = [3, 4, 4];
const D = 48;

/** logits = W·x + b over the flattened image; records whether any forward saw an input that requires grad. */
class LinearClassifier implements Classifier {
  calls = 0;
  sawGradient = false;
  constructor(readonly weight: Tensor, readonly bias: Tensor) {}
  forward(x: Tensor): Tensor {
    this.calls++;
    if (x.requiresGrad) this.sawGradient = true;
    return x.flatten(1).matmul(this.weight.transpose(0, 1)).add(this.bias);
  }
}

/**
 * Four classes, label 0: z_0 = b0 (constant), z_1 = v·x, z_2 = −100, z_3 = −200. The margin z_0 − z_1 is then
 * "binary" and the CE, DLR and targeted-DLR gradients all point along +v (their denominators are constant), so
 * the optimal Linf attack is x* = clip(x + eps·sign(v)) for every loss. v vanishes on the last row and column,
 * which Square's windows (as the reference's) reach only in its first iterations.
 */
function linearProblem(mode: 'robust' | 'mixed', seed = 1) {
  const generator = new Generator(seed);
  const v = Array.from(randn([D], { generator }).toArray(), (a) => a * 0.3);
  for (let c = 0; c < 3; c++) for (let i = 0; i < 4; i++) { v[c * 16 + 3 * 4 + i] = 0; v[c * 16 + i * 4 + 3] = 0; }
  const xs = Array.from(rand([4, D], { generator }).toArray());
  // Pixels on the box's faces, where the optimum is clipped.
  xs[0] = 0; xs[1] = 1; xs[D + 5] = 0; xs[2 * D + 7] = 1;
  const optimal = xs.map((xi, i) => Math.min(1, Math.max(0, xi + EPS * Math.sign(v[i % D]!))));
  const score = (values: number[], image: number) => values.slice(image * D, (image + 1) * D).reduce((a, xi, i) => a + v[i]! * xi, 0);
  const bestScores = [0, 1, 2, 3].map((i) => score(optimal, i));
  const cleanScores = [0, 1, 2, 3].map((i) => score(xs, i));
  // 'robust': no image can be flipped within eps. 'mixed': every image starts correctly classified and the one
  // closest to the boundary (perhaps others too) can be flipped.
  const closest = cleanScores.indexOf(Math.max(...cleanScores));
  const bias0 = mode === 'robust' ? Math.max(...bestScores) + 0.5 : (cleanScores[closest]! + bestScores[closest]!) / 2;
  const weight = tensor([Array(D).fill(0), v, Array(D).fill(0), Array(D).fill(0)], { requiresGrad: true });
  const model = new LinearClassifier(weight, tensor([bias0, 0, -100, -200]));
  return {
    model,
    images: tensor(xs, { shape: [4, ...SHAPE] }),
    labels: tensor([0, 0, 0, 0], { dtype: 'int64' }),
    optimalMargins: bestScores.map((s) => bias0 - s),
    cleanMargins: cleanScores.map((s) => bias0 - s),
    v,
    xs,
    bias0,
  };
}

function margins(model: Classifier, images: Tensor, labels: Tensor): number[] {
  return tidy(() => marginLoss(model.forward(images), labels).toArray());
}

function assertClose(actual: number[], expected: number[], tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, what);
  actual.forEach((a, i) => assert.ok(Math.abs(a - expected[i]!) <= tolerance, `${what}[${i}]: ${a} vs ${expected[i]}`));
}

function assertInThreatModel(clean: Tensor, result: AttackResult, norm: 'Linf' | 'L2', eps: number, what: string): void {
  tidy(() => {
    const adv = result.adversarial;
    assert.deepEqual(adv.shape, clean.shape, what);
    assert.ok(adv.isfinite().all().item(), `${what}: finite`);
    assert.ok(adv.min().item() >= 0 && adv.max().item() <= 1, `${what}: in [0, 1]`);
    const size = perImageNorm(adv.double().sub(clean.double()), norm).max().item();
    assert.ok(size <= eps + 1e-6, `${what}: ${norm} perturbation ${size} > eps ${eps}`);
  });
}

test('DLR, targeted DLR and margin match hand-computed values', () => {
  tidy(() => {
    const logits = tensor([[3, 1, 2, 0.5], [3, 1, 2, 0.5], [0, 4, 1, 2]]);
    const labels = tensor([0, 1, 3], { dtype: 'int64' });
    // Row 0: label on top, runner-up 2, third 1 → −(3 − 2)/(3 − 1). Row 1: −(1 − 3)/(3 − 1). Row 2: −(2 − 4)/(4 − 1).
    assertClose(dlrLoss(logits, labels).toArray(), [-0.5, 1, 2 / 3], 1e-6, 'dlr');
    // −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2): row 0 target 2 → −1/(3 − 0.75); row 1 target 0 → 2/2.25; row 2 target 1 → 2/(4 − 0.5).
    const targets = tensor([2, 0, 1], { dtype: 'int64' });
    assertClose(targetedDlrLoss(logits, labels, targets).toArray(), [-1 / 2.25, 2 / 2.25, 2 / 3.5], 1e-6, 'targeted dlr');
    assertClose(marginLoss(logits, labels).toArray(), [1, -2, -2], 1e-6, 'margin');
    assert.throws(() => dlrLoss(tensor([[1, 2]]), tensor([0], { dtype: 'int64' })), /at least 3 classes/);
  });
});

test("APGD's checkpoints follow the paper's p_j formula", () => {
  // p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06); checkpoints w_j = ⌈p_j·N⌉ ≤ N.
  const paper = (steps: number) => {
    const p = [0, 0.22];
    while (true) {
      const next = p.at(-1)! + Math.max(p.at(-1)! - p.at(-2)! - 0.03, 0.06);
      if (next > 1) break;
      p.push(next);
    }
    return p.slice(1).map((pj) => Math.ceil(pj * steps - 1e-9)).filter((w) => w <= steps);
  };
  assert.deepEqual(apgdCheckpoints(100), [22, 41, 57, 70, 80, 87, 93, 99]);
  assert.deepEqual(apgdCheckpoints(100), paper(100));
  assert.deepEqual(apgdCheckpoints(1000), paper(1000));
});

/**
 * A one-pixel model whose loss and gradient sign are scripted per call: logits [0, s_t + g_t·(x − stop(x))], so
 * the cross-entropy of label 0 rises with s_t and its input gradient has the sign of g_t. Records each input.
 */
class ScriptedPixel implements Classifier {
  inputs: number[] = [];
  constructor(readonly scores: number[], readonly signs: number[]) {}
  forward(x: Tensor): Tensor {
    const call = this.inputs.length;
    const flat = x.flatten(1);
    this.inputs.push(flat.toArray()[0]!);
    const varying = flat.sub(flat.detach()).mul(this.signs[call]!).add(this.scores[call]!);
    return cat([zeros([x.shape[0]!, 1]), varying], 1);
  }
}

test("APGD's iterates follow Algorithm 1: momentum, step halving at checkpoints, restarts from the best point", () => {
  const steps = 30;
  const eps = 0.1;
  const clean = 0.5;
  // Scores −4 … −0.25 (the label always wins, so nothing stops early) and gradient signs from a small LCG.
  let state = 12345;
  const next = () => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648;
  const calls = steps + 3;
  const scores = Array.from({ length: calls }, () => -0.25 * (1 + Math.floor(next() * 16)));
  const signs = Array.from({ length: calls }, () => (next() < 0.5 ? -1 : 1));
  const model = new ScriptedPixel(scores, signs);
  const result = new APGD(model, { eps, steps }).run(tensor([clean], { shape: [1, 1, 1, 1] }), tensor([0], { dtype: 'int64' }));
  // Calls: 0 clean, 1 the random start, 2 … steps + 1 the iterations, then the final check.
  assert.equal(model.inputs.length, steps + 3);

  // The algorithm restated on one scalar (scores stand in for the loss: CE is increasing in them).
  const project = (v: number) => Math.min(1, Math.max(0, Math.min(clean + eps, Math.max(clean - eps, v))));
  const checkpoints = new Set(apgdCheckpoints(steps));
  let x = model.inputs[1]!;
  let previous = x;
  let gradient = signs[1]!;
  let [best, bestGradient, bestLoss] = [x, gradient, scores[1]!];
  let stepSize = 2 * eps;
  let [bestAtLastCheck, reducedAtLastCheck, lastCheckpoint] = [bestLoss, true, 0];
  const losses: number[] = [];
  // Before iteration 0 the reference reads the end of its zero-filled loss buffer: below every CE value.
  const lossAt = (j: number) => (j < 0 ? -Infinity : losses[j]!);
  const expected: number[] = [];
  for (let i = 0; i < steps; i++) {
    const momentum = i > 0 ? 0.75 : 1;
    const z = project(x + stepSize * Math.sign(gradient));
    const moved = project(x + momentum * (z - x) + (1 - momentum) * (x - previous));
    previous = x;
    x = moved;
    expected.push(x);
    const loss = scores[i + 2]!;
    gradient = signs[i + 2]!;
    losses.push(loss);
    if (loss > bestLoss) [best, bestGradient, bestLoss] = [x, gradient, loss];
    if (checkpoints.has(i + 1)) {
      const k = i + 1 - lastCheckpoint;
      lastCheckpoint = i + 1;
      let increases = 0;
      for (let back = 0; back < k; back++) if (lossAt(i - back) > lossAt(i - back - 1)) increases++;
      const reduce = increases <= 0.75 * k || (!reducedAtLastCheck && bestAtLastCheck >= bestLoss);
      if (reduce) {
        stepSize /= 2;
        x = best;
        gradient = bestGradient;
      }
      [reducedAtLastCheck, bestAtLastCheck] = [reduce, bestLoss];
    }
  }
  assertClose(model.inputs.slice(2, steps + 2), expected, 1e-6, 'iterates');
  assert.ok(stepSize < eps / 4, 'the script makes the step size halve several times');
  // An image never fooled comes back at its highest-loss point.
  assertClose(result.adversarial.flatten().toArray(), [best], 1e-6, 'best point');
  result.adversarial.dispose();
});

test("Square's p schedule is the reference's", () => {
  const p = (it: number, rescale = false) => squareSchedule(it, { pInit: 0.8, queries: 5000, rescale });
  assert.deepEqual([0, 10, 11, 50, 51, 200, 201, 500, 501, 1000, 1001, 2000, 2001, 4000, 4001, 6000, 6001, 8000, 8001].map((i) => p(i)),
    [0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125, 0.00625, 0.00625, 0.003125, 0.003125, 0.0015625]);
  // Rescaled to 5000 queries, query i counts as 2i.
  assert.equal(p(26, true), 0.2);
});

test("Square's window side: the reference's rounding, at least 1, at most min(H, W) (images far from square)", () => {
  assert.equal(squareWindowSide(0.8, 32, 32), 29); // round(√819.2) = round(28.6)
  assert.equal(squareWindowSide(0.8 / 512, 32, 32), 1);
  assert.equal(squareWindowSide(0.05, 28, 28), 6); // √39.2 = 6.26
  assert.equal(squareWindowSide(0.8, 2, 64), 2); // √102.4 = 10.1 rows would not fit in 2
  assert.equal(squareWindowSide(0.8, 64, 3), 3);
  tidy(() => {
    // On a 2×64 image every window fits, and the result lies inside the ball.
    const weight = randn([3, 3 * 2 * 64], { generator: new Generator(5) });
    const model: Classifier = { forward: (x) => x.flatten(1).matmul(weight.transpose(0, 1)) };
    const images = rand([2, 3, 2, 64], { generator: new Generator(6) });
    const labels = model.forward(images).argmax({ dim: 1 });
    const result = new Square(model, { queries: 30, eps: 0.05, rescaleSchedule: false }).run(images, labels);
    assertInThreatModel(images, result, 'Linf', 0.05, 'square on 2×64');
  });
});

test('PGD, APGD (CE, DLR, targeted DLR) and FGSM reach the optimal Linf margin of a linear classifier', () => {
  const problem = linearProblem('robust');
  const { model, images, labels, optimalMargins } = problem;
  assert.ok(optimalMargins.every((m) => m > 0), 'every image stays robust, so attacks never stop early');
  const attacks = {
    fgsm: new FGSM(model),
    pgd: new PGD(model, { steps: 10 }),
    'apgd-ce': new APGD(model, { steps: 10 }),
    'apgd-dlr': new APGD(model, { steps: 10, loss: 'dlr' }),
    'apgd-t': new APGDT(model, { steps: 10, nTargetClasses: 2 }),
  };
  for (const [name, attack] of Object.entries(attacks)) {
    const result = attack.run(images, labels);
    assertInThreatModel(images, result, 'Linf', EPS, name);
    assertClose(margins(model, result.adversarial, labels), optimalMargins, 1e-4, name);
    assert.deepEqual(result.success, [false, false, false, false], name);
    result.adversarial.dispose();
  }
  assert.equal(model.weight.grad, null, 'parameters accumulate no gradient');
});

test('Square reaches the optimal margin without gradients', () => {
  const { model, images, labels, optimalMargins } = linearProblem('robust');
  const result = new Square(model, { queries: 1000, rescaleSchedule: false }).run(images, labels);
  assert.equal(model.sawGradient, false, 'Square never asks for a gradient');
  assertInThreatModel(images, result, 'Linf', EPS, 'square');
  assertClose(margins(model, result.adversarial, labels), optimalMargins, 1e-4, 'square');
  assert.deepEqual(result.queries, [1001, 1001, 1001, 1001]);
  result.adversarial.dispose();
});

test('attacks fool the images within reach and report it; Square stops querying a fooled image', () => {
  const { model, images, labels, optimalMargins, cleanMargins } = linearProblem('mixed');
  const expected = optimalMargins.map((m) => m < 0);
  assert.ok(cleanMargins.every((m) => m > 0), 'all images start correctly classified');
  assert.ok(expected.includes(true) && expected.includes(false), `a mix of breakable and robust images: ${optimalMargins}`);
  for (const attack of [new FGSM(model), new PGD(model, { steps: 10 }), new APGD(model, { steps: 10 }),
    new APGDT(model, { steps: 10, nTargetClasses: 2 }), new FABT(model, { steps: 20, nTargetClasses: 2 }), new FAB(model, { steps: 20 }),
    new Square(model, { queries: 300 })]) {
    const result = attack.run(images, labels);
    assert.deepEqual(result.success, expected, attack.name);
    assertInThreatModel(images, result, 'Linf', EPS, attack.name);
    if (attack instanceof Square) assert.ok(result.queries!.every((q, i) => (expected[i] ? q < 300 : q === 301)), `queries ${result.queries}`);
    result.adversarial.dispose();
  }
});

test('FAB-T finds a nearly minimal Linf adversarial example on a linear classifier', () => {
  const problem = linearProblem('robust');
  const image = 0;
  const x = problem.xs.slice(0, D);
  const margin = problem.bias0 - x.reduce((a, xi, i) => a + problem.v[i]! * xi, 0);
  // Smallest δ with Σ|v_i|·min(δ, room_i) ≥ margin (room: distance to the face v pushes towards).
  const gain = (delta: number) => x.reduce((a, xi, i) => a + Math.abs(problem.v[i]!) * Math.min(delta, problem.v[i]! > 0 ? 1 - xi : xi), 0);
  let [lo, hi] = [0, 1];
  for (let i = 0; i < 60; i++) { const mid = (lo + hi) / 2; if (gain(mid) >= margin) hi = mid; else lo = mid; }
  const minimal = hi;
  const eps = 2 * minimal;
  const images = problem.images.slice(0, image, image + 1);
  const labels = problem.labels.slice(0, image, image + 1);
  const distanceAfter = (steps: number) => {
    const result = new FABT(problem.model, { eps, steps, nTargetClasses: 2 }).run(images, labels);
    assert.deepEqual(result.success, [true]);
    const distance = tidy(() => perImageNorm(result.adversarial.sub(images), 'Linf').item());
    result.adversarial.dispose();
    return distance;
  };
  // From the clean image both projections coincide, so α = α_max and the first step lands at x + η·d*: the
  // overshoot η = 1.05 times the minimal distance.
  const first = distanceAfter(1);
  assert.ok(Math.abs(first / minimal - 1.05) < 1e-3, `first step ${first}, minimal ${minimal}`);
  // Later steps pull back (β) and close in on the minimum.
  const later = distanceAfter(50);
  assert.ok(later >= minimal - 1e-5 && later < first && later <= 1.02 * minimal, `FAB distance ${later}, minimal ${minimal}`);
});

test('the Linf projection onto a hyperplane within [0, 1] is the minimal one', () => {
  tidy(() => {
    const generator = new Generator(3);
    const t = rand([6, 20], { generator });
    const w = randn([6, 20], { generator });
    // b reachable inside the box: the value of a random point of the box.
    const b = w.mul(rand([6, 20], { generator })).sum({ dim: 1 });
    const d = projectionLinf(t, w, b);
    const tv = t.toArray(), wv = w.toArray(), bv = b.toArray(), dv = d.toArray();
    for (let r = 0; r < 6; r++) {
      const row = (a: number[]) => a.slice(r * 20, (r + 1) * 20);
      const [tr, wr, dr] = [row(tv), row(wv), row(dv)];
      const reached = tr.reduce((a, ti, i) => a + wr[i]! * (ti + dr[i]!), 0);
      assert.ok(Math.abs(reached - bv[r]!) < 1e-4, `row ${r} lands on the hyperplane`);
      assert.ok(tr.every((ti, i) => ti + dr[i]! >= -1e-6 && ti + dr[i]! <= 1 + 1e-6), `row ${r} stays in the box`);
      // Minimal radius: the smallest δ whose reachable range of ⟨w, t + d⟩ contains b.
      const start = tr.reduce((a, ti, i) => a + wr[i]! * ti, 0);
      const direction = Math.sign(bv[r]! - start);
      const reach = (delta: number) => tr.reduce((a, ti, i) => a + Math.abs(wr[i]!) * Math.min(delta, direction * wr[i]! > 0 ? 1 - ti : ti), 0);
      let [lo, hi] = [0, 1];
      for (let i = 0; i < 60; i++) { const mid = (lo + hi) / 2; if (reach(mid) >= Math.abs(bv[r]! - start)) hi = mid; else lo = mid; }
      const size = Math.max(...dr.map(Math.abs));
      assert.ok(Math.abs(size - hi) < 1e-5, `row ${r}: ‖d‖∞ = ${size}, minimal ${hi}`);
    }
  });
});

/** A small nonlinear model: two random layers with a ReLU, optionally with Gaussian noise on the input. */
class TinyNetwork implements Classifier {
  calls = 0;
  private readonly first: Tensor;
  private readonly second: Tensor;
  constructor(seed: number, private readonly noise = 0, private readonly noiseGenerator = new Generator(seed + 1)) {
    const generator = new Generator(seed);
    this.first = randn([D, 16], { generator }).mul(0.5).setRequiresGrad(true);
    this.second = randn([16, 5], { generator }).setRequiresGrad(true);
  }
  forward(x: Tensor): Tensor {
    this.calls++;
    let input = x.flatten(1);
    if (this.noise > 0) input = input.add(randn(input.shape, { generator: this.noiseGenerator }).mul(this.noise));
    return input.sub(0.5).matmul(this.first).relu().matmul(this.second);
  }
  get parameters(): Tensor[] { return [this.first, this.second]; }
}

function tinyBatch(seed: number, n = 6) {
  const model = new TinyNetwork(seed);
  const images = rand([n, ...SHAPE], { generator: new Generator(seed + 10) });
  // Label each image with the model's own prediction so that every image starts correctly classified.
  const labels = tidy(() => model.forward(images).argmax({ dim: 1 }));
  return { model, images, labels };
}

test('the Linf projector (box computed once) selects exactly what clamping to clean ± eps and then to [0, 1] does', () => {
  tidy(() => {
    const generator = new Generator(3);
    // Clean pixels at 0 and 1 and inside; points far outside the box, on its faces and within it.
    const clean = cat([zeros([1, 3, 4, 4]), zeros([1, 3, 4, 4]).add(1), rand([2, 3, 4, 4], { generator })], 0);
    for (const eps of [0, 1 / 255, 8 / 255, 0.5, 2]) {
      const points = clean.add(randn(clean.shape, { generator }).mul(eps * 2 + 0.01));
      const expected = points.maximum(clean.sub(eps)).minimum(clean.add(eps)).clamp(0, 1);
      const projected = threatModelProjector(clean, 'Linf', eps)(points);
      assert.deepEqual(Array.from(projected.toArray()), Array.from(expected.toArray()), `eps ${eps}`);
    }
  });
});

test("every attack's output lies in the threat model, in [0, 1], for Linf and L2", () => {
  const { model, images, labels } = tinyBatch(5);
  const depth = scopeDepth();
  const cases: [string, { run(x: Tensor, y: Tensor): AttackResult }, 'Linf' | 'L2', number][] = [
    ['fgsm', new FGSM(model, { eps: 0.1 }), 'Linf', 0.1],
    ['fgsm-l2', new FGSM(model, { norm: 'L2', eps: 0.5 }), 'L2', 0.5],
    ['pgd', new PGD(model, { eps: 0.1, steps: 5, restarts: 2 }), 'Linf', 0.1],
    ['pgd-l2', new PGD(model, { norm: 'L2', eps: 0.5, steps: 5 }), 'L2', 0.5],
    ['apgd-ce', new APGD(model, { eps: 0.1, steps: 8, restarts: 2 }), 'Linf', 0.1],
    ['apgd-dlr-l2', new APGD(model, { norm: 'L2', eps: 0.5, steps: 8, loss: 'dlr' }), 'L2', 0.5],
    ['apgd-t', new APGDT(model, { eps: 0.1, steps: 8, nTargetClasses: 3 }), 'Linf', 0.1],
    ['fab', new FAB(model, { eps: 0.1, steps: 8 }), 'Linf', 0.1],
    ['fab-t', new FABT(model, { eps: 0.1, steps: 8, nTargetClasses: 3, restarts: 2 }), 'Linf', 0.1],
    ['square', new Square(model, { eps: 0.1, queries: 50 }), 'Linf', 0.1],
  ];
  for (const [name, attack, norm, eps] of cases) {
    const result = attack.run(images, labels);
    assertInThreatModel(images, result, norm, eps, name);
    assert.equal(result.success.length, 6, name);
    result.adversarial.dispose();
  }
  assert.equal(scopeDepth(), depth);
  assert.ok(model.parameters.every((p) => p.grad === null), 'no parameter gradient accumulates');
});

test('memory stays flat over iterations and nothing leaks', () => {
  const { model, images, labels } = tinyBatch(11);
  const make = (onProgress: () => void) => [
    new PGD(model, { eps: 0.02, steps: 12, onProgress }),
    new APGD(model, { eps: 0.02, steps: 12, onProgress }),
    new APGDT(model, { eps: 0.02, steps: 6, nTargetClasses: 2, onProgress }),
    new FAB(model, { eps: 0.02, steps: 12, onProgress }),
    new Square(model, { eps: 0.02, queries: 12, onProgress }),
  ];
  const live: number[][] = [];
  for (const attack of make(() => live.at(-1)!.push(liveTensorCount()))) {
    live.push([]);
    const before = liveTensorCount();
    const result = attack.run(images, labels);
    result.adversarial.dispose();
    assert.equal(liveTensorCount(), before, `${attack.name} leaks no tensor`);
  }
  for (const [i, counts] of live.entries()) {
    // No iteration holds more tensors than the first ones did (a leak of one tensor per step would show).
    assert.ok(counts.length >= 10 && Math.max(...counts) === Math.max(...counts.slice(0, 3)), `attack ${i}: live tensors per step ${counts}`);
  }
});

test('the final check throws on a perturbation outside the ball, outside [0, 1] or not finite', () => {
  tidy(() => {
    const clean = zeros([1, ...SHAPE]).add(0.5);
    assert.doesNotThrow(() => checkAdversarial(clean, clean.add(EPS), { norm: 'Linf', eps: EPS }));
    assert.throws(() => checkAdversarial(clean, clean.add(EPS + 1e-4), { norm: 'Linf', eps: EPS }), /above eps/);
    assert.throws(() => checkAdversarial(clean, clean.add(0.6), { norm: 'Linf', eps: 1 }), /\[0, 1\]/);
    assert.throws(() => checkAdversarial(clean, clean.div(0), { norm: 'Linf', eps: 1 }), /NaN or infinity/);
  });
});

test('input checks reject bad shapes, ranges and label types', () => {
  const { model, images, labels } = tinyBatch(5);
  const attack = new FGSM(model);
  assert.throws(() => attack.run(images.flatten(1), labels), /\[N, C, H, W\]/);
  assert.throws(() => attack.run(images.mul(2), labels), /\[0, 1\]/);
  assert.throws(() => attack.run(images, labels.int()), /int64/);
  assert.throws(() => attack.run(images, tensor([7, 0, 0, 0, 0, 0], { dtype: 'int64' })), /labels must be in/);
  assert.throws(() => new Square(model, { norm: 'L2' }), /supports Linf/);
});

test('a fixed seed reproduces results exactly; another seed changes them', () => {
  const { model, images, labels } = tinyBatch(7);
  const build = {
    pgd: (seed: number) => new PGD(model, { eps: 0.05, steps: 3, seed }),
    apgd: (seed: number) => new APGD(model, { eps: 0.05, steps: 5, seed }),
    square: (seed: number) => new Square(model, { eps: 0.05, queries: 20, seed }),
    'fab-restarts': (seed: number) => new FAB(model, { eps: 0.05, steps: 3, restarts: 2, seed }),
  };
  for (const [name, make] of Object.entries(build)) {
    const a = make(1).run(images, labels);
    const b = make(1).run(images, labels);
    const c = make(2).run(images, labels);
    assert.ok(a.adversarial.equal(b.adversarial), `${name}: same seed, same images`);
    assert.deepEqual(a.success, b.success);
    if (name !== 'fab-restarts') assert.ok(!a.adversarial.equal(c.adversarial), `${name}: another seed, other images`);
    for (const r of [a, b, c]) r.adversarial.dispose();
  }
  // A stochastic model drawing from libtorch's default generator is reproducible too (run() seeds it).
  const noisy: Classifier = { forward: (x) => model.forward(x.add(randn(x.shape).mul(0.01))) };
  const runs = [0, 1].map(() => new APGD(noisy, { eps: 0.05, steps: 4, eot: 2 }).run(images, labels));
  assert.ok(runs[0]!.adversarial.equal(runs[1]!.adversarial));
  for (const r of runs) r.adversarial.dispose();
});

test('EOT averages eot forward/backward passes per step, and progress and loss traces are reported', () => {
  const { images } = tinyBatch(9, 3);
  const model = new TinyNetwork(9, 0.001);
  // Labels from the noisy model's own (stable, at this noise) prediction: every image is attacked.
  const labels = tidy(() => model.forward(images).argmax({ dim: 1 }));
  const events: { step: number; total: number; robust: number }[] = [];
  const steps = 4;
  const eot = 3;
  // eotImagesPerPass 1: the reference's loop, one pass per draw.
  const attack = new APGD(model, { eps: 0.001, steps, eot, eotImagesPerPass: 1, recordLoss: true, onProgress: (e) => events.push(e) });
  model.calls = 0;
  const result = attack.run(images, labels);
  // One clean pass, (steps + 1)·eot passes for the attack, one final check.
  assert.equal(model.calls, 1 + (steps + 1) * eot + 1);
  // Batched EOT (the default): the eot draws of a step in one pass of eot·n = 9 images.
  model.calls = 0;
  new APGD(model, { eps: 0.001, steps, eot }).run(images, labels).adversarial.dispose();
  assert.equal(model.calls, 1 + (steps + 1) + 1);
  assert.deepEqual(events.map((e) => e.step), [1, 2, 3, 4]);
  assert.ok(events.every((e) => e.total === steps && e.robust === 3), JSON.stringify(events));
  assert.deepEqual(result.lossTrace!.map((t) => t.length), [steps, steps, steps]);
  assert.deepEqual(result.success, [false, false, false]);
  result.adversarial.dispose();
});

/** A hand-made attack: fools the images whose first pixel exceeds `threshold`, shifting them by +eps/2. */
class ThresholdAttack implements RunnableAttack {
  seen: number[][] = [];
  constructor(readonly threshold: number) {}
  run(images: Tensor, labels: Tensor): AttackResult {
    const first = images.flatten(1).select(1, 0).toArray();
    this.seen.push(first);
    assert.equal(labels.shape[0], images.shape[0]);
    const success = first.map((v) => v > this.threshold);
    const shift = tensor(success.map((s) => (s ? EPS / 2 : 0))).view([-1, 1, 1, 1]);
    return { adversarial: images.add(shift).clamp(0, 1), success };
  }
}

test('the suite attacks only robust points; its worst case is the minimum over attacks', () => {
  // First pixels 0.05, 0.15, …, 0.95; a constant model predicts class 0, so images labelled 1 are clean mistakes.
  const n = 10;
  const firstPixels = Array.from({ length: n }, (_, i) => 0.05 + 0.1 * i);
  const images = tidy(() => zeros([n, ...SHAPE]).add(0.5).add(tensor(firstPixels).view([-1, 1, 1, 1]).sub(0.5).mul(
    tensor(Array.from({ length: D }, (_, i) => (i === 0 ? 1 : 0)), { shape: [1, ...SHAPE] }))));
  const labels = tensor([0, 0, 0, 1, 0, 0, 0, 0, 0, 0], { dtype: 'int64' });
  const constant: Classifier = { forward: (x) => tensor([5, 0, 0, 0]).expand([x.shape[0]!, 4]) };
  const a = new ThresholdAttack(0.8);
  const b = new ThresholdAttack(0.5);
  const c = new ThresholdAttack(0.0);
  const lines: string[] = [];
  const suite = new AutoAttack(constant, {
    version: 'custom', batchSize: 4, log: (l) => lines.push(l),
    attacks: [{ name: 'a', attack: a }, { name: 'b', attack: b }, { name: 'c', attack: c }],
  });
  const result = suite.run(images, labels);
  const seenBy = (attack: ThresholdAttack) => attack.seen.flat().map((v) => Math.round(v * 100) / 100);
  assert.deepEqual(seenBy(a), [0.05, 0.15, 0.25, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95], 'a sees every correctly classified image');
  assert.deepEqual(seenBy(b), [0.05, 0.15, 0.25, 0.45, 0.55, 0.65, 0.75], 'b sees what a left robust');
  assert.deepEqual(seenBy(c), [0.05, 0.15, 0.25, 0.45], 'c sees what b left robust');
  assert.deepEqual(a.seen.map((s) => s.length), [4, 4, 1], 'in batches of 4');
  assert.deepEqual(result.brokenBy, ['c', 'c', 'c', 'clean', 'c', 'b', 'b', 'b', 'a', 'a']);
  assert.deepEqual(result.robust, Array(n).fill(false));
  assert.deepEqual(result.robustAccuracyAfter, { clean: 0.9, a: 0.7, b: 0.4, c: 0 });
  // Per image, robust under the suite = robust under every attack run alone.
  const alone = [new ThresholdAttack(0.8), new ThresholdAttack(0.5), new ThresholdAttack(0.0)].map((t) => {
    const r = t.run(images, labels);
    r.adversarial.dispose();
    return r.success;
  });
  const minimum = firstPixels.map((_, i) => labels.toArray()[i] === 0 && alone.every((s) => !s[i]));
  assert.deepEqual(result.robust, minimum);
  // The worst case holds each broken image's adversarial example: first pixel shifted by eps/2.
  const worstFirst = result.adversarial.flatten(1).select(1, 0).toArray();
  worstFirst.forEach((v, i) => assert.ok(Math.abs(v - (firstPixels[i]! + (i === 3 ? 0 : EPS / 2))) < 1e-6, `image ${i}`));
  assert.match(lines.join('\n'), /robust accuracy after B: 40\.00%/);
  assert.deepEqual(JSON.parse(JSON.stringify(result.summary)).robustAccuracyAfter, result.robustAccuracyAfter);
  result.adversarial.dispose();
});

test("AutoAttack's 'standard' and 'rand' configurations carry the reference's settings", () => {
  const standard = autoAttackSuite('standard');
  assert.deepEqual(standard.map((e) => e.name), ['apgd-ce', 'apgd-t', 'fab-t', 'square']);
  assert.deepEqual(standard.map((e) => e.options), [
    { steps: 100, restarts: 1, eot: 1, rho: 0.75, loss: 'ce' },
    { steps: 100, restarts: 1, eot: 1, rho: 0.75, loss: 'dlr', targeted: true, nTargetClasses: 9 },
    { targeted: true, nTargetClasses: 9, steps: 100, restarts: 1, alphaMax: 0.1, eta: 1.05, beta: 0.9 },
    { queries: 5000, pInit: 0.8, restarts: 1, loss: 'margin', rescaleSchedule: false },
  ]);
  // The threat model and seed are the runner's, recorded with each attack.
  const summary = new AutoAttack({ forward: (x) => x.flatten(1) }, { eps: EPS, seed: 3 }).run(zeros([0, ...SHAPE]), tensor([], { dtype: 'int64' })).summary;
  assert.deepEqual(summary.attacks[0]!.options, { norm: 'Linf', eps: EPS, seed: 3, steps: 100, restarts: 1, eot: 1, rho: 0.75, loss: 'ce' });
  assert.throws(() => autoAttackSuite('standard', { norm: 'L2' }), /Linf only/);
  const randomised = autoAttackSuite('rand');
  assert.deepEqual(randomised.map((e) => [e.name, (e.options as { eot: number }).eot, (e.options as { steps: number }).steps]),
    [['apgd-ce', 20, 100], ['apgd-dlr', 20, 100]]);
  assert.throws(() => new AutoAttack({ forward: (x) => x }, { attacks: standard }), /fixed by version/);
});

test('a reduced standard suite on the linear classifier: robust accuracy never rises, results are checked', () => {
  const { model, images, labels, optimalMargins } = linearProblem('mixed');
  const attacks = autoAttackSuite('standard').map((entry) => {
    if (entry.attack === 'apgd' || entry.attack === 'fab') return { ...entry, options: { ...entry.options, steps: 10, nTargetClasses: 2 } };
    if (entry.attack === 'square') return { ...entry, options: { ...entry.options, queries: 100 } };
    return entry;
  }) as ReturnType<typeof autoAttackSuite>;
  const events: string[] = [];
  const result = new AutoAttack(model, { version: 'custom', attacks, onProgress: (e) => events.push(e.attack) }).run(images, labels);
  const expected = optimalMargins.map((m) => m > 0);
  assert.deepEqual(result.robust, expected);
  assert.deepEqual(result.brokenBy, expected.map((r) => (r ? null : 'apgd-ce')));
  const after = Object.values(result.robustAccuracyAfter);
  assert.ok(after.every((v, i) => i === 0 || v <= after[i - 1]!), `monotone: ${after}`);
  assert.equal(result.robustAccuracy, expected.filter(Boolean).length / 4);
  assert.deepEqual([...new Set(events)], ['apgd-ce', 'apgd-t', 'fab-t', 'square']);
  assertInThreatModel(images, { adversarial: result.adversarial, success: [] }, 'Linf', EPS, 'suite');
  result.adversarial.dispose();
});
