// Batched EOT (Attack.lossGradient): the eot draws of a step as stacked replicas of the batch, in passes of at most
// eotImagesPerPass images. Pinned: it equals the sequential loop on a deterministic model and, on a stochastic
// model whose randomness is per image, the mean of sequential passes that see the same draws; the real prior's
// replicas are independent draws; the cap on images per pass holds; a model in training mode gets the loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor, Generator, cat, keep, rand, randn, tidy } from '../src/tensor/index.js';
import type { Classifier } from '../src/nn/classifier.js';
import { Module } from '../src/nn/module.js';
import { Linear } from '../src/nn/layers.js';
import { APGD, FGSM, type GradientAttackOptions } from '../src/attacks/index.js';
import { defaultEotImagesPerPass } from '../src/attacks/attack.js';
import { MultiResolutionPrior } from '../src/prior/index.js';

const SHAPE = [3, 8, 8];
const D = 3 * 8 * 8;

/** Exposes the protected EOT gradient of a gradient attack. */
class Probe extends FGSM {
  constructor(model: Classifier, options: GradientAttackOptions) {
    super(model, options);
  }
  gradientOf(x: Tensor, y: Tensor, loss: 'ce' | 'dlr' = 'ce'): { gradient: Tensor; loss: Tensor; logits: Tensor } {
    const objective = new Probe(this.model, { loss }).objective(y, null);
    return this.eotGradient(x, objective);
  }
}

/**
 * A two-layer network. With `noise` each forward pass adds to each image the next rows of a fixed table of
 * draws, in the order images arrive: one batched pass of k replicas reads the same rows as k sequential passes.
 */
class TableNoiseNetwork implements Classifier {
  readonly batchSizes: number[] = [];
  private next = 0;
  private readonly first: Tensor;
  private readonly second: Tensor;
  private readonly table: Tensor | null;
  constructor(seed: number, noise: number) {
    const generator = new Generator(seed);
    this.first = keep(randn([D, 16], { generator }).mul(0.3));
    this.second = keep(randn([16, 6], { generator }));
    this.table = noise > 0 ? keep(randn([4096, D], { generator }).mul(noise)) : null;
  }
  rewind(): void {
    this.next = 0;
  }
  forward(x: Tensor): Tensor {
    const n = x.shape[0]!;
    this.batchSizes.push(n);
    let input = x.flatten(1);
    if (this.table) {
      input = input.add(this.table.narrow(0, this.next, n));
      this.next += n;
    }
    return input.sub(0.5).matmul(this.first).tanh().matmul(this.second);
  }
}

function close(a: Tensor, b: Tensor, tolerance: number, what: string): void {
  const difference = tidy(() => a.sub(b).abs().max().item());
  const scale = tidy(() => b.abs().max().item());
  assert.ok(difference <= tolerance * Math.max(scale, 1e-12), `${what}: largest difference ${difference} (scale ${scale})`);
}

test('batched EOT equals the sequential loop on a deterministic model (gradient, last loss and logits)', () => {
  tidy(() => {
    const model = new TableNoiseNetwork(1, 0);
    const images = rand([5, ...SHAPE], { generator: new Generator(2) });
    const labels = model.forward(images).argmax({ dim: 1 });
    for (const loss of ['ce', 'dlr'] as const) {
      const sequential = new Probe(model, { eot: 7, eotImagesPerPass: 1 }).gradientOf(images, labels, loss);
      for (const perPass of [10, 15, 512]) {
        const batched = new Probe(model, { eot: 7, eotImagesPerPass: perPass }).gradientOf(images, labels, loss);
        close(batched.gradient, sequential.gradient, 1e-5, `${loss}, ${perPass} images per pass: gradient`);
        close(batched.loss, sequential.loss, 1e-6, `${loss}, ${perPass}: loss`);
        close(batched.logits, sequential.logits, 1e-6, `${loss}, ${perPass}: logits`);
        assert.deepEqual(batched.loss.shape, [5]);
        assert.deepEqual(batched.logits.shape, [5, 6]);
      }
    }
  });
});

test('on a model with per-image randomness, batched EOT is the mean over sequential passes that see the same draws', () => {
  tidy(() => {
    const model = new TableNoiseNetwork(3, 0.2);
    const images = rand([4, ...SHAPE], { generator: new Generator(4) });
    const labels = tensorArgmaxClean(model, images);
    const eot = 9;
    model.rewind();
    const sequential = new Probe(model, { eot, eotImagesPerPass: 1 }).gradientOf(images, labels);
    for (const perPass of [8, 12, 36]) {
      model.rewind();
      const batched = new Probe(model, { eot, eotImagesPerPass: perPass }).gradientOf(images, labels);
      close(batched.gradient, sequential.gradient, 1e-5, `${perPass} images per pass: gradient`);
      // The last draw's loss and logits, as the reference returns them.
      close(batched.loss, sequential.loss, 1e-6, `${perPass}: loss of the last draw`);
      close(batched.logits, sequential.logits, 1e-6, `${perPass}: logits of the last draw`);
    }
    // And the draws matter: a gradient of another draw differs.
    const other = new Probe(model, { eot, eotImagesPerPass: 36 }).gradientOf(images, labels);
    assert.ok(tidy(() => other.gradient.sub(sequential.gradient).abs().max().item()) > 1e-4);
  });
});

function tensorArgmaxClean(model: TableNoiseNetwork, images: Tensor): Tensor {
  const labels = model.forward(images).argmax({ dim: 1 });
  model.rewind();
  return labels;
}

test('the cap on images per pass holds, and a cap below two batches runs one pass per draw', () => {
  tidy(() => {
    const model = new TableNoiseNetwork(5, 0);
    const images = rand([5, ...SHAPE], { generator: new Generator(6) });
    const labels = model.forward(images).argmax({ dim: 1 });
    const passes = (eot: number, eotImagesPerPass: number) => {
      model.batchSizes.length = 0;
      new Probe(model, { eot, eotImagesPerPass }).gradientOf(images, labels);
      return [...model.batchSizes];
    };
    // ⌊12 / 5⌋ = 2 replicas per pass: 7 draws in passes of 10, 10, 10, 5 images.
    assert.deepEqual(passes(7, 12), [10, 10, 10, 5]);
    assert.deepEqual(passes(7, 35), [35]);
    assert.deepEqual(passes(7, 1000), [35]);
    assert.deepEqual(passes(3, 9), [5, 5, 5]);
    assert.deepEqual(passes(3, 1), [5, 5, 5]);
    // Through APGD: every gradient pass within the cap, none above it.
    model.batchSizes.length = 0;
    new APGD(model, { eps: 0.01, steps: 3, eot: 6, eotImagesPerPass: 16 }).run(images, labels).adversarial.dispose();
    assert.ok(model.batchSizes.every((size) => size <= 16), JSON.stringify(model.batchSizes));
    assert.ok(model.batchSizes.includes(15), JSON.stringify(model.batchSizes));
    assert.throws(() => new APGD(model, { eotImagesPerPass: 0 }), /eotImagesPerPass/);
  });
});

test('the default cap is 256 CIFAR-sized images, in proportion to the pixels for larger images', () => {
  assert.equal(defaultEotImagesPerPass([100, 3, 32, 32]), 256);
  assert.equal(defaultEotImagesPerPass([100, 3, 224, 224]), 5);
  assert.equal(defaultEotImagesPerPass([1, 3, 4096, 4096]), 1);
});

/** A linear classifier over the prior's stack: a Module, so it has a training mode. */
class PriorLinear extends Module {
  readonly prior: MultiResolutionPrior;
  readonly head: Linear;
  passes = 0;
  /** `generator`: the prior's own stream; null for libtorch's default generator, which attacks seed. */
  constructor(generator: Generator | null = new Generator(11)) {
    super();
    this.prior = this.registerModule('prior', new MultiResolutionPrior({ generator: generator ?? undefined }));
    this.head = this.registerModule('head', new Linear(4 * D, 6));
  }
  forward(x: Tensor): Tensor {
    this.passes++;
    return this.head.forward(this.prior.forward(x).flatten(1));
  }
}

test("the prior's replicas in one batched pass are independent draws, distributed as sequential passes", () => {
  tidy(() => {
    const model = new PriorLinear().eval();
    const images = rand([2, ...SHAPE], { generator: new Generator(12) });
    const replicas = 200;
    const batched = model.forward(images.repeat([replicas, 1, 1, 1])).reshape([replicas, 2, 6]);
    const seq = cat(Array.from({ length: replicas }, () => model.forward(images).unsqueeze(0)), 0);
    // No two replicas of an image drew the same views.
    assert.ok(batched.select(0, 0).sub(batched.select(0, 1)).abs().max().item() > 1e-3);
    // Same mean and spread per image and class, within sampling error (200 draws each).
    const meanGap = batched.mean({ dim: 0 }).sub(seq.mean({ dim: 0 })).abs();
    const spread = seq.std({ dim: 0 });
    assert.ok(meanGap.div(spread.add(1e-6)).max().item() < 0.5, 'means agree within sampling error');
    const ratio = batched.std({ dim: 0 }).div(spread.add(1e-6));
    assert.ok(ratio.min().item() > 0.7 && ratio.max().item() < 1.4, 'spreads agree');
  });
});

test('a model in training mode gets one pass per draw (BatchNorm would couple the replicas)', () => {
  tidy(() => {
    const model = new PriorLinear();
    const images = rand([2, ...SHAPE], { generator: new Generator(13) });
    const labels = model.forward(images).argmax({ dim: 1 });
    model.passes = 0;
    new Probe(model, { eot: 4 }).gradientOf(images, labels);
    assert.equal(model.passes, 4);
    model.eval();
    model.passes = 0;
    new Probe(model, { eot: 4 }).gradientOf(images, labels);
    assert.equal(model.passes, 1);
  });
});

test('a batched-EOT attack on the prior is reproducible under its seed, and another seed draws otherwise', () => {
  tidy(() => {
    const model = new PriorLinear(null).eval();
    const images = rand([3, ...SHAPE], { generator: new Generator(14) });
    const labels = model.forward(images).argmax({ dim: 1 });
    const run = (seed: number) => new APGD(model, { eps: 0.03, steps: 4, eot: 5, seed }).run(images, labels).adversarial;
    const [a, b, c] = [run(1), run(1), run(2)];
    assert.ok(a.equal(b), 'same seed, same adversarial images');
    assert.ok(!a.equal(c), 'another seed, other draws');
  });
});
