// The robustness evaluation protocol for stochastic defences. AutoAttack's runner (each attack only on the
// points still robust, every result checked against the threat model) plus what a randomised model needs
// (Zhang et al., arXiv 2411.14834, report the mean over 10 stochastic evaluations):
//   - every adversarial image is re-evaluated R times (default 10) with fresh randomness;
//   - three definitions of robust accuracy, each number labelled with its own:
//       'single-evaluation'  AutoAttack's bookkeeping: one forward pass per check (the first clean pass, each
//                            attack's own final pass); robust when none of them misclassifies the image;
//       'mean-over-R'        evaluation r (r = 1 … R) counts an image robust when pass r classifies the clean image
//                            and every attack's adversarial image correctly; the mean over the R evaluations;
//       'all-R'              robust only when all R passes classify all of them correctly (the headline);
//   - the worst case over attacks, per image, under each definition; per attack, the accuracy after it (AutoAttack's
//     cumulative log) and, where it ran on every point, its own;
//   - gradient-masking checks (masking.ts) on a subset, and results as plain JSON.
// An image stays in the pool of later attacks while any definition still counts it robust, so every definition's
// worst case is over every attack.
import { Tensor, type Device, keep, manualSeed, noGrad, tensor, tidy, trackInScope } from '../tensor/index.js';
import { type Classifier, type Norm, DEFAULT_EPS, checkAdversarial, checkAttackInputs, replaceRows } from './attack.js';
import { buildAdaptiveAttack, describeSuiteEntry, withThreatModel, type AdaptiveSuiteEntry } from './adaptive.js';
import { withEvalMode } from '../nn/module.js';
import type { BatchOutcome, EvaluationCheckpoint } from './checkpoint.js';
import {
  blackBoxCheck, budgetCheck, epsSweepCheck, formatEps, resolveMaskingPlan, type EpsCurvePoint, type MaskingCheck, type MaskingOptions,
} from './masking.js';

export type AccuracyDefinition = 'single-evaluation' | 'mean-over-R' | 'all-R';

/** A robust accuracy under each definition (the keys say which). */
export type AccuracyByDefinition = Record<AccuracyDefinition, number>;

export const ACCURACY_DEFINITIONS: Readonly<Record<AccuracyDefinition, string>> = Object.freeze({
  'single-evaluation': "AutoAttack's bookkeeping: one forward pass per check (the first clean pass, each attack's own final pass); robust when none misclassifies the image",
  'mean-over-R': 'evaluation r counts an image robust when re-evaluation pass r classifies the clean image and every adversarial image correctly; mean over the R evaluations',
  'all-R': 'robust only when all R re-evaluation passes classify the clean image and every adversarial image correctly',
});

/** The definition of the headline number. */
export const HEADLINE_DEFINITION: AccuracyDefinition = 'all-R';

export interface EvaluationProgress {
  phase: 'clean' | 'attack' | 're-evaluation' | 'masking';
  /** The attack running (attack and re-evaluation phases). */
  attack: string | null;
  /** The attack's own iteration count and plan in the current batch (attack phase), else 0. */
  step: number;
  total: number;
  /** Images robust under the headline definition, as of the last finished attack. */
  robust: number;
  images: number;
}

export interface RobustnessOptions {
  /** The attacks, in order (adaptiveSuite(model), autoAttackSuite(...), or your own). */
  attacks: readonly AdaptiveSuiteEntry[];
  /** Default 'Linf'. */
  norm?: Norm;
  /** Default 8/255. Entries without an eps get it; an entry with another eps is refused. */
  eps?: number;
  /** Seeds the re-evaluations, and the attacks that have no seed of their own. Default 0. */
  seed?: number;
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
  onProgress?: (event: EvaluationProgress) => void;
  /** Receives log lines (accuracy after each attack). Default: none. */
  log?: (line: string) => void;
  /**
   * Where each finished attack call on a batch is stored, and taken from when an evaluation killed part-way is
   * run again (checkpoint.ts); the masking checks use it too. Default: none (nothing stored).
   */
  checkpoint?: EvaluationCheckpoint;
}

export interface AttackEvaluation {
  name: string;
  attack: string;
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
  seconds: number;
  /** Per image: correct re-evaluations of this attack's adversarial image (of R), null where it did not run. */
  correctReEvaluations: (number | null)[];
  /** Per image: its own final pass misclassified the image, null where it did not run. */
  success: (boolean | null)[];
}

export interface PerImageResults {
  labels: number[];
  /** Correct clean passes, of R. */
  cleanCorrect: number[];
  /** Predicted class of the first clean pass. */
  cleanPredicted: number[];
  /** The attack whose adversarial image has the fewest correct re-evaluations (null: none below the clean image's). */
  worstAttack: (string | null)[];
  /** Correct re-evaluations of that image (of R). */
  worstCorrect: number[];
  /** Predicted class of its first re-evaluation. */
  worstPredicted: number[];
  /** Evaluations (of R) in which the image is robust against every attack (the 'mean-over-R' numerator). */
  robustEvaluations: number[];
  /** Robust under the headline definition. */
  robust: boolean[];
}

export interface MaskingResults {
  images: number;
  definition: AccuracyDefinition;
  checks: MaskingCheck[];
  epsCurve: EpsCurvePoint[];
  seconds: number;
}

/** Plain JSON: what writeJsonAtomic writes and crossmax's reports read. */
export interface RobustnessResults {
  format: 'crossmax-robustness-v1';
  model: string;
  dataSource: string;
  norm: Norm;
  eps: number;
  images: number;
  reEvaluations: number;
  definitions: Record<AccuracyDefinition, string>;
  headline: { value: number; definition: AccuracyDefinition; scope: string };
  cleanAccuracy: AccuracyByDefinition;
  attacks: AttackEvaluation[];
  worstCase: AccuracyByDefinition;
  perImage: PerImageResults;
  masking: MaskingResults | null;
  settings: { seed: number; batchSize: number; independent: boolean; retryUntouched: number };
  seconds: { total: number; attacks: number; masking: number };
}

export interface RobustnessEvaluation {
  results: RobustnessResults;
  /** Per attack, [N, C, H, W]: its adversarial images where it ran, the clean images elsewhere (caller's scope). */
  adversarial: Map<string, Tensor>;
  /** Per image, the adversarial image of its worst attack (the clean image where none is worse). */
  worstAdversarial: Tensor;
}

export interface Passes {
  /** Per row, per pass: classified correctly. */
  correct: boolean[][];
  /** Per row: the class predicted by the first pass. */
  firstPrediction: number[];
}

function batchesOf(indices: readonly number[], size: number): number[][] {
  return Array.from({ length: Math.ceil(indices.length / size) }, (_, b) => indices.slice(b * size, (b + 1) * size));
}

function countTrue(flags: readonly boolean[]): number {
  return flags.reduce((a, f) => a + (f ? 1 : 0), 0);
}

/** R forward passes over the rows `indices` of `images`, libtorch's generator seeded once first. */
function reEvaluate(model: Classifier, images: Tensor, labels: readonly number[], indices: readonly number[], passes: number, batchSize: number, seed: number): Passes {
  const correct = indices.map(() => [] as boolean[]);
  const firstPrediction = indices.map(() => -1);
  manualSeed(seed);
  for (let r = 0; r < passes; r++) {
    let offset = 0;
    for (const batch of batchesOf(indices, batchSize)) {
      const predicted = noGrad(() => tidy(() => {
        const index = tensor(batch, { dtype: 'int64', device: images.device as Device });
        return model.forward(images.indexSelect(0, index)).argmax({ dim: 1 }).toArray();
      }));
      predicted.forEach((p, j) => {
        correct[offset + j]!.push(p === labels[batch[j]!]);
        if (r === 0) firstPrediction[offset + j] = p;
      });
      offset += batch.length;
    }
  }
  return { correct, firstPrediction };
}

/** The entry with another seed (string entries only: a custom attack's seed is its own). */
function reseeded(entry: AdaptiveSuiteEntry, attempt: number): AdaptiveSuiteEntry | null {
  if (typeof entry.attack !== 'string') return null;
  const seed = (entry.options as { seed?: number }).seed ?? 0;
  return { ...entry, options: { ...entry.options, seed: seed + 7919 * attempt } } as AdaptiveSuiteEntry;
}

/**
 * One attack over the rows `indices`, in batches, each result checked; returns all N rows (clean where not
 * attacked). An attack skips the images its first forward pass misclassifies and returns them untouched; for a
 * stochastic model that is the draw's luck, so such images are attacked again with another seed, `retries` times.
 */
function runAttack(
  model: Classifier, images: Tensor, labels: Tensor, entry: AdaptiveSuiteEntry, indices: readonly number[],
  settings: { norm: Norm; eps: number; batchSize: number; retries: number; checkpoint?: EvaluationCheckpoint },
  onStep: (step: number, total: number) => void,
): { adversarial: Tensor; success: boolean[]; retried: number } {
  let adversarial = keep(images.detach().clone());
  const success = new Map<number, boolean>();
  let todo = [...indices];
  let retried = 0;
  try {
    for (let attempt = 0; attempt <= settings.retries && todo.length > 0; attempt++) {
      const current = attempt === 0 ? entry : reseeded(entry, attempt);
      if (!current) break;
      if (attempt > 0) retried += todo.length;
      const skipped: number[] = [];
      for (const batch of batchesOf(todo, settings.batchSize)) {
        const next = tidy(() => {
          const index = tensor(batch, { dtype: 'int64', device: images.device as Device });
          const xb = images.indexSelect(0, index);
          const stored = settings.checkpoint?.load(current, batch, images.device as Device) ?? null;
          const outcome = stored ?? attackBatch(current, xb, labels.indexSelect(0, index));
          // A stored batch passes the same checks as a fresh one: the file could have been edited.
          checkAdversarial(xb, outcome.adversarial, settings);
          if (outcome.success.length !== batch.length) throw new Error(`attack '${entry.name}' returned ${outcome.success.length} flags for ${batch.length} images`);
          if (stored === null) settings.checkpoint?.save(current, batch, outcome);
          return { adversarial: keep(replaceRows(adversarial, index, outcome.adversarial)), success: outcome.success, skipped: outcome.skipped };
        });
        adversarial.dispose();
        adversarial = next.adversarial;
        batch.forEach((image, j) => {
          success.set(image, next.success[j]!);
          if (next.skipped[j]) skipped.push(image);
        });
      }
      todo = skipped;
    }
  } catch (err) {
    adversarial.dispose();
    throw err;
  }
  return { adversarial, success: indices.map((i) => success.get(i)!), retried };

  function attackBatch(current: AdaptiveSuiteEntry, xb: Tensor, yb: Tensor): BatchOutcome {
    const result = buildAdaptiveAttack(current, model, (event) => onStep(event.step, event.total)).run(xb, yb);
    const skipped = result.attacked?.map((a) => !a)
      ?? result.adversarial.sub(xb).flatten(1).abs().amax({ dim: 1 }).eq(0).toArray().map(Boolean);
    return { adversarial: result.adversarial, success: result.success, skipped };
  }
}


/**
 * Every row of `images` classified in R seeded forward passes (reEvaluate), with the accuracy under each
 * definition: how transfer targets and generation judges are scored.
 */
export function repeatedAccuracy(model: Classifier, images: Tensor, labels: readonly number[], passes: number, options: { batchSize?: number; seed?: number } = {}): Passes & { accuracy: AccuracyByDefinition } {
  const rows = labels.map((_, i) => i);
  const result = reEvaluate(model, images, labels, rows, passes, options.batchSize ?? 100, options.seed ?? 0);
  return { ...result, accuracy: accuracies(result.correct.map((c) => c[0]!), result.correct, passes) };
}

/** Accuracy under each definition from the first pass's verdicts and every pass's, per image. */
function accuracies(single: readonly boolean[], robustIn: readonly (readonly boolean[])[], passes: number): AccuracyByDefinition {
  const n = single.length;
  if (n === 0) return { 'single-evaluation': 0, 'mean-over-R': 0, 'all-R': 0 };
  return {
    'single-evaluation': countTrue(single) / n,
    'mean-over-R': robustIn.reduce((a, flags) => a + countTrue(flags as boolean[]) / passes, 0) / n,
    'all-R': robustIn.filter((flags) => flags.every(Boolean)).length / n,
  };
}

function formatAccuracy(a: AccuracyByDefinition): string {
  return (['all-R', 'mean-over-R', 'single-evaluation'] as const).map((d) => `${d} ${(100 * a[d]).toFixed(2)}%`).join(', ');
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
  if (!Array.isArray(options.attacks) || options.attacks.length === 0) throw new RangeError('evaluateRobustness needs at least one attack');
  const entries = options.attacks.map((e) => withThreatModel(e, { norm, eps, seed }));
  const duplicate = entries.find((e, i) => entries.findIndex((f) => f.name === e.name) !== i);
  if (duplicate) throw new RangeError(`attack name '${duplicate.name}' is used twice`);
  const log = options.log ?? (() => {});
  const n = images.shape[0]!;
  const labelValues = labels.toArray();
  const started = Date.now();
  const all = Array.from({ length: n }, (_, i) => i);

  const robustNow = () => robustIn.filter((flags) => flags.every(Boolean)).length;
  const report = (event: Omit<EvaluationProgress, 'images' | 'robust'> & { robust?: number }) => options.onProgress?.({ robust: robustNow(), ...event, images: n });

  // Per image and evaluation r: the clean image and every adversarial image so far classified correctly in pass r.
  let robustIn: boolean[][] = [];
  report({ phase: 'clean', attack: null, step: 0, total: 0, robust: n });
  const clean = reEvaluate(model, images, labelValues, all, passes, batchSize, seed);
  robustIn = clean.correct.map((flags) => [...flags]);
  const single = clean.correct.map((flags) => flags[0]!);
  const cleanAccuracy = accuracies(single, robustIn, passes);
  log(`clean accuracy: ${formatAccuracy(cleanAccuracy)}`);
  const worstCorrect = clean.correct.map(countTrue);
  const worstSource: (number | null)[] = all.map(() => null);
  const worstPredicted = [...clean.firstPrediction];

  const adversarial = new Map<string, Tensor>();
  const attacks: AttackEvaluation[] = [];
  let worstAdversarial: Tensor | null = null;
  try {
    for (const [a, entry] of entries.entries()) {
      const attackStarted = Date.now();
      const pool = all.filter((i) => (independent || a === 0 ? worstCorrectClean(i) : robustIn[i]!.some(Boolean) || single[i]));
      const ran = runAttack(model, images, labels, entry, pool, { norm, eps, batchSize, retries, checkpoint: options.checkpoint }, (step, total) => {
        report({ phase: 'attack', attack: entry.name, step, total });
      });
      adversarial.set(entry.name, ran.adversarial);
      report({ phase: 're-evaluation', attack: entry.name, step: 0, total: 0 });
      const re = reEvaluate(model, ran.adversarial, labelValues, pool, passes, batchSize, seed + 1 + a);
      const correctReEvaluations: (number | null)[] = all.map(() => null);
      const success: (boolean | null)[] = all.map(() => null);
      pool.forEach((i, j) => {
        const flags = re.correct[j]!;
        correctReEvaluations[i] = countTrue(flags);
        success[i] = ran.success[j]!;
        robustIn[i] = robustIn[i]!.map((v, r) => v && flags[r]!);
        if (ran.success[j]) single[i] = false;
        if (correctReEvaluations[i]! < worstCorrect[i]!) {
          worstCorrect[i] = correctReEvaluations[i]!;
          worstSource[i] = a;
          worstPredicted[i] = re.firstPrediction[j]!;
        }
      });
      const robustAccuracyAfter = accuracies(single, robustIn, passes);
      let robustAccuracy: AccuracyByDefinition | null = null;
      if (independent || a === 0) {
        // This attack alone: the worst of the clean image and its adversarial image, pass by pass.
        const position = new Map(pool.map((i, j) => [i, j]));
        const alone = all.map((i) => clean.correct[i]!.map((c, r) => c && position.has(i) && re.correct[position.get(i)!]![r]!));
        robustAccuracy = accuracies(all.map((i) => clean.correct[i]![0]! && success[i] === false), alone, passes);
      }
      const seconds = (Date.now() - attackStarted) / 1000;
      attacks.push({
        ...describeSuiteEntry(entry), attackedImages: pool.length, retriedImages: ran.retried, fooledImages: countTrue(ran.success),
        robustAccuracyAfter, robustAccuracy, seconds, correctReEvaluations, success,
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
  const attacksSeconds = (Date.now() - started) / 1000;

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
  const results: RobustnessResults = {
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
      robust: robustIn.map((flags) => flags.every(Boolean)),
    },
    masking,
    settings: { seed, batchSize, independent, retryUntouched: retries },
    seconds: { total: (Date.now() - started) / 1000, attacks: attacksSeconds, masking: masking?.seconds ?? 0 },
  };
  return { results, adversarial, worstAdversarial };

  function worstCorrectClean(i: number): boolean {
    return clean.correct[i]!.some(Boolean);
  }
}

export interface MaskingRunOptions extends MaskingOptions {
  /** The evaluation's attacks (the defaults of mainAttack and blackBoxAttack come from them). Default none. */
  suite?: readonly AdaptiveSuiteEntry[];
  norm?: Norm;
  eps?: number;
  seed?: number;
  reEvaluations?: number;
  batchSize?: number;
  retryUntouched?: number;
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
  const norm = options.norm ?? 'Linf';
  const eps = options.eps ?? DEFAULT_EPS;
  const plan = resolveMaskingPlan(options, { eps, suite: options.suite ?? [] });
  const count = Math.min(plan.images, images.shape[0]!);
  const measure = (entry: AdaptiveSuiteEntry, radius: number): AccuracyByDefinition => tidy(() => {
    const sized = withThreatModel(entry, { norm, eps: radius, seed: options.seed ?? 0, forceEps: true });
    const { results } = evaluateRobustness(model, images.narrow(0, 0, count), labels.narrow(0, 0, count), {
      attacks: [sized], norm, eps: radius, seed: options.seed, reEvaluations: options.reEvaluations, batchSize: options.batchSize,
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
  return { images: count, definition: plan.definition, checks, epsCurve, seconds: (Date.now() - started) / 1000 };
}
