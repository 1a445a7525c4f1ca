// The robustness evaluation protocol for stochastic defences. AutoAttack's loop (runner.ts: each attack only on
// the points still robust, every result checked against the threat model) plus what a randomised model needs
// (Zhang et al., arXiv 2411.14834, report the mean over 10 stochastic evaluations):
//   - every adversarial image is re-evaluated R times (default 10) with fresh randomness;
//   - three definitions of robust accuracy (definitions.ts), each number labelled with its own;
//   - the worst case over attacks, per image, under each definition; per attack, the accuracy after it (AutoAttack's
//     cumulative log) and, where it ran on every point, its own;
//   - gradient-masking checks (masking.ts) on a subset, and results as plain JSON.
// An image stays in the pool of later attacks while any definition still counts it robust, so every definition's
// worst case is over every attack. The threat model (norm, eps) is this evaluation's, handed to every attack.
import { type Device, type Tensor, keep, tensor, tidy, trackInScope } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { withEvalMode } from '../nn/module.js';
import { checkAttackInputs, replaceRows } from '../attacks/attack.js';
import { type Norm, DEFAULT_EPS } from '../attacks/threat-model.js';
import { describeAttack, type AttackEntry } from '../attacks/registry.js';
import type { EvaluationCheckpoint } from './checkpoint.js';
import {
  ACCURACY_DEFINITIONS, HEADLINE_DEFINITION, accuracies, countTrue, formatAccuracy, reEvaluate, robustUnderAllR, type AccuracyByDefinition,
  type AccuracyDefinition,
} from './definitions.js';
import { attackInBatches, checkImageOffset, seedStream, type BatchLayout } from './runner.js';
import { robustnessIntervals, type RobustnessIntervals } from './intervals.js';
import {
  blackBoxCheck, budgetCheck, epsSweepCheck, formatEps, resolveMaskingPlan, type EpsCurvePoint, type MaskingCheck, type MaskingOptions,
} from './masking.js';

/** What an evaluation reports as it goes (RobustnessOptions.onProgress). */
export interface EvaluationProgress {
  /** Clean passes, an attack, re-evaluation of adversarial images, or the masking checks. */
  phase: 'clean' | 'attack' | 're-evaluation' | 'masking';
  /** The attack running (attack and re-evaluation phases). */
  attack: string | null;
  /** The attack's own iteration count and plan in the current batch (attack phase), else 0. */
  step: number;
  /** Iterations the attack plans in the current batch (attack phase), else 0. */
  total: number;
  /** Images robust under the headline definition, as of the last finished attack. */
  robust: number;
  /** Images evaluated. */
  images: number;
}

/** Options of evaluateRobustness, with their defaults. */
export interface RobustnessOptions {
  /** The attacks, in order (adaptiveSuite(model), autoAttackSuite(...), or your own). */
  attacks: readonly AttackEntry[];
  /** The threat model, given to every attack. Default 'Linf'. */
  norm?: Norm;
  /** Default 8/255. */
  eps?: number;
  /**
   * Seeds the re-evaluations, and the attacks that have no seed of their own. Every batch of every attack call and
   * of every R passes draws from its own stream, derived from (seed, what runs, the batch's place on the grid of
   * batchSize images; see runner.ts). Default 0.
   */
  seed?: number;
  /**
   * The index of `images`' first row among the images of a larger evaluation that this call is a part of (a
   * shard, a rank's part): rows are batched and seeded by their place in that evaluation, so the part's per-image
   * results are the ones the whole evaluation gives its images. A multiple of batchSize. Default 0.
   */
  imageOffset?: number;
  /** R: forward passes per adversarial image, each with fresh randomness. Default 10. */
  reEvaluations?: number;
  /** Images per attack call and per forward pass. Default 100. */
  batchSize?: number;
  /** Run every attack on every point the clean image is not always misclassified on (each attack's own accuracy; costs more). Default false. */
  independent?: boolean;
  /**
   * Attacks skip the images their first forward pass misclassifies (AutoAttack's convention) and return them
   * untouched; for a stochastic model that is one draw's luck. Skipped images are attacked again, with another
   * seed, up to this many times (images an attack ran on without result, as FAB leaves them, are not: that would
   * repeat the whole attack). An attack that does not say which images it ran on (a custom RunnableAttack without
   * `attacked`) has every unchanged image retried. Default 2.
   */
  retryUntouched?: number;
  /** Gradient-masking checks (masking.ts) on a subset; false to skip. Default {} (run with the defaults). */
  masking?: MaskingOptions | false;
  /** Recorded in the results. Default 'model'. */
  modelName?: string;
  /** Recorded in the results (e.g. 'CIFAR-10 test, first 1000'). Default 'unspecified'. */
  dataSource?: string;
  /** Called as the evaluation advances. */
  onProgress?: (event: EvaluationProgress) => void;
  /** Receives log lines (accuracy after each attack). Default: none. */
  log?: (line: string) => void;
  /**
   * Where each finished attack call on a batch is stored, and taken from when an evaluation killed part-way is
   * run again (checkpoint.ts); the masking checks use it too. Default: none (nothing stored).
   */
  checkpoint?: EvaluationCheckpoint;
}

/** One attack's outcome in an evaluation: how many images it ran on and fooled, the accuracies after it, per image. */
export interface AttackEvaluation {
  /** The entry's name. */
  name: string;
  /** The registered kind, or 'custom'. */
  attack: string;
  /** The entry's options. */
  options: Record<string, unknown>;
  /** Images this attack ran on. */
  attackedImages: number;
  /** Attack calls repeated on images the attack skipped (see retryUntouched). */
  retriedImages: number;
  /** Images its own final pass misclassified (AutoAttack's count of successes). */
  fooledImages: number;
  /** Worst case over the clean image and the attacks so far (AutoAttack's "robust accuracy after …"). */
  robustAccuracyAfter: AccuracyByDefinition;
  /** This attack alone (worst of clean and its adversarial image); null unless it ran on every point. */
  robustAccuracy: AccuracyByDefinition | null;
  /** Time the attack took (a resumed evaluation adds what its batches took in the runs that computed them). */
  seconds: number;
  /** Per image: correct re-evaluations of this attack's adversarial image (of R), null where it did not run. */
  correctReEvaluations: (number | null)[];
  /** Per image: its own final pass misclassified the image, null where it did not run. */
  success: (boolean | null)[];
  /** Per image, what robustAccuracyAfter is computed from (so that parts of an evaluation can be merged exactly). */
  perImageAfter: PerImageRobustness;
  /** Per image, what robustAccuracy is computed from; null where that is. */
  perImageAlone: PerImageRobustness | null;
}

/** Per image, the inputs of an accuracy under every definition (definitions.ts `accuracies`). */
export interface PerImageRobustness {
  /** Robust under the single evaluation. */
  single: boolean[];
  /** Evaluations (of R) in which the image is robust. */
  robustEvaluations: number[];
}

/** Per image of the evaluation, in input order. */
export interface PerImageResults {
  /** True classes. */
  labels: number[];
  /** Correct clean passes, of R. */
  cleanCorrect: number[];
  /** Predicted class of the first clean pass. */
  cleanPredicted: number[];
  /**
   * The attack whose adversarial image has the fewest correct re-evaluations; of two with as many, the first whose
   * own final pass misclassified it (null: no attack below the clean image's count, nor level with it and fooled).
   */
  worstAttack: (string | null)[];
  /** Correct re-evaluations of that image (of R). */
  worstCorrect: number[];
  /** Predicted class of its first re-evaluation. */
  worstPredicted: number[];
  /** Evaluations (of R) in which the image is robust against every attack (the 'mean-over-R' numerator). */
  robustEvaluations: number[];
  /** Robust under 'single-evaluation': the first clean pass and every attack's own final pass correct. */
  robustSingleEvaluation: boolean[];
  /** Robust under the headline definition ('all-R': every pass correct, the attacks' own final passes included). */
  robust: boolean[];
}

/** The gradient-masking checks (masking.ts) as an evaluation records them. */
export interface MaskingResults {
  /** Images the checks ran on. */
  images: number;
  /** The accuracy definition the checks compare. */
  definition: AccuracyDefinition;
  /** Each check with its verdict. */
  checks: MaskingCheck[];
  /** Robust accuracy against eps for each sweep attack. */
  epsCurve: EpsCurvePoint[];
  /** Time the checks took (with the times of the batches taken from an earlier run, as for attacks). */
  seconds: number;
  /** Of `seconds`, what earlier, interrupted runs spent on the batches these checks took (absent: none). */
  earlierRuns?: number;
  /** Batches taken from files that hold no time (see EvaluationSeconds.untimedBatches). */
  untimedBatches?: number;
}

/**
 * Where an evaluation's time went. Every figure is the work of the whole evaluation: one resumed from a checkpoint
 * counts the batches it took at the seconds they cost in the run that computed them (work lost to a kill, an
 * unfinished batch, is not counted; it is not part of the results).
 */
export interface EvaluationSeconds {
  /** The attacks and the masking checks, with the clean passes and re-evaluations. */
  total: number;
  /** The attacks, their clean passes and re-evaluations. */
  attacks: number;
  /** The gradient-masking checks. */
  masking: number;
  /** Of `total`, the seconds that earlier, interrupted runs spent on the batches this one took (absent: none). */
  earlierRuns?: number;
  /** Batches taken from files that hold no time (written by an older crossmax): `total` misses their seconds. */
  untimedBatches?: number;
}

/** Plain JSON: what writeJsonAtomic writes and crossmax's reports read. */
export interface RobustnessResults {
  /** Identifies the file's layout. */
  format: 'crossmax-robustness-v1';
  /** The model's name (as given). */
  model: string;
  /** The images' source (as given). */
  dataSource: string;
  /** The threat model's norm. */
  norm: Norm;
  /** The threat model's radius, in [0, 1] pixel units. */
  eps: number;
  /** Images evaluated. */
  images: number;
  /** R: forward passes per image when judging. */
  reEvaluations: number;
  /** Each accuracy definition in words. */
  definitions: Record<AccuracyDefinition, string>;
  /** The number to quote: its `value`, the accuracy `definition` it uses and its `scope` in words. */
  headline: { value: number; definition: AccuracyDefinition; scope: string };
  /** Accuracy without attack under each definition. */
  cleanAccuracy: AccuracyByDefinition;
  /** Each attack's results, in order. */
  attacks: AttackEvaluation[];
  /** Robust accuracy in the worst case over all attacks, under each definition. */
  worstCase: AccuracyByDefinition;
  /** 95% intervals of every accuracy above, with its number of images (intervals.ts). */
  intervals: RobustnessIntervals;
  /**
   * Per image, in input order: label, clean and worst-case outcomes. What paired comparisons (report/compare.ts),
   * bootstrap intervals and the merging of shards are computed from.
   */
  perImage: PerImageResults;
  /** The gradient-masking checks, or null when skipped. */
  masking: MaskingResults | null;
  /** The evaluation's `seed`, `batchSize`, `independent` and `retryUntouched` settings. */
  settings: { seed: number; batchSize: number; independent: boolean; retryUntouched: number };
  /** Seconds in `total`, in the `attacks` and in the `masking` checks. */
  seconds: EvaluationSeconds;
  /**
   * Only in a partial merge of shards (`crossmax merge --partial`): the results cover `images` of the evaluation's
   * `of` images, those in the `held` ranges ('50–249'), not those in `missing`. Absent in a complete evaluation.
   */
  partial?: PartialCoverage;
}

/** Which images of an evaluation a partial merge holds (RobustnessResults.partial). */
export interface PartialCoverage {
  /** The whole evaluation's number of images (the shards' --n). */
  of: number;
  /** The ranges of images held, in order, e.g. ['50–249']. */
  held: string[];
  /** The ranges of images no shard held, e.g. ['0–49', '250–999']. */
  missing: string[];
}

/** What evaluateRobustness returns: the JSON results and the adversarial images. */
export interface RobustnessEvaluation {
  /** The results as plain JSON. */
  results: RobustnessResults;
  /** Per attack, [N, C, H, W]: its adversarial images where it ran, the clean images elsewhere (caller's scope). */
  adversarial: Map<string, Tensor>;
  /** Per image, the adversarial image of its worst attack (the clean image where none is worse). */
  worstAdversarial: Tensor;
}

/**
 * Evaluates `model` on `images` [N, C, H, W] in [0, 1] with `labels` [N] (int64) against `options.attacks`.
 * The returned tensors belong to the caller's scope.
 */
export function evaluateRobustness(model: Classifier, images: Tensor, labels: Tensor, options: RobustnessOptions): RobustnessEvaluation {
  return withEvalMode(model, () => evaluateRobustnessInCurrentMode(model, images, labels, options));
}

function evaluateRobustnessInCurrentMode(model: Classifier, images: Tensor, labels: Tensor, options: RobustnessOptions): RobustnessEvaluation {
  checkAttackInputs(images, labels);
  if (typeof model?.forward !== 'function') throw new TypeError('evaluateRobustness needs a model with forward(x) → logits');
  const norm = options.norm ?? 'Linf';
  const eps = options.eps ?? DEFAULT_EPS;
  const seed = options.seed ?? 0;
  const passes = options.reEvaluations ?? 10;
  const batchSize = options.batchSize ?? 100;
  const independent = options.independent ?? false;
  const retries = options.retryUntouched ?? 2;
  if (!Number.isInteger(retries) || retries < 0) throw new RangeError(`retryUntouched must be a non-negative integer, got ${retries}`);
  if (!Number.isInteger(passes) || passes < 1) throw new RangeError(`reEvaluations must be a positive integer, got ${passes}`);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  const imageOffset = options.imageOffset ?? 0;
  checkImageOffset(imageOffset, batchSize);
  const layout: BatchLayout = { aligned: { imageOffset } };
  if (!Array.isArray(options.attacks) || options.attacks.length === 0) throw new RangeError('evaluateRobustness needs at least one attack');
  const entries = options.attacks;
  const duplicate = entries.find((e, i) => entries.findIndex((f) => f.name === e.name) !== i);
  if (duplicate) throw new RangeError(`attack name '${duplicate.name}' is used twice`);
  const log = options.log ?? (() => {});
  const n = images.shape[0]!;
  const labelValues = labels.toArray();
  const started = Date.now();
  const all = Array.from({ length: n }, (_, i) => i);
  // Seconds of batches taken from an earlier run (EvaluationCheckpoint.stats): added to the times measured here.
  const earlier = earlierRunClock(options.checkpoint);

  const robustNow = () => robustIn.filter((flags, i) => robustUnderAllR(single[i]!, flags)).length;
  const report = (event: Omit<EvaluationProgress, 'images' | 'robust'> & { robust?: number }) => options.onProgress?.({ robust: robustNow(), ...event, images: n });

  // Per image and evaluation r: the clean image and every adversarial image so far classified correctly in pass r.
  // Per image, `single`: the first clean pass and every attack's own final pass correct (AutoAttack's verdict).
  // All-R needs both (definitions.ts): one misclassifying forward pass, whichever, makes the image non-robust.
  let robustIn: boolean[][] = [];
  let single: boolean[] = [];
  report({ phase: 'clean', attack: null, step: 0, total: 0, robust: n });
  const clean = reEvaluate(model, images, labelValues, all, passes, batchSize, seedStream(seed, 'clean'), layout);
  robustIn = clean.correct.map((flags) => [...flags]);
  single = clean.correct.map((flags) => flags[0]!);
  const cleanAccuracy = accuracies(single, robustIn, passes);
  log(`clean accuracy: ${formatAccuracy(cleanAccuracy)}`);
  const worstCorrect = clean.correct.map(countTrue);
  const worstSource: (number | null)[] = all.map(() => null);
  const worstFooled: boolean[] = all.map(() => false);
  const worstPredicted = [...clean.firstPrediction];

  const adversarial = new Map<string, Tensor>();
  const attacks: AttackEvaluation[] = [];
  let worstAdversarial: Tensor | null = null;
  try {
    for (const [a, entry] of entries.entries()) {
      const attackStarted = Date.now();
      const earlierBefore = earlier.seconds();
      const pool = all.filter((i) => (independent || a === 0 ? worstCorrectClean(i) : robustIn[i]!.some(Boolean) || single[i]));
      const ran = attackInBatches(model, images, labels, entry, pool, {
        norm, eps, seed, batchSize, retries, checkpoint: options.checkpoint, layout,
        onProgress: ({ step, total }) => report({ phase: 'attack', attack: entry.name, step, total }),
      });
      adversarial.set(entry.name, ran.adversarial);
      report({ phase: 're-evaluation', attack: entry.name, step: 0, total: 0 });
      const re = reEvaluate(model, ran.adversarial, labelValues, pool, passes, batchSize, seedStream(seed, 're-evaluation', entry.name), layout);
      const correctReEvaluations: (number | null)[] = all.map(() => null);
      const success: (boolean | null)[] = all.map(() => null);
      pool.forEach((i, j) => {
        const flags = re.correct[j]!;
        correctReEvaluations[i] = countTrue(flags);
        success[i] = ran.success[j]!;
        robustIn[i] = robustIn[i]!.map((v, r) => v && flags[r]!);
        if (ran.success[j]) single[i] = false;
        const fewer = correctReEvaluations[i]! < worstCorrect[i]!;
        if (fewer || (correctReEvaluations[i] === worstCorrect[i] && ran.success[j] && !worstFooled[i])) {
          worstCorrect[i] = correctReEvaluations[i]!;
          worstSource[i] = a;
          worstFooled[i] = ran.success[j]!;
          worstPredicted[i] = re.firstPrediction[j]!;
        }
      });
      const robustAccuracyAfter = accuracies(single, robustIn, passes);
      const perImageAfter = { single: [...single], robustEvaluations: robustIn.map(countTrue) };
      let robustAccuracy: AccuracyByDefinition | null = null;
      let perImageAlone: PerImageRobustness | null = null;
      if (independent || a === 0) {
        // This attack alone: the worst of the clean image and its adversarial image, pass by pass.
        const position = new Map(pool.map((i, j) => [i, j]));
        const alone = all.map((i) => clean.correct[i]!.map((c, r) => c && position.has(i) && re.correct[position.get(i)!]![r]!));
        const aloneSingle = all.map((i) => clean.correct[i]![0]! && success[i] === false);
        robustAccuracy = accuracies(aloneSingle, alone, passes);
        perImageAlone = { single: aloneSingle, robustEvaluations: alone.map(countTrue) };
      }
      const seconds = (Date.now() - attackStarted) / 1000 + earlier.seconds() - earlierBefore;
      attacks.push({
        ...describeAttack(entry, { norm, eps, seed }), attackedImages: pool.length, retriedImages: ran.retried, fooledImages: countTrue(ran.success),
        robustAccuracyAfter, robustAccuracy, seconds, correctReEvaluations, success, perImageAfter, perImageAlone,
      });
      log(`robust accuracy after ${entry.name}: ${formatAccuracy(robustAccuracyAfter)} (${seconds.toFixed(1)} s)`);
    }
    worstAdversarial = tidy(() => {
      let worst = images.detach().clone();
      entries.forEach((entry, a) => {
        const rows = all.filter((i) => worstSource[i] === a);
        if (rows.length === 0) return;
        const index = tensor(rows, { dtype: 'int64', device: images.device as Device });
        worst = replaceRows(worst, index, adversarial.get(entry.name)!.indexSelect(0, index));
      });
      return keep(worst);
    });
  } catch (err) {
    for (const t of adversarial.values()) t.dispose();
    throw err;
  }
  const attacksSeconds = (Date.now() - started) / 1000 + earlier.sinceStart();

  let masking: MaskingResults | null = null;
  if (options.masking !== false) {
    try {
      masking = runMaskingChecks(model, images, labels, {
        ...(options.masking ?? {}), suite: entries, norm, eps, seed, reEvaluations: passes, batchSize, retryUntouched: retries, checkpoint: options.checkpoint,
        onProgress: options.onProgress ? (event) => options.onProgress!({ ...event, phase: 'masking', robust: robustNow(), images: n }) : undefined,
      });
    } catch (err) {
      for (const t of adversarial.values()) t.dispose();
      worstAdversarial.dispose();
      throw err;
    }
    for (const check of masking.checks) log(`masking check ${check.name}: ${check.passed ? 'passed' : 'FAILED'}: ${check.details}`);
  }

  for (const t of adversarial.values()) trackInScope(t);
  trackInScope(worstAdversarial);
  const worstCase = accuracies(single, robustIn, passes);
  log(`robust accuracy (worst case over ${entries.length} attacks): ${formatAccuracy(worstCase)}`);
  const measured: Omit<RobustnessResults, 'intervals'> = {
    format: 'crossmax-robustness-v1',
    model: options.modelName ?? 'model',
    dataSource: options.dataSource ?? 'unspecified',
    norm, eps, images: n, reEvaluations: passes,
    definitions: { ...ACCURACY_DEFINITIONS },
    headline: { value: worstCase[HEADLINE_DEFINITION], definition: HEADLINE_DEFINITION, scope: `worst case over all ${entries.length} attacks, per image` },
    cleanAccuracy,
    attacks,
    worstCase,
    perImage: {
      labels: labelValues,
      cleanCorrect: clean.correct.map(countTrue),
      cleanPredicted: clean.firstPrediction,
      worstAttack: worstSource.map((a) => (a === null ? null : entries[a]!.name)),
      worstCorrect,
      worstPredicted,
      robustEvaluations: robustIn.map(countTrue),
      robustSingleEvaluation: [...single],
      robust: robustIn.map((flags, i) => robustUnderAllR(single[i]!, flags)),
    },
    masking,
    settings: { seed, batchSize, independent, retryUntouched: retries },
    seconds: { total: (Date.now() - started) / 1000 + earlier.sinceStart(), attacks: attacksSeconds, masking: masking?.seconds ?? 0, ...earlier.fields() },
  };
  const results: RobustnessResults = { ...measured, intervals: robustnessIntervals(measured) };
  return { results, adversarial, worstAdversarial };

  function worstCorrectClean(i: number): boolean {
    return clean.correct[i]!.some(Boolean);
  }
}

/** runMaskingChecks' options: the masking plan plus the evaluation settings it runs with. */
export interface MaskingRunOptions extends MaskingOptions {
  /** The evaluation's attacks (the defaults of mainAttack and blackBoxAttack come from them). Default none. */
  suite?: readonly AttackEntry[];
  /** The threat model's norm. Default 'Linf'. */
  norm?: Norm;
  /** The threat model's radius. Default 8/255. */
  eps?: number;
  /** Seeds the attacks and passes. Default 0. */
  seed?: number;
  /** R, passes per image. Default 10. */
  reEvaluations?: number;
  /** Images per attack call. Default 100. */
  batchSize?: number;
  /** Retries of skipped images (see {@link RobustnessOptions.retryUntouched}). Default 2. */
  retryUntouched?: number;
  /** Called as the checks advance. */
  onProgress?: (event: EvaluationProgress) => void;
  /** See RobustnessOptions.checkpoint. */
  checkpoint?: EvaluationCheckpoint;
}

/**
 * The gradient-masking checks of masking.ts, measured on the first `images` images: the eps sweep (the
 * accuracy-vs-eps curve), the main attack at 1× and budgetFactor× budget, and the black-box attack, each
 * alone (an evaluation with that one attack).
 */
export function runMaskingChecks(model: Classifier, images: Tensor, labels: Tensor, options: MaskingRunOptions = {}): MaskingResults {
  return withEvalMode(model, () => runMaskingChecksInCurrentMode(model, images, labels, options));
}

function runMaskingChecksInCurrentMode(model: Classifier, images: Tensor, labels: Tensor, options: MaskingRunOptions = {}): MaskingResults {
  const started = Date.now();
  const earlier = earlierRunClock(options.checkpoint);
  const norm = options.norm ?? 'Linf';
  const eps = options.eps ?? DEFAULT_EPS;
  const plan = resolveMaskingPlan(options, { eps, suite: options.suite ?? [] });
  const count = Math.min(plan.images, images.shape[0]!);
  const measure = (entry: AttackEntry, radius: number): AccuracyByDefinition => tidy(() => {
    const { results } = evaluateRobustness(model, images.narrow(0, 0, count), labels.narrow(0, 0, count), {
      attacks: [entry], norm, eps: radius, seed: options.seed, reEvaluations: options.reEvaluations, batchSize: options.batchSize,
      retryUntouched: options.retryUntouched, masking: false, onProgress: options.onProgress, checkpoint: options.checkpoint,
    });
    return results.attacks[0]!.robustAccuracy!;
  });

  const epsCurve: EpsCurvePoint[] = [];
  for (const entry of plan.sweepAttacks) {
    for (const radius of plan.epsSweep) epsCurve.push({ attack: entry.name, eps: radius, robustAccuracy: measure(entry, radius) });
  }
  const checks: MaskingCheck[] = [epsSweepCheck(epsCurve, { definition: plan.definition, maxAtLargest: plan.maxAccuracyAtLargestEps, tolerance: plan.monotonicTolerance })];

  const base = measure(plan.mainAttack, eps)[plan.definition];
  const scaled = measure(plan.scaledMainAttack, eps)[plan.definition];
  if (plan.blackBoxAttack) {
    const whiteBox = [
      { name: plan.mainAttack.name, accuracy: base },
      { name: plan.scaledMainAttack.name, accuracy: scaled },
      ...epsCurve.filter((p) => Math.abs(p.eps - eps) < 1e-12).map((p) => ({ name: `${p.attack} (eps ${formatEps(p.eps)})`, accuracy: p.robustAccuracy[plan.definition] })),
    ];
    const blackBox = { name: plan.blackBoxAttack.name, accuracy: measure(plan.blackBoxAttack, eps)[plan.definition] };
    checks.push(blackBoxCheck(blackBox, whiteBox, { definition: plan.definition, tolerance: plan.blackBoxTolerance }));
  }
  checks.push(budgetCheck(plan.mainAttack.name, { base, scaled }, { definition: plan.definition, factor: plan.budgetFactor, maxDrop: plan.maxBudgetDrop }));
  return { images: count, definition: plan.definition, checks, epsCurve, seconds: (Date.now() - started) / 1000 + earlier.sinceStart(), ...earlier.fields() };
}

/**
 * The seconds that batches taken from an earlier run had cost, read off the checkpoint's counters from now on
 * (EvaluationCheckpoint.stats): what a resumed evaluation adds to the times it measures itself.
 */
function earlierRunClock(checkpoint: EvaluationCheckpoint | undefined): {
  seconds: () => number; sinceStart: () => number; fields: () => Pick<EvaluationSeconds, 'earlierRuns' | 'untimedBatches'>;
} {
  const read = () => checkpoint?.stats ?? { reused: 0, earlierSeconds: 0, untimed: 0 };
  const start = read();
  return {
    seconds: () => read().earlierSeconds,
    sinceStart: () => read().earlierSeconds - start.earlierSeconds,
    fields: () => {
      const now = read();
      if (now.reused === start.reused) return {};
      return resumeFields([{ earlierRuns: now.earlierSeconds - start.earlierSeconds, untimedBatches: now.untimed - start.untimed }]);
    },
  };
}

/**
 * `seconds` of an evaluation run without its masking checks, with the checks run after it (a shard holding image
 * 0, a distributed evaluation's rank 0) added: their time to `total` and `masking`, their earlier runs' share.
 */
export function withMaskingSeconds(seconds: EvaluationSeconds, masking: MaskingResults | null): EvaluationSeconds {
  if (masking === null) return { ...seconds, masking: 0 };
  return { total: seconds.total + masking.seconds, attacks: seconds.attacks, masking: masking.seconds, ...resumeFields([seconds, masking]) };
}

/**
 * The resume fields of several timed pieces of one evaluation, added: `earlierRuns` present when any piece was
 * resumed, `untimedBatches` when any piece took a batch without a time (as EvaluationSeconds leaves them out).
 */
export function resumeFields(pieces: readonly Pick<EvaluationSeconds, 'earlierRuns' | 'untimedBatches'>[]): Pick<EvaluationSeconds, 'earlierRuns' | 'untimedBatches'> {
  const resumed = pieces.filter((p) => p.earlierRuns !== undefined);
  const untimedBatches = pieces.reduce((s, p) => s + (p.untimedBatches ?? 0), 0);
  return {
    ...(resumed.length > 0 ? { earlierRuns: resumed.reduce((s, p) => s + p.earlierRuns!, 0) } : {}),
    ...(untimedBatches > 0 ? { untimedBatches } : {}),
  };
}
