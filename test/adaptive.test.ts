// Adaptive attacks pinned on models whose answer is known: with the true model as surrogate a surrogate attack is
// the plain attack, bit for bit; a model whose gradient is zero (its logits rounded: a hard, gradient-free step
// like CrossMax's selections taken to the extreme) stops plain PGD/APGD but not the attacks through its smooth
// twin; per-head attacks keep the worst case over heads; the suite lists the published settings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Generator, grad, liveTensorCount, noGrad, rand, randn, tidy, type Tensor } from '../src/tensor/index.js';
import type { Classifier } from '../src/nn/classifier.js';
import {
  APGD, PGD, PerHeadAttack, RefinePGD, SurrogateClassifier, SurrogateGradientAttack, TransferThenRefine,
  buildAttack, describeAttack, perImageNorm, scaleAttackBudget, withEot, type AttackResult,
} from '../src/attacks/index.js';
import { ADAPTIVE_BUDGETS, DEFAULT_ADAPTIVE_EOT, adaptiveSuite } from '../src/robustness/index.js';
import { CrossMax, MeanLogits, Single, type Aggregator } from '../src/ensemble/index.js';
import { tinySelfEnsemble } from './helpers/self-ensemble.js';
import { LinearEnsemble } from './helpers/linear.js';

const D = 48;
const CLASSES = 4;
const EPS = 0.1;

class Linear implements Classifier {
  readonly name = 'linear';
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(seed: number, scale = 0.5) {
    const generator = new Generator(seed);
    this.weight = randn([CLASSES, D], { generator }).mul(scale);
    this.bias = randn([CLASSES], { generator }).mul(0.1);
  }
  forward(x: Tensor): Tensor {
    return x.flatten(1).matmul(this.weight.transpose(0, 1)).add(this.bias);
  }
}

/** A tiny deterministic MLP, 48 → 16 (tanh) → 4. */
class Mlp implements Classifier {
  readonly name = 'mlp';
  readonly w1: Tensor;
  readonly b1: Tensor;
  readonly w2: Tensor;
  constructor(seed: number) {
    const generator = new Generator(seed);
    this.w1 = randn([16, D], { generator }).mul(0.4);
    this.b1 = randn([16], { generator }).mul(0.1);
    this.w2 = randn([CLASSES, 16], { generator }).mul(0.6);
  }
  forward(x: Tensor): Tensor {
    return x.flatten(1).matmul(this.w1.transpose(0, 1)).add(this.b1).tanh().matmul(this.w2.transpose(0, 1));
  }
}

/** The same predictions, zero gradient: logits rounded to 1e-3 (round's derivative is 0 everywhere). */
function hard(logits: Tensor): Tensor {
  return logits.mul(1000).round().div(1000);
}

class Masked implements Classifier {
  constructor(readonly smooth: Classifier) {}
  forward(x: Tensor): Tensor {
    return tidy(() => hard(this.smooth.forward(x)));
  }
}

/** An aggregator whose output is rounded: no gradient reaches the members. */
class HardAggregator implements Aggregator {
  readonly name: string;
  constructor(readonly inner: Aggregator) {
    this.name = `hard-${inner.name}`;
  }
  aggregate(memberLogits: Tensor): Tensor {
    return tidy(() => hard(this.inner.aggregate(memberLogits)));
  }
}

/** Linear heads as members of an ensemble: memberLogits [N, heads, classes], forward = aggregator(memberLogits). */
/** Heads that share one linear map plus a little of their own: attacks on one transfer to the others. */
function similarHeads(count: number, seed: number): Linear[] {
  const shared = new Linear(seed);
  return Array.from({ length: count }, (_, i) => {
    const own = new Linear(seed + 100 + i, 0.1);
    return Object.assign(own, { weight: own.weight.add(shared.weight), bias: own.bias.add(shared.bias) });
  });
}

/** Images with the model's own predictions as labels, so every image starts correctly classified. */
function problem(model: Classifier, n: number, seed: number): { images: Tensor; labels: Tensor } {
  const images = rand([n, 3, 4, 4], { generator: new Generator(seed) });
  const labels = noGrad(() => tidy(() => model.forward(images).argmax({ dim: 1 })));
  return { images, labels };
}

function accuracy(result: AttackResult): number {
  return result.success.filter((s) => !s).length / result.success.length;
}

function assertInBall(clean: Tensor, result: AttackResult, eps: number, what: string): void {
  tidy(() => {
    const adv = result.adversarial;
    assert.deepEqual(adv.shape, clean.shape, what);
    assert.ok(adv.min().item() >= 0 && adv.max().item() <= 1, `${what}: outside [0, 1]`);
    const size = perImageNorm(adv.double().sub(clean.double()), 'Linf').max().item();
    assert.ok(size <= eps + 1e-6, `${what}: Linf perturbation ${size} > eps ${eps}`);
  });
}

function maxAbsDifference(a: Tensor, b: Tensor): number {
  return tidy(() => a.sub(b).abs().max().item());
}

// ---- the surrogate is the model: the plain attack ---------------------------------------------------------------

test('SurrogateGradientAttack with the true model as surrogate is exactly the plain attack (linear, MLP; PGD, APGD)', () => {
  tidy(() => {
    for (const model of [new Linear(1), new Mlp(2)]) {
      const { images, labels } = problem(model, 12, 3);
      for (const base of ['pgd', 'apgd'] as const) {
        const options = { eps: 0.03, steps: 15, seed: 4, recordLoss: true };
        const plain = base === 'pgd' ? new PGD(model, options).run(images, labels) : new APGD(model, options).run(images, labels);
        const surrogate = new SurrogateGradientAttack(model, { ...options, surrogate: model, attack: base }).run(images, labels);
        assert.equal(maxAbsDifference(plain.adversarial, surrogate.adversarial), 0, `${model.name} ${base}: adversarial images differ`);
        assert.deepEqual(surrogate.success, plain.success, `${model.name} ${base}`);
        assert.deepEqual(surrogate.lossTrace, plain.lossTrace, `${model.name} ${base}: loss traces`);
        assert.equal(plain.lossTrace![0]!.length > 0, true);
        // Not a vacuous equality: the attack changes some predictions and leaves others.
        assert.ok(plain.success.some(Boolean) && plain.success.some((s) => !s), `${model.name} ${base}: ${plain.success}`);
        assertInBall(images, surrogate, 0.03, `${model.name} ${base}`);
      }
    }
  });
});

test("SurrogateGradientAttack through the ensemble's own aggregator (one memberLogits pass) is the plain attack", () => {
  tidy(() => {
    const model = new LinearEnsemble(similarHeads(3, 10), new MeanLogits());
    const { images, labels } = problem(model, 10, 11);
    const plain = new APGD(model, { eps: 0.03, steps: 10 }).run(images, labels);
    const surrogate = new SurrogateGradientAttack(model, { eps: 0.03, steps: 10, surrogate: new MeanLogits() }).run(images, labels);
    assert.equal(maxAbsDifference(plain.adversarial, surrogate.adversarial), 0);
    assert.deepEqual(surrogate.success, plain.success);
    assert.ok(plain.success.some(Boolean));
  });
});

test("straight-through: the surrogate classifier's value is the model's, its gradient the surrogate's", () => {
  tidy(() => {
    const smooth = new Mlp(5);
    const masked = new Masked(smooth);
    const wrapped = new SurrogateClassifier(masked, smooth);
    const x = rand([3, 3, 4, 4], { generator: new Generator(6) });
    const input = x.clone().setRequiresGrad(true);
    const out = wrapped.forward(input);
    assert.equal(maxAbsDifference(out, noGrad(() => masked.forward(x))), 0);
    const [g] = grad(out.select(1, 0).sum(), [input]);
    const reference = x.clone().setRequiresGrad(true);
    const [expected] = grad(smooth.forward(reference).select(1, 0).sum(), [reference]);
    assert.equal(tidy(() => {
      const plain = x.clone().setRequiresGrad(true);
      return grad(masked.forward(plain).select(1, 0).sum(), [plain])[0]!.abs().sum().item();
    }), 0, 'the masked model itself has zero gradient');
    assert.ok(maxAbsDifference(g!, expected!) < 1e-6);
    assert.ok(tidy(() => g!.abs().sum().item()) > 0);
    assert.throws(() => new SurrogateClassifier(smooth, new MeanLogits()), /memberLogits/);
  });
});

// ---- the key property: masked gradients stop plain attacks, not adaptive ones -----------------------------------

test('a model with zero gradient defeats plain PGD and APGD but not the surrogate and transfer attacks from its smooth twin', () => {
  tidy(() => {
    const smooth = new Mlp(1);
    const masked = new Masked(smooth);
    const { images, labels } = problem(smooth, 16, 5);
    const options = { eps: EPS, steps: 20, seed: 1 };

    assert.equal(accuracy(new PGD(smooth, options).run(images, labels)), 0, 'PGD breaks the smooth model');
    const plainPgd = new PGD(masked, options).run(images, labels);
    const plainApgd = new APGD(masked, options).run(images, labels);
    assert.ok(accuracy(plainPgd) >= 0.75, `plain PGD on the masked model: ${accuracy(plainPgd)}`);
    assert.ok(accuracy(plainApgd) >= 0.75, `plain APGD on the masked model: ${accuracy(plainApgd)}`);

    for (const base of ['pgd', 'apgd'] as const) {
      for (const mode of ['straight-through', 'transfer'] as const) {
        const result = new SurrogateGradientAttack(masked, { ...options, surrogate: smooth, attack: base, mode }).run(images, labels);
        assert.equal(accuracy(result), 0, `${base} ${mode}`);
        assertInBall(images, result, EPS, `${base} ${mode}`);
      }
    }
    const transfer = new TransferThenRefine(masked, { eps: EPS, surrogate: smooth, transferSteps: 20, transferEot: 1, refineSteps: 5, refineEot: 1 });
    assert.equal(transfer.name, 'transfer-then-refine');
    const result = transfer.run(images, labels);
    assert.equal(accuracy(result), 0);
    assertInBall(images, result, EPS, 'transfer-then-refine');
  });
});

test('CrossMax made gradient-free: plain APGD fails, the mean-of-logits transfer, straight-through and per-head attacks succeed', () => {
  tidy(() => {
    const heads = similarHeads(3, 20);
    const model = new LinearEnsemble(heads, new HardAggregator(new CrossMax({ k: 2 })));
    const { images, labels } = problem(model, 12, 21);
    const eps = EPS;
    const options = { eps, steps: 20, seed: 2 };
    // Only APGD's random start can flip a prediction here.
    const plainAccuracy = accuracy(new APGD(model, options).run(images, labels));
    assert.ok(plainAccuracy >= 0.5, `plain APGD: ${plainAccuracy}`);
    const attacks = {
      // Default surrogate for an ensemble: MeanLogits on its own members.
      'transfer-then-refine': new TransferThenRefine(model, { eps, transferSteps: 20, transferEot: 1, refineSteps: 5, refineEot: 1 }),
      'straight-through mean': new SurrogateGradientAttack(model, { ...options, surrogate: new MeanLogits() }),
      'per-head': new PerHeadAttack(model, options),
    };
    for (const [name, attack] of Object.entries(attacks)) {
      const result = attack.run(images, labels);
      // A transfer is not guaranteed per image: one of the twelve mean-of-logits examples does not fool CrossMax
      // (the refinement cannot help here, the model having no gradient). The other two judge by CrossMax itself.
      if (name === 'transfer-then-refine') assert.ok(accuracy(result) <= 1 / 12, `${name}: ${accuracy(result)}`);
      else assert.equal(accuracy(result), 0, name);
      assertInBall(images, result, eps, name);
    }
  });
});

test('PerHeadAttack keeps the worst case over heads: only the head the decision rests on breaks the model', () => {
  tidy(() => {
    // Members 0 and 1 are unrelated to the decision, which is member 2's (rounded: no gradient through the model).
    const heads = [new Linear(30), new Linear(31), new Linear(32)];
    const model = new LinearEnsemble(heads, new HardAggregator(new Single({ memberIndex: 2 })));
    const { images, labels } = problem(model, 12, 33);
    // A little more than EPS: at 0.1 one image is within reach of member 2's attack from some random starts only.
    const eps = 0.12;
    const options = { eps, steps: 20, seed: 3 };
    const others = new PerHeadAttack(model, { ...options, members: [0, 1] }).run(images, labels);
    const all = new PerHeadAttack(model, options).run(images, labels);
    const last = new PerHeadAttack(model, { ...options, members: [-1] }).run(images, labels);
    // Members 0 and 1 attack every image, also those they misclassify themselves (the skipping is decided on the
    // defended model), so their perturbations transfer to member 2 on some images, but not on most.
    assert.ok(accuracy(others) >= 0.4, `members 0, 1: ${accuracy(others)}`);
    assert.equal(accuracy(all), 0);
    assert.equal(accuracy(last), 0);
    // The worst case over heads: every image some member's attack fools stays fooled.
    others.success.forEach((fooled, i) => assert.ok(!fooled || all.success[i], `image ${i}`));
    for (const r of [others, all, last]) assertInBall(images, r, eps, 'per-head');
    assert.throws(() => new PerHeadAttack(new Linear(1)), /memberLogits/);
    assert.throws(() => new PerHeadAttack(model, { members: [3] }).run(images, labels), /out of range/);
  });
});

test('RefinePGD starts from the given points and projects around the clean images, not around its start', () => {
  tidy(() => {
    const model = new Mlp(7);
    const { images, labels } = problem(model, 6, 8);
    // A start far outside the ball: it must be pulled back into the ball around the clean images.
    const far = images.add(0.5).clamp(0, 1);
    const result = new RefinePGD(model, { eps: 0.02, steps: 3, start: far }).run(images, labels);
    assertInBall(images, result, 0.02, 'refine');
    // With a zero-gradient model it does not move: the result is the projected start.
    const masked = new Masked(model);
    const start = images.add(rand(images.shape, { generator: new Generator(9) }).mul(0.04).sub(0.02)).clamp(0, 1);
    const stays = new RefinePGD(masked, { eps: 0.02, steps: 3, start }).run(images, labels);
    const projected = start.maximum(images.sub(0.02)).minimum(images.add(0.02)).clamp(0, 1);
    assert.ok(maxAbsDifference(stays.adversarial, projected) < 1e-7);
    assert.throws(() => new RefinePGD(model, { start: far.narrow(0, 0, 2) }).run(images, labels), /start has shape/);
  });
});

test('EOT: the suite sets each gradient attack\'s eot option, and eot passes reach the model', () => {
  tidy(() => {
    // Gradient passes and the images through them: batched EOT (the default) stacks a step's draws in one pass.
    let calls = 0;
    let imagesThrough = 0;
    const inner = new Mlp(3);
    const counting: Classifier = { forward: (x) => { if (x.requiresGrad) { calls++; imagesThrough += x.shape[0]!; } return inner.forward(x); } };
    const { images, labels } = problem(inner, 2, 4);
    const n = images.shape[0]!;
    const entry = withEot({ name: 'pgd', attack: 'pgd', options: { steps: 3 } }, 5);
    buildAttack(entry, counting, { norm: 'Linf', eps: 0.01, seed: 0 }).run(images, labels);
    assert.deepEqual([calls, imagesThrough], [3, 15 * n]);
    calls = 0;
    imagesThrough = 0;
    const sequential = withEot({ name: 'pgd', attack: 'pgd', options: { steps: 3, eotImagesPerPass: 1 } }, 5);
    buildAttack(sequential, counting, { norm: 'Linf', eps: 0.01, seed: 0 }).run(images, labels);
    assert.deepEqual([calls, imagesThrough], [15, 15 * n]);
    calls = 0;
    imagesThrough = 0;
    const surrogate = withEot({ name: 's', attack: 'surrogate', options: { steps: 3, attack: 'pgd', surrogate: counting } }, 4);
    buildAttack(surrogate, inner, { norm: 'Linf', eps: 0.01, seed: 0 }).run(images, labels);
    assert.deepEqual([calls, imagesThrough], [3, 12 * n]);
    const transfer = withEot({ name: 't', attack: 'transfer-then-refine', options: { surrogate: inner } }, 7);
    assert.deepEqual([(transfer.options as { transferEot: number }).transferEot, (transfer.options as { refineEot: number }).refineEot], [7, 7]);
    const square = { name: 'square', attack: 'square' as const, options: { queries: 10 } };
    assert.equal(withEot(square, 3), square);
    assert.throws(() => withEot(entry, 0), /positive integer/);
  });
});

// ---- the suite as configuration ---------------------------------------------------------------------------------

test('adaptiveSuite lists the adaptive attacks with the published settings, CPU-sized with budgets cpu and quick', () => {
  tidy(() => {
    const ensemble = new LinearEnsemble(similarHeads(3, 40), new CrossMax({ k: 2 }));
    const suite = adaptiveSuite(ensemble);
    assert.deepEqual(suite.map((e) => e.name), ['transfer-then-refine', 'apgd-ce-mean-logits', 'apgd-ce-soft-crossmax', 'apgd-ce', 'per-head', 'square']);
    const transfer = suite[0]!.options as Record<string, unknown>;
    assert.deepEqual([transfer.transferSteps, transfer.transferEot, transfer.refineSteps, transfer.refineEot, transfer.loss], [500, 10, 500, 10, 'ce']);
    assert.equal((suite[1]!.options as { eot: number }).eot, DEFAULT_ADAPTIVE_EOT);
    assert.equal((suite[3]!.options as { eot: number }).eot, 100);
    assert.equal((suite[5]!.options as { queries: number }).queries, 5000);
    assert.equal(describeAttack(suite[2]!).options.surrogate, 'soft-crossmax(k=2, T=1)');
    assert.equal(describeAttack(suite[0]!).options.surrogate, 'mean-logits');
    JSON.stringify(suite.map((e) => describeAttack(e)));

    const quick = adaptiveSuite(ensemble, { budget: 'quick', eot: 3, transfer: { refineSteps: 0 } });
    assert.equal((quick[1]!.options as { eot: number; steps: number }).steps, ADAPTIVE_BUDGETS.quick.steps);
    assert.equal((quick[1]!.options as { eot: number }).eot, 3);
    assert.equal((quick[0]!.options as { refineSteps: number }).refineSteps, 0);
    assert.equal(buildAttack(quick[0]!, ensemble, { norm: 'Linf', eps: 8 / 255, seed: 0 }).constructor, TransferThenRefine);

    const cpu = adaptiveSuite(ensemble, { budget: 'cpu' });
    const cpuTransfer = cpu[0]!.options as Record<string, unknown>;
    assert.deepEqual([cpuTransfer.transferSteps, cpuTransfer.transferEot, cpuTransfer.refineSteps, cpuTransfer.refineEot], [100, 2, 20, 2]);
    assert.deepEqual([(cpu[1]!.options as { steps: number }).steps, (cpu[1]!.options as { eot: number }).eot], [100, 4]);
    assert.equal((cpu[5]!.options as { queries: number }).queries, 1000);
    assert.throws(() => adaptiveSuite(ensemble, { budget: 'gpu' as 'cpu' }), /unknown budget 'gpu' \(published, cpu, quick\)/);

    const plain = new Linear(1);
    assert.deepEqual(adaptiveSuite(plain).map((e) => e.name), ['apgd-ce', 'square']);
    const withIndependent = adaptiveSuite(plain, { independentSurrogate: new Mlp(1), square: false });
    assert.deepEqual(withIndependent.map((e) => e.name), ['apgd-ce', 'transfer-independent']);
    assert.equal(describeAttack(withIndependent[1]!).options.surrogate, 'mlp');
    assert.deepEqual(adaptiveSuite(new LinearEnsemble(similarHeads(2, 1), new MeanLogits())).map((e) => e.name),
      ['transfer-then-refine', 'apgd-ce-mean-logits', 'apgd-ce', 'per-head', 'square']);

    const doubled = scaleAttackBudget(suite[0]!, 2).options as Record<string, unknown>;
    assert.deepEqual([doubled.transferSteps, doubled.transferEot, doubled.refineSteps, doubled.refineEot], [1000, 20, 1000, 20]);
    assert.deepEqual(scaleAttackBudget({ name: 'p', attack: 'pgd', options: {} }, 2).options, { steps: 20, eot: 2 });
  });
});

test('the quick adaptive suite runs on a real stochastic self-ensemble, every result inside the ball', () => {
  using model = tinySelfEnsemble();
  const before = liveTensorCount();
  tidy(() => {
    const images = rand([2, 3, 16, 16], { generator: new Generator(1) });
    const labels = noGrad(() => model.forward(images).argmax({ dim: 1 }));
    const suite = adaptiveSuite(model, { budget: 'quick', steps: 3, eot: 1, squareQueries: 5, transfer: { transferSteps: 3, transferEot: 1, refineSteps: 2, refineEot: 1 } });
    assert.equal(suite.length, 6);
    for (const entry of suite) {
      const result = buildAttack(entry, model, { norm: 'Linf', eps: 8 / 255, seed: 0 }).run(images, labels);
      assertInBall(images, result, 8 / 255, entry.name);
    }
  });
  assert.equal(liveTensorCount(), before, 'tensors leaked');
});
