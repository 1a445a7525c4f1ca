// Transfer attacks across models: adversarial images crafted on source models (one alone, or several as one
// ensemble, as Liu, Chen, Liu & Song, "Delving into transferable adversarial examples", ICLR 2017, craft on
// ensembles) and judged on target models never used in crafting. The paper claims images crafted on its
// multi-resolution models transfer (up to large vision-language models); a transfer table between crossmax's own
// models is the measurable part here.
//
// Crafting is PGD (attacks/pgd.ts, run in batches by runner.ts) on the mean of the sources' logits, with EOT for stochastic sources. As every attack of
// the family, it leaves the images the source ensemble already misclassifies unchanged. Targets are judged as the
// robustness evaluation judges (definitions.ts): R forward passes per image, accuracy by the all-R, mean-over-R and
// single-evaluation definitions, on the clean images and on the crafted ones.
import { stack, tidy, trackInScope, type Tensor } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { withEvalMode } from '../nn/module.js';
import { checkAttackInputs, checkPositiveInteger } from '../attacks/attack.js';
import { type Norm, DEFAULT_EPS } from '../attacks/threat-model.js';
import type { AttackEntry } from '../attacks/registry.js';
import { attackInBatches } from './runner.js';
import { repeatedAccuracy, type AccuracyByDefinition } from './definitions.js';
import { estimatesOfPasses, type EstimateByDefinition } from './intervals.js';

/** Several classifiers as one: the mean of their logits (each must return [N, classes] for the same classes). */
export class LogitEnsemble implements Classifier {
  /** @param models - The classifiers whose logits are averaged. */
  constructor(readonly models: readonly Classifier[]) {
    if (models.length === 0) throw new Error('LogitEnsemble needs at least one model');
  }

  /** Mean of the models' logits [N, classes]. */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const logits = this.models.map((m) => m.forward(x));
      const shapes = new Set(logits.map((l) => l.shape.join()));
      if (shapes.size !== 1) throw new Error(`the ensemble's models disagree on the logits' shape: ${[...shapes].map((s) => `[${s}]`).join(' vs ')}`);
      return logits.length === 1 ? logits[0]! : stack(logits, 0).mean({ dim: 0 });
    });
  }
}

/** A classifier with a name for the table. */
export interface NamedClassifier {
  /** Row and column label. */
  name: string;
  /** The classifier. */
  model: Classifier;
}

/** Settings of {@link transferMatrix}. */
export interface TransferOptions {
  /** Default 'Linf'. */
  norm?: Norm;
  /** Default 8/255. */
  eps?: number;
  /** PGD steps on the sources. Default 50. */
  steps?: number;
  /** Passes averaged per PGD step (EOT over stochastic sources). Default 1. */
  eot?: number;
  /** Default 1. */
  restarts?: number;
  /** Default 'ce'. */
  loss?: 'ce' | 'dlr';
  /** Default 0. */
  seed?: number;
  /** Images per attack call and per evaluation pass. Default 100. */
  batchSize?: number;
  /** Forward passes per image when judging a target (R). Default 10. */
  passes?: number;
  /**
   * Which source sets craft: 'each' (every source alone), 'ensemble' (all sources as one), or 'both' (default: each
   * alone, and the ensemble when there are two or more).
   */
  craft?: 'each' | 'ensemble' | 'both';
  /** Called after every PGD step of every batch. */
  onStep?: () => void;
}

/** Images crafted on one set of sources and how every target fares on them. */
export interface TransferRow {
  /** Names of the sources the images were crafted on. */
  sources: string[];
  /** [N, C, H, W], the crafted images (the caller disposes them). */
  adversarial: Tensor;
  /** Per image: the source ensemble misclassifies its crafted image (one pass). */
  sourceFooled: boolean[];
  /** Per target: accuracy on the crafted images, with its 95% intervals (intervals.ts) and per-image correct passes. */
  transferred: {
    target: string;
    accuracy: AccuracyByDefinition;
    /** `accuracy` with its 95% interval under each definition (Wilson, or the seeded bootstrap for mean over R). */
    intervals: EstimateByDefinition;
    /** Per crafted image, the passes (of R) in which the target classified it correctly. */
    correctPasses: number[];
    firstPrediction: number[];
  }[];
}

/** A transfer table: rows of source sets, columns of targets (each target judged over R passes). */
export interface TransferMatrix {
  /** Per target: accuracy on the clean images, with its 95% intervals and per-image correct passes. */
  clean: {
    target: string;
    accuracy: AccuracyByDefinition;
    /** `accuracy` with its 95% interval under each definition (Wilson, or the seeded bootstrap for mean over R). */
    intervals: EstimateByDefinition;
    /** Per clean image, the passes (of R) in which the target classified it correctly. */
    correctPasses: number[];
  }[];
  /** One row per source set (see {@link sourceSets}), in crafting order: the images crafted on it and every target's accuracy on them. */
  rows: TransferRow[];
}

/** The source sets a transfer run crafts on, in row order. */
export function sourceSets(names: readonly string[], craft: TransferOptions['craft'] = 'both'): string[][] {
  if (names.length === 0) throw new Error('a transfer attack needs at least one source');
  const each = names.map((n) => [n]);
  if (craft === 'each') return each;
  if (craft === 'ensemble') return [[...names]];
  if (craft !== 'both') throw new RangeError(`craft must be 'each', 'ensemble' or 'both', got '${String(craft)}'`);
  return names.length > 1 ? [...each, [...names]] : each;
}

/** Crafts on every source set and judges every target on the clean and the crafted images. */
export function transferMatrix(sources: readonly NamedClassifier[], targets: readonly NamedClassifier[], images: Tensor, labels: Tensor, options: TransferOptions = {}): TransferMatrix {
  // Every source and target in eval mode for the run (see withEvalMode), each given back its own mode after.
  const run = [...sources, ...targets].reduceRight<() => TransferMatrix>(
    (inner, { model }) => () => withEvalMode(model, inner), () => transferMatrixInCurrentMode(sources, targets, images, labels, options));
  return run();
}

function transferMatrixInCurrentMode(sources: readonly NamedClassifier[], targets: readonly NamedClassifier[], images: Tensor, labels: Tensor, options: TransferOptions = {}): TransferMatrix {
  checkAttackInputs(images, labels);
  if (targets.length === 0) throw new Error('a transfer attack needs at least one target');
  for (const [what, list] of [['source', sources], ['target', targets]] as const) {
    const names = list.map((m) => m.name);
    const twice = names.find((name, i) => names.indexOf(name) !== i);
    if (twice !== undefined) throw new Error(`two ${what}s are named '${twice}'`);
  }
  const norm = options.norm ?? 'Linf';
  const eps = options.eps ?? DEFAULT_EPS;
  const steps = checkPositiveInteger('steps', options.steps ?? 50);
  const batchSize = checkPositiveInteger('batchSize', options.batchSize ?? 100);
  const passes = checkPositiveInteger('passes', options.passes ?? 10);
  const seed = options.seed ?? 0;
  const n = images.shape[0]!;
  const y = labels.toArray().map(Number);
  const judge = (model: Classifier, x: Tensor) => {
    const { accuracy, firstPrediction, correct } = repeatedAccuracy(model, x, y, passes, { batchSize, seed });
    const correctPasses = correct.map((flags) => flags.filter(Boolean).length);
    return { accuracy, intervals: estimatesOfPasses(accuracy, correctPasses, passes), correctPasses, firstPrediction };
  };
  const clean = targets.map((t) => {
    const { accuracy, intervals, correctPasses } = judge(t.model, images);
    return { target: t.name, accuracy, intervals, correctPasses };
  });
  const rows: TransferRow[] = [];
  try {
    for (const set of sourceSets(sources.map((s) => s.name), options.craft)) {
      const ensemble = new LogitEnsemble(set.map((name) => sources.find((s) => s.name === name)!.model));
      // PGD on the mean of the sources' logits, every image (the attack itself leaves those the sources misclassify).
      const crafting: AttackEntry = { name: 'pgd', attack: 'pgd', options: { steps, eot: options.eot ?? 1, restarts: options.restarts ?? 1, loss: options.loss ?? 'ce' } };
      const ran = attackInBatches(ensemble, images, labels, crafting, Array.from({ length: n }, (_, i) => i), {
        norm, eps, seed, batchSize, onProgress: options.onStep ? () => options.onStep!() : undefined,
      });
      // Into the caller's scope, which the runner's keep() took it out of.
      trackInScope(ran.adversarial);
      rows.push({ sources: set, adversarial: ran.adversarial, sourceFooled: ran.success, transferred: [] });
      const row = rows[rows.length - 1]!;
      row.transferred = targets.map((t) => ({ target: t.name, ...judge(t.model, row.adversarial) }));
    }
  } catch (err) {
    for (const r of rows) r.adversarial.dispose();
    throw err;
  }
  return { clean, rows };
}
