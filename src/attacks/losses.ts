// Per-example attack losses over logits [N, C] (each returns [N]; attacks ascend them, except the margin, which
// Square descends). Definitions follow AutoAttack (Croce & Hein, ICML 2020, https://arxiv.org/abs/2003.01690):
// DLR is eq. (2) of the paper, targeted DLR eq. (3); both as in autoattack/autopgd_base.py (dlr_loss,
// dlr_loss_targeted), including the 1e-12 in the denominator.
import { Tensor } from '../tensor/index.js';
import { crossEntropy } from '../nn/functional.js';

/** The attack objective of gradient attacks; 'ce' and 'dlr' become their targeted forms when an attack is targeted. */
export type AttackLoss = 'ce' | 'dlr';

function pick(logits: Tensor, classes: Tensor): Tensor {
  return logits.gather(1, classes.unsqueeze(1)).squeeze(1);
}

/** Cross-entropy of each example: −log softmax(z)_y. */
export function crossEntropyLoss(logits: Tensor, labels: Tensor): Tensor {
  return crossEntropy(logits, labels, { reduction: 'none' });
}

/** Targeted cross-entropy, to be ascended: +log softmax(z)_t. */
export function targetedCrossEntropyLoss(logits: Tensor, targets: Tensor): Tensor {
  return crossEntropy(logits, targets, { reduction: 'none' }).neg();
}

function requireClasses(logits: Tensor, atLeast: number, loss: string): number {
  const classes = logits.shape[1]!;
  if (classes < atLeast) throw new RangeError(`the ${loss} loss needs at least ${atLeast} classes, the model has ${classes}`);
  return classes;
}

/**
 * Difference of Logits Ratio, −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3), with z_π the logits sorted in decreasing
 * order. Invariant to shifting and rescaling the logits; needs three classes or more.
 */
export function dlrLoss(logits: Tensor, labels: Tensor): Tensor {
  const classes = requireClasses(logits, 3, 'DLR');
  const { values, indices } = logits.sort({ dim: 1 });
  const top = values.select(1, classes - 1);
  const second = values.select(1, classes - 2);
  const third = values.select(1, classes - 3);
  const labelIsTop = indices.select(1, classes - 1).eq(labels);
  const bestOther = labelIsTop.float().mul(second).add(labelIsTop.logicalNot().float().mul(top));
  return pick(logits, labels).sub(bestOther).neg().div(top.sub(third).add(1e-12));
}

/** Targeted DLR, −(z_y − z_t) / (z_π1 − (z_π3 + z_π4) / 2); needs four classes or more. */
export function targetedDlrLoss(logits: Tensor, labels: Tensor, targets: Tensor): Tensor {
  const classes = requireClasses(logits, 4, 'targeted DLR');
  const values = logits.sort({ dim: 1 }).values;
  const top = values.select(1, classes - 1);
  const thirdAndFourth = values.select(1, classes - 3).add(values.select(1, classes - 4)).mul(0.5);
  return pick(logits, labels).sub(pick(logits, targets)).neg().div(top.sub(thirdAndFourth).add(1e-12));
}

/** Margin z_y − max_{i≠y} z_i: positive exactly when the label wins (Square's objective, to be descended). */
export function marginLoss(logits: Tensor, labels: Tensor): Tensor {
  const others = logits.scatter(1, labels.unsqueeze(1), -Infinity).amax({ dim: 1 });
  return pick(logits, labels).sub(others);
}

/**
 * The class with the k-th largest logit (k = 1 is the prediction): AutoAttack's targets for APGD-T and FAB-T are
 * k = 2 … nTargetClasses + 1 (`output.sort(dim=1)[1][:, -k]`).
 */
export function kthLargestClass(logits: Tensor, k: number): Tensor {
  const classes = logits.shape[1]!;
  if (!Number.isInteger(k) || k < 1 || k > classes) throw new RangeError(`k must be in [1, ${classes}], got ${k}`);
  return logits.sort({ dim: 1 }).indices.select(1, classes - k);
}

/**
 * The per-example objective an attack ascends: cross-entropy or DLR, untargeted or (with targets) targeted.
 */
export function attackLoss(loss: AttackLoss, logits: Tensor, labels: Tensor, targets: Tensor | null): Tensor {
  if (targets === null) return loss === 'ce' ? crossEntropyLoss(logits, labels) : dlrLoss(logits, labels);
  return loss === 'ce' ? targetedCrossEntropyLoss(logits, targets) : targetedDlrLoss(logits, labels, targets);
}
