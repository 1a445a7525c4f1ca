// The definitions of robust accuracy for a stochastic model, and the R seeded forward passes they are computed
// from (Zhang et al., arXiv 2411.14834, report the mean over 10 stochastic evaluations). The reference AutoAttack
// (autoattack.py, run_standard_evaluation) makes one clean forward pass per point and, after each attack, one
// forward pass of the attack's output; a point is non-robust as soon as one of those passes misclassifies it.
//   'single-evaluation'  the reference's bookkeeping: robust when the first clean pass and every attack's own
//                        final pass classify the image correctly;
//   'mean-over-R'        evaluation r (r = 1 … R) counts an image robust when re-evaluation pass r classifies the
//                        clean image and every attack's adversarial image correctly; the mean over the R
//                        evaluations. The attacks' own final passes do not enter it (a choice): it estimates the
//                        accuracy of one fresh forward pass on the attacks' outputs, Zhang et al.'s number, from R
//                        seeded passes drawn after the attack; the attack's pass is AutoAttack's verdict and counts
//                        in the other two definitions;
//   'all-R'              the reference's rule applied to every pass made: robust only when all R clean passes,
//                        every attack's own final pass and all R re-evaluations of every attack's output classify
//                        the image correctly (the headline). So all-R ≤ single-evaluation and all-R ≤ mean-over-R,
//                        image by image.
// The evaluation (evaluation.ts), the masking checks (masking.ts), transfer tables and generation's judges use them.
import { type Device, type Tensor, manualSeed, noGrad, tensor, tidy } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { alignedBatchesOf, batchesOf, seedStream, type BatchLayout } from './runner.js';

/** The three definitions of robust accuracy for a stochastic model (see the file header). */
export type AccuracyDefinition = 'single-evaluation' | 'mean-over-R' | 'all-R';

/** A robust accuracy under each definition (the keys say which). */
export type AccuracyByDefinition = Record<AccuracyDefinition, number>;

/** Each definition in words, as results files and reports print them. */
export const ACCURACY_DEFINITIONS: Readonly<Record<AccuracyDefinition, string>> = Object.freeze({
  'single-evaluation': "AutoAttack's bookkeeping: one forward pass per check (the first clean pass, each attack's own final pass); robust when none misclassifies the image",
  'mean-over-R': "evaluation r counts an image robust when re-evaluation pass r classifies the clean image and every adversarial image correctly; mean over the R evaluations (the attacks' own final passes do not enter)",
  'all-R': "robust only when every pass classifies the image correctly: all R clean passes, every attack's own final pass, and all R re-evaluations of every adversarial image",
});

/** The definition of the headline number. */
export const HEADLINE_DEFINITION: AccuracyDefinition = 'all-R';

/** R forward passes' verdicts per row (reEvaluate). */
export interface Passes {
  /** Per row, per pass: classified correctly. */
  correct: boolean[][];
  /** Per row: the class predicted by the first pass. */
  firstPrediction: number[];
}

/** How many of `flags` are true. */
export function countTrue(flags: readonly boolean[]): number {
  return flags.reduce((a, f) => a + (f ? 1 : 0), 0);
}

/**
 * R forward passes over the rows `indices` of `images`. Layout 'packed' (default): libtorch's generator seeded
 * once with `seed`, then pass after pass over consecutive batches of the rows. Layout 'aligned' (the robustness
 * evaluation's, see runner.ts): the rows grouped by their batch b on the evaluation's grid, the generator seeded
 * with seedStream(seed, b) before each group's R passes, so a row's passes do not depend on which other batches
 * are evaluated (a shard, a rank's part).
 */
export function reEvaluate(model: Classifier, images: Tensor, labels: readonly number[], indices: readonly number[], passes: number, batchSize: number, seed: number, layout: BatchLayout = 'packed'): Passes {
  const correct = indices.map(() => [] as boolean[]);
  const firstPrediction = indices.map(() => -1);
  const position = new Map(indices.map((row, j) => [row, j]));
  const classify = (batch: readonly number[], r: number) => {
    const predicted = noGrad(() => tidy(() => {
      const index = tensor([...batch], { dtype: 'int64', device: images.device as Device });
      return model.forward(images.indexSelect(0, index)).argmax({ dim: 1 }).toArray();
    }));
    predicted.forEach((p, j) => {
      const at = position.get(batch[j]!)!;
      correct[at]!.push(p === labels[batch[j]!]);
      if (r === 0) firstPrediction[at] = p;
    });
  };
  if (layout === 'packed') {
    manualSeed(seed);
    for (let r = 0; r < passes; r++) for (const batch of batchesOf(indices, batchSize)) classify(batch, r);
  } else {
    for (const { batch, rows } of alignedBatchesOf(indices, batchSize, layout.aligned.imageOffset)) {
      manualSeed(seedStream(seed, batch));
      for (let r = 0; r < passes; r++) classify(rows, r);
    }
  }
  return { correct, firstPrediction };
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

/**
 * Robust under 'all-R': the single-evaluation verdict (first clean pass, every attack's own final pass) and every
 * evaluation r (clean pass r, re-evaluation r of every adversarial image) correct.
 */
export function robustUnderAllR(single: boolean, robustIn: readonly boolean[]): boolean {
  return single && robustIn.every(Boolean);
}

/**
 * Accuracy under each definition, per image from `single` (robust under 'single-evaluation': the first clean pass
 * and every attack's own final pass correct) and `robustIn` (per evaluation r: pass r correct on the clean image
 * and on every adversarial image).
 */
export function accuracies(single: readonly boolean[], robustIn: readonly (readonly boolean[])[], passes: number): AccuracyByDefinition {
  const n = single.length;
  if (robustIn.length !== n) throw new RangeError(`accuracies: ${n} single-evaluation verdicts but ${robustIn.length} images' passes`);
  if (n === 0) return { 'single-evaluation': 0, 'mean-over-R': 0, 'all-R': 0 };
  return {
    'single-evaluation': countTrue(single) / n,
    'mean-over-R': robustIn.reduce((a, flags) => a + countTrue(flags as boolean[]) / passes, 0) / n,
    'all-R': robustIn.filter((flags, i) => robustUnderAllR(single[i]!, flags)).length / n,
  };
}

/** One line for logs: all-R, mean-over-R and single-evaluation, in percent. */
export function formatAccuracy(a: AccuracyByDefinition): string {
  return (['all-R', 'mean-over-R', 'single-evaluation'] as const).map((d) => `${d} ${(100 * a[d]).toFixed(2)}%`).join(', ');
}
