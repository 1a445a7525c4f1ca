// Checks for gradient masking, reported with every evaluation (Athalye, Carlini, Wagner, ICML 2018, section 3.1;
// Carlini et al., "On evaluating adversarial robustness", arXiv 1902.06705, section 5): a defence that only hides
// its gradients fails at least one of
//   - eps sweep: as eps grows accuracy must fall to ~0 (at eps = 1 any image can be painted into another class),
//     and must not rise with eps;
//   - black box vs white box: a score-based attack (Square) must not beat the gradient attacks;
//   - budget: doubling iterations and EOT draws must not keep lowering accuracy (the attack has converged).
// This file holds the checks as functions of measured accuracies and their settings; evaluation.ts measures.
import type { AccuracyByDefinition, AccuracyDefinition } from './definitions.js';
import { scaleAttackBudget, type AttackEntry } from '../attacks/registry.js';

/** One gradient-masking check and its verdict. */
export interface MaskingCheck {
  /** 'eps-sweep', 'black-box-vs-white-box' or 'budget'. */
  name: string;
  /** Whether the check found no sign of gradient masking. */
  passed: boolean;
  /** One sentence for people, with the numbers and the definition of accuracy they use. */
  details: string;
  /** The numbers behind it, for tools. */
  values: Record<string, unknown>;
}

/** One point of the accuracy-vs-eps curve: robust accuracy of `attack` at radius `eps`. */
export interface EpsCurvePoint {
  /** The sweep attack's name. */
  attack: string;
  /** The radius. */
  eps: number;
  /** Robust accuracy at that radius, under each definition. */
  robustAccuracy: AccuracyByDefinition;
}

/**
 * Settings of the gradient-masking checks (Athalye, Carlini & Wagner 2018; Carlini et al. 2019, section 5): accuracy
 * falls to about 0 as eps grows, a doubled budget does not keep lowering it, and a black-box attack does not beat the
 * white-box ones.
 */
export interface MaskingOptions {
  /** The checks run on the first `images` images of the evaluation. Default 100. */
  images?: number;
  /** Radii of the sweep. Default eps·[1, 2, 4, 8] and 1 (8/255 → 64/255 → 1 for eps = 8/255). */
  epsSweep?: number[];
  /** Attacks of the sweep (their eps is replaced). Default [PGD-CE, 20 steps]. */
  sweepAttacks?: AttackEntry[];
  /** The sweep passes when accuracy at the largest eps is at most this. Default 0.05. */
  maxAccuracyAtLargestEps?: number;
  /** ...and accuracy never rises by more than this from one eps to a larger one. Default 0.05. */
  monotonicTolerance?: number;
  /** The attack whose budget is doubled. Default: the evaluation's first gradient attack (PGD-CE when none). */
  mainAttack?: AttackEntry;
  /** Budget multiplier. Default 2. */
  budgetFactor?: number;
  /** The budget check fails when the larger budget lowers accuracy by more than this. Default 0.03. */
  maxBudgetDrop?: number;
  /** The black-box attack. Default: the evaluation's 'square' entry, else Square with 1000 queries; null: skip. */
  blackBoxAttack?: AttackEntry | null;
  /** The black-box check fails when Square's accuracy is below the best white-box one by more than this. Default 0. */
  blackBoxTolerance?: number;
  /** The accuracy all checks compare. Default 'mean-over-R' (the least noisy for a stochastic model). */
  definition?: AccuracyDefinition;
}

/** The eps sweep's default attack: PGD on cross-entropy, 20 steps. */
export const DEFAULT_SWEEP_ATTACK: Readonly<AttackEntry> = Object.freeze({ name: 'pgd', attack: 'pgd', options: { steps: 20, restarts: 1, loss: 'ce' as const } });

const GRADIENT_ATTACKS = new Set(['apgd', 'pgd', 'fgsm', 'surrogate', 'per-head', 'transfer-then-refine']);

/** The masking checks' settings with every default resolved against an evaluation's attacks. */
export interface MaskingPlan {
  /** Images checked. */
  images: number;
  /** Radii of the sweep. */
  epsSweep: number[];
  /** Attacks of the sweep. */
  sweepAttacks: AttackEntry[];
  /** The sweep's pass threshold at the largest eps. */
  maxAccuracyAtLargestEps: number;
  /** Largest allowed rise of accuracy with eps. */
  monotonicTolerance: number;
  /** The attack whose budget is scaled. */
  mainAttack: AttackEntry;
  /** Budget multiplier. */
  budgetFactor: number;
  /** mainAttack with the budget multiplied. */
  scaledMainAttack: AttackEntry;
  /** Largest allowed drop of accuracy with the larger budget. */
  maxBudgetDrop: number;
  /** The black-box attack, or null to skip that check. */
  blackBoxAttack: AttackEntry | null;
  /** Allowed margin of the black-box attack below the best white-box one. */
  blackBoxTolerance: number;
  /** The accuracy definition compared. */
  definition: AccuracyDefinition;
}

/** Every option resolved against the evaluation's eps and attacks. */
export function resolveMaskingPlan(options: MaskingOptions, settings: { eps: number; suite: readonly AttackEntry[] }): MaskingPlan {
  const images = options.images ?? 100;
  if (!Number.isInteger(images) || images < 1) throw new RangeError(`masking images must be a positive integer, got ${images}`);
  const epsSweep = [...new Set(options.epsSweep ?? [1, 2, 4, 8].map((f) => Math.min(1, settings.eps * f)).concat(1))].sort((a, b) => a - b);
  if (epsSweep.length === 0 || !epsSweep.every((e) => Number.isFinite(e) && e >= 0)) throw new RangeError(`epsSweep must hold finite non-negative radii, got [${epsSweep.join(', ')}]`);
  const mainAttack = options.mainAttack ?? settings.suite.find((e) => typeof e.attack === 'string' && GRADIENT_ATTACKS.has(e.attack)) ?? DEFAULT_SWEEP_ATTACK;
  const budgetFactor = options.budgetFactor ?? 2;
  const blackBoxAttack = options.blackBoxAttack === undefined
    ? settings.suite.find((e) => e.attack === 'square') ?? { name: 'square', attack: 'square', options: { queries: 1000, pInit: 0.8, loss: 'margin', rescaleSchedule: false } }
    : options.blackBoxAttack;
  const definition = options.definition ?? 'mean-over-R';
  if (!['single-evaluation', 'mean-over-R', 'all-R'].includes(definition)) throw new RangeError(`unknown accuracy definition '${definition}'`);
  return {
    images,
    epsSweep,
    sweepAttacks: options.sweepAttacks ?? [DEFAULT_SWEEP_ATTACK],
    maxAccuracyAtLargestEps: options.maxAccuracyAtLargestEps ?? 0.05,
    monotonicTolerance: options.monotonicTolerance ?? 0.05,
    mainAttack,
    budgetFactor,
    scaledMainAttack: { ...scaleAttackBudget(mainAttack, budgetFactor), name: `${mainAttack.name}×${budgetFactor}` },
    maxBudgetDrop: options.maxBudgetDrop ?? 0.03,
    blackBoxAttack,
    blackBoxTolerance: options.blackBoxTolerance ?? 0,
    definition,
  };
}

function percent(v: number): string {
  return `${(100 * v).toFixed(1)}%`;
}

/** Accuracy must reach ≤ `maxAtLargest` at the largest eps and must not rise with eps (per attack of the curve). */
export function epsSweepCheck(curve: readonly EpsCurvePoint[], options: { definition: AccuracyDefinition; maxAtLargest: number; tolerance: number }): MaskingCheck {
  const attacks = [...new Set(curve.map((p) => p.attack))];
  const problems: string[] = [];
  const atLargest: Record<string, { eps: number; accuracy: number }> = {};
  for (const attack of attacks) {
    const points = curve.filter((p) => p.attack === attack).sort((a, b) => a.eps - b.eps);
    const last = points[points.length - 1]!;
    const accuracy = last.robustAccuracy[options.definition];
    atLargest[attack] = { eps: last.eps, accuracy };
    if (accuracy > options.maxAtLargest) problems.push(`${attack} leaves ${percent(accuracy)} at eps ${formatEps(last.eps)} (expected ≤ ${percent(options.maxAtLargest)})`);
    for (let i = 1; i < points.length; i++) {
      const before = points[i - 1]!.robustAccuracy[options.definition];
      const after = points[i]!.robustAccuracy[options.definition];
      if (after > before + options.tolerance) problems.push(`${attack}: accuracy rises from ${percent(before)} at eps ${formatEps(points[i - 1]!.eps)} to ${percent(after)} at eps ${formatEps(points[i]!.eps)}`);
    }
  }
  const passed = problems.length === 0 && attacks.length > 0;
  const details = attacks.length === 0 ? 'no sweep was run'
    : passed ? `accuracy (${options.definition}) falls to ${attacks.map((a) => `${percent(atLargest[a]!.accuracy)} (${a})`).join(', ')} at the largest eps and never rises with eps`
      : `possible gradient masking (${options.definition}): ${problems.join('; ')}`;
  return { name: 'eps-sweep', passed, details, values: { definition: options.definition, atLargestEps: atLargest, maxAtLargest: options.maxAtLargest, tolerance: options.tolerance } };
}

/** The black-box attack must not beat the best white-box attack by more than `tolerance`. */
export function blackBoxCheck(
  blackBox: { name: string; accuracy: number }, whiteBox: readonly { name: string; accuracy: number }[],
  options: { definition: AccuracyDefinition; tolerance: number },
): MaskingCheck {
  if (whiteBox.length === 0) throw new RangeError('blackBoxCheck needs at least one white-box result');
  const best = whiteBox.reduce((a, b) => (b.accuracy < a.accuracy ? b : a));
  const passed = blackBox.accuracy >= best.accuracy - options.tolerance;
  const details = passed
    ? `${blackBox.name} (${percent(blackBox.accuracy)}) does not beat the best gradient attack, ${best.name} (${percent(best.accuracy)}) (${options.definition})`
    : `possible gradient masking: the black-box ${blackBox.name} leaves ${percent(blackBox.accuracy)}, below the best gradient attack ${best.name} at ${percent(best.accuracy)} (${options.definition})`;
  return { name: 'black-box-vs-white-box', passed, details, values: { definition: options.definition, blackBox, whiteBox: [...whiteBox], tolerance: options.tolerance } };
}

/** Accuracy at `factor`× the budget must not be lower than at 1× by more than `maxDrop`. */
export function budgetCheck(
  attack: string, accuracy: { base: number; scaled: number }, options: { definition: AccuracyDefinition; factor: number; maxDrop: number },
): MaskingCheck {
  const drop = accuracy.base - accuracy.scaled;
  const passed = drop <= options.maxDrop;
  const details = passed
    ? `${attack} at ${options.factor}× budget: ${percent(accuracy.scaled)} vs ${percent(accuracy.base)} at 1× (${options.definition}): converged`
    : `the attack has not converged: ${attack} at ${options.factor}× budget lowers accuracy from ${percent(accuracy.base)} to ${percent(accuracy.scaled)} (${options.definition}); report the larger budget or more`;
  return { name: 'budget', passed, details, values: { definition: options.definition, attack, factor: options.factor, base: accuracy.base, scaled: accuracy.scaled, maxDrop: options.maxDrop } };
}

/** eps as n/255 where it is one, else as a number. */
export function formatEps(eps: number): string {
  const k = eps * 255;
  return Math.abs(k - Math.round(k)) < 1e-6 && eps < 1 ? `${Math.round(k)}/255` : String(Number(eps.toPrecision(4)));
}
