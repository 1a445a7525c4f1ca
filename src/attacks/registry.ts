// The one registry of attacks: an attack's name → how to build it on a model and how to scale it to a budget.
// Suites (AutoAttack's, the adaptive one), the evaluation's masking checks and the CLI's single attacks all hold
// attacks as data, entries { name, attack, options }, and go through this table to build or resize them.
// An entry carries its attack's own options only: the threat model (norm, eps) is the runner's, given once and
// handed to every attack it builds; the seed is the runner's too unless an entry names its own.
import type { Tensor } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import type { Aggregator } from '../ensemble/aggregators.js';
import type { AttackResult, ProgressEvent } from './attack.js';
import type { ThreatModel } from './threat-model.js';
import { APGD, type ApgdOptions } from './apgd.js';
import { FAB, type FabOptions } from './fab.js';
import { Square, type SquareOptions } from './square.js';
import { PGD, type PgdOptions } from './pgd.js';
import { FGSM, type FgsmOptions } from './fgsm.js';
import { PerHeadAttack, SurrogateGradientAttack, surrogateName, type PerHeadAttackOptions, type SurrogateGradientAttackOptions } from './surrogate.js';
import { PUBLISHED_TRANSFER_THEN_REFINE, TransferThenRefine, type TransferThenRefineOptions } from './transfer.js';

/** Anything with the attack interface (used to put a hand-made attack into a suite). */
export interface RunnableAttack {
  /** Attacks `images` [N, C, H, W] in [0, 1] with true `labels` [N]. */
  run(images: Tensor, labels: Tensor): AttackResult;
}

/** Each registered attack's constructor options. */
export interface AttackKinds {
  /** {@link APGD}'s options. */
  apgd: ApgdOptions;
  /** {@link FAB}'s options. */
  fab: FabOptions;
  /** {@link Square}'s options. */
  square: SquareOptions;
  /** {@link PGD}'s options. */
  pgd: PgdOptions;
  /** {@link FGSM}'s options. */
  fgsm: FgsmOptions;
  /** {@link SurrogateGradientAttack}'s options. */
  surrogate: SurrogateGradientAttackOptions;
  /** {@link TransferThenRefine}'s options. */
  'transfer-then-refine': TransferThenRefineOptions;
  /** {@link PerHeadAttack}'s options. */
  'per-head': PerHeadAttackOptions;
}

/** A registered attack's name. */
export type AttackKind = keyof AttackKinds;

/** An entry's options: the attack's own, without the threat model (the runner's) or the progress callback. */
export type EntryOptions<K extends AttackKind> = Omit<AttackKinds[K], 'norm' | 'eps' | 'onProgress'>;

/** One attack as data: a registered kind with its options, or a hand-made attack (run as it is, never scaled). */
export type AttackEntry =
  | { [K in AttackKind]: { name: string; attack: K; options: EntryOptions<K> } }[AttackKind]
  | { name: string; attack: RunnableAttack; options?: Record<string, unknown> };

/** What a budget sets, where the attack has it: iterations, EOT draws per gradient, queries (score-based). */
export interface AttackBudget {
  /** Iterations. */
  steps?: number;
  /** EOT draws per gradient. */
  eot?: number;
  /** Queries (score-based attacks). */
  queries?: number;
}

interface Registration<K extends AttackKind> {
  build(model: Classifier, options: AttackKinds[K]): RunnableAttack;
  /** `factor` times the budget: iterations, EOT draws, queries (the budget-doubling check). */
  scale(options: EntryOptions<K>, factor: number): EntryOptions<K>;
  /** The budget's values set (those the attack has); the same object when none applies. */
  resize(options: EntryOptions<K>, budget: AttackBudget): EntryOptions<K>;
}

/** `options` with the defined `values` set, or `options` itself when none is defined. */
function withDefined<O extends object>(options: O, values: Record<string, number | undefined>): O {
  const given = Object.entries(values).filter(([, v]) => v !== undefined);
  return given.length === 0 ? options : { ...options, ...Object.fromEntries(given) };
}

/** Iterations (default `steps` when unset) and EOT: APGD, PGD, and the surrogate attacks built on them. */
function stepsAndEot<K extends 'apgd' | 'pgd' | 'surrogate' | 'per-head'>(defaultSteps: (options: EntryOptions<K>) => number): Omit<Registration<K>, 'build'> {
  return {
    scale: (o, factor) => ({ ...o, steps: (o.steps ?? defaultSteps(o)) * factor, eot: (o.eot ?? 1) * factor }),
    resize: (o, budget) => withDefined(o, { steps: budget.steps, eot: budget.eot }),
  };
}

const surrogateSteps = (o: { attack?: string }) => (o.attack === 'pgd' ? 10 : 100);

/** Per registered attack: how to build it, scale its budget by a factor, and set its budget. */
export const ATTACK_REGISTRY: { readonly [K in AttackKind]: Registration<K> } = Object.freeze({
  apgd: { build: (model, options) => new APGD(model, options), ...stepsAndEot<'apgd'>(() => 100) },
  // PGD's default step size shrinks with the steps; a given one is kept when scaling (more steps then travel further).
  pgd: { build: (model, options) => new PGD(model, options), ...stepsAndEot<'pgd'>(() => 10) },
  fgsm: {
    build: (model, options) => new FGSM(model, options),
    scale: (o, factor) => ({ ...o, eot: (o.eot ?? 1) * factor }),
    resize: (o, budget) => withDefined(o, { eot: budget.eot }),
  },
  fab: {
    build: (model, options) => new FAB(model, options),
    scale: (o, factor) => ({ ...o, steps: (o.steps ?? 100) * factor }),
    resize: (o, budget) => withDefined(o, { steps: budget.steps }),
  },
  square: {
    build: (model, options) => new Square(model, options),
    scale: (o, factor) => ({ ...o, queries: (o.queries ?? 5000) * factor }),
    resize: (o, budget) => withDefined(o, { queries: budget.queries }),
  },
  surrogate: { build: (model, options) => new SurrogateGradientAttack(model, options), ...stepsAndEot<'surrogate'>(surrogateSteps) },
  'per-head': { build: (model, options) => new PerHeadAttack(model, options), ...stepsAndEot<'per-head'>(surrogateSteps) },
  'transfer-then-refine': {
    build: (model, options) => new TransferThenRefine(model, options),
    scale: (o, factor) => {
      const p = PUBLISHED_TRANSFER_THEN_REFINE;
      return {
        ...o, transferSteps: (o.transferSteps ?? p.transferSteps) * factor, transferEot: (o.transferEot ?? p.transferEot) * factor,
        refineSteps: (o.refineSteps ?? p.refineSteps) * factor, refineEot: (o.refineEot ?? p.refineEot) * factor,
      };
    },
    // Its two stages' iterations are set by name (transferSteps, refineSteps); EOT applies to both.
    resize: (o, budget) => withDefined(o, { transferEot: budget.eot, refineEot: budget.eot }),
  },
});

function registrationOf(kind: AttackKind): Registration<AttackKind> {
  if (!Object.hasOwn(ATTACK_REGISTRY, kind)) throw new RangeError(`unknown attack '${String(kind)}' (${Object.keys(ATTACK_REGISTRY).join(', ')})`);
  return ATTACK_REGISTRY[kind] as Registration<AttackKind>;
}

/**
 * Builds `entry`'s attack on `model` under the threat model of `settings`, seeded with the entry's own seed or
 * else `settings.seed` (hand-made entries are returned as they are).
 */
export function buildAttack(entry: AttackEntry, model: Classifier, settings: ThreatModel & { seed: number; onProgress?: (event: ProgressEvent) => void }): RunnableAttack {
  if (typeof entry.attack !== 'string') return entry.attack;
  const options = (entry.options ?? {}) as EntryOptions<AttackKind> & { seed?: number };
  const own = (['norm', 'eps'] as const).find((key) => key in options);
  if (own) throw new RangeError(`attack '${entry.name}' sets its own ${own}: the threat model is given once, to the suite or evaluation that runs it; remove ${own} from the entry`);
  return registrationOf(entry.attack).build(model, {
    ...options, norm: settings.norm, eps: settings.eps, seed: options.seed ?? settings.seed, onProgress: settings.onProgress,
  } as AttackKinds[AttackKind]);
}

/**
 * The entry with `factor` times its budget: iterations, EOT draws, queries (for the check that more budget does
 * not keep lowering accuracy). Hand-made entries cannot be scaled.
 */
export function scaleAttackBudget(entry: AttackEntry, factor: number): AttackEntry {
  if (!Number.isInteger(factor) || factor < 1) throw new RangeError(`budget factor must be a positive integer, got ${factor}`);
  if (typeof entry.attack !== 'string') throw new RangeError(`the budget of the custom attack '${entry.name}' cannot be scaled`);
  return { ...entry, options: registrationOf(entry.attack).scale(entry.options as EntryOptions<AttackKind>, factor) } as AttackEntry;
}

/** The entry with the budget's values set where the attack has them (the entry itself when none applies). */
export function resizeAttackBudget(entry: AttackEntry, budget: AttackBudget): AttackEntry {
  if (typeof entry.attack !== 'string') return entry;
  const options = entry.options as EntryOptions<AttackKind>;
  const resized = registrationOf(entry.attack).resize(options, budget);
  return resized === options ? entry : { ...entry, options: resized } as AttackEntry;
}

/** The entry with EOT over `samples` draws in every gradient computation it makes (Square, FAB and custom entries are returned unchanged). */
export function withEot(entry: AttackEntry, samples: number): AttackEntry {
  if (!Number.isInteger(samples) || samples < 1) throw new RangeError(`EOT samples must be a positive integer, got ${samples}`);
  return resizeAttackBudget(entry, { eot: samples });
}

/**
 * The named single attacks of `crossmax attack --attack NAME`, at their default budgets. Square is AutoAttack's
 * (5000 queries, p_init 0.8, the schedule not rescaled), so a single Square run is the suite's Square.
 */
export const ATTACK_PRESETS = Object.freeze({
  fgsm: { name: 'fgsm', attack: 'fgsm', options: {} },
  pgd: { name: 'pgd', attack: 'pgd', options: { eot: 1, steps: 20 } },
  'apgd-ce': { name: 'apgd-ce', attack: 'apgd', options: { eot: 1, steps: 100, loss: 'ce' } },
  'apgd-dlr': { name: 'apgd-dlr', attack: 'apgd', options: { eot: 1, steps: 100, loss: 'dlr' } },
  'apgd-t': { name: 'apgd-t', attack: 'apgd', options: { eot: 1, steps: 100, loss: 'dlr', targeted: true, nTargetClasses: 9 } },
  'fab-t': { name: 'fab-t', attack: 'fab', options: { steps: 100, targeted: true, nTargetClasses: 9 } },
  'square': {
    name: 'square', attack: 'square', options: {
      queries: 5000,
      /** Initial fraction of the image's pixels a square window covers (AutoAttack's p_init). */
      pInit: 0.8,
      /** One run, no restarts on the images still robust. */
      restarts: 1,
      /** Descend the margin z_y − max_{i≠y} z_i (AutoAttack's Square objective). */
      loss: 'margin',
      /** Keep the p schedule as defined for 10,000 queries (AutoAttack does not stretch it over 5000). */
      rescaleSchedule: false,
    },
  },
} satisfies Record<string, AttackEntry>);

/** The names `crossmax attack --attack` takes. */
export type AttackPresetName = keyof typeof ATTACK_PRESETS;
/** ATTACK_PRESETS' names, in order. */
export const ATTACK_PRESET_NAMES = Object.freeze(Object.keys(ATTACK_PRESETS)) as readonly AttackPresetName[];

/** An entry as JSON (describeAttack): what results files record and checkpoints key on. */
export interface AttackDescription {
  /** The entry's name. */
  name: string;
  /** The registered kind, or 'custom' for a hand-made attack. */
  attack: string;
  /** The entry's options (a hand-made attack's as given). */
  options: Record<string, unknown>;
}

/**
 * A JSON-able description of an entry: surrogates by name, no functions or tensors. With `settings`, the threat
 * model and seed the entry runs with come first (what a result file records and an evaluation checkpoint keys on).
 */
export function describeAttack(entry: AttackEntry, settings?: ThreatModel & { seed: number }): AttackDescription {
  const given = (entry.options ?? {}) as Record<string, unknown>;
  const { seed, ...rest } = given;
  const all = settings ? { norm: settings.norm, eps: settings.eps, seed: seed ?? settings.seed, ...rest } : given;
  const options: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(all)) {
    if (value === undefined || typeof value === 'function') continue;
    if (key === 'surrogate') options[key] = surrogateName(value as Aggregator | Classifier);
    else if (isTensorLike(value)) options[key] = `tensor [${(value as Tensor).shape.join(', ')}]`;
    else if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.getPrototypeOf(value) === Object.prototype) options[key] = value;
    else options[key] = surrogateName(value as Classifier);
  }
  return { name: entry.name, attack: typeof entry.attack === 'string' ? entry.attack : 'custom', options };
}

function isTensorLike(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as { isTensor?: boolean }).isTensor === true;
}
