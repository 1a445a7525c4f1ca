// Paired comparisons of two results on the same images (`crossmax compare`), the interval columns of the reports
// and the CLI's text, and scripts/readme-intervals.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generator, noGrad, rand, setNumThreads, tidy, type Tensor } from '../src/tensor/index.js';
import { Linear, NoisyLinear } from './helpers/linear.js';
import type { Classifier } from '../src/nn/classifier.js';
import { evaluateRobustness, type RobustnessResults } from '../src/robustness/index.js';
import {
  HtmlReport, compareEvaluations, compareResults, compareRobustness, formatComparison, formatEvaluationText, formatRobustnessText,
} from '../src/report/index.js';
import { pairedDifference, proportionEstimate, type AccuracyEstimate, type PairedDifference } from '../src/util/statistics.js';
import type { EvaluationResult } from '../src/train/index.js';
import { compareCommand } from '../src/cli/compare-command.js';
import { UsageError } from '../src/cli/args.js';
import { captureLog, tinyModelFile } from './helpers/self-ensemble.js';
import { tinyImageFolder } from './helpers/image-folder.js';
import { ROBUST_OPTIONS, robustEvalCommand } from '../src/cli/robust-command.js';
import { evalCommand } from '../src/cli/eval-command.js';
import { parseCommandArgs } from '../src/cli/args.js';

setNumThreads(1);

function problem(model: Classifier, n: number, seed: number): { images: Tensor; labels: Tensor } {
  const images = rand([n, 3, 4, 4], { generator: new Generator(seed) });
  const labels = noGrad(() => tidy(() => model.forward(images).argmax({ dim: 1 })));
  return { images, labels };
}

/** Two defences evaluated on the same 50 images: a noisy linear model (sigma) and another. */
function evaluated(sigma: number, n = 50): RobustnessResults {
  return tidy(() => {
    const { images, labels } = problem(new Linear(3), n, 4);
    return evaluateRobustness(new NoisyLinear(3, sigma), images, labels, {
      attacks: [{ name: 'pgd', attack: 'pgd', options: { steps: 4 } }], eps: 0.05, reEvaluations: 4, batchSize: 50, masking: false, seed: 1,
    }).results;
  });
}

test('two robustness results on the same images: each row is the paired difference of the per-image verdicts', () => {
  const a = evaluated(0.2);
  const b = evaluated(1.0);
  const c = compareRobustness(a, b, 'a.json', 'b.json');
  assert.equal(c.images, 50);
  const row = (what: string) => c.rows.find((r) => r.what === what)!;
  const allR = row('worst case, all-R');
  assert.deepEqual(allR.difference, pairedDifference(a.perImage.robust, b.perImage.robust));
  assert.deepEqual(allR.a, proportionEstimate(a.perImage.robust.filter(Boolean).length, 50));
  assert.equal(allR.a.value, a.worstCase['all-R']);
  assert.equal(allR.b.value, b.worstCase['all-R']);
  assert.equal(row('worst case, single evaluation').a.value, a.worstCase['single-evaluation']);
  const mean = row('worst case, mean over R');
  assert.ok(Math.abs(mean.a.value - a.worstCase['mean-over-R']) < 1e-12);
  assert.ok(Math.abs((mean.difference as AccuracyEstimate).value - (a.worstCase['mean-over-R'] - b.worstCase['mean-over-R'])) < 1e-12);
  assert.equal(row('clean, all-R').a.value, a.cleanAccuracy['all-R']);
  // The noisier model is less often right in every pass: the comparison sees it.
  assert.ok((row('clean, all-R').difference as PairedDifference).difference > 0);
  const text = formatComparison(c);
  assert.match(text, /^A: a\.json\nB: b\.json\n50 images, the same in both/);
  assert.match(text, /worst case, all-R +\d+\.\d% \[\d+\.\d, \d+\.\d\] +\d+\.\d% \[.*points \[.*McNemar p = /);

  // An older file without robustSingleEvaluation: derived from the first clean pass and the attacks' own passes.
  const older = JSON.parse(JSON.stringify(a)) as RobustnessResults;
  delete (older.perImage as Partial<RobustnessResults['perImage']>).robustSingleEvaluation;
  assert.deepEqual(compareRobustness(older, b).rows, compareRobustness(a, b).rows);
});

test('results on different images are refused, naming both files', () => {
  const a = evaluated(0.2);
  assert.throws(() => compareRobustness(a, evaluated(0.2, 40), 'a.json', 'b.json'), /a\.json has 50 images and b\.json 40/);
  const relabelled = JSON.parse(JSON.stringify(a)) as RobustnessResults;
  relabelled.perImage.labels[7] = (relabelled.perImage.labels[7]! + 1) % 4;
  assert.throws(() => compareRobustness(a, relabelled, 'a.json', 'b.json'), /not on the same images: image 7 has label/);
  const other = JSON.parse(JSON.stringify(a)) as RobustnessResults;
  other.dataSource = 'elsewhere';
  assert.match(compareRobustness(a, other).notes.join('\n'), /data sources differ/);
  assert.throws(() => compareResults({ name: 'a.json', value: a }, { name: 'x.json', value: { some: 'thing' } }),
    /cannot compare a\.json \(a robustness result\) with x\.json \(neither/);
});

/** A clean evaluation of 8 images (two classes) with per-image verdicts. */
function cleanEvaluation(output: string, meanLogits: string): EvaluationResult {
  const correct = [...output].filter((c) => c === '1').length;
  const m = [...meanLogits].filter((c) => c === '1').length;
  return {
    dataset: 'tiny', count: 8, accuracy: correct / 8, correct, memberAccuracies: [0.5], aggregators: [{ name: 'mean-logits', accuracy: m / 8, correct: m }],
    confusion: [[3, 1], [2, 2]], perClassAccuracy: [0.75, 0.5], samples: [], outputSource: 'shared-pass',
    intervals: { output: proportionEstimate(correct, 8), members: [proportionEstimate(4, 8)], aggregators: [proportionEstimate(m, 8)] },
    perImageCorrect: { output, aggregators: [meanLogits] }, seconds: 0,
  };
}

test('two clean evaluations: the outputs and every common aggregator, image by image; the text shows intervals and the paired difference', () => {
  const a = cleanEvaluation('11110000', '11100000');
  const b = cleanEvaluation('11000000', '11100001');
  const c = compareEvaluations(a, b, 'a', 'b');
  assert.deepEqual(c.rows.map((r) => r.what), ['clean, model output', 'clean, mean-logits']);
  assert.equal((c.rows[0]!.difference as PairedDifference).onlyA, 2);
  assert.equal((c.rows[1]!.difference as PairedDifference).onlyB, 1);
  // Wrapped as `crossmax eval --json` prints it.
  assert.deepEqual(compareResults({ name: 'a', value: { model: 'm', evaluation: a } }, { name: 'b', value: b }).rows, c.rows);
  assert.throws(() => compareEvaluations(a, { ...b, count: 9 }), /A has 8 images and B 9: a paired comparison needs the same images/);
  assert.throws(() => compareEvaluations(a, { ...b, confusion: [[4, 1], [1, 2]] }), /different numbers of images per class/);
  assert.throws(() => compareEvaluations(a, { ...b, perImageCorrect: undefined as never }, 'a', 'old.json'), /old\.json: no per-image verdicts for the output/);
  const text = formatEvaluationText(a, ['fc']);
  assert.match(text, /output 50\.00% \[21\.52, 78\.48\] \(n = 8\)/);
  assert.match(text, /mean-logits +37\.50% \[13\.68, 69\.43\] +-12\.5 points \[.*\], McNemar p = 1 vs output/);
  assert.match(text, /member fc +50\.00% \[21\.52, 78\.48\]/);
});

test('report tables show an estimate as "value [low, high]", right-aligned, the best by its value', () => {
  const html = new HtmlReport({ title: 't' }).table({
    columns: [{ key: 'name' }, { key: 'acc', percent: true, best: 'max' }],
    rows: [{ name: 'a', acc: proportionEstimate(77, 100) }, { name: 'b', acc: proportionEstimate(15, 100) }, { name: 'c', acc: 0.5 }],
  }).toHtml();
  assert.match(html, /<td class="num best">77\.0% \[67\.8,\u00a084\.2\]<\/td>/);
  assert.match(html, /<td class="num">15\.0% \[9\.3,\u00a023\.3\]<\/td>/);
  assert.match(html, /<td class="num">50\.0%<\/td>/);
});

test('the CLI end to end: robust.json of CrossMax and of --aggregator mean-logits on the same images, compared; bad files named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-compare-'));
  try {
    const model = tinyModelFile(dir);
    const data = tinyImageFolder(join(dir, 'data'), { perClass: 1 });
    const common = ['--model', model, '--data', data, '--attack', 'pgd', '--steps', '2', '--n', '10', '--re-evaluations', '2', '--no-masking'];
    const robust = (args: string[]) => captureLog(() => robustEvalCommand(parseCommandArgs(args, ROBUST_OPTIONS).values));
    const first = await robust([...common, '--report', join(dir, 'a')]);
    assert.equal(first.code, 0);
    // The CLI's text: every row with its interval, the headline with its number of images.
    assert.match(first.printed, /clean +\d+\.\d% \[\d+\.\d, \d+\.\d\]/);
    assert.match(first.printed, /headline: \d+\.\d% \[\d+\.\d, \d+\.\d\] \(n = 10\)/);
    const page = readFileSync(join(dir, 'a', 'robust.html'), 'utf8');
    assert.match(page, /Robust accuracy: \d+\.\d% \[\d+\.\d, \d+\.\d\] \(n = 10\)/);
    assert.match(page, /accuracy \[95% interval\] over n = 10 images/);
    const json = JSON.parse(readFileSync(join(dir, 'a', 'robust.json'), 'utf8')) as RobustnessResults;
    assert.equal(json.intervals.headline!.n, 10);
    assert.deepEqual(formatRobustnessText(json), formatRobustnessText(JSON.parse(JSON.stringify(json))));
    assert.equal((await robust([...common, '--aggregator', 'mean-logits', '--report', join(dir, 'b')])).code, 0);
    const a = join(dir, 'a', 'robust.json');
    const b = join(dir, 'b', 'robust.json');
    const { code, printed } = await captureLog(async () => compareCommand([a, b, '--json']));
    assert.equal(code, 0);
    const comparison = JSON.parse(printed) as { images: number; rows: { what: string }[] };
    assert.equal(comparison.images, 10);
    assert.equal(comparison.rows.length, 6);

    // A clean evaluation from `crossmax eval --json` keeps its per-image verdicts and can be compared with itself.
    const clean = await captureLog(() => evalCommand(['--model', model, '--data', data, '--json']));
    const evalJson = join(dir, 'eval.json');
    writeFileSync(evalJson, clean.printed);
    const self = JSON.parse((await captureLog(async () => compareCommand([evalJson, evalJson, '--json']))).printed) as { rows: { difference: PairedDifference }[] };
    assert.ok(self.rows.length >= 2 && self.rows.every((r) => r.difference.difference === 0 && r.difference.mcnemarP === 1));

    assert.throws(() => compareCommand([a]), (e) => e instanceof UsageError && /two results files/.test(e.message));
    assert.throws(() => compareCommand([a, join(dir, 'missing.json')]), (e) => e instanceof UsageError && /cannot read .*missing\.json/.test(e.message));
    writeFileSync(join(dir, 'bad.json'), '{ "format": ');
    assert.throws(() => compareCommand([a, join(dir, 'bad.json')]), (e) => e instanceof UsageError && /bad\.json is not JSON/.test(e.message));
    assert.throws(() => compareCommand([a, evalJson]), /a robustness result\) with .*eval\.json \(a clean evaluation\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('scripts/readme-intervals.mjs: Wilson intervals from printed percentages, refusing figures no count gives', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, ['scripts/readme-intervals.mjs', ...args], { encoding: 'utf8' });
  const ok = run('77.0/100', '15.0%/100', '--n', '1000', '50.5');
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(ok.stdout.trim().split('\n'), [
    '77.0% of 100 → 77.0% [67.8, 84.2] (n = 100)',
    '15.0% of 100 → 15.0% [9.3, 23.3] (n = 100)',
    '50.5% of 1000 → 50.5% [47.4, 53.6] (n = 1000)',
  ]);
  const refused = run('--n', '200', '78.6', '6.5');
  assert.equal(refused.status, 1);
  assert.match(refused.stdout, /78\.6 → refused: .*no count of 200 images gives 78\.6%/);
  assert.match(refused.stdout, /6\.5% of 200 → 6\.5% \[3\.8, 10\.8\]/);
  assert.match(run('47.3/10000').stdout, /counts 4725–4735 all print as 47\.3%/);
  assert.match(run('--paired', '200', '12', '3').stdout, /\+4\.5 points of 200 images, McNemar's exact p = 0\.035/);
  assert.equal(run('77').status, 2);
});
