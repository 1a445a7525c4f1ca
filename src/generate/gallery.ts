// The interpretable-perturbation gallery (Fort & Lakshminarayanan 2024, arXiv 2408.05446, section 4 and its
// figures of attacked images): a test image pushed toward every other class inside a small and a large L-inf
// ball. The paper's claim is that on the multi-resolution self-ensemble the change reads, to a person, as the
// target class (an attack becomes an edit), while on an ordinary network it is structureless noise. The gallery
// puts both models side by side on the same images and targets, and counts how often each target was reached.
//
// Each change is the generation loop (generate.ts) on a parametrisation whose base is the test image, projected
// onto the ball around it inside every render: with raw pixels, squashed by clamping, stepping along the
// gradient's sign, this is targeted PGD without a random start (Madry et al.'s step rule, 2.5·eps/steps), on the
// target's log-probability; 'multires' instead writes the change as a sum of up-sampled tensors at every
// power-of-two resolution, the paper's generation parametrisation, which favours coarse changes.
import { generate } from './generate.js';
import { classObjective, type MemberClassifier } from './objectives.js';
import { MultiResolutionImage, pixelImage } from './parametrisation.js';
import type { Classifier } from '../nn/classifier.js';
import { SurrogateClassifier, isMemberEnsemble } from '../attacks/surrogate.js';
import { MeanLogits } from '../ensemble/aggregators.js';
import { noGrad, tidy, type Tensor } from '../tensor/index.js';
import { withEvalMode } from '../nn/module.js';
import { proportionEstimate, type AccuracyEstimate } from '../util/statistics.js';

/**
 * How a targeted change is optimised: directly on the pixels (a targeted attack) or through the multi-resolution
 * parametrisation.
 */
export type ChangeParametrisation = 'pixels' | 'multires';

/** Settings of {@link changeTowardClass}: an L∞ change of images toward a target class. */
export interface TargetedChangeOptions {
  /** L-inf radius of the change, in [0, 1] pixel units. */
  eps: number;
  /** Default 50. */
  steps?: number;
  /** Sign-gradient step in pixel units. Default 2.5·eps/steps (PGD's rule; see attacks/pgd.ts). */
  stepSize?: number;
  /** Default 'pixels' (a targeted attack); 'multires' for the paper's multi-resolution parametrisation. */
  parametrisation?: ChangeParametrisation;
  /**
   * Forward/backward passes averaged per step: for a stochastic model (the prior draws anew on each pass), the
   * gradient of the expected log-probability (EOT). Default 4.
   */
  copies?: number;
  /**
   * What the gradient comes from: 'mean-logits' (default for a self-ensemble) differentiates the mean of the
   * members' logits, 'output' the model's own output. CrossMax's max-subtractions mask gradients (with the
   * randomness fixed, PGD-20 leaves CrossMax at 32.5% but the mean-logit version at 1.2%; Zhang et al. 2024), so
   * the mean is the stronger direction; the change is always judged on the model's own output.
   */
  gradient?: 'mean-logits' | 'output';
  /** Default 0. */
  seed?: number;
  /** Called after every step. */
  onStep?: () => void;
}

/** Powers of two from 1 to the image side (and the side itself): 1, 2, 4, 8, 16, 32 for CIFAR. */
export function powerOfTwoResolutions(side: number): number[] {
  const sizes: number[] = [];
  for (let s = 1; s < side; s *= 2) sizes.push(s);
  sizes.push(side);
  return sizes;
}

/**
 * `images` [N, 3, H, W] in [0, 1] changed, inside the L-inf ball of radius eps around each, to raise the model's
 * log-probability of `targetClass`. Returns the changed images (the caller disposes them).
 */
export function changeTowardClass(model: Classifier | MemberClassifier, images: Tensor, targetClass: number, options: TargetedChangeOptions): Tensor {
  if (images.ndim !== 4 || images.shape[1] !== 3) throw new Error(`changeTowardClass expects images [N, 3, H, W], got [${images.shape.join(', ')}]`);
  const { eps } = options;
  if (!(eps > 0 && eps <= 1)) throw new RangeError(`eps must be in (0, 1], got ${eps}`);
  const steps = options.steps ?? 50;
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be a positive integer, got ${steps}`);
  const stepSize = options.stepSize ?? (2.5 * eps) / steps;
  const kind = options.parametrisation ?? 'pixels';
  const [, , h, w] = images.shape as [number, number, number, number];
  const common = { size: [h, w] as [number, number], base: images, squash: 'clamp' as const, constraint: { norm: 'Linf' as const, eps } };
  const resolutions = powerOfTwoResolutions(h);
  const gradient = options.gradient ?? (isMemberEnsemble(model) ? 'mean-logits' : 'output');
  if (gradient === 'mean-logits' && !isMemberEnsemble(model)) throw new Error("gradient 'mean-logits' needs a self-ensemble (memberLogits() and an aggregator)");
  const differentiated: Classifier = gradient === 'mean-logits' ? new SurrogateClassifier(model, new MeanLogits(), 'transfer') : model;
  const parametrisation = kind === 'pixels' ? pixelImage(common) : new MultiResolutionImage({ ...common, resolutions });
  try {
    const result = generate({
      parametrisation,
      objectives: [classObjective(differentiated, { classIndex: targetClass, quantity: 'log-prob', name: `class ${targetClass}` })],
      steps,
      // Every resolution's tensor takes a sign step, and their up-sampled sum moves a pixel by up to
      // resolutions × lr: the step is shared among them so that a pixel moves about as far as with 'pixels'.
      optimizer: { kind: 'sgd', lr: kind === 'pixels' ? stepSize : stepSize / resolutions.length },
      gradientSign: true,
      augment: { copies: options.copies ?? 4, jitter: 0, cropSize: h, noise: 0 },
      seed: options.seed ?? 0,
      onProgress: options.onStep,
    });
    return result.images; // no snapshots were asked for
  } finally {
    parametrisation.dispose();
  }
}

/** Settings of {@link interpretabilityGallery}: radii and target classes. */
export interface InterpretabilityGalleryOptions extends Omit<TargetedChangeOptions, 'eps'> {
  /** L-inf radii, e.g. [8/255, 32/255] (a small and a large change). */
  eps: readonly number[];
  /** Target classes. Default every class of the model. */
  targets?: readonly number[];
}

/** The images changed toward one target at one radius. */
export interface TargetedChangeCell {
  /** The radius of the change. */
  eps: number;
  /** The target class. */
  target: number;
  /** [N, 3, H, W], the images changed toward `target` (the caller disposes them). */
  images: Tensor;
  /** The model's prediction on each changed image (one draw of its randomness). */
  predictions: number[];
  /** For a self-ensemble, each member's prediction: [image][member]. */
  memberPredictions: number[][] | null;
}

/**
 * Test images pushed toward every class at each radius (the paper's interpretability figure), with the model's
 * predictions.
 */
export interface InterpretabilityGallery {
  /** One cell per (eps, target). */
  cells: TargetedChangeCell[];
  /**
   * Per eps: the share of (image, target ≠ label) pairs that the model then predicts as the target, and that share
   * with its 95% Wilson interval over the pairs (`estimate`, n = pairs; the pairs of one image are not independent).
   */
  targetedSuccess: {
    /** The L∞ radius. */
    eps: number;
    /** Pairs whose prediction became the target, over all pairs. */
    rate: number;
    /** (image, target) pairs tried at this eps. */
    pairs: number;
    /** `rate` with its 95% Wilson interval over the pairs. */
    estimate: AccuracyEstimate;
  }[];
}

/** Every image changed toward every target at every eps, with the model's and its members' predictions. */
export function interpretabilityGallery(model: Classifier | MemberClassifier, images: Tensor, labels: readonly number[], options: InterpretabilityGalleryOptions): InterpretabilityGallery {
  return withEvalMode(model, () => interpretabilityGalleryInCurrentMode(model, images, labels, options));
}

function interpretabilityGalleryInCurrentMode(model: Classifier | MemberClassifier, images: Tensor, labels: readonly number[], options: InterpretabilityGalleryOptions): InterpretabilityGallery {
  const n = images.shape[0]!;
  if (labels.length !== n) throw new Error(`gallery: ${n} images but ${labels.length} labels`);
  const classes = noGrad(() => tidy(() => model.forward(images.narrow(0, 0, Math.min(1, n))).shape[1]!));
  const targets = options.targets ?? Array.from({ length: classes }, (_, i) => i);
  for (const t of targets) if (!Number.isInteger(t) || t < 0 || t >= classes) throw new RangeError(`target class ${t} is not one of the model's ${classes}`);
  const members = typeof (model as MemberClassifier).memberLogits === 'function' ? (model as MemberClassifier) : null;
  const cells: TargetedChangeCell[] = [];
  const targetedSuccess: InterpretabilityGallery['targetedSuccess'] = [];
  try {
    for (const eps of options.eps) {
      let hits = 0;
      let pairs = 0;
      for (const target of targets) {
        const changed = changeTowardClass(model, images, target, { ...options, eps });
        const { predictions, memberPredictions } = noGrad(() => tidy(() => {
          if (!members) return { predictions: argmaxRows(model.forward(changed)), memberPredictions: null };
          // The verdict is the aggregate of the very draw the members saw, so the votes and the verdict agree.
          const logits = members.memberLogits(changed);
          const votes = argmaxRows(logits.flatten(0, 1));
          const m = logits.shape[1]!;
          return {
            predictions: argmaxRows(isMemberEnsemble(model) ? model.aggregator.aggregate(logits) : model.forward(changed)),
            memberPredictions: Array.from({ length: n }, (_, i) => votes.slice(i * m, (i + 1) * m)),
          };
        }));
        cells.push({ eps, target, images: changed, predictions, memberPredictions });
        predictions.forEach((p, i) => {
          if (labels[i] === target) return;
          pairs++;
          if (p === target) hits++;
        });
      }
      targetedSuccess.push({ eps, rate: pairs > 0 ? hits / pairs : 0, pairs, estimate: proportionEstimate(hits, pairs) });
    }
  } catch (err) {
    for (const c of cells) c.images.dispose();
    throw err;
  }
  return { cells, targetedSuccess };
}

function argmaxRows(logits: Tensor): number[] {
  return logits.argmax({ dim: 1 }).toArray().map(Number);
}
