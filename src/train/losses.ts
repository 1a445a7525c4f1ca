// Training losses for self-ensembles and plain classifiers.
//
// The choice for a self-ensemble (Fort & Lakshminarayanan 2024, arXiv 2408.05446, §3): every member (a linear
// head on an intermediate layer) is trained to classify on its own, by its own cross-entropy, and the members'
// losses are averaged. Training through the aggregated output instead would be wrong for CrossMax: its gradient
// reaches only the member holding each class's k-th highest normalised logit, and the point of the ensemble is
// that every member is a competent classifier by itself. Averaging member losses is deep supervision (Lee et al.
// 2015, "Deeply-supervised nets"); the paper's notebook gets the same members differently: it fine-tunes the
// backbone on the final layer's output alone, then trains each head alone on a frozen backbone. The trainer
// reproduces that with `memberWeights` (one-hot on the last member) and mode 'heads' (see trainer.ts).
import { crossEntropy } from '../nn/functional.js';
import { tensor, tidy, type Device, type Tensor } from '../tensor/index.js';

/** Settings of the classification losses. */
export interface ClassificationLossOptions {
  /** Label smoothing ε (Szegedy et al. 2016): targets (1 − ε)·onehot + ε/C. Default 0. */
  labelSmoothing?: number;
}

/** Settings of the self-ensemble's training loss: label smoothing and the members' weights. */
export interface EnsembleLossOptions extends ClassificationLossOptions {
  /**
   * Weight of each member's cross-entropy, in member order; normalised to sum to 1. Default: equal weights (the
   * mean over members). A weight of 0 leaves that member untrained.
   */
  memberWeights?: readonly number[];
}

/** Cross-entropy of logits [N, C] against labels [N], averaged over the batch. */
export function classificationLoss(logits: Tensor, labels: Tensor, options: ClassificationLossOptions = {}): Tensor {
  return crossEntropy(logits, labels, { labelSmoothing: checkSmoothing(options.labelSmoothing ?? 0) });
}

/**
 * Per-member cross-entropy of member logits [N, M, C] against labels [N]: a [M] tensor, each entry averaged over
 * the batch. One kernel call over all members (the logits are viewed as N·M rows).
 */
export function memberLosses(memberLogits: Tensor, labels: Tensor, options: ClassificationLossOptions = {}): Tensor {
  const [n, m, c] = checkMemberShape(memberLogits, labels);
  return tidy(() => {
    const rows = memberLogits.reshape([n * m, c]);
    const targets = labels.repeatInterleave(m);
    const perRow = crossEntropy(rows, targets, { reduction: 'none', labelSmoothing: checkSmoothing(options.labelSmoothing ?? 0) });
    return perRow.view([n, m]).mean({ dim: 0 });
  });
}

/**
 * The self-ensemble training loss: the weighted mean over members of each member's cross-entropy (a scalar).
 * See the file header for why members are trained individually rather than through the aggregator.
 */
export function selfEnsembleLoss(memberLogits: Tensor, labels: Tensor, options: EnsembleLossOptions = {}): Tensor {
  return tidy(() => {
    const losses = memberLosses(memberLogits, labels, options);
    if (options.memberWeights === undefined) return losses.mean();
    return losses.mul(memberWeightTensor(options.memberWeights, memberLogits)).sum();
  });
}

/**
 * The normalised member weights as a [M] tensor of the logits' dtype and device (equal weights when
 * `weights` is undefined).
 */
export function memberWeightTensor(weights: readonly number[] | undefined, memberLogits: Tensor): Tensor {
  const m = memberLogits.shape[1] ?? 0;
  const values = weights === undefined ? new Array<number>(m).fill(1 / m) : normalisedWeights(weights, m);
  return tensor(values, { dtype: memberLogits.dtype, device: memberLogits.device as Device });
}

/** Weights checked (finite, >= 0, not all 0, one per member) and scaled to sum to 1. */
export function normalisedWeights(weights: readonly number[], members: number): number[] {
  if (weights.length !== members) throw new RangeError(`memberWeights has ${weights.length} entries for ${members} members`);
  for (const w of weights) {
    if (!(Number.isFinite(w) && w >= 0)) throw new RangeError(`memberWeights must be finite numbers >= 0, got ${w}`);
  }
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum === 0) throw new RangeError('memberWeights are all 0: no member would be trained');
  return weights.map((w) => w / sum);
}

function checkSmoothing(e: number): number {
  if (!(Number.isFinite(e) && e >= 0 && e <= 1)) throw new RangeError(`labelSmoothing must be in [0, 1], got ${e}`);
  return e;
}

function checkMemberShape(memberLogits: Tensor, labels: Tensor): [number, number, number] {
  const shape = memberLogits.shape;
  if (shape.length !== 3) throw new Error(`expected member logits [N, members, classes], got [${shape.join(', ')}]`);
  if (labels.ndim !== 1 || labels.shape[0] !== shape[0]) {
    throw new Error(`expected labels [${shape[0]}] for member logits [${shape.join(', ')}], got [${labels.shape.join(', ')}]`);
  }
  return shape as [number, number, number];
}
