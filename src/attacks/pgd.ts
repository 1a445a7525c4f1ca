// Projected Gradient Descent with a random start: A. Madry, A. Makelov, L. Schmidt, D. Tsipras, A. Vladu,
// "Towards deep learning models resistant to adversarial attacks", ICLR 2018, https://arxiv.org/abs/1706.06083.
//   Linf: x ← Π(x + α·sign(∇L)), start uniform in the eps-box (as torchattacks' PGD);
//   L2:   x ← Π(x + α·∇L/‖∇L‖), start at a uniform radius in a random direction (as torchattacks' PGDL2).
// Step size: default α = 2.5·eps/steps (the rule of Madry et al.'s robustness library), not torchattacks' fixed
// 2/255: it scales with eps and the step count, and 2.5·eps of total travel reaches any point of the ball from
// any start (diameter 2·eps) with room for the projection. Defaults: 10 steps, 1 restart, cross-entropy.
// Each restart attacks only the images still robust; an image's result is the last iterate of its run.
import { Tensor, type Device, tensor, tidy } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { GradientAttack, type AttackRun, type GradientAttackOptions, type SingleRunInput, type SingleRunResult, checkPositiveInteger, iterate, randomSphereStart } from './attack.js';
import { normalizePerImage, perImage } from './threat-model.js';

export interface PgdOptions extends GradientAttackOptions {
  /** Iterations per run. Default 10. */
  steps?: number;
  /** Step size α. Default 2.5·eps/steps. */
  stepSize?: number;
  /** Random restarts, each on the images still robust. Default 1. */
  restarts?: number;
  /** Start from a random point of the ball instead of the clean image. Default true. Ignored with `start`. */
  randomStart?: boolean;
  /**
   * [N, C, H, W], one row per image of the next run() call: where each image's first run starts (e.g. a transfer
   * attack's result) instead of a random or clean start. Projected onto the threat model around the clean images
   * first. Later restarts start at a random point of the sphere, as APGD's. Default none.
   */
  start?: Tensor;
}

export class PGD extends GradientAttack {
  readonly name: string = 'pgd';
  /** Iterations per run. */
  readonly steps: number;
  /** Size of each signed-gradient step (L∞) or normalised-gradient step (L2). */
  readonly stepSize: number;
  /** Runs, each on the images still robust. */
  readonly restarts: number;
  /** Whether the first run starts at a random point of the ball. */
  readonly randomStart: boolean;
  private readonly startPoints: Tensor | undefined;

  constructor(model: Classifier, options: PgdOptions = {}) {
    super(model, options);
    this.steps = checkPositiveInteger('steps', options.steps ?? 10);
    this.stepSize = options.stepSize ?? 2.5 * this.eps / this.steps;
    this.restarts = checkPositiveInteger('restarts', options.restarts ?? 1);
    this.randomStart = options.randomStart ?? true;
    if (options.start !== undefined && !(options.start instanceof Tensor)) throw new TypeError('start must be a Tensor [N, C, H, W] of points to start from');
    this.startPoints = options.start;
  }

  protected perturb(x: Tensor, y: Tensor, run: AttackRun): Tensor {
    let start: Tensor | undefined;
    if (this.startPoints) {
      if (this.startPoints.shape.join() !== x.shape.join()) throw new RangeError(`start has shape [${this.startPoints.shape}], the images [${x.shape}]`);
      start = this.projector(x)(this.startPoints.detach().to(x.dtype));
    }
    return this.attackWithRestarts(x, y, run, this.restarts, this.steps, (input) => this.singleRun(input, start));
  }

  private start({ x, restart, run }: SingleRunInput, start: Tensor | undefined): Tensor {
    if (start) return restart === 0 ? rowsOfRun(start, run, x) : randomSphereStart(x, run, this.norm, this.eps);
    if (!this.randomStart) return x.clone();
    if (this.norm === 'Linf') return x.add(run.uniform(x.shape, x).mul(2 * this.eps).sub(this.eps)).clamp(0, 1);
    const direction = normalizePerImage(run.normal(x.shape, x), 'L2');
    const radius = perImage(run.uniform([x.shape[0]!], x), x.ndim).mul(this.eps);
    return x.add(direction.mul(radius)).clamp(0, 1);
  }

  private singleRun(input: SingleRunInput, start: Tensor | undefined): SingleRunResult {
    const { x, y, targets, run } = input;
    const lossOf = this.objective(y, targets);
    const project = this.projector(x);
    let state = tidy(() => ({ xAdv: this.start(input, start) }));
    for (let i = 0; i < this.steps; i++) {
      state = iterate(state, () => {
        const { gradient, loss } = this.eotGradient(state.xAdv, lossOf);
        const direction = this.norm === 'Linf' ? gradient.sign() : normalizePerImage(gradient, 'L2');
        run.tick(loss, null);
        return { xAdv: project(state.xAdv.add(direction.mul(this.stepSize))) };
      });
    }
    const logits = this.model.forward(state.xAdv);
    return { fooled: logits.argmax({ dim: 1 }).ne(y), adversarial: state.xAdv, best: state.xAdv, bestLoss: lossOf(logits) };
  }
}

/**
 * The rows of a per-call tensor for the images of the current run. attackRobust hands each run the images still
 * robust, in order, chosen just before the call: the same selection recomputed here.
 */
function rowsOfRun(perCall: Tensor, run: AttackRun, x: Tensor): Tensor {
  const indices = run.robust.flatMap((r, i) => (r ? [i] : []));
  if (indices.length !== x.shape[0]) throw new Error(`internal: ${indices.length} robust images for a run on ${x.shape[0]}`);
  return perCall.indexSelect(0, tensor(indices, { dtype: 'int64', device: x.device as Device }));
}
