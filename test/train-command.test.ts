// `crossmax train` with the model's own settings from the command line (the paper's ablations): --resolutions,
// --noise, --k, --heads and --model-config reach the model, its file records them, and `crossmax info --model`
// prints that record; contradictory flags are usage errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { memberWeightsFlag, trainCommand, withModelFlags } from '../src/cli/train-command.js';
import { loadSafetensors } from '../src/serialize/safetensors.js';
import { infoCommand } from '../src/cli/info.js';
import { UsageError, parseCommandArgs } from '../src/cli/args.js';
import { TRAIN_OPTIONS } from '../src/cli/train-command.js';
import { presetConfig, readModelInfo } from '../src/ensemble/index.js';
import { captureLog } from './helpers/self-ensemble.js';

let dir = '';
let data = '';
const savedCache = process.env.CROSSMAX_CACHE_DIR;

/** An image folder of 32×32 PNGs: two classes, four training and two test images each. */
function imageFolder(root: string): string {
  for (const [split, count] of [['train', 4], ['test', 2]] as const) {
    for (const [c, cls] of ['circle', 'square'].entries()) {
      mkdirSync(join(root, split, cls), { recursive: true });
      for (let i = 0; i < count; i++) {
        const png = new PNG({ width: 32, height: 32 });
        for (let p = 0; p < 32 * 32; p++) {
          png.data.set([(40 * c + 7 * i + p) & 0xff, (90 * c + 3 * p) & 0xff, (11 * i + 5 * p) & 0xff, 255], 4 * p);
        }
        writeFileSync(join(root, split, cls, `${i}.png`), PNG.sync.write(png));
      }
    }
  }
  return root;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'crossmax-train-command-'));
  process.env.CROSSMAX_CACHE_DIR = join(dir, 'cache');
  data = imageFolder(join(dir, 'data'));
});

after(() => {
  if (savedCache === undefined) delete process.env.CROSSMAX_CACHE_DIR;
  else process.env.CROSSMAX_CACHE_DIR = savedCache;
  rmSync(dir, { recursive: true, force: true });
});

const quick = ['--epochs', '1', '--batch-size', '4', '--eval-limit', '4', '--threads', '1', '--json'];

test('crossmax train --resolutions 32,16 --k 2 --heads: the model trains and its file records the settings', async () => {
  const out = join(dir, 'run');
  const { code, printed } = await captureLog(() => trainCommand(['--data', data, '--out', out, '--resolutions', '32,16', '--k', '2',
    '--heads', 'layer3.1,layer4.1', ...quick]));
  assert.equal(code, 0);
  const result = JSON.parse(printed) as { model: string; evaluation: { count: number } };
  assert.equal(result.evaluation.count, 4);
  const { config } = readModelInfo(result.model);
  assert.deepEqual(config.prior?.resolutions, [32, 16]);
  assert.equal(config.prior?.resolutionFactors, undefined);
  assert.deepEqual(config.aggregator, { name: 'crossmax', k: 2, subtractMemberMax: true, subtractClassMax: true });
  assert.deepEqual(config.heads.features, ['layer3.1', 'layer4.1']);
  assert.deepEqual(config.classes, ['circle', 'square']);
  // The record as `crossmax info --model` prints it: the JSON --model-config takes.
  const info = await captureLog(async () => infoCommand(['--model', result.model]));
  assert.deepEqual(JSON.parse(info.printed), config);
  assert.throws(() => infoCommand(['--model', join(dir, 'none.safetensors')]), (e) => e instanceof UsageError && /none\.safetensors.*does not exist/.test(e.message));
});

test('crossmax train --model-config FILE --noise 0: a whole model configuration from JSON, the flags on top', async () => {
  const file = join(dir, 'tiny-wrn.json');
  writeFileSync(file, JSON.stringify({
    backbone: { arch: 'wide-resnet', depth: 10, widenFactor: 1 },
    prior: { preset: 'paper', resolutions: [32, 8] },
    heads: { features: ['block1.layer.0', 'avgpool'], kind: 'pooled' },
    aggregator: { name: 'crossmax', k: 'median' },
  }));
  const out = join(dir, 'run-config');
  const { code, printed } = await captureLog(() => trainCommand(['--data', data, '--out', out, '--model-config', file, '--noise', '0', ...quick]));
  assert.equal(code, 0);
  const { config } = readModelInfo((JSON.parse(printed) as { model: string }).model);
  assert.deepEqual(config.backbone, { arch: 'wide-resnet', depth: 10, widenFactor: 1, dropRate: 0, biasLast: true });
  assert.deepEqual(config.prior?.resolutions, [32, 8]);
  assert.equal(config.prior?.noise, false);
  assert.equal(config.aggregator.k, 'median');
  assert.equal(config.numClasses, 2);
  writeFileSync(file, JSON.stringify({ backbone: { arch: 'wide-resnet', depth: 10 }, numClasses: 10, prior: null, heads: { features: [] } }));
  await assert.rejects(trainCommand(['--data', data, '--out', out, '--model-config', file, ...quick]),
    (e) => e instanceof UsageError && /numClasses is 10, the data has 2 classes/.test(e.message));
  writeFileSync(file, JSON.stringify({ backbone: { arch: 'wide-resnet', depth: 10 }, prior: null, heads: { features: ['layer9'] } }));
  await assert.rejects(trainCommand(['--data', data, '--out', out, '--model-config', file, ...quick]),
    (e) => e instanceof UsageError && /does not build: .*no feature 'layer9'/.test(e.message));
});

test('model flags: what each sets, and the contradictions refused', () => {
  const flags = (...args: string[]) => parseCommandArgs(args, TRAIN_OPTIONS).values;
  const base = presetConfig('cifar-small');
  const changed = withModelFlags(base, flags('--resolutions', '16,8,4', '--noise', '0.1', '--k', 'median'));
  assert.deepEqual(changed.prior, { preset: 'paper', resolutions: [16, 8, 4], noise: { downAmplitude: 0.1, upAmplitude: 0.1 } });
  assert.deepEqual(changed.aggregator, { name: 'crossmax', k: 'median' });
  assert.deepEqual(base.prior, { preset: 'paper' }, 'the given configuration is not changed');
  assert.deepEqual(withModelFlags(base, flags('--aggregator', 'soft-crossmax', '--k', '4'), 'soft-crossmax').aggregator, { name: 'soft-crossmax', k: 4 });
  assert.deepEqual(withModelFlags(base, flags()), base);
  assert.throws(() => withModelFlags(base, flags('--k', '2'), 'mean-logits'), /--k is CrossMax's k: .*not mean-logits/);
  assert.throws(() => withModelFlags(base, flags('--no-prior', '--resolutions', '32')), /--resolutions sets the multi-resolution prior, which --no-prior removes/);
  assert.throws(() => withModelFlags(base, flags('--resolutions', '32,x')), /--resolutions 32,x: whole numbers of at least 1, comma-separated \(got 'x'\), e\.g\. 32,16,8,4/);
  assert.throws(() => withModelFlags(base, flags('--k', '0')), /--k 0: must be at least 1/);
});

test('--member-weights fc: the notebook\'s first stage trains the backbone\'s classifier alone; heads keep their weights', async () => {
  const first = join(dir, 'members-first');
  const firstRun = await captureLog(() => trainCommand(['--data', data, '--out', first, ...quick]));
  assert.equal(firstRun.code, 0);
  const start = (JSON.parse(firstRun.printed) as { model: string }).model;
  const second = join(dir, 'members-fc');
  // No weight decay: a member with weight 0 gets a zero gradient, so plain SGD leaves it exactly as it was.
  const secondRun = await captureLog(() => trainCommand(['--data', data, '--out', second, '--mode', 'fine-tune', '--init-model', start,
    '--member-weights', 'fc', '--weight-decay', '0', ...quick]));
  assert.equal(secondRun.code, 0);
  const before = loadSafetensors(start).tensors;
  const after = loadSafetensors((JSON.parse(secondRun.printed) as { model: string }).model).tensors;
  const differs = (name: string) => before.get(name)!.sub(after.get(name)!).abs().max().item() > 0;
  // The heads' parameters; their BatchNorm statistics (buffers) still follow the data in training mode.
  const heads = [...before.keys()].filter((name) => name.startsWith('heads.') && !/running_|num_batches_tracked/.test(name));
  assert.ok(heads.length > 0, `a head among ${[...before.keys()].slice(0, 5).join(', ')}...`);
  for (const name of heads) assert.ok(!differs(name), `${name} changed although its member's weight is 0`);
  assert.ok(differs('backbone.fc.weight') && differs('backbone.conv1.weight'), 'the fc and the backbone train');
  for (const t of [...before.values(), ...after.values()]) t.dispose();
});

test('--member-weights: numbers in member order or member names; wrong counts, names and all-zero refused', () => {
  const flags = (...args: string[]) => parseCommandArgs(args, TRAIN_OPTIONS).values;
  const members = ['layer3.1', 'layer4.1', 'fc'];
  assert.equal(memberWeightsFlag(flags(), members), undefined);
  assert.deepEqual(memberWeightsFlag(flags('--member-weights', 'fc'), members), [0, 0, 1]);
  assert.deepEqual(memberWeightsFlag(flags('--member-weights', 'layer4.1,fc'), members), [0, 1, 1]);
  assert.deepEqual(memberWeightsFlag(flags('--member-weights', '1,0.5,2'), members), [1, 0.5, 2]);
  assert.throws(() => memberWeightsFlag(flags('--member-weights', '1,2'), members), /2 weights for 3 members \(layer3\.1, layer4\.1, fc\)/);
  assert.throws(() => memberWeightsFlag(flags('--member-weights', 'fc,layer9'), members), /no member named layer9; this model's members are layer3\.1, layer4\.1, fc/);
  assert.throws(() => memberWeightsFlag(flags('--member-weights', '0,0,0'), members), /--member-weights 0,0,0: memberWeights are all 0: no member would be trained/);
  assert.throws(() => memberWeightsFlag(flags('--member-weights', '1,-1,0'), members), /--member-weights 1,-1,0: memberWeights must be finite numbers >= 0, got -1/);
});
