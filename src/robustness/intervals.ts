// 95% intervals for every accuracy of a robustness evaluation, computed from what the results keep per image, so
// that a results file read back years later gives the same intervals (util/statistics.ts has the methods):
//   - single evaluation and all-R are proportions over images: Wilson's interval, from the count behind the
//     stored accuracy;
//   - mean over R is a mean over images of per-image fractions (robust evaluations / R): a percentile bootstrap over
//     images with a fixed seed and resample count, from the per-image counts the results keep (clean passes, every
//     attack's cumulative count, the worst case).
// The input types are structural (no import of evaluation.ts, which attaches these intervals to its results).
import type { AccuracyByDefinition, AccuracyDefinition } from './definitions.js';
import {
  CONFIDENCE_LEVEL, DEFAULT_BOOTSTRAP_RESAMPLES, bootstrapMeanInterval, proportionEstimate, successesOf, type AccuracyEstimate,
} from '../util/statistics.js';

/** Each definition's accuracy with its 95% interval; null where the per-image counts it needs were not kept. */
export type EstimateByDefinition = Record<AccuracyDefinition, AccuracyEstimate | null>;

/** The intervals of every accuracy of a RobustnessResults, in its layout. */
export interface RobustnessIntervals {
  /** 0.95. */
  confidence: number;
  /** How each definition's interval is obtained. */
  methods: Record<AccuracyDefinition, string>;
  /** The bootstrap's settings (mean over R): fixed, so equal results give equal intervals. */
  bootstrap: {
    /** Bootstrap resamples drawn (default 10,000). */
    resamples: number;
    /** Seed of the resampling (default 0). */
    seed: number;
  };
  /** The headline: the worst case's estimate under the headline's definition; null where its counts were not kept. */
  headline: AccuracyEstimate | null;
  /** Accuracy without attack, under each definition, with its interval. */
  cleanAccuracy: EstimateByDefinition;
  /** Per attack, in the results' order. */
  attacks: {
    /** The attack entry's name. */
    name: string;
    /** Worst case over the clean image and the attacks up to this one, with intervals. */
    robustAccuracyAfter: EstimateByDefinition;
    /** This attack alone, with intervals; null where the results have no such accuracy. */
    robustAccuracy: EstimateByDefinition | null;
  }[];
  /** Robust accuracy in the worst case over all attacks, under each definition, with its interval. */
  worstCase: EstimateByDefinition;
}

/** What robustnessIntervals reads from a RobustnessResults (older files may lack the per-attack counts). */
export interface IntervalInput {
  /** Images evaluated: n of every interval. */
  images: number;
  /** R: forward passes per image when judging (the denominator of the per-image fractions). */
  reEvaluations: number;
  /** The headline's accuracy definition. */
  headline: {
    /** Which definition the headline quotes ('all-R', 'mean-over-R' or 'single-evaluation'). */
    definition: AccuracyDefinition;
  };
  /** Accuracy without attack under each definition, as stated in the results. */
  cleanAccuracy: AccuracyByDefinition;
  /** Each attack's results, in order. */
  attacks: readonly {
    /** The attack entry's name (used in error messages). */
    name: string;
    /** Stated worst case over the clean image and the attacks so far. */
    robustAccuracyAfter: AccuracyByDefinition;
    /** Stated accuracy against this attack alone; null when not computed. */
    robustAccuracy: AccuracyByDefinition | null;
    /** Per-image counts behind `robustAccuracyAfter`; absent in older files (then no mean-over-R interval). */
    perImageAfter?: {
      /** Per image, the evaluations (of R) in which it is robust. */
      robustEvaluations: readonly number[];
    };
    /** Per-image counts behind `robustAccuracy`; null or absent where there are none. */
    perImageAlone?: {
      /** Per image, the evaluations (of R) in which it is robust. */
      robustEvaluations: readonly number[];
    } | null;
  }[];
  /** Stated robust accuracy in the worst case over all attacks. */
  worstCase: AccuracyByDefinition;
  /** Per-image counts behind the clean and worst-case mean over R. */
  perImage: {
    /** Per image, the correct clean passes (of R). */
    cleanCorrect: readonly number[];
    /** Per image, the evaluations (of R) in which it is robust against every attack. */
    robustEvaluations: readonly number[];
  };
}

/** The bootstrap's settings for robustnessIntervals. */
export interface IntervalOptions {
  /** Bootstrap resamples for mean over R. Default DEFAULT_BOOTSTRAP_RESAMPLES (10,000). */
  resamples?: number;
  /** Bootstrap seed. Default 0. */
  seed?: number;
}

/**
 * An accuracy under each definition over `correctPasses.length` images with its intervals: Wilson for single
 * evaluation and all-R (from the counts behind the stated values), the seeded bootstrap over the per-image
 * fractions correctPasses / passes for mean over R. How transfer tables get theirs.
 */
export function estimatesOfPasses(accuracy: AccuracyByDefinition, correctPasses: readonly number[], passes: number, what = 'accuracy', options: IntervalOptions = {}): EstimateByDefinition {
  const n = correctPasses.length;
  return {
    'single-evaluation': proportionEstimate(successesOf(accuracy['single-evaluation'], n), n),
    'all-R': proportionEstimate(successesOf(accuracy['all-R'], n), n),
    'mean-over-R': meanOverR(accuracy['mean-over-R'], correctPasses, passes, n, what, { resamples: options.resamples ?? DEFAULT_BOOTSTRAP_RESAMPLES, seed: options.seed ?? 0 }),
  };
}

/** Intervals for the clean accuracy, each attack's accuracies, the worst case and the headline of `results`. */
export function robustnessIntervals(results: IntervalInput, options: IntervalOptions = {}): RobustnessIntervals {
  const resamples = options.resamples ?? DEFAULT_BOOTSTRAP_RESAMPLES;
  const seed = options.seed ?? 0;
  const n = results.images;
  const passes = results.reEvaluations;
  const estimates = (accuracy: AccuracyByDefinition, evaluations: readonly number[] | null | undefined, what: string): EstimateByDefinition => ({
    'single-evaluation': proportionEstimate(successesOf(accuracy['single-evaluation'], n), n),
    'all-R': proportionEstimate(successesOf(accuracy['all-R'], n), n),
    'mean-over-R': evaluations ? meanOverR(accuracy['mean-over-R'], evaluations, passes, n, what, { resamples, seed }) : null,
  });
  const worstCase = estimates(results.worstCase, results.perImage.robustEvaluations, 'worst case');
  return {
    confidence: CONFIDENCE_LEVEL,
    methods: {
      'single-evaluation': 'Wilson score interval over images',
      'all-R': 'Wilson score interval over images',
      'mean-over-R': `percentile bootstrap over images (${resamples} resamples, seed ${seed}) of the per-image fraction of the R evaluations that count it robust`,
    },
    bootstrap: { resamples, seed },
    headline: worstCase[results.headline.definition],
    cleanAccuracy: estimates(results.cleanAccuracy, results.perImage.cleanCorrect, 'clean'),
    attacks: results.attacks.map((a) => ({
      name: a.name,
      robustAccuracyAfter: estimates(a.robustAccuracyAfter, a.perImageAfter?.robustEvaluations, `after ${a.name}`),
      robustAccuracy: a.robustAccuracy === null ? null : estimates(a.robustAccuracy, a.perImageAlone?.robustEvaluations, `${a.name} alone`),
    })),
    worstCase,
  };
}

/** The bootstrap interval of mean over R, checked against the accuracy the results state. */
function meanOverR(stated: number, evaluations: readonly number[], passes: number, n: number, what: string, options: IntervalOptions): AccuracyEstimate {
  if (evaluations.length !== n) throw new RangeError(`${what}: ${evaluations.length} per-image counts for ${n} images`);
  const values = evaluations.map((k) => k / passes);
  const mean = n === 0 ? 0 : values.reduce((a, v) => a + v, 0) / n;
  if (Math.abs(mean - stated) > 1e-9) throw new RangeError(`${what}: the per-image counts give mean over R ${mean}, the results state ${stated}`);
  const { low, high } = n === 0 ? { low: 0, high: 1 } : bootstrapMeanInterval(values, options);
  return { value: stated, n, low, high, method: 'bootstrap-percentile' };
}
