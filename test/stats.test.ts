// The statistics behind every reported accuracy: Wilson intervals and McNemar's exact test against SciPy 1.17's
// binomtest (values printed by scripts in this file's comments), Newcombe's paired interval against the textbook
// example of Fagerland, Lydersen & Laake (2017, ch. 8, Cavo et al.'s table), and the bootstrap's reproducibility
// and coverage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bootstrapMeanEstimate, bootstrapMeanInterval, formatDifference, formatEstimate, formatP, mcnemarExactP, pairedBootstrapDifference,
  pairedCounts, pairedDifference, pairedDifferenceFromCounts, proportionEstimate, quantileSorted, seededUniform, successesOf, wilsonInterval,
} from '../src/util/statistics.js';

const close = (actual: number, expected: number, tolerance: number, what: string) =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} vs ${expected}`);

test('Wilson intervals equal SciPy\'s binomtest(k, n).proportion_ci(method="wilson")', () => {
  // python3 -c "from scipy.stats import binomtest; print(binomtest(k, n).proportion_ci(method='wilson'))"
  const cases: [number, number, number, number][] = [
    [77, 100, 0.6784561697712622, 0.8415673411969654],
    [0, 100, 0, 0.03699349820698568],
    [100, 100, 0.9630065017930143, 1],
    [15, 100, 0.09305985283656634, 0.23283559590832367],
    [23, 100, 0.15843265880303448, 0.3215438302287378],
    [1, 3, 0.06149194472039626, 0.7923403991979523],
    [4733, 10000, 0.4635262888772867, 0.48309421663570745],
  ];
  for (const [k, n, low, high] of cases) {
    const interval = wilsonInterval(k, n);
    close(interval.low, low, 1e-12, `${k}/${n} low`);
    close(interval.high, high, 1e-12, `${k}/${n} high`);
  }
  assert.equal(wilsonInterval(0, 100).low, 0);
  assert.equal(wilsonInterval(100, 100).high, 1);
  assert.deepEqual(wilsonInterval(0, 0), { low: 0, high: 1 });
  // README's figure: 77 of the first 100 images.
  assert.equal(formatEstimate(proportionEstimate(77, 100)), '77.0% [67.8, 84.2] (n = 100)');
});

test('Wilson refuses counts that are not counts', () => {
  assert.throws(() => wilsonInterval(5, 4), /exceed n/);
  assert.throws(() => wilsonInterval(-1, 4), /successes must be a non-negative integer/);
  assert.throws(() => wilsonInterval(1.5, 4), /successes/);
  assert.throws(() => wilsonInterval(1, Number.NaN), /n must be/);
  assert.equal(successesOf(0.77, 100), 77);
  assert.equal(successesOf(1 / 3, 3), 1);
  assert.throws(() => successesOf(0.775, 100), /not a count out of 100/);
  assert.throws(() => successesOf(Number.NaN, 100), /not a count/);
});

test('McNemar\'s exact p equals SciPy\'s binomtest(b, b + c, 0.5).pvalue, also past 2^-1074', () => {
  const cases: [number, number, number][] = [
    [12, 2, 0.012939453125], [6, 16, 0.052478790283203125], [3, 3, 1], [0, 5, 0.0625], [1, 0, 1],
    [20, 40, 0.01348929373119186], [700, 600, 0.0060157938610449395],
  ];
  for (const [b, c, p] of cases) close(mcnemarExactP(b, c), p, 1e-12 + 1e-9 * p, `b ${b}, c ${c}`);
  assert.equal(mcnemarExactP(0, 0), 1);
  assert.equal(mcnemarExactP(5, 12), mcnemarExactP(12, 5));
  // 3000 discordant images all one way: p = 2 · 2^-3000, far below double range; it must be 0, not NaN.
  assert.equal(mcnemarExactP(3000, 0), 0);
});

test('Newcombe\'s paired interval: Fagerland et al.\'s example and hand-checked edge cases', () => {
  // Cavo et al. (2012), Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables, Table 8.x:
  // Newcombe square-and-add estimate −0.0621, 95% CI −0.1186 to −0.0046.
  const cavo = pairedDifferenceFromCounts({ both: 59, onlyA: 6, onlyB: 16, neither: 80 });
  close(cavo.difference, -0.0621, 5e-5, 'estimate');
  close(cavo.low, -0.1186, 5e-5, 'low');
  close(cavo.high, -0.0046, 5e-5, 'high');
  assert.equal(cavo.n, 161);
  close(cavo.mcnemarP, 0.052478790283203125, 1e-12, 'McNemar');
  // Equal verdicts: the difference is 0 and the interval contains it; the test finds nothing.
  const same = pairedDifference([true, false, true, true], [true, false, true, true]);
  assert.equal(same.difference, 0);
  assert.ok(same.low < 0 && same.high > 0);
  assert.equal(same.mcnemarP, 1);
  // Every image right for A and wrong for B: +100 points, limits within [−1, 1].
  const all = pairedDifference(Array(50).fill(true), Array(50).fill(false));
  assert.equal(all.difference, 1);
  assert.ok(all.low > 0.8 && all.high === 1, `${all.low} ${all.high}`);
  assert.throws(() => pairedDifference([true], [true, false]), /same images: 1 against 2/);
  assert.throws(() => pairedDifferenceFromCounts({ both: 0, onlyA: 0, onlyB: 0, neither: 0 }), /at least one image/);
  assert.deepEqual(pairedCounts([true, true, false, false], [true, false, true, false]), { both: 1, onlyA: 1, onlyB: 1, neither: 1 });
});

test('the paired interval is narrower than the unpaired one when the two agree on most images', () => {
  // 100 images, A right on 80, B on 75, disagreeing on only 5: correlated verdicts pin the difference.
  const a = Array.from({ length: 100 }, (_, i) => i < 80);
  const b = Array.from({ length: 100 }, (_, i) => i < 75);
  const paired = pairedDifference(a, b);
  close(paired.difference, 0.05, 1e-12, 'difference');
  const wa = wilsonInterval(80, 100);
  const wb = wilsonInterval(75, 100);
  const unpairedWidth = Math.hypot(0.8 - wa.low, wb.high - 0.75) + Math.hypot(wa.high - 0.8, 0.75 - wb.low);
  assert.ok(paired.high - paired.low < 0.6 * unpairedWidth, `${paired.high - paired.low} vs ${unpairedWidth}`);
  assert.ok(paired.low > 0, 'five images one way and none the other: A is better');
  close(paired.mcnemarP, 0.0625, 1e-12, 'McNemar 5 vs 0');
});

test('the bootstrap is reproducible for a seed, covers the mean, and matches the normal interval on a large sample', () => {
  const uniform = seededUniform(7);
  // Per-image mean-over-R values of 400 images with R = 10.
  const values = Array.from({ length: 400 }, () => Math.floor(uniform() * 11) / 10);
  const first = bootstrapMeanInterval(values, { seed: 3, resamples: 4000 });
  assert.deepEqual(bootstrapMeanInterval(values, { seed: 3, resamples: 4000 }), first, 'same seed, same interval');
  assert.notDeepEqual(bootstrapMeanInterval(values, { seed: 4, resamples: 4000 }), first, 'another seed resamples differently');
  const estimate = bootstrapMeanEstimate(values, { seed: 3, resamples: 4000 });
  assert.ok(estimate.low < estimate.value && estimate.value < estimate.high);
  assert.equal(estimate.n, 400);
  assert.equal(estimate.method, 'bootstrap-percentile');
  const mean = estimate.value;
  const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1));
  const half = 1.959963984540054 * sd / Math.sqrt(values.length);
  close(estimate.low, mean - half, 0.15 * half, 'low ≈ normal');
  close(estimate.high, mean + half, 0.15 * half, 'high ≈ normal');
  // Constant values: no spread to resample.
  assert.deepEqual(bootstrapMeanInterval([0.3, 0.3, 0.3]), { low: 0.3, high: 0.3 });
  assert.throws(() => bootstrapMeanInterval([]), /no values/);
  assert.throws(() => bootstrapMeanInterval([0.1, Number.NaN]), /value 1 is NaN/);
  assert.throws(() => bootstrapMeanInterval([0.1], { resamples: 0 }), /resamples/);
});

test('the bootstrap interval covers the true mean about 95% of the time', () => {
  // 200 simulated evaluations of 100 images whose per-image values are k/5 for k ~ Bin(5, 0.4) (true mean 0.4).
  const uniform = seededUniform(11);
  let covered = 0;
  const trials = 200;
  for (let t = 0; t < trials; t++) {
    const values = Array.from({ length: 100 }, () => Array.from({ length: 5 }, () => (uniform() < 0.4 ? 1 : 0) as number).reduce((a, v) => a + v, 0) / 5);
    const { low, high } = bootstrapMeanInterval(values, { seed: t, resamples: 1000 });
    if (low <= 0.4 && 0.4 <= high) covered++;
  }
  // Binomial(200, 0.95) lies in [180, 199] with probability > 0.999; a broken interval (too narrow or off-centre) does not.
  assert.ok(covered >= 180 && covered <= 199, `covered ${covered} of ${trials}`);
});

test('a paired bootstrap of per-image differences, the quantiles and the formats', () => {
  const a = [1, 0.9, 0.8, 1, 0.5, 0.6];
  const b = [0.9, 0.9, 0.7, 0.9, 0.5, 0.5];
  const d = pairedBootstrapDifference(a, b, { seed: 1, resamples: 2000 });
  close(d.value, 0.4 / 6, 1e-12, 'mean difference');
  assert.ok(d.low >= 0 && d.high <= 0.1 + 1e-12, `${d.low} ${d.high}`);
  assert.throws(() => pairedBootstrapDifference([1], [1, 0]), /same images/);
  assert.equal(quantileSorted([1, 2, 3, 4], 0.5), 2.5);
  assert.equal(quantileSorted([1, 2, 3, 4], 0), 1);
  assert.equal(quantileSorted([1, 2, 3, 4], 1), 4);
  assert.equal(formatDifference({ difference: -0.03, low: -0.051, high: -0.009, n: 100, mcnemarP: 0.0061 }), '-3.0 points [-5.1, -0.9], McNemar p = 0.0061 (n = 100)');
  assert.equal(formatDifference({ difference: 0, low: -0.0004, high: 0.02, n: 10 }, { showN: false }), '+0.0 points [0.0, 2.0]');
  assert.equal(formatP(1), '1');
  assert.equal(formatP(0.00012), '1.2e-4');
  assert.equal(formatP(0), '< 1e-12');
  assert.equal(formatEstimate({ value: 0.5, low: 0.4, high: 0.6, n: 3, method: 'wilson' }, { decimals: 2, showN: false }), '50.00% [40.00, 60.00]');
});
