// Judging generated images: do models other than the generator see the intended class? (The paper's check that
// images carry the class rather than only fooling the model that made them.)
import { repeatedAccuracy } from '../robustness/definitions.js';
import type { Classifier } from '../nn/classifier.js';
import type { Tensor } from '../tensor/index.js';
import { bootstrapMeanEstimate, proportionEstimate, type AccuracyEstimate } from '../util/statistics.js';

/** How one model classifies the generated images: the share of passes that give each image its intended class. */
export interface Judgement {
  /** The judging model's name. */
  judge: string;
  /** Its model file. */
  path: string;
  /** Over images and passes. */
  agreement: number;
  /** Images given their intended class on every pass. */
  allPasses: number;
  /** Per intended class, over its images and the passes. */
  perClass: Record<string, number>;
  /** 95% intervals over the images (Wilson for allPasses, the seeded bootstrap for agreement), each with its number of images. */
  intervals?: {
    /** `agreement` with its percentile-bootstrap interval over the images (the mean of each image's share of passes). */
    agreement: AccuracyEstimate;
    /** `allPasses` with its Wilson interval (images right on every pass, of all images). */
    allPasses: AccuracyEstimate;
  };
  /** Per image: passes (of `passes`) that gave it its intended class. */
  correctPasses?: number[];
  /** R: the seeded forward passes each image was classified in (what `correctPasses` counts out of). */
  passes?: number;
}

/** R passes of `model` over the images; agreement with the intended classes (repeatedAccuracy's protocol, seeded). */
export function judgeImages(model: Classifier, images: Tensor, intended: readonly number[], classNames: readonly string[], passes: number, seed = 0): Omit<Judgement, 'judge' | 'path'> {
  const { correct, accuracy } = repeatedAccuracy(model, images, intended, passes, { seed });
  const perClass: Record<string, number> = {};
  for (const c of [...new Set(intended)]) {
    const rows = intended.map((_, i) => i).filter((i) => intended[i] === c);
    perClass[classNames[c]!] = rows.reduce((a, i) => a + correct[i]!.filter(Boolean).length / passes, 0) / rows.length;
  }
  const correctPasses = correct.map((flags) => flags.filter(Boolean).length);
  const intervals = intended.length === 0 ? undefined : {
    agreement: bootstrapMeanEstimate(correctPasses.map((k) => k / passes)),
    allPasses: proportionEstimate(correctPasses.filter((k) => k === passes).length, intended.length),
  };
  return { agreement: accuracy['mean-over-R'], allPasses: accuracy['all-R'], perClass, intervals, correctPasses, passes };
}
