// Auto-PGD: F. Croce, M. Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
// parameter-free attacks", ICML 2020, https://arxiv.org/abs/2003.01690 (Algorithm 1, Section 3), as in the
// reference autoattack/autopgd_base.py (APGDAttack, APGDAttack_targeted):
//   - start on the eps-sphere around x (uniform direction for Linf, Gaussian for L2), clipped to [0, 1];
//   - step size η = 2·eps per image; momentum α = 0.75 (no momentum on the first step);
//   - checkpoints after w_j iterations, p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)
//     (reference: first gap max(⌊0.22·N⌋, 1), shrinking by max(⌊0.03·N⌋, 1) down to max(⌊0.06·N⌋, 1));
//   - at a checkpoint, halve η and restart from the best point (and its gradient) when the loss increased in at
//     most ρ = 0.75 of the steps since the last one, or when η was not halved last time and the best loss has not
//     improved since;
//   - defaults: 100 iterations, 1 restart, 9 target classes for APGD-T, EOT 1.
import { Tensor, type Device, full, where, keep, tidy, zeros } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { GradientAttack, type AttackRun, type GradientAttackOptions, type SingleRunInput, type SingleRunResult, allTrue, checkPositiveInteger, iterate, randomSphereStart } from './attack.js';
import { normalizePerImage, perImage } from './threat-model.js';

export interface ApgdOptions extends GradientAttackOptions {
  /** Iterations per run (the reference's n_iter). Default 100. */
  steps?: number;
  /** Random restarts, each on the images still robust. Default 1. */
  restarts?: number;
  /** Fraction of increasing steps below which the step size is halved. Default 0.75. */
  rho?: number;
}

/**
 * The iterations (1-based counts) after which APGD checks whether to halve its step size: the paper's
 * w_j = ⌈p_j·N⌉ computed with the reference's integer gaps.
 */
export function apgdCheckpoints(steps: number): number[] {
  const first = Math.max(Math.trunc(0.22 * steps), 1);
  const smallest = Math.max(Math.trunc(0.06 * steps), 1);
  const decrease = Math.max(Math.trunc(0.03 * steps), 1);
  const checkpoints: number[] = [];
  let gap = first;
  for (let at = first; at <= steps; at += gap) {
    checkpoints.push(at);
    gap = Math.max(gap - decrease, smallest);
  }
  return checkpoints;
}

/** APGD on cross-entropy (APGD-CE, default), DLR (APGD-DLR) or, with `targeted`, targeted DLR/CE (APGD-T). */
export class APGD extends GradientAttack {
  readonly name: string;
  /** Iterations per run (per restart and target class). */
  readonly steps: number;
  /** Runs per target class, each on the images still robust. */
  readonly restarts: number;
  /** Fraction of successful steps below which the step size is halved at a checkpoint (the paper's ρ, 0.75). */
  readonly rho: number;

  constructor(model: Classifier, options: ApgdOptions = {}) {
    super(model, options);
    this.steps = checkPositiveInteger('steps', options.steps ?? 100);
    this.restarts = checkPositiveInteger('restarts', options.restarts ?? 1);
    this.rho = options.rho ?? 0.75;
    this.name = this.targeted ? (this.loss === 'dlr' ? 'apgd-t' : 'apgd-t-ce') : `apgd-${this.loss}`;
  }

  protected perturb(x: Tensor, y: Tensor, run: AttackRun): Tensor {
    return this.attackWithRestarts(x, y, run, this.restarts, this.steps, (input) => this.singleRun(input));
  }

  private singleRun({ x, y, targets, run }: SingleRunInput): SingleRunResult {
    const n = x.shape[0]!;
    const rank = x.ndim;
    const lossOf = this.objective(y, targets);
    const project = this.projector(x);
    const checkpoints = new Set(apgdCheckpoints(this.steps));
    // The loss of every iteration [steps, n], for the oscillation count at checkpoints. As in the reference, the
    // count at the first checkpoint reaches one step before iteration 0 and reads the buffer's last, still zero, row.
    const lossSteps = keep(zeros([this.steps, n], { device: x.device as Device }));
    const lossAt = (j: number) => lossSteps.select(0, (j + this.steps) % this.steps);
    let lastCheckpoint = 0;
    try {
      let s = tidy(() => {
        const start = randomSphereStart(x, run, this.norm, this.eps);
        const first = this.eotGradient(start, lossOf);
        return {
          xAdv: start, xOld: start, xBest: start, xBestAdv: start,
          grad: first.gradient, gradBest: first.gradient, lossBest: first.loss,
          acc: first.logits.argmax({ dim: 1 }).eq(y),
          stepSize: full([n, ...Array<number>(rank - 1).fill(1)], 2 * this.eps, { dtype: x.dtype, device: x.device as Device }),
          lossBestLastCheck: first.loss, reducedLastCheck: allTrue(n, x),
        };
      });
      for (let i = 0; i < this.steps; i++) {
        s = iterate(s, () => {
          const momentum = i > 0 ? 0.75 : 1.0;
          const previousMove = s.xAdv.sub(s.xOld);
          const direction = this.norm === 'Linf' ? s.grad.sign() : normalizePerImage(s.grad, 'L2');
          const z = project(s.xAdv.add(direction.mul(s.stepSize)));
          let xAdv = project(s.xAdv.add(z.sub(s.xAdv).mul(momentum)).add(previousMove.mul(1 - momentum)));

          const current = this.eotGradient(xAdv, lossOf);
          let gradient = current.gradient;
          const correct = current.logits.argmax({ dim: 1 }).eq(y);
          const acc = s.acc.logicalAnd(correct);
          const xBestAdv = where(perImage(correct.logicalNot(), rank), xAdv, s.xBestAdv);

          const loss = current.loss;
          lossSteps.select(0, i).copy_(loss);
          const improved = loss.gt(s.lossBest);
          const xBest = where(perImage(improved, rank), xAdv, s.xBest);
          const gradBest = where(perImage(improved, rank), gradient, s.gradBest);
          const lossBest = where(improved, loss, s.lossBest);

          let { stepSize, lossBestLastCheck, reducedLastCheck } = s;
          if (checkpoints.has(i + 1)) {
            const k = i + 1 - lastCheckpoint;
            lastCheckpoint = i + 1;
            let increases = zeros([n], { device: x.device as Device });
            for (let back = 0; back < k; back++) increases = increases.add(lossAt(i - back).gt(lossAt(i - back - 1)).float());
            const noImprovement = reducedLastCheck.logicalNot().logicalAnd(lossBestLastCheck.ge(lossBest));
            const reduce = increases.le(k * this.rho).logicalOr(noImprovement);
            const reduceImage = perImage(reduce, rank);
            stepSize = where(reduceImage, stepSize.div(2), stepSize);
            xAdv = where(reduceImage, xBest, xAdv);
            gradient = where(reduceImage, gradBest, gradient);
            reducedLastCheck = reduce;
            lossBestLastCheck = lossBest;
          }
          run.tick(loss, acc.logicalNot());
          return {
            xAdv, xOld: s.xAdv, xBest, xBestAdv, grad: gradient, gradBest, lossBest, acc, stepSize,
            lossBestLastCheck, reducedLastCheck,
          };
        });
      }
      return { fooled: s.acc.logicalNot(), adversarial: s.xBestAdv, best: s.xBest, bestLoss: s.lossBest };
    } finally {
      lossSteps.dispose();
    }
  }
}

/** APGD-T: APGD on the targeted DLR loss over the 9 most likely other classes (AutoAttack's defaults). */
export class APGDT extends APGD {
  constructor(model: Classifier, options: ApgdOptions = {}) {
    super(model, { loss: 'dlr', targeted: true, ...options });
  }
}
