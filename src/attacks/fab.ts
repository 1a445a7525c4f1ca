// Fast Adaptive Boundary attack, Linf: F. Croce, M. Hein, "Minimally distorted adversarial examples with a fast
// adaptive boundary attack", ICML 2020, https://arxiv.org/abs/1907.02044; as in the reference
// autoattack/fab_base.py (FABAttack.attack_single_run, perturb), fab_pt.py (the linearisation) and
// fab_projections.py (projection_linf). Each iteration linearises the decision boundary at x₁ (towards the
// target class for FAB-T, towards the closest class otherwise), projects both x₁ and the clean x onto that
// hyperplane within [0, 1], and moves to a convex combination biased towards the clean image:
//   x₁ ← clip((x₁ + η·d₁)(1 − α) + (x + η·d₂)·α),  α = min(max(‖d₁‖/(‖d₁‖ + ‖d₂‖), 0), α_max);
// when x₁ is adversarial it is recorded if closer than the best so far, then pulled back: x₁ ← x + β(x₁ − x).
// FAB minimises the distance; an image counts as fooled only when its closest adversarial lies within eps.
// Restarts after the first start at x + (eps/2)·u/‖u‖∞ with u uniform in [−1, 1].
// Defaults (the reference's): 100 iterations, 1 restart, α_max 0.1, η 1.05, β 0.9, 9 target classes for FAB-T.
import { Tensor, type Device, cat, full, where, grad, enableGrad, tidy, stack, zeros } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { Attack, type AttackOptions, type AttackRun, type SingleRunInput, type SingleRunResult, checkPositiveInteger, iterate } from './attack.js';
import { normalizePerImage, perImage, perImageNorm } from './threat-model.js';

/**
 * Settings of {@link FAB} (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast adaptive boundary
 * attack"); defaults as AutoAttack's.
 */
export interface FabOptions extends AttackOptions {
  /** Iterations per run. Default 100. */
  steps?: number;
  /** Runs per target class; runs after the first start from a random point. Default 1. */
  restarts?: number;
  /** Largest weight of the step from the clean image. Default 0.1. */
  alphaMax?: number;
  /** Overshoot of the projection step. Default 1.05. */
  eta?: number;
  /** Pull-back towards the clean image after an adversarial step. Default 0.9. */
  beta?: number;
  /** FAB-T: one run per target class (2nd … (nTargetClasses+1)-th largest clean logit). Default false. */
  targeted?: boolean;
  /** Default 9 (capped at classes − 1). */
  nTargetClasses?: number;
}

/**
 * For each row i, the smallest-Linf step d with ⟨w_i, t_i + d⟩ = b_i and t_i + d ∈ [0, 1]^D (or, where the box
 * cannot reach the hyperplane, the box corner that comes closest). t, w: [B, D]; b: [B].
 */
export function projectionLinf(t: Tensor, wIn: Tensor, bIn: Tensor): Tensor {
  const dims = t.shape[1]!;
  // Orient each hyperplane so that t lies on its non-negative side; the step then lowers ⟨w, ·⟩.
  const side = wIn.mul(t).sum({ dim: 1 }).sub(bIn).ge(0).float().mul(2).sub(1);
  const w = wIn.mul(side.unsqueeze(1));
  const bOriented = bIn.mul(side);
  const towardsOne = w.lt(0).float();
  const used = w.ne(0).float();
  // The farthest each coordinate can move in the lowering direction, and how far that is.
  const fullStep = towardsOne.sub(t).mul(used);
  const room = towardsOne.sub(t.mul(towardsOne.mul(2).sub(1)));
  const order = room.argsort({ dim: 1 });
  const needed = bOriented.sub(w.mul(t).sum({ dim: 1 }));
  const reachable = w.mul(fullStep).sum({ dim: 1 });
  const descending = order.flip([1]);
  const wSorted = w.gather(1, descending);
  const saturated = wSorted.neg().mul(fullStep.gather(1, descending));
  // With radius λ between two consecutive sorted rooms, coordinates with more room move λ and the rest saturate:
  // ⟨w, d(λ)⟩ = partialBase[k] − partialSlope[k]·λ.
  const partialSlope = wSorted.abs().cumsum(1);
  const partialBase = saturated.cumsum(1).add(reachable.unsqueeze(1));
  const last = dims - 1;
  const smallestRoom = room.gather(1, order.slice(1, 0, 1)).squeeze(1);
  const atSmallestRoom = partialBase.select(1, last).sub(partialSlope.select(1, last).mul(smallestRoom));
  const belowSmallestRoom = needed.sub(atSmallestRoom).gt(0);
  const bracketed = needed.sub(reachable).gt(0).logicalAnd(needed.sub(atSmallestRoom).le(0));

  let low = zeros([t.shape[0]!], { device: t.device as Device });
  let high = full([t.shape[0]!], last, { device: t.device as Device });
  for (let i = 0; i < Math.ceil(Math.log2(dims)); i++) {
    const middle = low.add(high).div(2).floor();
    const at = middle.long().unsqueeze(1);
    const coordinate = order.gather(1, at.rsub(last));
    const value = partialBase.gather(1, at).sub(partialSlope.gather(1, at).mul(room.gather(1, coordinate))).squeeze(1);
    const above = needed.sub(value).gt(0);
    low = where(above, middle, low);
    high = where(above, high, middle);
  }
  const k = low.long().unsqueeze(1);

  const signed = towardsOne.mul(2).sub(1);
  const radiusAll = needed.sub(partialBase.select(1, last)).div(partialSlope.select(1, last).neg()).clamp(0).unsqueeze(1);
  const radius = needed.sub(partialBase.gather(1, k).squeeze(1)).div(partialSlope.gather(1, k).squeeze(1).neg()).clamp(0).unsqueeze(1);
  const clipped = radius.minimum(fullStep).mul(towardsOne).add(radius.neg().maximum(fullStep).mul(towardsOne.rsub(1)));
  let d = where(belowSmallestRoom.unsqueeze(1), signed.mul(radiusAll), fullStep);
  d = where(bracketed.unsqueeze(1), clipped, d);
  return d.mul(used);
}

/** FAB (Linf). With `targeted`, FAB-T as in AutoAttack's standard suite. */
export class FAB extends Attack {
  readonly name: string;
  /** Iterations per run. */
  readonly steps: number;
  /** Runs per target class. */
  readonly restarts: number;
  /** Largest weight of the step from the clean image. */
  readonly alphaMax: number;
  /** Overshoot of the projection step. */
  readonly eta: number;
  /** Pull-back towards the clean image after an adversarial step. */
  readonly beta: number;
  /** Whether runs aim at target classes in turn (FAB-T). */
  readonly targeted: boolean;
  /** Target classes tried when targeted. */
  readonly nTargetClasses: number;

  constructor(model: Classifier, options: FabOptions = {}) {
    super(model, options, ['Linf']);
    this.steps = checkPositiveInteger('steps', options.steps ?? 100);
    this.restarts = checkPositiveInteger('restarts', options.restarts ?? 1);
    this.alphaMax = options.alphaMax ?? 0.1;
    this.eta = options.eta ?? 1.05;
    this.beta = options.beta ?? 0.9;
    this.targeted = options.targeted ?? false;
    this.nTargetClasses = checkPositiveInteger('nTargetClasses', options.nTargetClasses ?? 9);
    this.name = this.targeted ? 'fab-t' : 'fab';
  }

  protected perturb(x: Tensor, y: Tensor, run: AttackRun): Tensor {
    const plan = { targeted: this.targeted, nTargetClasses: this.nTargetClasses, restarts: this.restarts, stepsPerRun: this.steps };
    return this.attackRobust(x, y, run, plan, (input) => this.singleRun(input));
  }

  /**
   * The boundary to cross, linearised at `point`: f = z_target − z_y (FAB-T) or, untargeted, the class whose
   * linearised boundary is closest in Linf, |f_c| / ‖∇f_c‖₁. Returns f [m] and ∇f [m, …].
   */
  private boundary(point: Tensor, y: Tensor, targets: Tensor | null): { f: Tensor; gradient: Tensor } {
    return tidy(() => enableGrad(() => {
      const input = point.detach().setRequiresGrad(true);
      const logits = this.model.forward(input);
      const labelLogit = logits.gather(1, y.unsqueeze(1));
      if (targets !== null) {
        const f = logits.gather(1, targets.unsqueeze(1)).sub(labelLogit).squeeze(1);
        const [g] = grad(f.sum(), [input]);
        return { f: f.detach(), gradient: g! };
      }
      const classes = logits.shape[1]!;
      const jacobian = stack(Array.from({ length: classes }, (_, c) =>
        grad(logits.select(1, c).sum(), [input], { retainGraph: c < classes - 1 })[0]!), 1);
      const labelGradient = jacobian.gather(1, perImage(y, jacobian.ndim).expand([jacobian.shape[0]!, 1, ...jacobian.shape.slice(2)]));
      const f = logits.detach().sub(labelLogit.detach()).scatter(1, y.unsqueeze(1), 1e10);
      const gradients = jacobian.sub(labelGradient);
      const distance = f.abs().div(gradients.flatten(2).abs().sum({ dim: 2 }).add(1e-12));
      const closest = distance.argmin({ dim: 1 });
      const chosen = gradients.gather(1, perImage(closest, gradients.ndim).expand([gradients.shape[0]!, 1, ...gradients.shape.slice(2)])).squeeze(1);
      return { f: f.gather(1, closest.unsqueeze(1)).squeeze(1), gradient: chosen };
    }));
  }

  private singleRun({ x, y, targets, restart, run }: SingleRunInput): SingleRunResult {
    const m = x.shape[0]!;
    const rank = x.ndim;
    const flatClean = x.flatten(1);
    // The reference attacks only the images this call classifies correctly (a stochastic model may differ).
    const correct = this.predict(x).eq(y);
    let s = tidy(() => {
      // The state owns its tensors (iterate() frees dropped ones), hence the copy of x.
      let x1 = x.clone();
      if (restart > 0) {
        const u = run.uniform(x.shape, x).mul(2).sub(1);
        x1 = x.add(normalizePerImage(u, 'Linf').mul(this.eps * 0.5)).clamp(0, 1);
      }
      return { x1, adversarial: x.clone(), distance: full([m], 1e10, { device: x.device as Device }) };
    });
    for (let i = 0; i < this.steps; i++) {
      s = iterate(s, () => {
        const { f, gradient } = this.boundary(s.x1, y, targets);
        const w = gradient.flatten(1);
        const b = f.neg().add(w.mul(s.x1.flatten(1)).sum({ dim: 1 }));
        const steps = projectionLinf(cat([s.x1.flatten(1), flatClean], 0), cat([w, w], 0), cat([b, b], 0));
        const fromCurrent = steps.slice(0, 0, m).view(x.shape);
        const fromClean = steps.slice(0, m).view(x.shape);
        const sizes = steps.abs().amax({ dim: 1 }).clamp(1e-8);
        const a1 = sizes.slice(0, 0, m);
        const a2 = sizes.slice(0, m);
        const alpha = perImage(a1.div(a1.add(a2)).clamp(0, this.alphaMax), rank);
        let x1 = s.x1.add(fromCurrent.mul(this.eta)).mul(alpha.rsub(1)).add(x.add(fromClean.mul(this.eta)).mul(alpha)).clamp(0, 1);
        const adversarial = this.predict(x1).ne(y);
        const size = perImageNorm(x1.sub(x), 'Linf');
        const closer = adversarial.logicalAnd(size.lt(s.distance));
        const next = {
          adversarial: where(perImage(closer, rank), x1, s.adversarial),
          distance: where(closer, size, s.distance),
          x1: where(perImage(adversarial, rank), x.add(x1.sub(x).mul(this.beta)), x1),
        };
        run.tick(next.distance, next.distance.le(this.eps));
        return next;
      });
    }
    const found = s.distance.lt(1e10).logicalAnd(correct);
    const adversarial = where(perImage(found, rank), s.adversarial, x);
    const fooled = this.predict(adversarial).ne(y).logicalAnd(perImageNorm(adversarial.sub(x), 'Linf').le(this.eps));
    return { fooled, adversarial };
  }
}

/** FAB-T: targeted FAB over the 9 most likely other classes (AutoAttack's standard suite). */
export class FABT extends FAB {
  constructor(model: Classifier, options: FabOptions = {}) {
    super(model, { targeted: true, ...options });
  }
}
