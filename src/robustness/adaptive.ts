// The adaptive suite as configuration (as autoattack.ts does for AutoAttack): the attacks that evaluate the
// self-ensemble honestly, after Zhang et al. (arXiv 2411.14834) and the author's reply (arXiv 2501.14496):
//   1. transfer-then-refine: PGD-CE on the mean-of-logits twin (500 steps, EOT 10, randomness on), then PGD on
//      the real model from there (their strongest attack, CIFAR-10 62% → 11%);
//   2. apgd-ce on the real model's values with the mean-of-logits gradient (straight-through, EOT 100): a reviewer
//      replaced top-k by the mean inside the attack only and raised EOT 20 → 100: 62.5% → 16.6%;
//   3. the same through a soft CrossMax (NeuralSort relaxation of the k-th highest, temperature 1);
//   4. apgd-ce on the real model itself with EOT 100 (what an evaluation without adaptive attacks would run);
//   5. per-head: APGD-CE on each member alone, the ensemble judging (worst case over heads);
//   6. transfer from an independent undefended model, when one is given;
//   7. square: score-based, no gradients (5000 queries), the check that gradients are not simply masked.
// Order: strongest first, since each attack only runs on the points still robust.
// EOT is the gradient attacks' `eot` option (Attack.lossGradient averages the input gradient over that many draws
// of the model, each with fresh randomness, run as stacked replicas of the batch in passes of up to
// eotImagesPerPass images): withEot (attacks/registry.ts) sets it on any entry.
// The entries hold no threat model: the evaluation gives every attack its norm and eps.
import type { Classifier } from '../nn/classifier.js';
import { MeanLogits, type Aggregator } from '../ensemble/aggregators.js';
import { CrossMax, SoftCrossMax } from '../ensemble/crossmax.js';
import type { Norm } from '../attacks/threat-model.js';
import type { AttackEntry } from '../attacks/registry.js';
import { isMemberEnsemble } from '../attacks/surrogate.js';
import { PUBLISHED_TRANSFER_THEN_REFINE, type TransferThenRefineOptions } from '../attacks/transfer.js';

/** EOT draws of the adaptive suite's gradient attacks (the reviewer's 100; AutoAttack's 'rand' uses 20). */
export const DEFAULT_ADAPTIVE_EOT = 100;

/** One budget of the adaptive suite: iterations, EOT, the transfer attack's stages, Square's queries. */
export interface AdaptiveBudget {
  /** APGD iterations of the surrogate, direct and per-head attacks. */
  steps: number;
  /** EOT draws of those attacks. */
  eot: number;
  /** Steps and EOT draws of both stages of TransferThenRefine. */
  transfer: Required<Pick<TransferThenRefineOptions, 'transferSteps' | 'transferEot' | 'refineSteps' | 'refineEot'>>;
  /** Queries of the Square attack. */
  squareQueries: number;
}

/** The named budgets (ADAPTIVE_BUDGETS). */
export type BudgetName = 'published' | 'cpu' | 'quick';
/** Every BudgetName, in order. */
export const BUDGET_NAMES: readonly BudgetName[] = Object.freeze(['published', 'cpu', 'quick']);

/**
 * 'published': the budgets of the papers (APGD 100 iterations with EOT 100, transfer 500 steps with EOT 10, Square
 * 5000 queries): hours per 1000 CIFAR images on a GPU. 'cpu': what a 2-core CPU runs on a few hundred images of a
 * CPU-sized model in tens of minutes: APGD keeps its 100 iterations, EOT drops to 4 (AutoAttack 'rand' too, from
 * 20), the transfer stage to 100 steps with EOT 2 and refinement 20 steps with EOT 2, Square to 1000 queries; an
 * upper bound on robust accuracy, to be read with the budget-doubling check. 'quick': a smoke test that runs in
 * seconds on a CPU; its numbers over-state robustness and are not to be reported.
 */
export const ADAPTIVE_BUDGETS: Readonly<Record<BudgetName, Readonly<AdaptiveBudget>>> = Object.freeze({
  published: Object.freeze({ steps: 100, eot: DEFAULT_ADAPTIVE_EOT, transfer: { ...PUBLISHED_TRANSFER_THEN_REFINE }, squareQueries: 5000 }),
  cpu: Object.freeze({ steps: 100, eot: 4, transfer: { transferSteps: 100, transferEot: 2, refineSteps: 20, refineEot: 2 }, squareQueries: 1000 }),
  quick: Object.freeze({ steps: 10, eot: 2, transfer: { transferSteps: 10, transferEot: 2, refineSteps: 5, refineEot: 2 }, squareQueries: 100 }),
});

/** adaptiveSuite's options, with their defaults. */
export interface AdaptiveSuiteOptions {
  /** The evaluation's norm (Square, implemented for Linf only, needs it). Default 'Linf'. */
  norm?: Norm;
  /** Default 'published'. */
  budget?: BudgetName;
  /** Overrides of the budget's APGD iterations and EOT draws. */
  steps?: number;
  /** Override of the budget's EOT draws. */
  eot?: number;
  /** Overrides of the budget's transfer-then-refine settings. */
  transfer?: Partial<AdaptiveBudget['transfer']>;
  /** Override of the budget's Square queries. */
  squareQueries?: number;
  /** Temperature of the soft-CrossMax surrogate (a CrossMax model only). Default 1. */
  softCrossMaxTemperature?: number;
  /** Attack every member (a self-ensemble only). Default true. */
  perHead?: boolean;
  /** An independent undefended model to transfer from (transfer-then-refine with it as surrogate). Default none. */
  independentSurrogate?: Classifier | null;
  /** Include Square. Default true. */
  square?: boolean;
}

/**
 * The adaptive attacks that apply to `model`, strongest first. A self-ensemble (memberLogits + aggregator) gets
 * all of them; any other classifier the direct APGD, the independent transfer (when given) and Square.
 */
export function adaptiveSuite(model: Classifier, options: AdaptiveSuiteOptions = {}): AttackEntry[] {
  const budgetName = options.budget ?? 'published';
  const budget = ADAPTIVE_BUDGETS[budgetName];
  if (!budget) throw new RangeError(`unknown budget '${budgetName as string}' (${BUDGET_NAMES.join(', ')})`);
  const steps = options.steps ?? budget.steps;
  const eot = options.eot ?? budget.eot;
  const transfer = { ...budget.transfer, ...options.transfer };
  const apgd = { steps, eot, restarts: 1, rho: 0.75, loss: 'ce' } as const;
  const entries: AttackEntry[] = [];
  const ensemble = isMemberEnsemble(model);
  if (ensemble) {
    entries.push({ name: 'transfer-then-refine', attack: 'transfer-then-refine', options: { loss: 'ce', surrogate: new MeanLogits(), ...transfer } });
    entries.push({ name: 'apgd-ce-mean-logits', attack: 'surrogate', options: { ...apgd, attack: 'apgd', mode: 'straight-through', surrogate: new MeanLogits() } });
    const soft = softCrossMaxLike(model.aggregator, options.softCrossMaxTemperature ?? 1);
    if (soft) entries.push({ name: 'apgd-ce-soft-crossmax', attack: 'surrogate', options: { ...apgd, attack: 'apgd', mode: 'straight-through', surrogate: soft } });
  }
  entries.push({ name: 'apgd-ce', attack: 'apgd', options: { ...apgd } });
  if (ensemble && (options.perHead ?? true)) {
    entries.push({ name: 'per-head', attack: 'per-head', options: { ...apgd, attack: 'apgd', mode: 'transfer' } });
  }
  if (options.independentSurrogate) {
    entries.push({
      name: 'transfer-independent', attack: 'transfer-then-refine',
      options: { loss: 'ce', surrogate: options.independentSurrogate, ...transfer },
    });
  }
  if (options.square ?? true) {
    if ((options.norm ?? 'Linf') !== 'Linf') throw new RangeError('Square is implemented for Linf only; pass square: false for L2');
    entries.push({ name: 'square', attack: 'square', options: { queries: options.squareQueries ?? budget.squareQueries, pInit: 0.8, restarts: 1, loss: 'margin', rescaleSchedule: false } });
  }
  return entries;
}

/** SoftCrossMax with a CrossMax aggregator's settings, or null for other aggregators. */
function softCrossMaxLike(aggregator: Aggregator, temperature: number): SoftCrossMax | null {
  if (!(aggregator instanceof CrossMax)) return null;
  return new SoftCrossMax({ k: aggregator.k, subtractMemberMax: aggregator.subtractMemberMax, subtractClassMax: aggregator.subtractClassMax, temperature });
}
