// Confidence intervals for accuracies measured on a finite set of images, and paired comparisons of two models on
// the same images. Every interval here is a 95% interval: the figures crossmax reports are all at that level.
//   - a proportion over images (clean accuracy, single evaluation, all-R): Wilson's score interval (Wilson 1927),
//     which keeps its coverage near 0% and 100%, where robust accuracies live, unlike the normal (Wald) interval;
//   - a mean over images of per-image fractions (mean over R): a percentile bootstrap over images, resampled from a
//     seeded generator so that the same results give the same interval;
//   - two proportions on the same images: the paired difference with Newcombe's method 10 interval (Newcombe 1998,
//     "Improved confidence intervals for the difference between binomial proportions based on paired data", Stat.
//     Med. 17:2635–2650) and McNemar's exact test (a two-sided binomial test on the discordant images).
// Hand-written rather than a dependency: each is a few lines of closed-form arithmetic, and the test pins them to
// R's and SciPy's values.

/** The confidence level of every interval in this module. */
export const CONFIDENCE_LEVEL = 0.95;

/** The standard normal quantile at 1 − (1 − 0.95)/2 (R's qnorm(0.975)). */
export const Z_95 = 1.959963984540054;

/** The bootstrap's default number of resamples: its percentiles then move by about ±0.1 point between seeds at n = 100. */
export const DEFAULT_BOOTSTRAP_RESAMPLES = 10_000;

/** A closed interval [low, high]. */
export interface Interval {
  low: number;
  high: number;
}

/** An accuracy over `n` images with its 95% interval. */
export interface AccuracyEstimate extends Interval {
  /** The accuracy, in [0, 1]. */
  value: number;
  /** Images it is measured on. */
  n: number;
  /** How the interval was obtained. */
  method: 'wilson' | 'bootstrap-percentile';
}

function checkCount(name: string, value: number): void {
  if (!(Number.isInteger(value) && value >= 0)) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
}

/**
 * Wilson's 95% score interval for `successes` of `n`. For n = 0 there is no information: [0, 1].
 */
export function wilsonInterval(successes: number, n: number): Interval {
  checkCount('successes', successes);
  checkCount('n', n);
  if (successes > n) throw new RangeError(`successes (${successes}) exceed n (${n})`);
  if (n === 0) return { low: 0, high: 1 };
  const p = successes / n;
  const z2 = Z_95 * Z_95;
  const denominator = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denominator;
  const half = (Z_95 * Math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))) / denominator;
  // At p = 0 or 1 one limit is exactly 0 or 1; rounding must not leave it a hair inside.
  return { low: successes === 0 ? 0 : Math.max(0, centre - half), high: successes === n ? 1 : Math.min(1, centre + half) };
}

/** `successes` of `n` as an accuracy with its Wilson interval. */
export function proportionEstimate(successes: number, n: number): AccuracyEstimate {
  const { low, high } = wilsonInterval(successes, n);
  return { value: n === 0 ? 0 : successes / n, n, low, high, method: 'wilson' };
}

/**
 * The number of successes behind an accuracy `value` of `n` images (an accuracy k/n as stored in results), checked
 * to be one: a value that is no k/n is not a proportion over these images.
 */
export function successesOf(value: number, n: number): number {
  checkCount('n', n);
  const k = Math.round(value * n);
  if (!(Number.isFinite(value) && k >= 0 && k <= n && Math.abs(k - value * n) < 1e-6)) {
    throw new RangeError(`accuracy ${value} is not a count out of ${n} images`);
  }
  return k;
}

/**
 * A seeded generator of uniform numbers in [0, 1): mulberry32 (Tommy Ettinger's 32-bit generator), enough for
 * resampling indices and the same sequence on every machine for a seed.
 */
export function seededUniform(seed: number): () => number {
  if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Settings of the percentile bootstrap. */
export interface BootstrapOptions {
  /** Resamples drawn. Default DEFAULT_BOOTSTRAP_RESAMPLES (10,000). */
  resamples?: number;
  /** Seeds the resampling: the same values and seed give the same interval. Default 0. */
  seed?: number;
}

/** The q-quantile of sorted values, linearly interpolated between order statistics (R's type 7, NumPy's default). */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) throw new RangeError('quantile of no values');
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be in [0, 1], got ${q}`);
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

/**
 * The 95% percentile-bootstrap interval of the mean of `values` (one value per image): the images are resampled
 * with replacement `resamples` times, and the 2.5% and 97.5% quantiles of the resampled means are the limits.
 */
export function bootstrapMeanInterval(values: readonly number[], options: BootstrapOptions = {}): Interval {
  const resamples = options.resamples ?? DEFAULT_BOOTSTRAP_RESAMPLES;
  if (!(Number.isInteger(resamples) && resamples >= 1)) throw new RangeError(`resamples must be a positive integer, got ${resamples}`);
  const n = values.length;
  if (n === 0) throw new RangeError('bootstrap of no values');
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new RangeError(`value ${bad} is ${values[bad]}, not a finite number`);
  const uniform = seededUniform(options.seed ?? 0);
  const means = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += values[Math.floor(uniform() * n)]!;
    means[b] = sum / n;
  }
  means.sort();
  const alpha = 1 - CONFIDENCE_LEVEL;
  return { low: quantileSorted(means, alpha / 2), high: quantileSorted(means, 1 - alpha / 2) };
}

/** The mean of `values` (one per image) with its percentile-bootstrap interval. */
export function bootstrapMeanEstimate(values: readonly number[], options: BootstrapOptions = {}): AccuracyEstimate {
  const { low, high } = bootstrapMeanInterval(values, options);
  return { value: values.reduce((a, v) => a + v, 0) / values.length, n: values.length, low, high, method: 'bootstrap-percentile' };
}

/** How two classifiers' verdicts on the same images agree: the 2×2 table of paired data. */
export interface PairedCounts {
  /** Both right. */
  both: number;
  /** Only A right. */
  onlyA: number;
  /** Only B right. */
  onlyB: number;
  /** Both wrong. */
  neither: number;
}

/** The paired 2×2 table of two per-image verdicts (the same images in the same order). */
export function pairedCounts(a: readonly boolean[], b: readonly boolean[]): PairedCounts {
  if (a.length !== b.length) throw new RangeError(`paired verdicts need the same images: ${a.length} against ${b.length}`);
  const counts = { both: 0, onlyA: 0, onlyB: 0, neither: 0 };
  a.forEach((x, i) => {
    const y = b[i];
    if (x && y) counts.both++;
    else if (x) counts.onlyA++;
    else if (y) counts.onlyB++;
    else counts.neither++;
  });
  return counts;
}

/**
 * McNemar's exact test: the two-sided p-value of a binomial test with p = 1/2 on the discordant images
 * (2 · P(X ≤ min(onlyA, onlyB)), X ~ Bin(onlyA + onlyB, 1/2), at most 1); R's binom.test and SciPy's binomtest give
 * the same. 1 when no image is discordant.
 */
export function mcnemarExactP(onlyA: number, onlyB: number): number {
  checkCount('onlyA', onlyA);
  checkCount('onlyB', onlyB);
  const n = onlyA + onlyB;
  if (n === 0) return 1;
  const k = Math.min(onlyA, onlyB);
  // Summed in log space: 2^-n underflows past n ≈ 1074 discordant images.
  let logTerm = -n * Math.LN2; // log P(X = 0)
  let logTail = logTerm;
  for (let j = 0; j < k; j++) {
    logTerm += Math.log(n - j) - Math.log(j + 1);
    logTail = logTail + Math.log1p(Math.exp(logTerm - logTail));
  }
  return Math.min(1, 2 * Math.exp(logTail));
}

/** The difference of two accuracies on the same images, A − B, with its 95% interval and McNemar's test. */
export interface PairedDifference extends PairedCounts, Interval {
  /** Images. */
  n: number;
  /** A's accuracy. */
  accuracyA: number;
  /** B's accuracy. */
  accuracyB: number;
  /** A − B, in [−1, 1]. */
  difference: number;
  /** McNemar's exact two-sided p-value for "A and B are equally accurate on such images". */
  mcnemarP: number;
  /** 'newcombe-10': Newcombe's method 10 (Wilson score limits of each, combined with the pairs' correlation). */
  method: 'newcombe-10';
}

/**
 * A − B for two per-image verdicts on the same images: Newcombe's (1998) method 10 interval (the square-and-add of
 * each accuracy's Wilson limits, with the phi correlation of the pairs, continuity-corrected toward 0 when positive)
 * and McNemar's exact p-value.
 */
export function pairedDifference(a: readonly boolean[], b: readonly boolean[]): PairedDifference {
  return pairedDifferenceFromCounts(pairedCounts(a, b));
}

/** pairedDifference from the 2×2 table. */
export function pairedDifferenceFromCounts(counts: PairedCounts): PairedDifference {
  const { both, onlyA, onlyB, neither } = counts;
  for (const [name, v] of Object.entries(counts)) checkCount(name, v);
  const n = both + onlyA + onlyB + neither;
  if (n === 0) throw new RangeError('a paired difference needs at least one image');
  const p1 = (both + onlyA) / n;
  const p2 = (both + onlyB) / n;
  const w1 = wilsonInterval(both + onlyA, n);
  const w2 = wilsonInterval(both + onlyB, n);
  const margins = (both + onlyA) * (onlyB + neither) * (both + onlyB) * (onlyA + neither);
  const cross = both * neither - onlyA * onlyB;
  // Newcombe's phi: 0 when a margin is empty; a positive cross-product is first reduced by n/2 (not below 0).
  const phi = margins === 0 ? 0 : (cross > n / 2 ? cross - n / 2 : cross >= 0 ? 0 : cross) / Math.sqrt(margins);
  const d = p1 - p2;
  const dl1 = p1 - w1.low;
  const du1 = w1.high - p1;
  const dl2 = p2 - w2.low;
  const du2 = w2.high - p2;
  const low = d - Math.sqrt(Math.max(0, dl1 * dl1 - 2 * phi * dl1 * du2 + du2 * du2));
  const high = d + Math.sqrt(Math.max(0, du1 * du1 - 2 * phi * du1 * dl2 + dl2 * dl2));
  return {
    ...counts, n, accuracyA: p1, accuracyB: p2, difference: d, low: Math.max(-1, low), high: Math.min(1, high),
    mcnemarP: mcnemarExactP(onlyA, onlyB), method: 'newcombe-10',
  };
}

/** A paired bootstrap of a per-image quantity on the same images: mean(A − B) with its percentile interval. */
export function pairedBootstrapDifference(a: readonly number[], b: readonly number[], options: BootstrapOptions = {}): AccuracyEstimate {
  if (a.length !== b.length) throw new RangeError(`paired values need the same images: ${a.length} against ${b.length}`);
  return bootstrapMeanEstimate(a.map((x, i) => x - b[i]!), options);
}

/** How formatEstimate and formatDifference write their numbers. */
export interface FormatOptions {
  /** Digits after the decimal point of the percentages. Default 1. */
  decimals?: number;
  /** Append " (n = N)". Default true. */
  showN?: boolean;
}

/** "77.0% [67.8, 84.2] (n = 100)": an accuracy, its 95% interval in percent, and its number of images. */
export function formatEstimate(e: AccuracyEstimate, options: FormatOptions = {}): string {
  const decimals = options.decimals ?? 1;
  const pct = (v: number) => (100 * v).toFixed(decimals);
  return `${pct(e.value)}% [${pct(e.low)}, ${pct(e.high)}]${options.showN ?? true ? ` (n = ${e.n})` : ''}`;
}

/** "−3.0 points [−5.1, −0.9], McNemar p = 0.0061 (n = 100)": a paired difference A − B in percentage points. */
export function formatDifference(d: Pick<PairedDifference, 'difference' | 'low' | 'high' | 'n'> & { mcnemarP?: number }, options: FormatOptions = {}): string {
  const decimals = options.decimals ?? 1;
  const pts = (v: number) => { const s = (100 * v).toFixed(decimals); return /^-0\.?0*$/.test(s) ? s.slice(1) : s; };
  const p = d.mcnemarP === undefined ? '' : `, McNemar p ${formatP(d.mcnemarP).startsWith('<') ? '' : '= '}${formatP(d.mcnemarP)}`;
  return `${d.difference >= 0 ? '+' : ''}${pts(d.difference)} points [${pts(d.low)}, ${pts(d.high)}]${p}${options.showN ?? true ? ` (n = ${d.n})` : ''}`;
}

/** A p-value to two significant digits ("0.0061", "1", "< 1e-12"). */
export function formatP(p: number): string {
  if (p < 1e-12) return '< 1e-12';
  if (p >= 0.9995) return '1';
  return p < 0.001 ? p.toExponential(1) : String(Number(p.toPrecision(2)));
}
