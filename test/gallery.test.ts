// The interpretable-perturbation gallery: targeted changes stay in the ball and reach the closed-form optimum on a
// linear model; the gallery's bookkeeping (cells, member votes, success counts); the `crossmax gallery` command
// end to end on a tiny model and image folder, and its errors for bad flags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generator, liveTensorCount, noGrad, rand, tidy, type Tensor } from '../src/tensor/index.js';
import { Linear } from '../src/nn/index.js';
import { changeTowardClass, interpretabilityGallery, powerOfTwoResolutions } from '../src/generate/index.js';
import { galleryCommand } from '../src/cli/gallery-command.js';
import { UsageError } from '../src/cli/args.js';
import { captureLog, tinyModelFile, tinySelfEnsemble } from './helpers/self-ensemble.js';
import { tinyImageFolder } from './helpers/image-folder.js';
import { proportionEstimate } from '../src/util/statistics.js';

// Two classes, linear in the pixels: log p(1) grows with (w1 − w0)·x, so its L-inf-constrained maximum is each
// pixel moved by eps in the direction of sign(w1 − w0), as far as [0, 1] allows.
function twoClassLinear(): { forward(x: Tensor): Tensor; layer: Linear } {
  const layer = new Linear(3 * 8 * 8, 2, { generator: new Generator(7) });
  return { layer, forward: (x: Tensor) => tidy(() => layer.forward(x.flatten(1))) };
}

test('power-of-two resolutions end at the side', () => {
  assert.deepEqual(powerOfTwoResolutions(32), [1, 2, 4, 8, 16, 32]);
  assert.deepEqual(powerOfTwoResolutions(12), [1, 2, 4, 8, 12]);
  assert.deepEqual(powerOfTwoResolutions(1), [1]);
});

test('a targeted change on a linear model reaches the closed-form L-inf optimum and stays in the ball', () => {
  const model = twoClassLinear();
  const before = liveTensorCount();
  tidy(() => {
    const images = rand([3, 3, 8, 8], { generator: new Generator(8) });
    const eps = 8 / 255;
    const direction = noGrad(() => model.layer.weight.select(0, 1).sub(model.layer.weight.select(0, 0)).sign().view([1, 3, 8, 8]));
    const optimum = images.add(direction.mul(eps)).clamp(0, 1);
    const changed = changeTowardClass(model, images, 1, { eps, steps: 20, copies: 1 });
    assert.ok(changed.sub(images).abs().max().item() <= eps + 1e-6, 'inside the ball');
    assert.ok(changed.min().item() >= 0 && changed.max().item() <= 1, 'inside [0, 1]');
    assert.ok(changed.sub(optimum).abs().max().item() < 1e-5, `pixels: largest distance to the optimum ${changed.sub(optimum).abs().max().item()}`);
    // The multi-resolution parametrisation moves coarse and fine detail together; it still raises the target.
    const logProb = (x: Tensor) => noGrad(() => model.forward(x).logSoftmax(1).select(1, 1).mean().item());
    const multires = changeTowardClass(model, images, 1, { eps, steps: 20, copies: 1, parametrisation: 'multires' });
    assert.ok(multires.sub(images).abs().max().item() <= eps + 1e-6);
    assert.ok(logProb(multires) > logProb(images) + 0.1 * (logProb(optimum) - logProb(images)), 'multires raises the target');
    changed.dispose(); // results are the caller's, outside any scope
    multires.dispose();
    assert.throws(() => changeTowardClass(model, images, 1, { eps: 0 }), /eps must be in \(0, 1\]/);
    assert.throws(() => changeTowardClass(model, images.flatten(1), 1, { eps }), /images \[N, 3, H, W\]/);
  });
  assert.equal(liveTensorCount(), before);
  model.layer.dispose();
});

test('the gallery: one cell per eps and target, member votes per image, success over pairs with target ≠ label', () => {
  const model = tinySelfEnsemble();
  const images = rand([2, 3, 16, 16], { generator: new Generator(9) });
  noGrad(() => model.forward(images).dispose()); // first-call caches are not leaks
  const before = liveTensorCount();
  const labels = [0, 3];
  const gallery = interpretabilityGallery(model, images, labels, { eps: [8 / 255, 32 / 255], targets: [0, 1, 2], steps: 2, copies: 1 });
  try {
    assert.deepEqual(gallery.cells.map((c) => [Math.round(c.eps * 255), c.target]), [[8, 0], [8, 1], [8, 2], [32, 0], [32, 1], [32, 2]]);
    for (const cell of gallery.cells) {
      assert.deepEqual(cell.images.shape, [2, 3, 16, 16]);
      assert.ok(tidy(() => cell.images.sub(images).abs().max().item()) <= cell.eps + 1e-6);
      assert.equal(cell.predictions.length, 2);
      assert.equal(cell.memberPredictions!.length, 2);
      assert.ok(cell.memberPredictions!.every((row) => row.length === model.memberNames().length && row.every((v) => v >= 0 && v < 10)));
    }
    // Image 0 is labelled 0, so target 0 is not a pair for it: 3 targets × 2 images − 1.
    for (const s of gallery.targetedSuccess) {
      assert.equal(s.pairs, 5);
      const hits = gallery.cells.filter((c) => c.eps === s.eps).reduce((a, c) => a + c.predictions.filter((p, i) => p === c.target && labels[i] !== c.target).length, 0);
      assert.equal(s.rate, hits / 5);
      // Every success rate carries its number of pairs and its 95% Wilson interval.
      assert.deepEqual(s.estimate, proportionEstimate(hits, 5));
      assert.ok(s.estimate.low <= s.rate && s.rate <= s.estimate.high && s.estimate.n === 5);
    }
    assert.throws(() => interpretabilityGallery(model, images, labels, { eps: [0.1], targets: [10] }), /target class 10/);
    assert.throws(() => interpretabilityGallery(model, images, [1], { eps: [0.1] }), /2 images but 1 labels/);
  } finally {
    for (const c of gallery.cells) c.images.dispose();
  }
  assert.equal(liveTensorCount(), before);
  images.dispose();
  model.dispose();
});

test('crossmax gallery: report, grids and JSON on a tiny model and image folder; bad flags are usage errors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-gallery-'));
  try {
    tinyImageFolder(join(dir, 'data')); // test/c0 … c9, two 16×16 images each
    const modelPath = tinyModelFile(dir);
    const out = join(dir, 'out');
    const { code, printed } = await captureLog(() => galleryCommand(['--model', `${modelPath},${modelPath}`, '--data', join(dir, 'data'),
      '--images', '0,3', '--eps', '8/255,0.1', '--steps', '2', '--copies', '1', '--targets', 'c0,1', '--out', out, '--json']));
    assert.equal(code, 0);
    const summary = JSON.parse(readFileSync(join(out, 'gallery.json'), 'utf8')) as {
      images: number[]; targets: string[]; models: { label: string; targetedSuccess: { pairs: number; rate: number; estimate: { value: number; n: number; low: number; high: number; method: string } }[]; cells: unknown[] }[];
    };
    assert.deepEqual(JSON.parse(printed), summary);
    assert.deepEqual(summary.images, [0, 3]);
    assert.deepEqual(summary.targets, ['c0', 'c1']);
    // One file, one label. Image 0 is c0 and image 3 is c1 (two per class, sorted folders),
    // so of 2 targets × 2 images each image drops its own class: 2 pairs.
    assert.deepEqual(summary.models.map((m) => m.label), ['tiny', 'tiny']);
    assert.deepEqual(summary.models[0]!.targetedSuccess.map((s) => s.pairs), [2, 2]);
    for (const s of summary.models.flatMap((m) => m.targetedSuccess)) {
      assert.deepEqual(s.estimate, proportionEstimate(Math.round(s.rate * 2), 2), 'gallery.json: each success rate with n and its Wilson interval');
    }
    assert.equal(summary.models[0]!.cells.length, 4);
    assert.ok(existsSync(join(out, 'gallery.html')));
    assert.ok(existsSync(join(out, 'gallery-tiny-eps8.png')));
    const html = readFileSync(join(out, 'gallery.html'), 'utf8');
    assert.ok(html.includes('Targeted success'));
    assert.ok(html.includes('target reached, n = 2 pairs') && html.includes('95% Wilson intervals over the 2 pairs'));
    const first = summary.models[0]!.targetedSuccess[0]!.estimate;
    assert.ok(html.includes(`${(100 * first.value).toFixed(1)}% [${(100 * first.low).toFixed(1)},`), 'the report shows the interval, not only the rate');
    // Without --json the printed line carries the interval too.
    const plain = await captureLog(() => galleryCommand(['--model', modelPath, '--data', join(dir, 'data'),
      '--images', '0', '--eps', '0.1', '--steps', '1', '--copies', '1', '--targets', 'c1', '--out', join(dir, 'plain')]));
    assert.match(plain.printed, /eps 26\/255: \d+\.\d% \[\d+\.\d, \d+\.\d\] \(n = 1\)/);

    const base = ['--model', modelPath, '--data', join(dir, 'data'), '--steps', '1', '--out', out];
    await assert.rejects(galleryCommand([...base, '--eps', '0']), (e) => e instanceof UsageError && /--eps 0/.test(e.message));
    await assert.rejects(galleryCommand([...base, '--images', '99']), (e) => e instanceof UsageError && /--images 99: an index below 20/.test(e.message));
    await assert.rejects(galleryCommand([...base, '--targets', 'zebra']), (e) => e instanceof UsageError && /--targets zebra/.test(e.message));
    await assert.rejects(galleryCommand(['--data', join(dir, 'data')]), (e) => e instanceof UsageError && /--model/.test(e.message));
    await assert.rejects(galleryCommand([...base.slice(2), '--model', join(dir, 'missing.safetensors')]), (e) => e instanceof UsageError && /missing\.safetensors/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

