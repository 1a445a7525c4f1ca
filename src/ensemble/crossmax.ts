// CrossMax, the paper's aggregation of an ensemble's member logits (Fort & Lakshminarayanan 2024, arXiv
// 2408.05446, Algorithm 1), with its median variant (k = 'median') and a smooth surrogate for adaptive attacks
// (SoftCrossMax). The baselines it is compared with are in aggregators.ts; names and specs in aggregator-spec.ts.
//
// CrossMax in the official notebook (quick_replication_for_multi_resolution_self_ensemble.ipynb):
//   Z_hat = Z - Z.max(dim=2, keepdim=True)[0]          # each member's max over classes
//   Z_hat = Z_hat - Z_hat.max(dim=1, keepdim=True)[0]  # each class's max over members
//   Y, _ = torch.topk(Z_hat, k, dim=1); Y = Y[:, -1, :]  # the k-th highest value per class
// i.e. sort descending over members and take index k-1 (k is 1-based: k=1 is the maximum). The first
// subtraction stops one member with huge logits from dominating; the second stops one class that a single
// member is very sure of from winning alone; the k-th highest asks for agreement of at least k members.
// The paper's Algorithm 1 ends with the median over members, for ensembles of independent models.
import { tidy, type Tensor } from '../tensor/index.js';
import { checkMemberLogits, type Aggregator } from './aggregators.js';

/**
 * Which order statistic over members CrossMax keeps: the k-th highest (1-based), or 'median' (torch.median's,
 * the lower of the two middle values for an even number of members).
 */
export type CrossMaxSelection = number | 'median';

/** Settings of {@link CrossMax} (Algorithm 1 of Fort & Lakshminarayanan 2024). */
export interface CrossMaxOptions {
  /**
   * The k-th highest normalised logit per class over members, or 'median'. Default 3, the notebook's choice for
   * the self-ensemble of intermediate layers; use 'median' (the paper's Algorithm 1) for independent models.
   */
  k?: CrossMaxSelection;
  /** Subtract each member's max over classes (Algorithm 1, line 1). Default true. */
  subtractMemberMax?: boolean;
  /** Then subtract each class's max over members (Algorithm 1, line 2). Default true. */
  subtractClassMax?: boolean;
}

/** The two subtractions of Algorithm 1; each is optional for ablations. */
function normalise(z: Tensor, subtractMemberMax: boolean, subtractClassMax: boolean): Tensor {
  return tidy(() => {
    let out = z;
    if (subtractMemberMax) out = out.sub(out.amax({ dim: 2, keepdim: true }));
    if (subtractClassMax) out = out.sub(out.amax({ dim: 1, keepdim: true }));
    return out === z ? z.view(z.shape) : out;
  });
}

/** The rank from the top (1-based) that torch.median picks among m values: index floor((m-1)/2) ascending. */
function medianRankFromTop(m: number): number {
  return m - Math.floor((m - 1) / 2);
}

function resolveRank(selection: CrossMaxSelection, members: number, aggregator: string): number {
  if (selection === 'median') return medianRankFromTop(members);
  if (selection > members) {
    throw new Error(`${aggregator}: k=${selection} is larger than the number of members (${members})`);
  }
  return selection;
}

/** What CrossMax and its soft surrogate share: the options and the normalisation of Algorithm 1. */
abstract class CrossMaxFamily implements Aggregator {
  abstract readonly name: string;
  /** The k-th highest value per class over members, or 'median'. */
  readonly k: CrossMaxSelection;
  /** Whether each member's max over classes is subtracted (Algorithm 1, line 1). */
  readonly subtractMemberMax: boolean;
  /** Whether each class's max over members is subtracted (Algorithm 1, line 2). */
  readonly subtractClassMax: boolean;
  /** The settings as they appear in the aggregator's name, e.g. 'k=3, no-class-max'. */
  protected readonly label: string;

  constructor(options: CrossMaxOptions) {
    const k = options.k ?? 3;
    if (k !== 'median' && !(Number.isInteger(k) && k >= 1)) throw new RangeError(`CrossMax k must be a positive integer or 'median', got ${String(k)}`);
    this.k = k;
    this.subtractMemberMax = options.subtractMemberMax ?? true;
    this.subtractClassMax = options.subtractClassMax ?? true;
    this.label = [k === 'median' ? 'median' : `k=${k}`, this.subtractMemberMax ? '' : 'no-member-max', this.subtractClassMax ? '' : 'no-class-max']
      .filter(Boolean).join(', ');
  }

  abstract aggregate(memberLogits: Tensor): Tensor;

  /** Checks the logits and returns them normalised (call inside a tidy) with the rank from the top to keep. */
  protected normalised(memberLogits: Tensor): { z: Tensor; rank: number; members: number } {
    const [, members] = checkMemberLogits(memberLogits, this.name);
    const rank = resolveRank(this.k, members, this.name);
    return { z: normalise(memberLogits, this.subtractMemberMax, this.subtractClassMax), rank, members };
  }
}

/** CrossMax (Algorithm 1): robust aggregation of member logits by normalisation and an order statistic. */
export class CrossMax extends CrossMaxFamily {
  /** 'crossmax(...)' with the selection (k or median), for reports. */
  readonly name: string;

  constructor(options: CrossMaxOptions = {}) {
    super(options);
    this.name = `crossmax(${this.label})`;
  }

  /**
   * memberLogits [N, members, classes] to logits [N, classes]: normalise, then the k-th highest value per class over
   * members.
   */
  aggregate(memberLogits: Tensor): Tensor {
    return tidy(() => {
      const { z, rank } = this.normalised(memberLogits);
      // topk's last value is the k-th highest, exactly the notebook's Y[:, -1, :]; ties give the tied value.
      return z.topk(rank, { dim: 1 }).values.select(1, rank - 1);
    });
  }
}

/** Settings of {@link SoftCrossMax}. */
export interface SoftCrossMaxOptions extends CrossMaxOptions {
  /**
   * Temperature of the relaxed sort, in logit units. Smaller is closer to CrossMax (and its gradients sparser);
   * as it goes to 0 the output converges to CrossMax's wherever the k-th highest value is not tied. Default 1.
   */
  temperature?: number;
}

/**
 * A smooth surrogate of CrossMax for adaptive attacks (a BPDA-style stand-in: attack through this, evaluate with
 * CrossMax). The two max subtractions are kept exactly; the hard k-th-highest selection, whose gradient reaches
 * only one member per class, is replaced by row k of NeuralSort's relaxed sorting matrix (Grover et al., ICLR
 * 2019, eq. 5):
 *   w_k = softmax_m( ((M + 1 - 2k)·z_m - Σ_j |z_m - z_j|) / τ ),   output = Σ_m w_k[m]·z_m,
 * a softmax weighting of all members that peaks at the k-th highest. The k-th highest value maximises the
 * score, so as τ -> 0 the weights become one-hot on it and the output equals CrossMax; at larger τ every member
 * receives gradient. 'median' uses torch.median's rank. Costs O(M²) per class.
 */
export class SoftCrossMax extends CrossMaxFamily {
  /** 'soft-crossmax(k=3, T=1)' and the like, for reports. */
  readonly name: string;
  /** Temperature τ of the relaxed sort, in logit units. */
  readonly temperature: number;

  constructor(options: SoftCrossMaxOptions = {}) {
    super(options);
    this.temperature = options.temperature ?? 1;
    if (!(Number.isFinite(this.temperature) && this.temperature > 0)) {
      throw new RangeError(`SoftCrossMax temperature must be a positive number, got ${this.temperature}`);
    }
    this.name = `soft-crossmax(${this.label}, T=${this.temperature})`;
  }

  /**
   * memberLogits [N, members, classes] to logits [N, classes]: the NeuralSort-weighted member values per class
   * (differentiable in every member).
   */
  aggregate(memberLogits: Tensor): Tensor {
    return tidy(() => {
      const { z, rank, members } = this.normalised(memberLogits); // z: [N, M, C]
      // Σ_j |z_m - z_j| for every member m: [N, M, 1, C] - [N, 1, M, C] summed over j.
      const spread = z.unsqueeze(2).sub(z.unsqueeze(1)).abs().sum({ dim: 2 });
      const scores = z.mul(members + 1 - 2 * rank).sub(spread).div(this.temperature);
      return scores.softmax(1).mul(z).sum({ dim: 1 });
    });
  }
}
