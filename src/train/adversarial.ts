// Light adversarial training (the paper's §4, "adversarial training" rows): part of each batch is replaced by
// adversarial examples of the current model before the update. The notebook's version (train_model with
// use_adversarial_training) is one FGSM step (Goodfellow et al. 2015) at eps = 8/255 replacing the whole batch,
// computed with the model in eval mode (BatchNorm running statistics, no statistic updates), then clipped to
// [0, 1]. PGD (Madry et al. 2018) with a random start is the stronger option. This is deliberately small and
// local: the attack library (src/attacks) is for evaluation and carries far more machinery.
import { Module, withEvalMode } from '../nn/module.js';
import { cat, enableGrad, grad, randLike, tidy, type Tensor } from '../tensor/index.js';

/** The attack adversarial training uses: one FGSM step, or PGD (Madry et al. 2018). */
export type AdversarialAttackKind = 'fgsm' | 'pgd';

/** Settings of adversarial training (L∞, pixel values in [0, 1]). */
export interface AdversarialTrainingOptions {
  /** 'fgsm': one signed-gradient step of size eps. 'pgd': `steps` projected signed-gradient steps. */
  attack: AdversarialAttackKind;
  /** L∞ radius in [0, 1] pixel units. Default 8/255. */
  eps?: number;
  /** PGD iterations. Default 1 for FGSM (the only value it takes), 10 for PGD. */
  steps?: number;
  /** Size of each step. Default eps for FGSM, 2.5·eps/steps for PGD (Madry et al.). */
  stepSize?: number;
  /** Start PGD at a uniform random point of the eps-ball. Default true for PGD, false for FGSM. */
  randomStart?: boolean;
  /**
   * Share of each batch replaced by adversarial examples, in [0, 1]. The first round(fraction·N) images of the
   * (already shuffled) batch are attacked, the rest stay clean. Default 1: the whole batch, as the notebook.
   */
  fraction?: number;
  /**
   * What the attack maximises: 'training' (the training loss, e.g. the mean member cross-entropy: the
   * min-max of Madry et al.) or 'output' (cross-entropy of the model's forward() output, the notebook's
   * choice, where the model being trained had one output). Default 'training'.
   */
  objective?: 'training' | 'output';
}

/** {@link AdversarialTrainingOptions} with every default applied. */
export type ResolvedAdversarialOptions = Required<AdversarialTrainingOptions>;

/** The options with defaults applied and checked. */
export function resolveAdversarialOptions(options: AdversarialTrainingOptions): ResolvedAdversarialOptions {
  const { attack } = options;
  if (attack !== 'fgsm' && attack !== 'pgd') throw new RangeError(`adversarial.attack must be 'fgsm' or 'pgd', got '${String(attack)}'`);
  const eps = options.eps ?? 8 / 255;
  if (!(Number.isFinite(eps) && eps >= 0 && eps <= 1)) throw new RangeError(`adversarial.eps must be in [0, 1], got ${eps}`);
  const steps = options.steps ?? (attack === 'fgsm' ? 1 : 10);
  if (!(Number.isInteger(steps) && steps >= 1)) throw new RangeError(`adversarial.steps must be a positive integer, got ${steps}`);
  if (attack === 'fgsm' && steps !== 1) throw new RangeError(`FGSM takes exactly one step (got steps: ${steps}); use attack: 'pgd' for more`);
  const stepSize = options.stepSize ?? (attack === 'fgsm' ? eps : (2.5 * eps) / steps);
  if (!(Number.isFinite(stepSize) && stepSize >= 0)) throw new RangeError(`adversarial.stepSize must be a number >= 0, got ${stepSize}`);
  const fraction = options.fraction ?? 1;
  if (!(fraction >= 0 && fraction <= 1)) throw new RangeError(`adversarial.fraction must be in [0, 1], got ${fraction}`);
  const objective = options.objective ?? 'training';
  if (objective !== 'training' && objective !== 'output') throw new RangeError(`adversarial.objective must be 'training' or 'output', got '${String(objective)}'`);
  return { attack, eps, steps, stepSize, randomStart: options.randomStart ?? attack === 'pgd', fraction, objective };
}

/**
 * The batch with its first round(fraction·N) images replaced by adversarial examples: a new tensor, every image
 * within `eps` (L∞) of the original and in [0, 1]. `lossOf(x, labels)` is the scalar to maximise. The model is
 * put in eval mode for the attack and every module's mode restored afterwards; random draws (PGD's start, a
 * stochastic model's noise) come from libtorch's default generator, so they are part of a checkpoint's state.
 */
export function adversarialBatch(
  model: Module,
  images: Tensor,
  labels: Tensor,
  lossOf: (x: Tensor, labels: Tensor) => Tensor,
  options: ResolvedAdversarialOptions,
): Tensor {
  const n = images.shape[0]!;
  const k = Math.round(options.fraction * n);
  if (k === 0 || options.eps === 0) return images.clone();
  return withEvalMode(model, () => tidy(() => {
    const clean = k === n ? images : images.narrow(0, 0, k);
    const y = k === n ? labels : labels.narrow(0, 0, k);
    const attacked = perturb(clean, y, lossOf, options);
    return k === n ? attacked : cat([attacked, images.narrow(0, k, n - k)], 0);
  }));
}

function perturb(x: Tensor, y: Tensor, lossOf: (x: Tensor, labels: Tensor) => Tensor, o: ResolvedAdversarialOptions): Tensor {
  const clean = x.detach();
  let current = o.randomStart
    ? tidy(() => randLike(clean).mul(2 * o.eps).sub(o.eps).add(clean).clamp(0, 1))
    : clean.clone();
  for (let step = 0; step < o.steps; step++) {
    const next = tidy(() => {
      const input = current.detach().setRequiresGrad(true);
      const g = enableGrad(() => grad(lossOf(input, y), [input])[0]);
      if (!g) throw new Error('adversarial training: the loss does not depend on the input images');
      // Projection onto the eps-ball around the clean image, then onto the valid pixel range.
      return input.detach().add(g.sign().mul(o.stepSize)).clamp(clean.sub(o.eps), clean.add(o.eps)).clamp(0, 1);
    });
    current.dispose();
    current = next;
  }
  return current;
}

