// AutoAttack (F. Croce, M. Hein, ICML 2020, https://arxiv.org/abs/2003.01690) as configuration plus a runner,
// following the reference autoattack/autoattack.py (AutoAttack.__init__, set_version, run_standard_evaluation):
//   'standard' (Linf): APGD-CE (100 iterations, 1 restart) → APGD-T (targeted DLR, 9 target classes, 100
//       iterations, 1 restart) → FAB-T (9 target classes, 100 iterations, 1 restart, α_max 0.1, η 1.05, β 0.9)
//       → Square (5000 queries, p_init 0.8, 1 restart, no rescaled schedule);
//   'rand' (randomised defences): APGD-CE → APGD-DLR, 100 iterations, 1 restart, EOT over 20 samples;
//   every attack uses the suite's seed (the reference sets each attack's seed to the same value).
// The runner attacks only the points still robust, in batches (default 250, as the reference), logs the robust
// accuracy after each attack, checks every adversarial batch (inside the ball, in [0, 1], finite) and returns the
// per-image worst case (robust only if every attack failed) with a JSON-able summary.
import { type Device, type Tensor, noGrad, tensor, tidy, keep, trackInScope } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { type ProgressEvent, checkAttackInputs, replaceRows } from '../attacks/attack.js';
import { type Norm, DEFAULT_EPS, checkAdversarial } from '../attacks/threat-model.js';
import { describeAttack, type AttackEntry } from '../attacks/registry.js';
import { attackInBatches, batchesOf } from './runner.js';

/**
 * AutoAttack's versions (Croce & Hein 2020): 'standard' (APGD-CE, APGD-T, FAB-T, Square) for deterministic models,
 * 'rand' (APGD-CE and APGD-DLR with EOT 20) for randomised defences.
 */
export type AutoAttackVersion = 'standard' | 'rand';

/** The attacks of AutoAttack's version `version` under the norm `norm` (default 'Linf'), with the reference's settings. */
export function autoAttackSuite(version: AutoAttackVersion, settings: { norm?: Norm } = {}): AttackEntry[] {
  const apgd = { steps: 100, restarts: 1, eot: 1, rho: 0.75 } as const;
  if (version === 'rand') {
    return [
      { name: 'apgd-ce', attack: 'apgd', options: { ...apgd, loss: 'ce', eot: 20 } },
      { name: 'apgd-dlr', attack: 'apgd', options: { ...apgd, loss: 'dlr', eot: 20 } },
    ];
  }
  if (version !== 'standard') throw new RangeError(`unknown AutoAttack version '${version as string}' (standard, rand)`);
  const norm = settings.norm ?? 'Linf';
  if (norm !== 'Linf') throw new RangeError(`the standard suite is implemented for Linf only (FAB and Square have no ${norm} version here)`);
  return [
    { name: 'apgd-ce', attack: 'apgd', options: { ...apgd, loss: 'ce' } },
    { name: 'apgd-t', attack: 'apgd', options: { ...apgd, loss: 'dlr', targeted: true, nTargetClasses: 9 } },
    { name: 'fab-t', attack: 'fab', options: { targeted: true, nTargetClasses: 9, steps: 100, restarts: 1, alphaMax: 0.1, eta: 1.05, beta: 0.9 } },
    { name: 'square', attack: 'square', options: { queries: 5000, pInit: 0.8, restarts: 1, loss: 'margin', rescaleSchedule: false } },
  ];
}

/** Settings of {@link AutoAttack}. */
export interface AutoAttackOptions {
  /** The threat model. Default 'Linf'. */
  norm?: Norm;
  /** Default 8/255. */
  eps?: number;
  /** Seeds every attack (as the reference sets each attack's seed to the suite's). Default 0. */
  seed?: number;
  /** 'standard' (default), 'rand', or 'custom' with `attacks`. */
  version?: AutoAttackVersion | 'custom';
  /** The attacks of a 'custom' suite, in order (e.g. autoAttackSuite('standard') with fewer iterations). */
  attacks?: AttackEntry[];
  /** Images per attack call. Default 250. */
  batchSize?: number;
  /** Progress of the attack running, with `robust` counted over all images of the evaluation. */
  onProgress?: (event: ProgressEvent) => void;
  /** Receives the log lines (initial accuracy, robust accuracy after each attack). Default: none. */
  log?: (line: string) => void;
}

/** A suite run as plain JSON (what the reference logs, machine-readable). */
export interface SuiteSummary {
  /** 'standard', 'rand' or 'custom'. */
  version: string;
  /** The threat model's norm. */
  norm: Norm;
  /** The threat model's radius. */
  eps: number;
  /** The suite's seed. */
  seed: number;
  /** Images evaluated. */
  images: number;
  /** The attacks run, in order, as entries (name, registered kind, options). */
  attacks: { name: string; attack: string; options: Record<string, unknown> }[];
  /** Accuracy without attack, in [0, 1]. */
  cleanAccuracy: number;
  /** Robust accuracy after each attack, in order ('clean' first). */
  robustAccuracyAfter: Record<string, number>;
  /** Robust accuracy after all the attacks, in [0, 1]. */
  robustAccuracy: number;
  /** Per image: null if robust, 'clean' if misclassified without attack, else the attack that broke it. */
  brokenBy: (string | null)[];
  /** Seconds per attack (and in all). */
  seconds: Record<string, number>;
}

/** What {@link AutoAttack.run} returns. */
export interface SuiteResult {
  /** Per image, the worst case: the adversarial example of the attack that broke it, the clean image otherwise. */
  adversarial: Tensor;
  /** Per image: no attack fooled it (and it is classified correctly). */
  robust: boolean[];
  /** Per image: null if robust, 'clean' if misclassified without attack, else the attack that broke it. */
  brokenBy: (string | null)[];
  /** Accuracy without attack, in [0, 1]. */
  cleanAccuracy: number;
  /** Robust accuracy after all the attacks, in [0, 1]. */
  robustAccuracy: number;
  /** Robust accuracy after each attack, in order ('clean' first). */
  robustAccuracyAfter: Record<string, number>;
  /** The same as plain JSON. */
  summary: SuiteSummary;
}

/** The AutoAttack runner: construct with (model, options), call run(images, labels). */
export class AutoAttack {
  /** The attacked classifier. */
  readonly model: Classifier;
  /** The suite's version. */
  readonly version: AutoAttackVersion | 'custom';
  /** The threat model's norm. */
  readonly norm: Norm;
  /** The threat model's radius, in [0, 1] pixel units. */
  readonly eps: number;
  /** Seed of every attack. */
  readonly seed: number;
  /** The attacks, in order. */
  readonly attacks: AttackEntry[];
  /** Images per attack call. */
  readonly batchSize: number;
  private readonly onProgress: ((event: ProgressEvent) => void) | undefined;
  private readonly log: (line: string) => void;

  constructor(model: Classifier, options: AutoAttackOptions = {}) {
    this.model = model;
    this.version = options.version ?? 'standard';
    this.norm = options.norm ?? 'Linf';
    this.eps = options.eps ?? DEFAULT_EPS;
    this.seed = options.seed ?? 0;
    if (this.version === 'custom') {
      if (!options.attacks?.length) throw new RangeError("version 'custom' needs a list of attacks");
      this.attacks = options.attacks;
    } else {
      // As the reference: a named version fixes its attacks.
      if (options.attacks) throw new RangeError(`attacks are fixed by version '${this.version}'; use version 'custom' to choose them`);
      this.attacks = autoAttackSuite(this.version, { norm: this.norm });
    }
    this.batchSize = options.batchSize ?? 250;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${this.batchSize}`);
    this.onProgress = options.onProgress;
    this.log = options.log ?? (() => {});
  }

  /**
   * Runs the suite on `images` [N, C, H, W] in [0, 1] with `labels` [N], each attack only on the points still robust,
   * logging robust accuracy after each, and checking every adversarial example (inside the ball, in [0, 1]).
   */
  run(images: Tensor, labels: Tensor): SuiteResult {
    checkAttackInputs(images, labels);
    const n = images.shape[0]!;
    const device = images.device as Device;
    const seconds: Record<string, number> = {};

    const robust: boolean[] = [];
    noGrad(() => {
      for (const batch of batchesOf(Array.from({ length: n }, (_, i) => i), this.batchSize)) {
        tidy(() => {
          const index = tensor(batch, { dtype: 'int64', device });
          const predicted = this.model.forward(images.indexSelect(0, index)).argmax({ dim: 1 });
          robust.push(...predicted.eq(labels.indexSelect(0, index)).toArray().map(Boolean));
        });
      }
    });
    const brokenBy: (string | null)[] = robust.map((r) => (r ? null : 'clean'));
    const accuracy = () => (n === 0 ? 0 : robust.filter(Boolean).length / n);
    const cleanAccuracy = accuracy();
    const robustAccuracyAfter: Record<string, number> = { clean: cleanAccuracy };
    this.log(`initial accuracy: ${percent(cleanAccuracy)}`);

    let worst = keep(images.detach().clone());
    const started = Date.now();
    try {
      for (const entry of this.attacks) {
        const attackStarted = Date.now();
        const pool = robust.flatMap((r, i) => (r ? [i] : []));
        const onProgress = this.onProgress;
        const ran = attackInBatches(this.model, images, labels, entry, pool, {
          norm: this.norm, eps: this.eps, seed: this.seed, batchSize: this.batchSize,
          // `robust` counts every image of the evaluation: those outside the batch as of its start, plus the batch's.
          onProgress: onProgress && ((event, batch) => onProgress({ ...event, attack: entry.name, robust: robust.filter(Boolean).length - batch.length + event.robust })),
          onBatch: (batch, success) => batch.forEach((image, j) => {
            if (!success[j]) return;
            robust[image] = false;
            brokenBy[image] = entry.name;
          }),
        });
        const fooled = pool.filter((_, j) => ran.success[j]);
        if (fooled.length > 0) {
          const updated = tidy(() => {
            const index = tensor(fooled, { dtype: 'int64', device });
            return keep(replaceRows(worst, index, ran.adversarial.indexSelect(0, index)));
          });
          worst.dispose();
          worst = updated;
        }
        ran.adversarial.dispose();
        seconds[entry.name] = (Date.now() - attackStarted) / 1000;
        robustAccuracyAfter[entry.name] = accuracy();
        this.log(`robust accuracy after ${entry.name.toUpperCase()}: ${percent(accuracy())} (total time ${((Date.now() - started) / 1000).toFixed(1)} s)`);
      }
      checkAdversarial(images, worst, { norm: this.norm, eps: this.eps });
    } catch (err) {
      worst.dispose();
      throw err;
    }
    trackInScope(worst);
    const robustAccuracy = accuracy();
    this.log(`robust accuracy: ${percent(robustAccuracy)}`);
    const summary: SuiteSummary = {
      version: this.version, norm: this.norm, eps: this.eps, seed: this.seed, images: n,
      attacks: this.attacks.map((e) => describeAttack(e, { norm: this.norm, eps: this.eps, seed: this.seed })),
      cleanAccuracy, robustAccuracyAfter: { ...robustAccuracyAfter }, robustAccuracy, brokenBy: [...brokenBy], seconds,
    };
    return { adversarial: worst, robust, brokenBy, cleanAccuracy, robustAccuracy, robustAccuracyAfter, summary };
  }
}

function percent(v: number): string {
  return `${(100 * v).toFixed(2)}%`;
}
