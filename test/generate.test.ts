// Generation: the multi-resolution parametrisation (shapes, range, constraints, gradients to every resolution),
// the augmentations, the objectives, and the loop (it raises a tiny classifier's class probability and CLIP's
// similarity, is reproducible from its seed, and keeps no tensors).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Generator, grad, liveTensorCount, noGrad, rand, randn, stack, tensor, tidy, type Tensor } from '../src/tensor/index.js';
import { Linear } from '../src/nn/index.js';
import { ClipModel, cosineSimilarityMatrix } from '../src/models/clip.js';
import {
  augmentImages, centerCrop, classObjective, clipObjective, DAS_CANVAS_SIZE, generate, imageToRaw, maximise, minimise,
  MultiResolutionImage, pixelImage, rawToImage, resolveAugmentOptions, type MemberClassifier,
} from '../src/generate/index.js';

function maxAbs(t: Tensor): number {
  return tidy(() => t.abs().max().item());
}

test('the canvas is the sum of every resolution, squashed into [0, 1]; grey start by default', () => {
  const before = liveTensorCount();
  using image = new MultiResolutionImage({ size: 12, resolutions: [12, 1, 3, 6, 2, 3], batch: 2 });
  assert.deepEqual(image.resolutions, [[1, 1], [2, 2], [3, 3], [6, 6], [12, 12]]);
  assert.deepEqual(image.parameters.map((p) => p.shape), [[2, 3, 1, 1], [2, 3, 2, 2], [2, 3, 3, 3], [2, 3, 6, 6], [2, 3, 12, 12]]);
  assert.ok(image.parameters.every((p) => p.requiresGrad && p.isLeaf));
  tidy(() => {
    const start = image.render();
    assert.deepEqual(start.shape, [2, 3, 12, 12]);
    assert.equal(maxAbs(start.sub(0.5)), 0);
    noGrad(() => image.parameters.forEach((p, i) => p.normal_(0, 50 * (i + 1))));
    const wild = image.render();
    assert.ok(wild.min().item() >= 0 && wild.max().item() <= 1);
    assert.ok(wild.std().item() > 0.3, 'large parameters saturate towards 0 and 1');
  });
  // DAS: every side length from 1 to the canvas; a non-square canvas keeps the aspect ratio.
  using every = new MultiResolutionImage({ size: 8 });
  assert.deepEqual(every.parameters.map((p) => p.shape[2]), [1, 2, 3, 4, 5, 6, 7, 8]);
  using wide = new MultiResolutionImage({ size: [8, 16], resolutions: [1, 4, 8] });
  assert.deepEqual(wide.parameters.map((p) => p.shape.slice(2)), [[1, 2], [4, 8], [8, 16]]);
  using dasCanvas = new MultiResolutionImage({ resolutions: [1] });
  assert.equal(dasCanvas.height, DAS_CANVAS_SIZE);
  assert.throws(() => new MultiResolutionImage({ size: 8, resolutions: [9] }), /not an integer in \[1, 8\]/);
  for (const m of [image, every, wide, dasCanvas]) m.dispose();
  assert.equal(liveTensorCount(), before);
});

test('gradients reach every resolution, and the 1×1 tensor moves the whole canvas', () => {
  using image = new MultiResolutionImage({ size: 12, resolutions: [1, 2, 5, 12], initialNoise: 0.3, generator: new Generator(3) });
  tidy(() => {
    const weights = randn([1, 3, 12, 12], { generator: new Generator(4) });
    const grads = grad(image.render().mul(weights).sum(), [...image.parameters]);
    for (const [i, g] of grads.entries()) assert.ok(maxAbs(g!) > 0, `no gradient at resolution ${image.resolutions[i]![0]}`);
    // A change of the 1×1 tensor shifts every pixel's raw value equally (nearest up-sampling).
    const raw = image.renderRaw();
    noGrad(() => image.parameters[0]!.add_(0.25));
    assert.ok(maxAbs(image.renderRaw().sub(raw).sub(0.25)) < 1e-6);
  });
});

test('a base image is reproduced at the start; raw and image are inverse maps', () => {
  tidy(() => {
    const base = rand([2, 3, 10, 10], { generator: new Generator(5) }).mul(0.98).add(0.01);
    assert.ok(maxAbs(rawToImage(imageToRaw(base)).sub(base)) < 1e-5);
    using image = new MultiResolutionImage({ size: 10, resolutions: [1, 5, 10], base });
    assert.equal(image.batch, 2);
    assert.ok(maxAbs(image.render().sub(base)) < 1e-5);
    using broadcast = new MultiResolutionImage({ size: 10, resolutions: [2], base: base.narrow(0, 0, 1), batch: 3 });
    assert.deepEqual(broadcast.render().shape, [3, 3, 10, 10]);
    assert.throws(() => new MultiResolutionImage({ size: 12, base }), /base image must be/);
  });
});

test('constrained images stay in the eps-ball around the base, with finite gradients at the start', () => {
  tidy(() => {
    const base = rand([2, 3, 8, 8], { generator: new Generator(6) });
    for (const constraint of [{ norm: 'Linf' as const, eps: 0.05 }, { norm: 'L2' as const, eps: 0.4 }]) {
      using image = new MultiResolutionImage({ size: 8, resolutions: [1, 2, 4, 8], base, constraint });
      const [g] = grad(image.render().mul(randn([2, 3, 8, 8])).sum(), [image.parameters[1]!]);
      assert.ok(g!.isfinite().all().item(), `${constraint.norm}: finite gradient at a zero perturbation`);
      noGrad(() => image.parameters.forEach((p) => p.normal_(0, 3)));
      const out = image.render();
      const delta = out.sub(base).flatten(1);
      const size = constraint.norm === 'Linf' ? delta.abs().amax({ dim: 1 }) : delta.square().sum({ dim: 1 }).sqrt();
      assert.ok(size.max().item() <= constraint.eps + 1e-5, `${constraint.norm}: ${size.max().item()} > ${constraint.eps}`);
      assert.ok(size.min().item() > constraint.eps * 0.9, `${constraint.norm}: large parameters reach the boundary`);
      assert.ok(out.min().item() >= 0 && out.max().item() <= 1);
    }
    // DAS's attack_size_factor: the change from the base, scaled.
    using free = new MultiResolutionImage({ size: 8, resolutions: [2, 8], base, initialNoise: 0.5, generator: new Generator(7) });
    using scaled = new MultiResolutionImage({ size: 8, resolutions: [2, 8], base, initialNoise: 0.5, generator: new Generator(7), constraint: { scale: 0.25 } });
    assert.ok(maxAbs(scaled.render().sub(base).sub(free.render().sub(base).mul(0.25))) < 1e-6);
  });
});

test('pixelImage is one tensor at the canvas size', () => {
  using pixels = pixelImage({ size: 8, batch: 3 });
  assert.deepEqual(pixels.parameters.map((p) => p.shape), [[3, 3, 8, 8]]);
  tidy(() => assert.equal(maxAbs(pixels.render().sub(0.5)), 0));
});

test('augmentations: DAS defaults, shifted central crops, noise, determinism from the generator', () => {
  assert.deepEqual(
    { ...resolveAugmentOptions({}, 336), scale: null },
    { copies: 64, jitter: 56, cropSize: 224, scale: null, flip: false, outputSize: 224, noise: 0.2, noiseKind: 'uniform', clip: true },
  );
  assert.equal(resolveAugmentOptions({ cropSize: 32 }, 48).jitter, 8);
  assert.throws(() => resolveAugmentOptions({ jitter: 5 }, 8), /does not fit/);
  tidy(() => {
    const images = rand([2, 3, 12, 12], { generator: new Generator(8) });
    const plain = augmentImages(images, { copies: 3, jitter: 0, cropSize: 8, noise: 0 });
    assert.deepEqual(plain.shape, [6, 3, 8, 8]);
    const crop = centerCrop(images, 8);
    for (let k = 0; k < 3; k++) assert.equal(maxAbs(plain.narrow(0, 2 * k, 2).sub(crop)), 0);

    // Each copy is the central crop of the canvas rolled by one shift in [−2, 2]² (the same for both images).
    const shifted = augmentImages(images, { copies: 4, jitter: 2, noise: 0 }, new Generator(9));
    assert.deepEqual(shifted.shape, [8, 3, 8, 8]);
    const seen = new Set<string>();
    for (let k = 0; k < 4; k++) {
      const copy = shifted.narrow(0, 2 * k, 2);
      let found = '';
      for (let dy = -2; dy <= 2 && !found; dy++) {
        for (let dx = -2; dx <= 2 && !found; dx++) {
          if (maxAbs(centerCrop(images.roll([dy, dx], [2, 3]), 8).sub(copy)) === 0) found = `${dy},${dx}`;
        }
      }
      assert.ok(found, `copy ${k} is no shifted crop`);
      seen.add(found);
    }
    assert.ok(seen.size > 1, 'shifts vary between copies');

    const again = augmentImages(images, { copies: 4, jitter: 2, noise: 0 }, new Generator(9));
    assert.equal(maxAbs(again.sub(shifted)), 0);
    const other = augmentImages(images, { copies: 4, jitter: 2, noise: 0.1 }, new Generator(10));
    assert.ok(maxAbs(other.sub(shifted)) > 0);

    // DAS's noise is amplitude·U[0, 1): non-negative, mean amplitude/2.
    const noise = augmentImages(rand([1, 3, 40, 40]).mul(0), { copies: 8, jitter: 0, noise: 0.2, clip: false }, new Generator(11));
    assert.ok(noise.min().item() >= 0 && noise.max().item() < 0.2);
    assert.ok(Math.abs(noise.mean().item() - 0.1) < 0.005);

    const extras = augmentImages(images, { copies: 5, jitter: 1, scale: [0.5, 0.9], flip: true, outputSize: 16, noise: 0.05 }, new Generator(12));
    assert.deepEqual(extras.shape, [10, 3, 16, 16]);
    assert.ok(extras.min().item() >= 0 && extras.max().item() <= 1);
    const x = images.detach().setRequiresGrad(true);
    const [g] = grad(augmentImages(x, { copies: 2, jitter: 1, scale: [0.6, 1], flip: true, outputSize: 10 }, new Generator(13)).sum(), [x]);
    assert.ok(maxAbs(g!) > 0);
  });
});

// A linear classifier on 8×8 images: 3 classes.
function linearClassifier(seed: number): { forward(x: Tensor): Tensor; layer: Linear } {
  const layer = new Linear(3 * 8 * 8, 3, { generator: new Generator(seed) });
  return { layer, forward: (x: Tensor) => tidy(() => layer.forward(x.flatten(1))) };
}

function classProbability(classifier: { forward(x: Tensor): Tensor }, images: Tensor, cls: number): number {
  return noGrad(() => tidy(() => classifier.forward(centerCrop(images, 8)).softmax(1).select(1, cls).mean().item()));
}

function smallRun(seed: number, classifier: { forward(x: Tensor): Tensor }, steps = 12) {
  const image = new MultiResolutionImage({ size: 12, resolutions: [1, 2, 3, 4, 6, 12], batch: 2 });
  const result = generate({
    parametrisation: image,
    objectives: [classObjective(classifier, { classIndex: 2, quantity: 'log-prob' })],
    steps,
    optimizer: { kind: 'sgd', lr: 8 },
    augment: { copies: 6, jitter: 2, noise: 0.1 },
    chunkSize: 4,
    seed,
  });
  return { image, result };
}

// A linear classifier of the images' mean colour: class 2 wants blue without red or green. Unlike a classifier of
// single pixels it is indifferent to the jitter, as image classifiers mostly are.
function colourClassifier(): { forward(x: Tensor): Tensor; layer: Linear } {
  const layer = new Linear(3, 3);
  noGrad(() => {
    layer.weight.copy_(tidy(() => tensor([[6, 0, 0], [0, 6, 0], [-3, -3, 6]])));
    layer.bias!.zero_();
  });
  return { layer, forward: (x: Tensor) => tidy(() => layer.forward(x.mean({ dim: [2, 3] }))) };
}

test('generation raises the target class probability of a classifier', () => {
  for (const [name, classifier, augment] of [
    ['mean colour, DAS-style jitter', colourClassifier(), { copies: 6, jitter: 2, noise: 0.1 }],
    ['single pixels, no jitter', linearClassifier(1), { copies: 6, jitter: 0, noise: 0.1 }],
  ] as const) {
    const image = new MultiResolutionImage({ size: augment.jitter ? 12 : 8, resolutions: [1, 2, 4, 8], batch: 2 });
    const start = classProbability(classifier, tidy(() => image.render()), 2);
    const result = generate({
      parametrisation: image,
      objectives: [classObjective(classifier, { classIndex: 2, quantity: 'log-prob' })],
      steps: 12,
      optimizer: { kind: 'sgd', lr: 8 },
      augment,
      chunkSize: 4,
    });
    try {
      const end = classProbability(classifier, result.images, 2);
      assert.ok(end > 0.75 && end > start + 0.5, `${name}: p(class 2) went from ${start} to ${end}`);
      assert.equal(result.loss.length, 12);
      assert.ok(result.loss[11]! < result.loss[0]!, 'the loss falls');
      assert.deepEqual(Object.keys(result.scores), ['class 2']);
      assert.ok(result.scores['class 2']![11]! > result.scores['class 2']![0]!);
      assert.equal(result.images.requiresGrad, false);
      assert.ok(result.images.min().item() >= 0 && result.images.max().item() <= 1);
    } finally {
      result.images.dispose();
      image.dispose();
      classifier.layer.dispose();
    }
  }
});

test('the same seed gives the same images and curves; another seed other ones', () => {
  const classifier = linearClassifier(2);
  const runs = [0, 0, 1].map((seed) => smallRun(seed, classifier, 4));
  try {
    assert.deepEqual(runs[0]!.result.loss, runs[1]!.result.loss);
    assert.equal(tidy(() => maxAbs(runs[0]!.result.images.sub(runs[1]!.result.images))), 0);
    assert.notDeepEqual(runs[0]!.result.loss, runs[2]!.result.loss);
    assert.ok(tidy(() => maxAbs(runs[0]!.result.images.sub(runs[2]!.result.images))) > 0);
  } finally {
    for (const { image, result } of runs) {
      result.images.dispose();
      image.dispose();
    }
    classifier.layer.dispose();
  }
});

test('memory is flat over steps and nothing leaks', () => {
  const classifier = linearClassifier(3);
  const before = liveTensorCount();
  const run = (snapshotEvery: number, counts: number[] = []) => {
    const image = new MultiResolutionImage({ size: 12, resolutions: [1, 3, 12], constraint: { norm: 'L2', eps: 2 } });
    const result = generate({
      parametrisation: image,
      objectives: [maximise(classObjective(classifier, { classIndex: 0 }), 0.5), minimise(classObjective(classifier, { classIndex: 1 }))],
      steps: 5,
      optimizer: { kind: 'adam', lr: 0.05 },
      augment: { copies: 3, jitter: 2 },
      chunkSize: 2,
      gradientSign: true,
      snapshotEvery,
      onProgress: () => counts.push(liveTensorCount()),
    });
    return { image, result };
  };
  const counts: number[] = [];
  const flat = run(0, counts);
  assert.ok(counts.every((c) => c === counts[0]), `live tensors per step: ${counts.join(', ')}`);
  assert.deepEqual(flat.result.snapshots, []);
  flat.result.images.dispose();
  flat.image.dispose();
  assert.equal(liveTensorCount(), before);

  const snapped = run(2);
  assert.deepEqual(snapped.result.snapshots.map((s) => s.step), [2, 4, 5]);
  assert.equal(tidy(() => maxAbs(snapped.result.snapshots[2]!.images.sub(snapped.result.images))), 0);
  for (const s of snapped.result.snapshots) s.images.dispose();
  snapped.result.images.dispose();
  snapped.image.dispose();
  assert.equal(liveTensorCount(), before);
  classifier.layer.dispose();
});

test('one member of a self-ensemble can be the objective', () => {
  const a = linearClassifier(4);
  const b = linearClassifier(5);
  const ensemble: MemberClassifier = {
    memberLogits: (x) => tidy(() => stack([a.forward(x), b.forward(x)], 1)),
    forward: (x) => tidy(() => a.forward(x).add(b.forward(x)).div(2)),
    memberNames: () => ['early', 'fc'],
  };
  try {
    tidy(() => {
      const x = rand([2, 3, 8, 8], { generator: new Generator(14) });
      const byName = classObjective(ensemble, { classIndex: 1, member: 'fc' });
      assert.equal(maxAbs(byName.score(x).sub(b.forward(x).select(1, 1))), 0);
      const byIndex = classObjective(ensemble, { classIndex: 1, member: 0, quantity: 'prob' });
      assert.ok(maxAbs(byIndex.score(x).sub(a.forward(x).softmax(1).select(1, 1))) < 1e-6);
      assert.equal(maxAbs(classObjective(ensemble, { classIndex: 1 }).score(x).sub(ensemble.forward(x).select(1, 1))), 0);
      assert.throws(() => classObjective(ensemble, { classIndex: 0, member: 'layer9' }), /no member 'layer9'/);
      assert.throws(() => classObjective(a, { classIndex: 0, member: 0 }), /no memberLogits/);
      assert.throws(() => classObjective(a, { classIndex: 7 }).score(x), /no class 7/);
    });
  } finally {
    a.layer.dispose();
    b.layer.dispose();
  }
});

test('CLIP objectives: weighted mean of cosine similarities; maximising and minimising move the image', () => {
  const before = liveTensorCount();
  const clip = new ClipModel({
    text: { vocabSize: 50, hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 1, numAttentionHeads: 2, maxPositionEmbeddings: 8 },
    vision: { hiddenSize: 16, intermediateSize: 32, numHiddenLayers: 1, numAttentionHeads: 2, imageSize: 16, patchSize: 8 },
    projectionDim: 8,
  }, { generator: new Generator(15) }).eval();
  const target = tidy(() => clip.encodeImage(rand([1, 3, 16, 16], { generator: new Generator(16) })).squeeze(0));
  const tokens = tensor([48, 7, 21, 49], { dtype: 'int64' });
  try {
    tidy(() => {
      // score = mean_t(w_t · cos(view, t)), DAS's loss_between_images_and_text.
      const views = rand([3, 3, 20, 20], { generator: new Generator(17) });
      const objective = clipObjective(clip, [{ embedding: target }, { tokens, weight: -0.3 }]);
      const e = clip.encodeImage(views);
      const cos = cosineSimilarityMatrix(e, stack([target, clip.textFeatures(tokens.unsqueeze(0)).squeeze(0)], 0));
      const expected = cos.select(1, 0).sub(cos.select(1, 1).mul(0.3)).div(2);
      assert.ok(maxAbs(objective.score(views).sub(expected)) < 1e-6);
      const summed = clipObjective(clip, [{ embedding: target }, { tokens, weight: -0.3 }], { reduction: 'sum' });
      assert.ok(maxAbs(summed.score(views).sub(expected.mul(2))) < 1e-6);
      objective.dispose!();
      summed.dispose!();
      assert.throws(() => clipObjective(clip, [{ text: 'a cat' }]), /no tokenizer/);
      assert.throws(() => clipObjective(clip, [{ embedding: target, tokens }]), /exactly one/);
    });
    // The tiny random CLIP maps every image close to one direction; grey starts near the target already, so the
    // check is that the remaining gap shrinks when maximising and grows when minimising.
    for (const direction of ['maximise', 'minimise'] as const) {
      const image = new MultiResolutionImage({ size: 24, resolutions: [1, 2, 4, 8, 24] });
      const objective = clipObjective(clip, { embedding: target }, { name: 'clip' });
      const similarity = () => tidy(() => cosineSimilarityMatrix(clip.encodeImage(centerCrop(image.render(), 16)), target.unsqueeze(0)).item());
      try {
        const start = similarity();
        const result = generate({
          parametrisation: image,
          objectives: [direction === 'maximise' ? maximise(objective) : minimise(objective)],
          steps: 12,
          optimizer: { kind: 'sgd', lr: 2 },
          augment: { copies: 4, cropSize: 16, noise: 0.05 },
        });
        result.images.dispose();
        const end = similarity();
        if (direction === 'maximise') assert.ok(1 - end < (1 - start) / 1.5, `cos ${start} → ${end}`);
        else assert.ok(end < start - 0.05, `cos ${start} → ${end}`);
      } finally {
        objective.dispose!();
        image.dispose();
      }
    }
  } finally {
    target.dispose();
    tokens.dispose();
    clip.dispose();
  }
  assert.equal(liveTensorCount(), before);
});
