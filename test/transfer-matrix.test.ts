// Transfer attacks: which source sets craft, the logit ensemble, the matrix's bookkeeping on models whose answers
// are known (a white-box copy of the source, a target that ignores its input), and `crossmax transfer` end to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generator, liveTensorCount, noGrad, rand, randint, tensor, tidy, zeros, type Tensor } from '../src/tensor/index.js';
import { Linear } from '../src/nn/index.js';
import { LogitEnsemble, sourceSets, transferMatrix } from '../src/robustness/index.js';
import { transferCommand } from '../src/cli/transfer-command.js';
import { UsageError } from '../src/cli/args.js';
import { captureLog, tinyModelFile } from './helpers/self-ensemble.js';
import { tinyImageFolder } from './helpers/image-folder.js';
import { proportionEstimate } from '../src/util/statistics.js';
import { modelLabel } from '../src/cli/model-files.js';

function linear(seed: number): { forward(x: Tensor): Tensor; layer: Linear } {
  const layer = new Linear(3 * 4 * 4, 3, { generator: new Generator(seed) });
  return { layer, forward: (x: Tensor) => tidy(() => layer.forward(x.flatten(1))) };
}

test('source sets: each alone, all as one, or both (the ensemble only for two or more)', () => {
  assert.deepEqual(sourceSets(['a', 'b']), [['a'], ['b'], ['a', 'b']]);
  assert.deepEqual(sourceSets(['a']), [['a']]);
  assert.deepEqual(sourceSets(['a', 'b'], 'each'), [['a'], ['b']]);
  assert.deepEqual(sourceSets(['a', 'b'], 'ensemble'), [['a', 'b']]);
  assert.throws(() => sourceSets([]), /at least one source/);
  assert.throws(() => sourceSets(['a'], 'some' as 'each'), /craft must be/);
});

test('the logit ensemble averages its models\' logits and refuses mismatched ones', () => {
  const [a, b] = [linear(1), linear(2)];
  tidy(() => {
    const x = rand([5, 3, 4, 4], { generator: new Generator(3) });
    const mean = new LogitEnsemble([a, b]).forward(x);
    assert.ok(mean.sub(a.forward(x).add(b.forward(x)).div(2)).abs().max().item() < 1e-6);
    const other = { forward: (t: Tensor) => zeros([t.shape[0]!, 4]) };
    assert.throws(() => new LogitEnsemble([a, other]).forward(x), /disagree on the logits' shape: \[5,3\] vs \[5,4\]/);
  });
  assert.throws(() => new LogitEnsemble([]), /at least one model/);
  a.layer.dispose();
  b.layer.dispose();
});

test('transfer matrix: a copy of the source falls as the source does; a target that ignores its input does not', () => {
  const source = linear(4);
  const copy = linear(5);
  noGrad(() => { copy.layer.weight.copy_(source.layer.weight); copy.layer.bias!.copy_(source.layer.bias!); });
  // Always predicts class 0 whatever the image.
  const constant = { forward: (x: Tensor) => tidy(() => tensor([5, 0, 0]).view([1, 3]).expand([x.shape[0]!, 3]).add(x.sum().mul(0))) };
  const before = liveTensorCount();
  const images = rand([12, 3, 4, 4], { generator: new Generator(6) });
  const labels = randint(0, 3, [12], { generator: new Generator(7) });
  const y = labels.toArray().map(Number);
  const matrix = transferMatrix([{ name: 'source', model: source }], [{ name: 'copy', model: copy }, { name: 'constant', model: constant }], images, labels,
    { eps: 1, steps: 10, passes: 3 });
  try {
    const sourceCorrect = noGrad(() => tidy(() => source.forward(images).argmax({ dim: 1 }).toArray().map(Number))).map((p, i) => p === y[i]);
    const share = (flags: boolean[]) => flags.filter(Boolean).length / flags.length;
    assert.equal(matrix.clean[0]!.accuracy['all-R'], share(sourceCorrect));
    assert.equal(matrix.clean[1]!.accuracy['all-R'], share(y.map((l) => l === 0)));
    assert.equal(matrix.rows.length, 1);
    const row = matrix.rows[0]!;
    assert.deepEqual(row.sources, ['source']);
    assert.ok(tidy(() => row.adversarial.sub(images).abs().max().item()) <= 1 + 1e-6);
    // eps 1 lets PGD fool a linear model on every image it classified correctly: the copy is then always wrong.
    assert.equal(row.transferred[0]!.accuracy['all-R'], 0);
    assert.equal(row.transferred[1]!.accuracy['all-R'], share(y.map((l) => l === 0)));
    assert.equal(row.sourceFooled.filter(Boolean).length, 12, 'clean mistakes count as fooled, as for every attack');
    assert.throws(() => transferMatrix([{ name: 's', model: source }, { name: 's', model: copy }], [{ name: 't', model: copy }], images, labels), /two sources are named 's'/);
    assert.throws(() => transferMatrix([{ name: 's', model: source }], [], images, labels), /at least one target/);
  } finally {
    for (const r of matrix.rows) r.adversarial.dispose();
  }
  images.dispose();
  labels.dispose();
  assert.equal(liveTensorCount(), before);
  source.layer.dispose();
  copy.layer.dispose();
});

test('crossmax transfer: table, report, images with manifest; bad flags are usage errors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-transfer-'));
  try {
    tinyImageFolder(join(dir, 'data'), { perClass: 1 });
    const path = tinyModelFile(dir);
    const out = join(dir, 'out');
    const { code, printed } = await captureLog(() => transferCommand(['--source', path, '--target', path, '--data', join(dir, 'data'), '--n', '4',
      '--steps', '2', '--passes', '2', '--out', out, '--save-images', '--json']));
    assert.equal(code, 0);
    const summary = JSON.parse(readFileSync(join(out, 'transfer.json'), 'utf8')) as {
      n: number; targets: { name: string }[];
      rows: { sources: string[]; sourceFooled: number; sourceFooledEstimate: unknown; sourceFooledPerImage: string; transferred: { intervals: Record<string, { n: number } | null> }[] }[];
    };
    assert.deepEqual(JSON.parse(printed), summary);
    assert.equal(summary.n, 4);
    // The same file as source and target has one name.
    assert.deepEqual(summary.rows.map((r) => r.sources), [['tiny']]);
    assert.deepEqual(summary.targets.map((t) => t.name), ['tiny']);
    // The share that fools the sources carries n and its Wilson interval, and the per-image verdicts behind it.
    const row = summary.rows[0]!;
    assert.match(row.sourceFooledPerImage, /^[01]{4}$/);
    const fooled = [...row.sourceFooledPerImage].filter((c) => c === '1').length;
    assert.equal(row.sourceFooled, fooled / 4);
    assert.deepEqual(row.sourceFooledEstimate, proportionEstimate(fooled, 4));
    assert.equal(row.transferred[0]!.intervals['all-R']!.n, 4);
    const html = readFileSync(join(out, 'transfer.html'), 'utf8');
    const e = proportionEstimate(fooled, 4);
    assert.ok(html.includes(`${(100 * e.value).toFixed(1)}% [${(100 * e.low).toFixed(1)},`), 'the report shows the fooled share with its interval');
    assert.ok(existsSync(join(out, 'transfer.html')));
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { rows: { images: { file: string; trueClass: string }[] }[] };
    assert.equal(manifest.rows[0]!.images.length, 4);
    assert.equal(manifest.rows[0]!.images[0]!.trueClass, 'c0');
    assert.ok(existsSync(join(out, manifest.rows[0]!.images[3]!.file)));

    const base = ['--data', join(dir, 'data'), '--out', out];
    await assert.rejects(transferCommand([...base, '--target', path]), (e) => e instanceof UsageError && /--source/.test(e.message));
    await assert.rejects(transferCommand([...base, '--source', path]), (e) => e instanceof UsageError && /--target/.test(e.message));
    await assert.rejects(transferCommand([...base, '--source', path, '--target', path, '--craft', 'all']), (e) => e instanceof UsageError && /--craft all/.test(e.message));
    await assert.rejects(transferCommand([...base, '--source', join(dir, 'nope.safetensors'), '--target', path]), (e) => e instanceof UsageError && /nope\.safetensors/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('model labels: the run folder\'s name, one name per file, namesakes numbered', () => {
  const all = ['runs/a/model.safetensors', 'other/a/model.safetensors', 'runs/b/model.safetensors', 'w/c.safetensors', './runs/a/model.safetensors'];
  assert.deepEqual(all.map((p) => modelLabel(p, all)), ['a (1)', 'a (2)', 'b', 'c', 'a (1)']);
});
