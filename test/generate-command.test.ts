// `crossmax generate` from each model kind: a crossmax model with judges (several images per class, judged over R
// passes by the generator and by other model files; the same weights judging with the same seed must agree
// exactly), a torchvision ResNet state dict, and a CLIP folder with prompts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCommand } from '../src/cli/generate-command.js';
import { UsageError } from '../src/cli/args.js';
import { captureLog, tinyModelFile } from './helpers/self-ensemble.js';
import { disposeAll, manualSeed, zeros } from '../src/tensor/index.js';
import { ResNet } from '../src/nn/resnet.js';
import { saveSafetensors } from '../src/serialize/safetensors.js';
import { ClipModel, clipConfigFromHf, resnetArchitecture } from '../src/models/index.js';

test('crossmax generate --per-class --judge: grid, report, JSON with each judge\'s agreement', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-generate-'));
  try {
    const path = tinyModelFile(dir);
    const out = join(dir, 'out');
    const { code, printed } = await captureLog(() => generateCommand(['--model', path, '--judge', path, '--class', 'all', '--per-class', '2',
      '--steps', '2', '--copies', '2', '--passes', '3', '--out', out, '--json']));
    assert.equal(code, 0);
    const summary = JSON.parse(readFileSync(join(out, 'generate.json'), 'utf8')) as { classes: string[]; judgements: { judge: string; agreement: number; allPasses: number; perClass: Record<string, number> }[] };
    assert.deepEqual(JSON.parse(printed), summary);
    assert.equal(summary.classes.length, 10);
    assert.deepEqual(summary.judgements.map((j) => j.judge), ['tiny (generator)', 'tiny']);
    const [self, other] = summary.judgements as [typeof summary.judgements[0], typeof summary.judgements[0]];
    // Same weights, same seeded passes: the same verdicts.
    assert.equal(self.agreement, other.agreement);
    assert.deepEqual(self.perClass, other.perClass);
    assert.ok(self.agreement >= 0 && self.agreement <= 1 && self.allPasses <= self.agreement);
    // Both shares carry their number of images (10 classes × 2) and a 95% interval.
    const withIntervals = summary.judgements as unknown as { intervals: { agreement: { value: number; n: number; low: number; high: number; method: string }; allPasses: { value: number; n: number; low: number; high: number; method: string } } }[];
    for (const j of withIntervals) {
      assert.equal(j.intervals.agreement.n, 20);
      assert.equal(j.intervals.allPasses.n, 20);
      assert.equal(j.intervals.agreement.method, 'bootstrap-percentile');
      assert.equal(j.intervals.allPasses.method, 'wilson');
      assert.ok(j.intervals.agreement.low <= self.agreement && self.agreement <= j.intervals.agreement.high);
    }
    const perClassMean = Object.values(self.perClass).reduce((a, b) => a + b, 0) / 10;
    assert.ok(Math.abs(perClassMean - self.agreement) < 1e-12, 'equal images per class: the mean of the per-class shares');
    assert.ok(existsSync(join(out, 'generate.png')) && existsSync(join(out, 'generate.html')));
    // Without --json each judge's line carries both shares with their intervals and the number of images.
    const plain = await captureLog(() => generateCommand(['--model', path, '--judge', path, '--class', '0', '--steps', '1', '--copies', '1',
      '--passes', '2', '--out', join(dir, 'plain')]));
    assert.equal(plain.code, 0);
    assert.match(plain.printed, /tiny \(generator\) +gives the intended class \d+\.\d% \[\d+\.\d, \d+\.\d\] of passes, \d+\.\d% \[\d+\.\d, \d+\.\d\] on every pass \(95%, n = 1 images\)/);
    // A missing judge fails before the generation: 3,000 steps of the tiny model take a minute here, loading fails in ms.
    const start = Date.now();
    await assert.rejects(generateCommand(['--model', path, '--judge', join(dir, 'none.safetensors'), '--steps', '3000', '--class', '0', '--out', out]),
      (e) => e instanceof UsageError && /none\.safetensors/.test(e.message));
    assert.ok(Date.now() - start < 15_000, `the missing judge was found after ${Date.now() - start} ms, not before the generation`);
    // A judge of other classes is refused, naming what its classes were compared with (the generator's, not data's).
    const fiveClasses = tinyModelFile(dir, 5);
    await assert.rejects(generateCommand(['--model', path, '--judge', fiveClasses, '--steps', '1', '--class', '0', '--out', out]),
      (e) => e instanceof UsageError && e.message === `${fiveClasses} has 5 classes, the generator ${path} 10`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('crossmax generate: the parametrisation and augmentation flags reach the run and its record; bad values are named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-generate-tuning-'));
  try {
    const path = tinyModelFile(dir);
    const out = join(dir, 'out');
    const { code } = await captureLog(() => generateCommand(['--model', path, '--class', '0,1', '--steps', '2', '--copies', '2',
      '--resolutions', '20,1,2,4,8,2', '--squash', 'clamp', '--optimizer', 'adam', '--lr', '0.02', '--jitter', '2', '--noise', '0.05',
      '--flip', '--scale', '0.75,1', '--out', out, '--json']));
    assert.equal(code, 0);
    const summary = JSON.parse(readFileSync(join(out, 'generate.json'), 'utf8')) as Record<string, unknown>;
    const manifest = JSON.parse(readFileSync(join(out, 'images', 'manifest.json'), 'utf8')) as { settings: Record<string, unknown> };
    // The tiny model's input is 16 pixels: canvas 16 + 2·2; the sides sorted, the repeated 2 taken once.
    assert.equal(summary.canvas, 20);
    assert.equal(summary.resolutions, 5);
    assert.equal(summary['resolution sides'], '1, 2, 4, 8, 20');
    assert.deepEqual([summary.squash, summary.optimizer, summary.jitter, summary.noise, summary.flip, summary.scale, summary.lr],
      ['clamp', 'adam', 2, 0.05, true, [0.75, 1], 0.02]);
    assert.deepEqual(manifest.settings.resolutionSizes, [1, 2, 4, 8, 20]);
    assert.ok((summary.finalScores as number[]).every(Number.isFinite));
    // Defaults: every side of the canvas (16 + 2·4), tanh, SGD, DAS's noise, no flip or crop.
    await captureLog(() => generateCommand(['--model', path, '--class', '0', '--steps', '1', '--copies', '1', '--out', join(dir, 'defaults'), '--json']));
    const defaults = JSON.parse(readFileSync(join(dir, 'defaults', 'generate.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual([defaults.canvas, defaults['resolution sides'], defaults.squash, defaults.optimizer, defaults.noise, defaults.flip, defaults.scale],
      [24, '1–24 (every side)', 'tanh', 'sgd', 0.2, false, null]);
    const base = ['--model', path, '--class', '0', '--steps', '1', '--copies', '1', '--out', join(dir, 'bad')];
    await assert.rejects(generateCommand([...base, '--resolutions', '1,x']), (e) => e instanceof UsageError && /--resolutions 1,x: whole numbers/.test(e.message));
    await assert.rejects(generateCommand([...base, '--resolutions', '0,4']), (e) => e instanceof UsageError && /at least 1/.test(e.message));
    await assert.rejects(generateCommand([...base, '--resolutions', '1,40']), /resolutions 1,40: sides in \[1, 24\] \(the canvas: the 16-pixel input and 4 pixels of jitter/);
    await assert.rejects(generateCommand([...base, '--scale', '1,0.5']), (e) => e instanceof UsageError && /--scale 1,0.5: two numbers LO,HI/.test(e.message));
    await assert.rejects(generateCommand([...base, '--squash', 'sigmoid']), (e) => e instanceof UsageError && /--squash/.test(e.message));
    await assert.rejects(generateCommand([...base, '--aggregator', 'nonsense']), (e) => e instanceof UsageError && /--aggregator nonsense/.test(e.message));
    await assert.rejects(generateCommand([...base, '--aggregator', '']), (e) => e instanceof UsageError && /--aggregator : unknown aggregator ''/.test(e.message));
    // Another aggregation of the same members generates, judges and is recorded.
    await captureLog(() => generateCommand(['--model', path, '--class', '0', '--steps', '1', '--copies', '1', '--aggregator', 'mean-logits', '--out', join(dir, 'mean'), '--json']));
    assert.equal((JSON.parse(readFileSync(join(dir, 'mean', 'generate.json'), 'utf8')) as Record<string, unknown>).aggregator, 'mean-logits');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('crossmax generate --resnet: a torchvision ResNet read from its state dict alone, ImageNet normalisation, images with a manifest', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-generate-resnet-'));
  try {
    manualSeed(5);
    const resnet = new ResNet({ depth: 18, numClasses: 12, widthMultiplier: 0.125 });
    const path = join(dir, 'resnet18.safetensors');
    const state = resnet.stateDict();
    saveSafetensors(path, state);
    disposeAll(state);
    resnet.dispose();
    assert.deepEqual(resnetArchitecture(path), { depth: 18, numClasses: 12, inChannels: 3, widthMultiplier: 0.125, stem: 'imagenet' });
    const names = join(dir, 'names.txt');
    writeFileSync(names, Array.from({ length: 12 }, (_, i) => `thing ${i}`).join('\n'));
    const out = join(dir, 'out');
    const { code } = await captureLog(() => generateCommand(['--resnet', path, '--class', '3,thing 7', '--class-names', names, '--size', '32',
      '--steps', '2', '--copies', '2', '--out', out, '--json']));
    assert.equal(code, 0);
    const summary = JSON.parse(readFileSync(join(out, 'generate.json'), 'utf8')) as {
      'model kind': string; classes: string[]; canvas: number; resolutions: number; lr: number; finalScores: number[]; judgements: { judge: string; agreement: number }[];
    };
    assert.equal(summary['model kind'], 'resnet');
    assert.deepEqual(summary.classes, ['thing 3', 'thing 7']);
    // DAS's classifier settings, scaled: canvas 32 + 2·8, resolutions 1, 5, ..., 45.
    assert.equal(summary.canvas, 48);
    assert.equal(summary.resolutions, 12);
    assert.equal(summary.lr, 0.005);
    assert.equal(summary.finalScores.length, 2);
    assert.ok(summary.finalScores.every(Number.isFinite));
    assert.deepEqual(summary.judgements.map((j) => j.judge), ['resnet18 (generator)']);
    const manifest = JSON.parse(readFileSync(join(out, 'images', 'manifest.json'), 'utf8')) as { images: { file: string; target: string }[] };
    assert.deepEqual(manifest.images.map((i) => [i.file, i.target]), [['000.png', 'thing 3'], ['001.png', 'thing 7']]);
    assert.ok(existsSync(join(out, 'images', '001.png')));
    await assert.rejects(generateCommand(['--resnet', path, '--out', out]), (e) => e instanceof UsageError && /--resnet needs --class/.test(e.message));
    await assert.rejects(generateCommand(['--resnet', path, '--class', '12', '--out', out]), (e) => e instanceof UsageError && /index below 12/.test(e.message));
    await assert.rejects(generateCommand(['--resnet', path, '--model', path, '--class', '1']), (e) => e instanceof UsageError && /exactly one of/.test(e.message));
    await assert.rejects(generateCommand(['--resnet', path, '--class', '1', '--judge', path]), (e) => e instanceof UsageError && /--judge takes crossmax models/.test(e.message));
    const wrong = join(dir, 'wrong.safetensors');
    saveSafetensors(wrong, new Map([['conv1.weight', zeros([8, 3, 7, 7])], ['fc.weight', zeros([4, 64])], ['layer1.0.conv1.weight', zeros([8, 8, 3, 3])]]));
    await assert.rejects(generateCommand(['--resnet', wrong, '--class', '1', '--out', out]), /basic blocks \[1, 0, 0, 0\] per stage are no torchvision ResNet/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('crossmax generate --clip: one image per prompt, negative prompts, DAS\'s CLIP settings', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-generate-clip-'));
  try {
    const config = {
      text_config: { vocab_size: 50, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 8, eos_token_id: 2 },
      vision_config: { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, image_size: 16, patch_size: 8 },
      projection_dim: 8,
    };
    manualSeed(6);
    const clip = new ClipModel(clipConfigFromHf(config));
    const folder = join(dir, 'clip');
    mkdirSync(folder);
    const state = clip.stateDict();
    saveSafetensors(join(folder, 'model.safetensors'), state);
    disposeAll(state);
    clip.dispose();
    writeFileSync(join(folder, 'config.json'), JSON.stringify(config));
    writeFileSync(join(folder, 'merges.txt'), '#version: 0.2\n');
    writeFileSync(join(folder, 'vocab.json'), JSON.stringify({ 'a</w>': 5, 'b</w>': 6, 'c</w>': 7, '<|startoftext|>': 48, '<|endoftext|>': 49 }));
    const out = join(dir, 'out');
    const { code, printed } = await captureLog(() => generateCommand(['--clip', folder, '--prompt', 'a', '--prompt', 'b', '--negative', 'c',
      '--steps', '2', '--copies', '4', '--out', out]));
    assert.equal(code, 0);
    assert.match(printed, /generated 2 image\(s\)/);
    const summary = JSON.parse(readFileSync(join(out, 'generate.json'), 'utf8')) as { prompts: string[]; 'negative prompts': string[]; lr: number; canvas: number; finalScores: number[]; judgements: unknown[] };
    assert.deepEqual(summary.prompts, ['a', 'b']);
    assert.deepEqual(summary['negative prompts'], ['c']);
    assert.equal(summary.lr, 0.4);
    assert.equal(summary.canvas, 16 + 2 * 4);
    // Scores are mean weighted cosines over [prompt, negative]: within [−(1 + 0.3) / 2, (1 + 0.3) / 2].
    assert.ok(summary.finalScores.every((s) => Math.abs(s) <= 0.65 + 1e-6), `scores ${summary.finalScores.join(', ')}`);
    assert.deepEqual(summary.judgements, []);
    const manifest = JSON.parse(readFileSync(join(out, 'images', 'manifest.json'), 'utf8')) as { prompts: string[]; images: { target: string }[] };
    assert.deepEqual(manifest.images.map((i) => i.target), ['a', 'b']);
    await assert.rejects(generateCommand(['--clip', folder, '--out', out]), (e) => e instanceof UsageError && /--clip needs --prompt/.test(e.message));
    rmSync(join(folder, 'vocab.json'));
    await assert.rejects(generateCommand(['--clip', folder, '--prompt', 'a', '--out', out]), (e) => e instanceof UsageError && /vocab\.json and merges\.txt/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
