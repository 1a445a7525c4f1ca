// `crossmax eval --robust` / `crossmax attack` settings that decide what a number means: another aggregator of the
// same members (the mean-logit ablation), the cpu budget's EOT for AutoAttack 'rand', and EOT 1 for a model
// without the prior (deterministic, so more draws would only repeat the same gradient).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attackCommand, ROBUST_OPTIONS, robustEvalCommand } from '../src/cli/robust-command.js';
import { parseCommandArgs, UsageError } from '../src/cli/args.js';
import { buildSelfEnsemble, saveModel } from '../src/ensemble/index.js';
import { manualSeed } from '../src/tensor/index.js';
import { captureLog, tinyModelFile } from './helpers/self-ensemble.js';
import { tinyImageFolder } from './helpers/image-folder.js';

interface AttackRecord { name: string; options: { eot?: number; steps?: number; transferEot?: number; refineEot?: number } }
const readResults = (dir: string) => JSON.parse(readFileSync(join(dir, 'robust.json'), 'utf8')) as { model: string; attacks: AttackRecord[] };
const robust = (args: string[]) => captureLog(() => robustEvalCommand(parseCommandArgs(args, ROBUST_OPTIONS).values));

test('--aggregator attacks the same members through another aggregator, and says so', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-robust-'));
  try {
    const model = tinyModelFile(dir);
    const data = tinyImageFolder(join(dir, 'data'), { perClass: 1 });
    const report = join(dir, 'report');
    const { code } = await captureLog(() => attackCommand(['--model', model, '--data', data, '--attack', 'pgd', '--steps', '2', '--n', '4',
      '--aggregator', 'mean-logits', '--re-evaluations', '2', '--out', join(dir, 'new', 'out'), '--report', report, '--json'], (a) => parseCommandArgs(a, ROBUST_OPTIONS)));
    assert.equal(code, 0);
    assert.match(readResults(report).model, /\(aggregator mean-logits\)$/);
    // --out is made when missing.
    assert.ok(existsSync(join(dir, 'new', 'out', 'adversarial.safetensors')) && existsSync(join(dir, 'new', 'out', 'adversarial.png')));
    await assert.rejects(robust(['--model', model, '--data', data, '--aggregator', 'vote', '--n', '1']), (e) => e instanceof UsageError && /--aggregator vote: one of crossmax/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("budget cpu: AutoAttack 'rand' with EOT 4 instead of 20; without the prior every EOT is 1", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-robust-'));
  try {
    const stochastic = tinyModelFile(dir);
    const data = tinyImageFolder(join(dir, 'data'), { perClass: 1 });
    const common = ['--data', data, '--n', '3', '--steps', '1', '--re-evaluations', '2', '--no-masking', '--json'];
    const randReport = join(dir, 'rand');
    assert.equal((await robust(['--model', stochastic, '--suite', 'autoattack-rand', '--budget', 'cpu', '--report', randReport, ...common])).code, 0);
    assert.deepEqual(readResults(randReport).attacks.map((a) => [a.name, a.options.eot, a.options.steps]), [['apgd-ce', 4, 1], ['apgd-dlr', 4, 1]]);

    manualSeed(4);
    const plain = buildSelfEnsemble({
      backbone: { arch: 'wide-resnet', depth: 10, widenFactor: 1 }, numClasses: 10, inputSize: 16, prior: null,
      heads: { features: ['block1.layer.0', 'avgpool'], kind: 'pooled' }, aggregator: { name: 'crossmax', k: 2 },
    });
    mkdirSync(join(dir, 'plain'));
    const plainPath = saveModel(plain, join(dir, 'plain', 'model.safetensors'));
    plain.dispose();
    const plainReport = join(dir, 'plain-report');
    assert.equal((await robust(['--model', plainPath, '--suite', 'worst-case', '--budget', 'quick', '--report', plainReport, ...common])).code, 0);
    for (const a of readResults(plainReport).attacks) {
      if ('eot' in a.options) assert.equal(a.options.eot, 1, `${a.name}: eot ${a.options.eot}`);
      if ('transferEot' in a.options) assert.deepEqual([a.options.transferEot, a.options.refineEot], [1, 1], a.name);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('eval --robust keeps its finished batches in REPORT/robust-checkpoint while it runs, removes them at the end, and refuses another evaluation\'s', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-robust-'));
  try {
    const model = tinyModelFile(dir);
    const data = tinyImageFolder(join(dir, 'data'), { perClass: 1 });
    const report = join(dir, 'report');
    const common = ['--model', model, '--data', data, '--attack', 'pgd', '--steps', '2', '--n', '4', '--re-evaluations', '2', '--no-masking', '--report', report, '--json'];
    assert.equal((await robust(common)).code, 0);
    assert.ok(existsSync(join(report, 'robust.json')));
    assert.ok(!existsSync(join(report, 'robust-checkpoint')), 'a finished evaluation leaves no checkpoint behind');

    // What a run of another model killed part-way leaves: its manifest and a finished batch.
    const store = join(report, 'robust-checkpoint');
    mkdirSync(store);
    writeFileSync(join(store, 'manifest.json'), JSON.stringify({ format: 'crossmax-robustness-checkpoint-v1', identity: { model: '0'.repeat(64), aggregator: "the model's own", data: 'elsewhere', device: 'cpu' } }));
    writeFileSync(join(store, 'batch.safetensors'), '');
    await assert.rejects(robust([...common, '--resume']), /holds the progress of another evaluation \(model: '0{64}' there, '[0-9a-f]{64}' here; data: 'elsewhere' there/);
    assert.ok(existsSync(join(store, 'batch.safetensors')), 'nothing deleted without --overwrite');
    assert.equal((await robust([...common, '--overwrite'])).code, 0);
    assert.ok(!existsSync(store));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
