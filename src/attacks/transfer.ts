// The strongest published attack on the self-ensemble (Zhang, Nikolić, Schlarmann, Croce, Hein, Carlini, Tramèr,
// "Evaluating the robustness of the 'Ensemble Everything Everywhere' defense", arXiv 2411.14834): a transfer attack
// from the same model with the mean of logits in place of CrossMax (PGD, cross-entropy, 500 steps, EOT over 10
// draws, the model's randomness on), then PGD on the real model starting from it. CIFAR-10: 62% → 11%.
// Stage 2 always projects onto the ball around the CLEAN image: the paper's first version re-projected around
// previous adversarial images and drifted to 160/255.
import { Tensor, type Device, tensor, where } from '../tensor/index.js';
import { MeanLogits } from '../ensemble/aggregators.js';
import type { Classifier } from '../nn/classifier.js';
import { Attack, type AttackOptions, type AttackRun, type ProgressEvent, checkPositiveInteger } from './attack.js';
import { perImage } from './threat-model.js';
import { PGD, type PgdOptions } from './pgd.js';
import { SurrogateGradientAttack, isMemberEnsemble, type Surrogate } from './surrogate.js';

/** RefinePGD's options: PGD's, with the start points required. */
export interface RefinePgdOptions extends Omit<PgdOptions, 'randomStart'> {
  /**
   * [N, C, H, W], one row per image of the next run() call: where each image's first run starts (e.g. a transfer
   * attack's result). Projected onto the threat model around the clean images first. Later restarts start at a
   * random point of the sphere, as APGD's.
   */
  start: Tensor;
}

/**
 * PGD (Madry et al., see pgd.ts: same step rule, default step size 2.5·eps/steps, 10 steps) started from given
 * points instead of a random one, and projected around the clean images throughout: PGD with its `start` option
 * required, under the name 'pgd-refine'.
 */
export class RefinePGD extends PGD {
  override readonly name: string = 'pgd-refine';

  constructor(model: Classifier, options: RefinePgdOptions) {
    if (!(options.start instanceof Tensor)) throw new TypeError('RefinePGD needs start: the points [N, C, H, W] to start from');
    super(model, options);
  }
}

/** Zhang et al.'s budgets: 500 PGD steps with EOT over 10 draws in the transfer stage (and, here, in the refinement). */
export const PUBLISHED_TRANSFER_THEN_REFINE = Object.freeze({ transferSteps: 500, transferEot: 10, refineSteps: 500, refineEot: 10 });

/** TransferThenRefine's options: the surrogate, and each stage's steps, EOT and step size. */
export interface TransferThenRefineOptions extends AttackOptions {
  /**
   * Stage 1's gradients. Default for a self-ensemble: MeanLogits on its own members (Zhang et al.); any other
   * model needs one (e.g. an independent undefended classifier).
   */
  surrogate?: Surrogate;
  /** Loss of both stages. Default 'ce'. */
  loss?: 'ce' | 'dlr';
  /** Stage 1 PGD steps on the surrogate alone. Default 500. */
  transferSteps?: number;
  /** Stage 1 EOT draws per step (the model's randomness stays on). Default 10. */
  transferEot?: number;
  /** Default 2.5·eps/transferSteps (PGD's rule). */
  transferStepSize?: number;
  /** Stage 2 PGD steps on the defended model from stage 1's points; 0 for the transfer attack alone. Default 500. */
  refineSteps?: number;
  /** Stage 2 EOT draws per step. Default 10. */
  refineEot?: number;
  /** Default 2.5·eps/refineSteps. */
  refineStepSize?: number;
}

/**
 * Stage 1: PGD on the surrogate alone (SurrogateGradientAttack in 'transfer' mode, random start); stage 2:
 * RefinePGD on the defended model from stage 1's points, inside the ball around the clean image. Both stages run
 * on the images the defended model's clean pass chose (never re-chosen by the surrogate). Per image the result is
 * stage 2's, or stage 1's where only stage 1 fooled the model.
 */
export class TransferThenRefine extends Attack {
  readonly name: string;
  /** Stage 1's gradients. */
  readonly surrogate: Surrogate;
  /** Loss of both stages. */
  readonly loss: 'ce' | 'dlr';
  /** Stage 1 PGD steps. */
  readonly transferSteps: number;
  /** Stage 1 EOT draws per step. */
  readonly transferEot: number;
  /** Stage 1 step size (undefined: PGD's rule). */
  readonly transferStepSize: number | undefined;
  /** Stage 2 PGD steps. */
  readonly refineSteps: number;
  /** Stage 2 EOT draws per step. */
  readonly refineEot: number;
  /** Stage 2 step size (undefined: PGD's rule). */
  readonly refineStepSize: number | undefined;

  constructor(model: Classifier, options: TransferThenRefineOptions = {}) {
    super(model, options);
    if (options.surrogate) {
      this.surrogate = options.surrogate;
    } else if (isMemberEnsemble(model)) {
      this.surrogate = new MeanLogits();
    } else {
      throw new TypeError('TransferThenRefine needs a surrogate for a model without memberLogits()');
    }
    this.loss = options.loss ?? 'ce';
    this.transferSteps = checkPositiveInteger('transferSteps', options.transferSteps ?? PUBLISHED_TRANSFER_THEN_REFINE.transferSteps);
    this.transferEot = checkPositiveInteger('transferEot', options.transferEot ?? PUBLISHED_TRANSFER_THEN_REFINE.transferEot);
    this.transferStepSize = options.transferStepSize;
    this.refineSteps = checkPositiveInteger('refineSteps', options.refineSteps ?? PUBLISHED_TRANSFER_THEN_REFINE.refineSteps, true);
    this.refineEot = checkPositiveInteger('refineEot', options.refineEot ?? PUBLISHED_TRANSFER_THEN_REFINE.refineEot);
    this.refineStepSize = options.refineStepSize;
    this.name = this.refineSteps > 0 ? 'transfer-then-refine' : 'transfer';
    this.transferStage(); // fails now on bad options
  }

  protected perturb(x: Tensor, y: Tensor, run: AttackRun): Tensor {
    // Both stages attack exactly the images this run chose on the defended model (see Attack.runOn): stage 1 must
    // not skip an image the surrogate misclassifies, nor stage 2 one that another draw of the model does.
    const plan = { attack: [...run.robust], classes: run.classes };
    const first = this.transferStage().runOn(x, y, plan);
    if (this.refineSteps === 0) return first.adversarial;
    const second = new RefinePGD(this.model, {
      ...this.shared('refine'), start: first.adversarial, steps: this.refineSteps, eot: this.refineEot, stepSize: this.refineStepSize,
    }).runOn(x, y, plan);
    // Stage 2 ascends the loss from stage 1's points but can step off a fooling one; where it did not run, its
    // output is the clean image, and stage 1's point is the better one.
    const keepFirst = first.success.map((s, i) => (!second.attacked?.[i] || (s && !second.success[i]) ? 1 : 0));
    const mask = tensor(keepFirst, { device: x.device as Device }).gt(0);
    return where(perImage(mask, x.ndim), first.adversarial, second.adversarial);
  }

  private transferStage(): SurrogateGradientAttack {
    return new SurrogateGradientAttack(this.model, {
      ...this.shared('transfer'), surrogate: this.surrogate, mode: 'transfer', attack: 'pgd', randomStart: true,
      steps: this.transferSteps, eot: this.transferEot, stepSize: this.transferStepSize,
    });
  }

  private shared(stage: string) {
    const onProgress = this.onProgress ? (event: ProgressEvent) => this.onProgress!({ ...event, attack: `${this.name}:${stage}` }) : undefined;
    return { norm: this.norm, eps: this.eps, seed: this.seed, loss: this.loss, onProgress };
  }
}
