// Every accuracy of a robustness evaluation carries its number of images and a 95% interval, computed from the
// per-image counts the results keep: Wilson for single evaluation and all-R, the seeded bootstrap for mean over R,
// the same from the JSON file read back as from the evaluation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Generator, noGrad, rand, tidy, type Tensor } from '../src/tensor/index.js';
import { Linear, NoisyLinear } from './helpers/linear.js';
import type { Classifier } from '../src/nn/classifier.js';
import type { AttackEntry } from '../src/attacks/index.js';
import { evaluateRobustness, robustnessIntervals, transferMatrix, type EstimateByDefinition, type RobustnessResults } from '../src/robustness/index.js';
import { bootstrapMeanInterval, proportionEstimate, wilsonInterval, type AccuracyEstimate } from '../src/util/statistics.js';
import { judgeImages } from '../src/generate/index.js';
import type { AccuracyByDefinition } from '../src/robustness/definitions.js';

function problem(model: Classifier, n: number, seed: number): { images: Tensor; labels: Tensor } {
  const images = rand([n, 3, 4, 4], { generator: new Generator(seed) });
  const labels = noGrad(() => tidy(() => model.forward(images).argmax({ dim: 1 })));
  return { images, labels };
}

const fgsm: AttackEntry = { name: 'fgsm', attack: 'fgsm', options: {} };
const pgd: AttackEntry = { name: 'pgd', attack: 'pgd', options: { steps: 5 } };
const R = 6;

function evaluate(independent: boolean): RobustnessResults {
  return tidy(() => {
    const { images, labels } = problem(new Linear(3), 60, 4);
    return evaluateRobustness(new NoisyLinear(3, 0.6), images, labels, {
      attacks: [fgsm, pgd], eps: 0.03, reEvaluations: R, batchSize: 32, masking: false, seed: 5, independent,
    }).results;
  });
}

function assertEstimates(estimates: EstimateByDefinition, accuracy: AccuracyByDefinition, evaluations: readonly number[], what: string): void {
  for (const d of ['single-evaluation', 'all-R'] as const) {
    const e = estimates[d]!;
    assert.equal(e.value, accuracy[d], `${what} ${d}`);
    assert.equal(e.n, 60);
    assert.equal(e.method, 'wilson');
    assert.deepEqual({ low: e.low, high: e.high }, wilsonInterval(Math.round(accuracy[d] * 60), 60), `${what} ${d}`);
  }
  const mean = estimates['mean-over-R']!;
  assert.equal(mean.value, accuracy['mean-over-R']);
  assert.equal(mean.method, 'bootstrap-percentile');
  assert.deepEqual({ low: mean.low, high: mean.high }, bootstrapMeanInterval(evaluations.map((k) => k / R), { seed: 0 }), `${what} mean-over-R`);
  assert.ok(mean.low < mean.value && mean.value < mean.high, `${what}: ${mean.low} ${mean.value} ${mean.high}`);
}

test('every accuracy of the results has its interval, from the per-image counts the results keep', () => {
  const results = evaluate(true);
  const { intervals, perImage } = results;
  assert.equal(intervals.confidence, 0.95);
  assertEstimates(intervals.cleanAccuracy, results.cleanAccuracy, perImage.cleanCorrect, 'clean');
  assertEstimates(intervals.worstCase, results.worstCase, perImage.robustEvaluations, 'worst case');
  assert.deepEqual(intervals.headline, intervals.worstCase['all-R']);
  assert.equal(intervals.headline!.value, results.headline.value);
  results.attacks.forEach((a, k) => {
    assert.equal(intervals.attacks[k]!.name, a.name);
    assertEstimates(intervals.attacks[k]!.robustAccuracyAfter, a.robustAccuracyAfter, a.perImageAfter.robustEvaluations, `after ${a.name}`);
    assertEstimates(intervals.attacks[k]!.robustAccuracy!, a.robustAccuracy!, a.perImageAlone!.robustEvaluations, `${a.name} alone`);
  });
  // The cumulative count after the last attack is the worst case's, and the single-evaluation flags add up.
  assert.deepEqual(results.attacks.at(-1)!.perImageAfter.robustEvaluations, perImage.robustEvaluations);
  assert.equal(perImage.robustSingleEvaluation.filter(Boolean).length / 60, results.worstCase['single-evaluation']);
  // Some images are broken and some are not: the intervals are not degenerate.
  assert.ok(intervals.worstCase['all-R']!.high > intervals.worstCase['all-R']!.low);
});

test('an attack that did not run on every point has no own accuracy and no interval for it', () => {
  const results = evaluate(false);
  assert.equal(results.attacks[1]!.robustAccuracy, null);
  assert.equal(results.attacks[1]!.perImageAlone, null);
  assert.equal(results.intervals.attacks[1]!.robustAccuracy, null);
  assert.notEqual(results.intervals.attacks[0]!.robustAccuracy, null, 'the first attack runs on every point');
});

test('intervals from the JSON file equal the evaluation\'s; an older file without per-attack counts has none for mean over R', () => {
  const results = evaluate(true);
  const read = JSON.parse(JSON.stringify(results)) as RobustnessResults;
  assert.deepEqual(robustnessIntervals(read), results.intervals);
  const older = JSON.parse(JSON.stringify(results)) as Record<string, unknown> & { attacks: Record<string, unknown>[] };
  for (const a of older.attacks) {
    delete a.perImageAfter;
    delete a.perImageAlone;
  }
  const partial = robustnessIntervals(older as unknown as RobustnessResults);
  assert.equal(partial.attacks[0]!.robustAccuracyAfter['mean-over-R'], null);
  assert.deepEqual(partial.attacks[0]!.robustAccuracyAfter['all-R'], results.intervals.attacks[0]!.robustAccuracyAfter['all-R']);
  assert.deepEqual(partial.worstCase, results.intervals.worstCase, 'the worst case keeps its per-image counts');
});

test('counts that disagree with the stated accuracy are refused, naming the row', () => {
  const results = evaluate(false);
  const bad = JSON.parse(JSON.stringify(results)) as RobustnessResults;
  bad.attacks[0]!.perImageAfter.robustEvaluations[0] = (bad.attacks[0]!.perImageAfter.robustEvaluations[0]! + 1) % (R + 1);
  assert.throws(() => robustnessIntervals(bad), /after fgsm: the per-image counts give mean over R/);
  const short = JSON.parse(JSON.stringify(results)) as RobustnessResults;
  short.perImage.cleanCorrect.pop();
  assert.throws(() => robustnessIntervals(short), /clean: 59 per-image counts for 60 images/);
  const notCount = JSON.parse(JSON.stringify(results)) as RobustnessResults;
  notCount.worstCase['all-R'] += 0.001;
  assert.throws(() => robustnessIntervals(notCount), /not a count out of 60 images/);
});

test('the bootstrap settings are recorded and change the interval only through them', () => {
  const results = evaluate(false);
  const other = robustnessIntervals(results, { seed: 1, resamples: 2000 });
  assert.deepEqual(other.bootstrap, { resamples: 2000, seed: 1 });
  const a = results.intervals.worstCase['mean-over-R'] as AccuracyEstimate;
  const b = other.worstCase['mean-over-R'] as AccuracyEstimate;
  assert.equal(a.value, b.value);
  assert.ok(Math.abs(a.low - b.low) < 0.03 && Math.abs(a.high - b.high) < 0.03, `${a.low}–${a.high} vs ${b.low}–${b.high}`);
  assert.match(results.intervals.methods['mean-over-R'], /10000 resamples, seed 0/);
});

test('generation judges carry their images and intervals: Wilson for every pass, the bootstrap for the share of passes', () => {
  tidy(() => {
    const { images, labels } = problem(new Linear(3), 30, 9);
    const intended = labels.toArray().map(Number);
    const judged = judgeImages(new NoisyLinear(3, 0.8), images, intended, ['a', 'b', 'c', 'd'], 5);
    const k = judged.correctPasses!.filter((c) => c === 5).length;
    assert.equal(judged.passes, 5);
    assert.deepEqual(judged.intervals!.allPasses, proportionEstimate(k, 30));
    assert.equal(judged.allPasses, k / 30);
    assert.ok(Math.abs(judged.intervals!.agreement.value - judged.agreement) < 1e-12);
    assert.equal(judged.intervals!.agreement.n, 30);
    assert.ok(judged.intervals!.agreement.low < judged.agreement && judged.agreement < judged.intervals!.agreement.high);
  });
});

test('transfer tables carry each target\'s per-image passes and 95% intervals, on clean and crafted images', () => {
  tidy(() => {
    const { images, labels } = problem(new Linear(3), 30, 5);
    const matrix = transferMatrix([{ name: 'src', model: new Linear(3) }], [{ name: 'noisy', model: new NoisyLinear(3, 0.8) }], images, labels, { steps: 3, passes: 4, eps: 0.05 });
    for (const judged of [matrix.clean[0]!, matrix.rows[0]!.transferred[0]!]) {
      assert.equal(judged.correctPasses.length, 30);
      const allR = judged.correctPasses.filter((k) => k === 4).length;
      assert.equal(judged.accuracy['all-R'], allR / 30);
      assert.deepEqual(judged.intervals['all-R'], proportionEstimate(allR, 30));
      assert.deepEqual(judged.intervals['mean-over-R']!.low, bootstrapMeanInterval(judged.correctPasses.map((k) => k / 4)).low);
      assert.equal(judged.intervals['single-evaluation']!.n, 30);
    }
    for (const r of matrix.rows) r.adversarial.dispose();
  });
});
