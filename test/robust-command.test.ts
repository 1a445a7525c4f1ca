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
import { buildSelfEnsemble, loadModel, MeanLogits, saveModel } from '../src/ensemble/index.js';
import { FGSM } from '../src/attacks/index.js';
import { loadData } from '../src/cli/datasets.js';
import { savePng } from '../src/report/index.js';
import { loadSafetensors } from '../src/serialize/safetensors.js';
import { Generator, keep, manualSeed, noGrad, rand, tidy } from '../src/tensor/index.js';
import { captureLog, tinyModelFile } from './helpers/self-ensemble.js';
import { tinyImageFolder } from './helpers/image-folder.js';

interface AttackRecord { name: string; options: { eot?: number; steps?: number; queries?: number; rescaleSchedule?: boolean; transferEot?: number; refineEot?: number } }
const readResults = (dir: string) => JSON.parse(readFileSync(join(dir, 'robust.json'), 'utf8')) as {
  model: string; attacks: AttackRecord[]; perImage: { cleanPredicted: number[] };
};
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
    await assert.rejects(robust(['--model', model, '--data', data, '--aggregator', 'vote', '--n', '1']), (e) => e instanceof UsageError && /--aggregator vote: unknown aggregator 'vote' \(one of crossmax/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--aggregator mean-logits: the clean passes and the attack itself go through the mean of logits, not CrossMax', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-robust-'));
  try {
    // Without the prior the model is deterministic, so the command's numbers and images can be replayed here exactly.
    manualSeed(4);
    const built = buildSelfEnsemble({
      backbone: { arch: 'wide-resnet', depth: 10, widenFactor: 1 }, numClasses: 10, inputSize: 16, prior: null,
      heads: { features: ['block1.layer.0', 'avgpool'], kind: 'pooled' }, aggregator: { name: 'crossmax', k: 2 },
    });
    mkdirSync(join(dir, 'plain'));
    const modelPath = saveModel(built, join(dir, 'plain', 'model.safetensors'));
    built.dispose();
    using model = loadModel(modelPath);
    const mean = model.withAggregator(new MeanLogits());
    // Twenty images labelled with the mean-logit model's own predictions (on the PNG-quantised pixels), so that they
    // start correctly classified under --aggregator mean-logits and the attack runs on them; a class no image went
    // to gets a filler image (an image folder has no empty class).
    const data = join(dir, 'data');
    tidy(() => {
      const images = rand([30, 3, 16, 16], { generator: new Generator(12) }).mul(255).round().div(255);
      const predicted = noGrad(() => mean.forward(images.narrow(0, 0, 20)).argmax({ dim: 1 }).toArray());
      for (let c = 0; c < 10; c++) {
        mkdirSync(join(data, 'test', `c${c}`), { recursive: true });
        if (!predicted.includes(c)) savePng(join(data, 'test', `c${c}`, 'filler.png'), images.select(0, 20 + c));
      }
      predicted.forEach((c, i) => savePng(join(data, 'test', `c${c}`, `${String(i).padStart(2, '0')}.png`), images.select(0, i)));
    });
    const testSet = await loadData(data, 'test');
    const n = testSet.length;
    const batch = testSet.batch([...Array(n).keys()]);
    const expected = tidy(() => {
      const meanPredicted = noGrad(() => mean.forward(batch.images).argmax({ dim: 1 }).toArray());
      const labels = batch.labels.toArray();
      assert.ok(meanPredicted.filter((p, i) => p === labels[i]).length >= 20, 'the twenty start correctly classified');
      const crossMaxPredicted = noGrad(() => model.forward(batch.images).argmax({ dim: 1 }).toArray());
      assert.notDeepEqual(crossMaxPredicted, meanPredicted, 'not vacuous: CrossMax disagrees with the mean of logits on some image');
      // FGSM through the mean of logits; the command keeps an image's adversarial version where it fooled the model
      // (an image misclassified to begin with is not attacked: FGSM returns it as it is).
      const attack = new FGSM(mean, { eps: 8 / 255 }).run(batch.images, batch.labels);
      assert.ok(attack.success.includes(true), 'not vacuous: FGSM fools some image');
      return { meanPredicted, adversarial: keep(attack.adversarial), success: attack.success };
    });
    const report = join(dir, 'report');
    const out = join(dir, 'out');
    const { code } = await captureLog(() => attackCommand(['--model', modelPath, '--data', data, '--attack', 'fgsm', '--n', String(n),
      '--aggregator', 'mean-logits', '--re-evaluations', '1', '--out', out, '--report', report, '--json'], (a) => parseCommandArgs(a, ROBUST_OPTIONS)));
    assert.equal(code, 0);
    assert.deepEqual(readResults(report).perImage.cleanPredicted, expected.meanPredicted);
    const saved = loadSafetensors(join(out, 'adversarial.safetensors'));
    tidy(() => {
      const written = saved.tensors.get('adversarial')!;
      expected.success.forEach((fooled, i) => {
        const want = fooled ? expected.adversarial.select(0, i) : batch.images.select(0, i);
        const difference = written.select(0, i).sub(want).abs().max().item();
        assert.ok(difference < 1e-6, `image ${i} (${fooled ? 'fooled' : 'not fooled'}): ${difference} from the mean-logit FGSM's`);
      });
    });
    for (const t of [...saved.tensors.values(), expected.adversarial, batch.images, batch.labels]) t.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--attack square is AutoAttack\'s Square and takes --queries, not --steps; --eot sets AutoAttack rand\'s EOT, also above 20', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-robust-'));
  try {
    const model = tinyModelFile(dir);
    const data = tinyImageFolder(join(dir, 'data'), { perClass: 1 });
    const common = ['--model', model, '--data', data, '--n', '2', '--re-evaluations', '1', '--no-masking', '--json'];
    const squareReport = join(dir, 'square');
    assert.equal((await robust([...common, '--attack', 'square', '--queries', '3', '--report', squareReport])).code, 0);
    const [square] = readResults(squareReport).attacks;
    assert.deepEqual([square!.options.queries, square!.options.rescaleSchedule], [3, false]);
    await assert.rejects(robust([...common, '--attack', 'square', '--steps', '3']), (e) => e instanceof UsageError && /--attack square takes --queries N/.test(e.message));
    await assert.rejects(robust([...common, '--attack', 'pgd', '--queries', '3']), (e) => e instanceof UsageError && /--queries sets Square's queries/.test(e.message));
    const randReport = join(dir, 'rand');
    assert.equal((await robust([...common, '--suite', 'autoattack-rand', '--steps', '1', '--eot', '25', '--report', randReport])).code, 0);
    assert.deepEqual(readResults(randReport).attacks.map((a) => [a.name, a.options.eot]), [['apgd-ce', 25], ['apgd-dlr', 25]]);
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
