// The definitions of robust accuracy for a stochastic model, and the R seeded forward passes they are computed
// from (Zhang et al., arXiv 2411.14834, report the mean over 10 stochastic evaluations):
//   'single-evaluation'  AutoAttack's bookkeeping: one forward pass per check (the first clean pass, each
//                        attack's own final pass); robust when none of them misclassifies the image;
//   'mean-over-R'        evaluation r (r = 1 … R) counts an image robust when pass r classifies the clean image
//                        and every attack's adversarial image correctly; the mean over the R evaluations;
//   'all-R'              robust only when all R passes classify all of them correctly (the headline).
// The evaluation (evaluation.ts), the masking checks (masking.ts), transfer tables and generation's judges use them.
import { type Device, type Tensor, manualSeed, noGrad, tensor, tidy } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { batchesOf } from './runner.js';

/**
 * How a stochastic model's robust accuracy is counted over R re-evaluations (see {@link ACCURACY_DEFINITIONS});
 * 'all-R' is the headline.
 */
export type AccuracyDefinition = 'single-evaluation' | 'mean-over-R' | 'all-R';

/** A robust accuracy under each definition (the keys say which). */
export type AccuracyByDefinition = Record<AccuracyDefinition, number>;

/** Each accuracy definition in one sentence, as results files and reports state them. */
export const ACCURACY_DEFINITIONS: Readonly<Record<AccuracyDefinition, string>> = Object.freeze({
  'single-evaluation': "AutoAttack's bookkeeping: one forward pass per check (the first clean pass, each attack's own final pass); robust when none misclassifies the image",
  'mean-over-R': 'evaluation r counts an image robust when re-evaluation pass r classifies the clean image and every adversarial image correctly; mean over the R evaluations',
  'all-R': 'robust only when all R re-evaluation passes classify the clean image and every adversarial image correctly',
});

/** The definition of the headline number. */
export const HEADLINE_DEFINITION: AccuracyDefinition = 'all-R';

/** R forward passes over a set of images: correctness and predictions per pass. */
export interface Passes {
  /** Per row, per pass: classified correctly. */
  correct: boolean[][];
  /** Per row: the class predicted by the first pass. */
  firstPrediction: number[];
}

export function countTrue(flags: readonly boolean[]): number {
  return flags.reduce((a, f) => a + (f ? 1 : 0), 0);
}

/** R forward passes over the rows `indices` of `images`, libtorch's generator seeded once first. */
export function reEvaluate(model: Classifier, images: Tensor, labels: readonly number[], indices: readonly number[], passes: number, batchSize: number, seed: number): Passes {
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
export function accuracies(single: readonly boolean[], robustIn: readonly (readonly boolean[])[], passes: number): AccuracyByDefinition {
  const n = single.length;
  if (n === 0) return { 'single-evaluation': 0, 'mean-over-R': 0, 'all-R': 0 };
  return {
    'single-evaluation': countTrue(single) / n,
    'mean-over-R': robustIn.reduce((a, flags) => a + countTrue(flags as boolean[]) / passes, 0) / n,
    'all-R': robustIn.filter((flags) => flags.every(Boolean)).length / n,
  };
}

export function formatAccuracy(a: AccuracyByDefinition): string {
  return (['all-R', 'mean-over-R', 'single-evaluation'] as const).map((d) => `${d} ${(100 * a[d]).toFixed(2)}%`).join(', ');
}
