// The threat model: the ball { x' : ‖x' − x‖ ≤ eps } around the clean image x, intersected with [0, 1]. Given once
// (by the CLI's --eps, a suite runner's or an evaluation's options) and handed down to every attack it builds;
// generation projects onto it too.
import { type Tensor, tidy } from '../tensor/index.js';

/** The threat model's norm: L∞ (max absolute pixel change) or L2 (Euclidean). */
export type Norm = 'Linf' | 'L2';

/** A threat model: the ball of radius eps in a norm around the clean image, intersected with [0, 1]. */
export interface ThreatModel {
  /** The ball's norm. */
  norm: Norm;
  /** Radius, in [0, 1] pixel units. */
  eps: number;
}

/** The standard CIFAR L∞ radius, 8/255. */
export const DEFAULT_EPS = 8 / 255;

/** Per-image ‖·‖ of a batch [N, …], as [N]. */
export function perImageNorm(t: Tensor, norm: Norm): Tensor {
  const flat = t.flatten(1);
  return norm === 'Linf' ? flat.abs().amax({ dim: 1 }) : flat.square().sum({ dim: 1 }).sqrt();
}

/** [N] → [N, 1, …, 1] so that it broadcasts against a batch of rank `rank`. */
export function perImage(v: Tensor, rank: number): Tensor {
  return v.view([-1, ...Array<number>(rank - 1).fill(1)]);
}

/** x / (‖x‖ + 1e-12) per image (the reference's normalize()). */
export function normalizePerImage(t: Tensor, norm: Norm): Tensor {
  return t.div(perImage(perImageNorm(t, norm).add(1e-12), t.ndim));
}

/**
 * Projects `point` onto the threat model around the CLEAN image: { ‖· − clean‖ ≤ eps } ∩ [0, 1]. For Linf this
 * is the exact projection (a box intersected with a box); for L2 it is the reference's radial projection followed
 * by clipping, which stays feasible because clipping to [0, 1] never moves a point away from a clean image in it.
 * Always project around the clean image, never around a previous iterate: that is how evaluations drift out of
 * the ball.
 */
export function projectToThreatModel(point: Tensor, clean: Tensor, norm: Norm, eps: number): Tensor {
  return threatModelProjector(clean, norm, eps)(point);
}

/**
 * projectToThreatModel around one clean batch, for many points: an iterative attack projects twice per step, and
 * for Linf the box is computed once (two full-size ops per projection instead of five). Its tensors live in the
 * scope that called this.
 */
export function threatModelProjector(clean: Tensor, norm: Norm, eps: number): (point: Tensor) => Tensor {
  if (norm === 'Linf') {
    // Clamping to [max(clean − eps, 0), min(clean + eps, 1)] selects the same values as clamping to clean ± eps
    // and then to [0, 1]: clean lies in [0, 1], so the two boxes meet, and no arithmetic touches the point.
    const lower = clean.sub(eps).clamp(0, null);
    const upper = clean.add(eps).clamp(null, 1);
    return (point) => point.maximum(lower).minimum(upper);
  }
  return (point) => {
    const delta = point.sub(clean);
    const size = perImage(perImageNorm(delta, 'L2'), delta.ndim);
    return clean.add(normalizePerImage(delta, 'L2').mul(size.clamp(null, eps))).clamp(0, 1);
  };
}

/**
 * Throws unless `adversarial` is a valid result for `clean`: same shape, finite, in [0, 1] and within eps
 * (+ `tolerance`) in the given norm. A violation is a bug in the attack, never a property of the model.
 */
export function checkAdversarial(clean: Tensor, adversarial: Tensor, options: ThreatModel & { tolerance?: number }): void {
  const tolerance = options.tolerance ?? 1e-6;
  if (adversarial.shape.join() !== clean.shape.join()) {
    throw new Error(`attack bug: adversarial shape [${adversarial.shape}] differs from the images' [${clean.shape}]`);
  }
  if (clean.numel === 0) return;
  tidy(() => {
    if (!adversarial.isfinite().all().item()) throw new Error('attack bug: adversarial images contain NaN or infinity');
    const low = adversarial.min().item();
    const high = adversarial.max().item();
    if (low < 0 || high > 1) throw new Error(`attack bug: adversarial images leave [0, 1] (range [${low}, ${high}])`);
    const size = perImageNorm(adversarial.double().sub(clean.double()), options.norm).max().item();
    if (size > options.eps + tolerance) {
      throw new Error(`attack bug: a perturbation has ${options.norm} norm ${size}, above eps = ${options.eps}`);
    }
  });
}
