// The generation loop of Direct Ascent Synthesis (Fort & Whitaker 2025, arXiv 2502.07753): gradient ascent on a
// multi-resolution image parametrisation, each step's gradient averaged over randomly augmented views, against any
// weighted mix of objectives (a class of a classifier or of one self-ensemble member, CLIP prompts and images).
//
// Defaults are DAS's generate_image() (sources in parametrisation.ts): 100 steps of SGD, 64 augmented copies per
// step evaluated in batches of 32, no gradient sign. DAS's loss is the mean over one batch of 32 copies, and it
// back-propagates each of its ⌈64/32⌉ = 2 batches into the same gradient, so its lr 0.2 acts on twice the mean
// over all 64 copies. Here the gradient is the mean over all copies whatever the batch size (the batch size only
// bounds memory), so DAS's step is lr 0.4.
import { makeOptimizer } from '../optim/factory.js';
import type { Optimizer } from '../optim/optimizer.js';
import { Generator, grad, keep, noGrad, tidy, type Device, type Tensor } from '../tensor/index.js';
import { augmentImages, type AugmentOptions } from './augment.js';
import { asTerm, type Objective, type ObjectiveTerm } from './objectives.js';
import type { ImageParametrisation } from './parametrisation.js';

/** The generation loop's optimiser: a kind with DAS's defaults, or a factory of any optimiser. */
export type GenerationOptimizerSpec =
  | { kind: 'sgd'; lr?: number; momentum?: number }
  | { kind: 'adam'; lr?: number; betas?: [number, number] }
  | ((parameters: Tensor[]) => Optimizer);

/** DAS's settings for CLIP (and our equivalents where the loop differs; see the file header). */
export const DAS_CLIP_DEFAULTS = Object.freeze({
  steps: 100,
  /** DAS's SGD lr 0.2 on its sum of two batch means. */
  lr: 0.4,
  copies: 64,
  chunkSize: 32,
  noise: 0.2,
  jitter: 56,
  canvas: 336,
  modelResolution: 224,
});

/**
 * DAS's ImageNet-classifier example (the paper's blog post, "jellyfish" from class 107): canvas 336, resolutions
 * range(1, 337, 4), SGD lr 0.005, 100 steps, 16 copies with jitter 56 and noise 0.2, the class logit maximised.
 */
export const DAS_CLASSIFIER_DEFAULTS = Object.freeze({
  steps: 100,
  lr: 0.005,
  copies: 16,
  chunkSize: 16,
  noise: 0.2,
  jitter: 56,
  canvas: 336,
  resolutions: Object.freeze(Array.from({ length: 84 }, (_, i) => 1 + 4 * i)),
});

/** What {@link generate} reports after each step. */
export interface GenerateProgress {
  /** Steps done (1-based). */
  step: number;
  /** Steps planned. */
  steps: number;
  /** The step's loss, − Σ weight · Σ_images mean_copies score (before the update). */
  loss: number;
  /** Each objective's mean score over the step's views, by name. */
  scores: Record<string, number>;
}

/** Settings of {@link generate}: what is optimised, toward which objectives, and how (DAS's defaults). */
export interface GenerateOptions {
  /** What is optimised (MultiResolutionImage, or pixelImage for comparison). Its parameters are updated in place. */
  parametrisation: ImageParametrisation;
  /** Objectives (maximised with weight 1) or weighted terms (see maximise / minimise). */
  objectives: readonly (Objective | ObjectiveTerm)[];
  /** Default 100 (DAS). */
  steps?: number;
  /** Default { kind: 'sgd', lr: 0.4 } (DAS's step; see the file header). A function gets the parameters. */
  optimizer?: GenerationOptimizerSpec;
  /** Augmentations per step (see AugmentOptions; DAS's defaults), or false to score the images as they are. */
  augment?: AugmentOptions | false;
  /** Copies scored per forward/backward pass; only bounds memory. Default 32 (DAS's batch_size). */
  chunkSize?: number;
  /** Step along the gradient's sign (DAS's gradient_sign_only, which wants a ~1e4 smaller lr). Default false. */
  gradientSign?: boolean;
  /** Seed of the augmentations' random stream. Default 0. */
  seed?: number;
  /** Called after every step. */
  onProgress?: (progress: GenerateProgress) => void;
  /** Keep the images every this many steps (and after the last). Default 0: none. */
  snapshotEvery?: number;
}

/** What {@link generate} returns. */
export interface GenerateResult {
  /** The final images [batch, 3, H, W] in [0, 1], detached (the caller disposes them). */
  images: Tensor;
  /** Loss per step. */
  loss: number[];
  /** Mean score per step, by objective name. */
  scores: Record<string, number[]>;
  /** Images after the steps listed (detached; the caller disposes them). */
  snapshots: { step: number; images: Tensor }[];
}

/** Runs the optimisation; returns the images and the curves. Memory stays flat over steps (one tidy per step). */
export function generate(options: GenerateOptions): GenerateResult {
  const { parametrisation } = options;
  const steps = options.steps ?? DAS_CLIP_DEFAULTS.steps;
  if (!Number.isInteger(steps) || steps < 0) throw new RangeError(`steps must be a non-negative integer, got ${steps}`);
  const terms = options.objectives.map(asTerm);
  if (terms.length === 0) throw new Error('generate needs at least one objective');
  const names = terms.map((t) => t.objective.name);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate !== undefined) throw new Error(`two objectives are named '${duplicate}'; give them distinct names`);
  const augment = options.augment === false ? null : (options.augment ?? {});
  const copies = augment ? (augment.copies ?? DAS_CLIP_DEFAULTS.copies) : 1;
  const chunkSize = options.chunkSize ?? DAS_CLIP_DEFAULTS.chunkSize;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new RangeError(`chunkSize must be a positive integer, got ${chunkSize}`);
  const snapshotEvery = options.snapshotEvery ?? 0;

  const parameters = [...parametrisation.parameters];
  const device = (parameters[0]?.device ?? 'cpu') as Device;
  const generator = new Generator(options.seed ?? 0, device);
  const optimizer = generationOptimizer(options.optimizer ?? { kind: 'sgd', lr: DAS_CLIP_DEFAULTS.lr }, parameters);
  const result: GenerateResult = { images: null as unknown as Tensor, loss: [], scores: Object.fromEntries(names.map((n) => [n, []])), snapshots: [] };
  const snapshot = (step: number) => result.snapshots.push({ step, images: keep(noGrad(() => tidy(() => parametrisation.render().detach()))) });

  try {
    for (let step = 1; step <= steps; step++) {
      const { loss, scores } = tidy(() => {
        const image = parametrisation.render();
        // Views and objectives differentiate against a detached copy; the summed gradient then goes back through
        // the parametrisation once, however many chunks there were.
        const leaf = image.detach().setRequiresGrad(true);
        let imageGrad: Tensor | null = null;
        let lossValue = 0;
        const scoreSums = names.map(() => 0);
        for (let done = 0; done < copies; done += chunkSize) {
          const k = Math.min(chunkSize, copies - done);
          const chunk = tidy(() => {
            const views = augment ? augmentImages(leaf, { ...augment, copies: k }, generator) : leaf;
            let total: Tensor | null = null;
            const means: number[] = [];
            for (const { objective, weight } of terms) {
              const score = objective.score(views);
              if (score.ndim !== 1 || score.shape[0] !== views.shape[0]) {
                throw new Error(`objective '${objective.name}' returned scores [${score.shape.join(', ')}] for ${views.shape[0]} images`);
              }
              means.push(score.mean().item());
              // Summed over the generated images (each has its own parameters), averaged over all copies.
              const term = score.sum().mul(-weight / copies);
              total = total === null ? term : total.add(term);
            }
            const [g] = grad(total!, [leaf]);
            return { g: g!, value: total!.item(), means };
          });
          imageGrad = imageGrad === null ? chunk.g : imageGrad.add(chunk.g);
          lossValue += chunk.value;
          chunk.means.forEach((m, i) => { scoreSums[i] += (m * k) / copies; });
        }
        const grads = grad(image, parameters, { gradOutputs: [imageGrad], allowUnused: true });
        optimizer.zeroGrad();
        parameters.forEach((p, i) => {
          const g = grads[i];
          if (g) p.grad = options.gradientSign ? g.sign() : g;
        });
        optimizer.step();
        optimizer.zeroGrad();
        return { loss: lossValue, scores: Object.fromEntries(names.map((n, i) => [n, scoreSums[i]!])) };
      });
      result.loss.push(loss);
      for (const n of names) result.scores[n]!.push(scores[n]!);
      options.onProgress?.({ step, steps, loss, scores });
      if (snapshotEvery > 0 && (step % snapshotEvery === 0 || step === steps)) snapshot(step);
    }
    result.images = keep(noGrad(() => tidy(() => parametrisation.render().detach())));
  } catch (err) {
    for (const s of result.snapshots) s.images.dispose();
    throw err;
  } finally {
    optimizer.dispose();
  }
  return result;
}

function generationOptimizer(spec: GenerationOptimizerSpec, parameters: Tensor[]): Optimizer {
  if (typeof spec === 'function') return spec(parameters);
  if (spec.kind === 'sgd') return makeOptimizer(parameters, { kind: 'sgd', lr: spec.lr ?? DAS_CLIP_DEFAULTS.lr, momentum: spec.momentum });
  if (spec.kind === 'adam') return makeOptimizer(parameters, { kind: 'adam', lr: spec.lr, betas: spec.betas });
  throw new Error(`unknown optimizer kind '${String((spec as { kind: unknown }).kind)}'`);
}
