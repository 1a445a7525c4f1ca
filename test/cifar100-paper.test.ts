// The paper's own route on CIFAR-100, end to end on a handful of images: `crossmax train --preset paper --pretrained
// resnet152.safetensors` (an ImageNet-layout ResNet-152, here with random weights written by the test; the views at
// 224 px; the notebook's fine-tuning with Adam 3.3e-5), then the notebook's head training (--mode heads, one head at
// a time) from that model, and the two stages' model files answer 100 classes. Heavy for a unit test (ResNet-152 at
// 224 px): two training images, one epoch, batch 2; run with CROSSMAX_PAPER_ROUTE_TEST=1.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ResNet } from '../src/nn/resnet.js';
import { saveSafetensors } from '../src/serialize/safetensors.js';
import { disposeAll, manualSeed } from '../src/tensor/index.js';
import { readModelInfo } from '../src/ensemble/index.js';
import { trainCommand } from '../src/cli/train-command.js';
import { captureLog } from './helpers/self-ensemble.js';
import { pngBytes, rgbPixels, writeShard } from './helpers/shards.js';

const work = mkdtempSync(join(tmpdir(), 'crossmax-cifar100-paper-'));
const savedCache = process.env.CROSSMAX_CACHE_DIR;
process.env.CROSSMAX_CACHE_DIR = join(work, 'cache');
after(() => {
  if (savedCache === undefined) delete process.env.CROSSMAX_CACHE_DIR;
  else process.env.CROSSMAX_CACHE_DIR = savedCache;
  rmSync(work, { recursive: true, force: true });
});

// Minutes on 2 cores (ResNet-152 at 224 px, 170 M parameters with the flatten heads), so CI runs it only when asked.
const enabled = process.env.CROSSMAX_PAPER_ROUTE_TEST === '1';

test('crossmax train --preset paper --pretrained resnet152.safetensors on CIFAR-100-shaped shards, then --mode heads', { skip: enabled ? false : 'set CROSSMAX_PAPER_ROUTE_TEST=1 (minutes: ResNet-152 at 224 px)' }, async () => {
  // torchvision's resnet152() layout (3-channel 7x7 stem, 1000-class fc), random weights.
  manualSeed(1);
  const imagenet = new ResNet({ depth: 152 });
  const weights = imagenet.stateDict();
  const pretrained = join(work, 'resnet152.safetensors');
  saveSafetensors(pretrained, weights);
  disposeAll(weights);
  imagenet.dispose();

  const data = join(work, 'shards');
  for (const [split, n] of [['train', 2], ['test', 2]] as const) {
    writeShard(join(data, split, `${split}-00.tar`), Array.from({ length: n }, (_, i): [string, Uint8Array | string][] => [
      [`${String(i).padStart(5, '0')}.png`, pngBytes(rgbPixels(32, 32, i + (split === 'test' ? 50 : 0)), 32, 32)],
      [`${String(i).padStart(5, '0')}.cls`, String(split === 'test' ? 90 + i : 3 * i)],
    ]).flat());
  }
  writeFileSync(join(data, 'classes.txt'), Array.from({ length: 100 }, (_, i) => `class${i}`).join('\n'));
  const common = ['--data', `wds:${data}`, '--epochs', '1', '--batch-size', '2', '--eval-limit', '2', '--optimizer', 'adam',
    '--lr', '3.3e-5', '--schedule', 'constant', '--threads', '1', '--json'];

  const stage1 = join(work, 'paper');
  const first = await captureLog(() => trainCommand(['--preset', 'paper', '--pretrained', pretrained, '--mode', 'fine-tune', '--out', stage1, ...common]));
  assert.equal(first.code, 0);
  const one = JSON.parse(first.printed) as { model: string; evaluation: { count: number; aggregators: { name: string }[] } };
  assert.equal(one.evaluation.count, 2);
  const info = readModelInfo(one.model);
  assert.equal(info.config.numClasses, 100);
  assert.equal(info.config.backbone.depth, 152);
  assert.deepEqual(info.config.inputAdapter?.resize?.size, [224, 224]);

  const second = await captureLog(() => trainCommand(['--mode', 'heads', '--init-model', one.model, '--out', join(work, 'heads'), ...common]));
  assert.equal(second.code, 0);
  const two = JSON.parse(second.printed) as { model: string; evaluation: { memberAccuracies: number[] } };
  // The notebook's members: heads on 7 layers plus the backbone's fc.
  assert.equal(two.evaluation.memberAccuracies.length, 8);
  assert.equal(readModelInfo(two.model).config.numClasses, 100);
});
