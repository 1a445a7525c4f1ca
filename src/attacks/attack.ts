// What every attack shares (torchattacks' base class, without its global modes): the Classifier it attacks, the
// result type, input checks, seeding, its projection onto the threat model (threat-model.ts), the gradient with
// EOT, the loop that re-attacks only the points still robust within one call (AutoAttack's restarts and target
// classes; the loop over batches and attacks is robustness/runner.ts), and the final check of every result.
// Each attack file holds only its own single run.
import {
  Tensor, Generator, type Device, tidy, keep, trackInScope, noGrad, enableGrad, grad, manualSeed, tensor, full, ones, rand, randn,
  where,
} from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { Module } from '../nn/module.js';
import { attackLoss, kthLargestClass } from './losses.js';
import { type Norm, DEFAULT_EPS, checkAdversarial, normalizePerImage, perImage, threatModelProjector } from './threat-model.js';
import { checkPositiveInteger } from '../util/checks.js';

/** What an attack reports to its `onProgress` callback after each iteration. */
export interface ProgressEvent {
  /** The attack's name ('apgd-ce', 'square', …). */
  attack: string;
  /** Iterations done so far in this call of run() (over all restarts and target classes). */
  step: number;
  /** Iterations planned; runs end early when every image is fooled, so `step` may stop short of it. */
  total: number;
  /** Images of this call not fooled yet (clean mistakes count as fooled). */
  robust: number;
}

/** Options every attack takes: the threat model, the seed, progress and loss tracing. */
export interface AttackOptions {
  /** Threat model. Default 'Linf'. */
  norm?: Norm;
  /** Radius of the threat model, in [0, 1] pixel units. Default 8/255. */
  eps?: number;
  /**
   * Seeds the attack's own random numbers and, as the reference's perturb() does, libtorch's default generator,
   * so that a stochastic model drawing from it is reproducible too. Default 0.
   */
  seed?: number;
  /** Called once per iteration. */
  onProgress?: (event: ProgressEvent) => void;
  /** Record each image's loss at every iteration in `lossTrace`. Default false: it costs a device sync per step. */
  recordLoss?: boolean;
}

/** What {@link Attack.run} returns. */
export interface AttackResult {
  /**
   * [N, C, H, W], inside the threat model. For fooled images the adversarial example; for the others the point
   * of highest loss found (FAB, which has none inside the ball: the clean image). AutoAttack returns the clean
   * image for every unfooled point; the robust/fooled split is the same.
   */
  adversarial: Tensor;
  /** Misclassified on one final forward pass of `adversarial` (for a stochastic model: on that pass). */
  success: boolean[];
  /**
   * lossTrace[i]: image i's objective at each iteration of every run it took part in (with `recordLoss`): the
   * attack loss for FGSM, PGD and APGD, the best margin for Square, the smallest adversarial distance for FAB.
   */
  lossTrace?: number[][];
  /** Model evaluations per image (score-based attacks). */
  queries?: number[];
  /**
   * Per image: the attack ran on it. Attacks skip the images their first forward pass misclassifies (AutoAttack's
   * convention) and return them unchanged; an image attacked without result (FAB finds no adversarial) is
   * unchanged too, so only this tells the two apart.
   */
  attacked?: boolean[];
}

/** What the loop over restarts and target classes hands each single run: the images still robust. */
export interface SingleRunInput {
  x: Tensor;
  y: Tensor;
  /** Target classes for targeted attacks, null otherwise. */
  targets: Tensor | null;
  /** 0 for the first run on these images. */
  restart: number;
  run: AttackRun;
}

export interface SingleRunResult {
  /** [m] bool: this run fooled the image. */
  fooled: Tensor;
  /** [m, …] the adversarial example where `fooled`. */
  adversarial: Tensor;
  /** [m, …] and [m]: the highest-loss point of the run, kept for images no run fools. */
  best?: Tensor;
  bestLoss?: Tensor;
}

/** Book-keeping of one call of run(): random numbers, which images are still robust, progress and traces. */
export class AttackRun {
  /** The attack's random stream (on the CPU), seeded from the attack's seed. */
  readonly generator: Generator;
  /** Number of classes of the model's output. */
  readonly classes: number;
  /** Per image of the call: not fooled yet. */
  readonly robust: boolean[];
  /** With recordLoss: each image's loss at every iteration; otherwise undefined. */
  readonly lossTrace: number[][] | undefined;
  /** Model queries per image (score-based attacks); undefined for the others. */
  queries: number[] | undefined;
  private current: number[] = [];
  private steps = 0;
  private total = 0;

  constructor(
    private readonly attack: string,
    seed: number,
    classes: number,
    robust: boolean[],
    private readonly onProgress: ((event: ProgressEvent) => void) | undefined,
    recordLoss: boolean,
  ) {
    this.generator = new Generator(seed);
    this.classes = classes;
    this.robust = robust;
    this.lossTrace = recordLoss ? robust.map(() => []) : undefined;
  }

  /** Sets the iterations planned for this call (the `total` of progress events). */
  plan(total: number): void {
    this.total = total;
  }

  /** Indices (into the call's batch) of the images the next run attacks. */
  begin(indices: number[]): void {
    this.current = indices;
  }

  /** One iteration of the current run: records `loss` [m] and reports how many images remain unfooled. */
  tick(loss: Tensor | null, fooled: Tensor | null): void {
    this.steps++;
    if (this.lossTrace && loss) {
      const values = loss.toArray();
      this.current.forEach((image, j) => this.lossTrace![image]!.push(values[j]!));
    }
    if (this.onProgress) {
      const fooledNow = fooled ? fooled.toArray().reduce((a, b) => a + b, 0) : 0;
      const robust = this.robust.reduce((a, r) => a + (r ? 1 : 0), 0) - fooledNow;
      this.onProgress({ attack: this.attack, step: this.steps, total: this.total, robust });
    }
  }

  /** Adds queries per image of the current run to `queries`. */
  addQueries(perImage: number[]): void {
    this.queries ??= this.robust.map(() => 0);
    this.current.forEach((image, j) => { this.queries![image]! += perImage[j]!; });
  }

  /** Uniform on [0, 1), drawn on the CPU from the attack's generator (as the reference's torch.rand(...).to(device)). */
  uniform(shape: number[], like: Tensor): Tensor {
    return onDeviceOf(rand(shape, { generator: this.generator, dtype: like.dtype }), like);
  }

  /** Standard normal, drawn on the CPU from the attack's generator and moved to `like`'s device. */
  normal(shape: number[], like: Tensor): Tensor {
    return onDeviceOf(randn(shape, { generator: this.generator, dtype: like.dtype }), like);
  }

  /** One uniform number in [0, 1) as a JS number. */
  uniformNumber(): number {
    return tidy(() => rand([1], { generator: this.generator }).item());
  }
}

/** What an EOT gradient step computes (Attack.lossGradient); the caller owns (disposes) the three tensors. */
export interface EotGradient {
  /** The input gradient of the summed per-example loss, averaged over the EOT draws: the input's shape. */
  gradient: Tensor;
  /** The per-example loss of the last draw, [N] (as the reference uses it). */
  loss: Tensor;
  /** The logits of the last draw, [N, classes]. */
  logits: Tensor;
}

/** Some module of `model` is in training mode (a plain classifier function never is, as far as we can see). */
function inTrainingMode(model: Classifier): boolean {
  return model instanceof Module && model.modules().some((m) => m.training);
}

function onDeviceOf(t: Tensor, like: Tensor): Tensor {
  return like.device === 'cpu' ? t : t.to(like.device as Device);
}

/** The rows of `base` at `index` replaced by `rows` (a new tensor). */
export function replaceRows(base: Tensor, index: Tensor, rows: Tensor): Tensor {
  const expanded = perImage(index, rows.ndim).expand(rows.shape);
  return base.scatter(0, expanded, rows);
}

/** Throws unless images are [N, C, H, W] floats in [0, 1] (finite) and labels are int64 [N]. */
export function checkAttackInputs(images: Tensor, labels: Tensor): void {
  if (images.ndim !== 4) throw new TypeError(`images must be [N, C, H, W], got shape [${images.shape}]`);
  if (images.dtype !== 'float32' && images.dtype !== 'float64') throw new TypeError(`images must be float32 or float64, got ${images.dtype}`);
  if (labels.dtype !== 'int64') throw new TypeError(`labels must be int64, got ${labels.dtype}`);
  if (labels.ndim !== 1 || labels.shape[0] !== images.shape[0]) {
    throw new TypeError(`labels must be [N] = [${images.shape[0]}], got shape [${labels.shape}]`);
  }
  if (images.numel === 0) return;
  tidy(() => {
    if (!images.isfinite().all().item()) throw new RangeError('images contain NaN or infinity');
    const low = images.min().item();
    const high = images.max().item();
    if (low < 0 || high > 1) throw new RangeError(`images must lie in [0, 1], got values in [${low}, ${high}]`);
  });
}

function checkLogits(logits: Tensor, labels: Tensor, n: number): number {
  if (logits.ndim !== 2 || logits.shape[0] !== n) {
    throw new TypeError(`the model must return logits [N, classes] = [${n}, …], got shape [${logits.shape}]`);
  }
  const classes = logits.shape[1]!;
  if (n > 0) {
    const low = labels.min().item();
    const high = labels.max().item();
    if (low < 0 || high >= classes) throw new RangeError(`labels must be in [0, ${classes}), got values in [${low}, ${high}]`);
  }
  return classes;
}

// One check for the whole library (src/util/checks.ts); re-exported for the attacks that import it from here.
export { checkPositiveInteger };

/**
 * Frees the tensors of `state` that `next` no longer holds, after an iteration computed `next` inside tidy().
 * States are flat objects; non-tensor fields are ignored.
 */
function releaseDropped(state: object, next: object): void {
  const alive = new Set(Object.values(next).filter((v): v is Tensor => v instanceof Tensor));
  for (const v of Object.values(state)) if (v instanceof Tensor && !alive.has(v)) v.dispose();
}

/**
 * One iteration in its own tidy scope, so memory stays flat however many iterations run. The state owns its
 * tensors: those of `state` missing from the new state are freed, so never put an input tensor in it.
 */
export function iterate<S extends object>(state: S, body: () => S): S {
  const next = tidy(body);
  releaseDropped(state, next);
  return next;
}

/** The base of every attack: construct with (model, options), call run(images, labels). */
export abstract class Attack {
  /** Short name used in progress events and suite logs. */
  abstract readonly name: string;
  /** The attacked classifier. */
  readonly model: Classifier;
  /** The threat model's norm. */
  readonly norm: Norm;
  /** The threat model's radius, in [0, 1] pixel units. */
  readonly eps: number;
  /** Seed of the attack's random numbers. */
  readonly seed: number;
  /** The progress callback, if any. */
  protected readonly onProgress: ((event: ProgressEvent) => void) | undefined;
  /** Whether losses are traced per iteration. */
  protected readonly recordLoss: boolean;

  protected constructor(model: Classifier, options: AttackOptions, supportedNorms: readonly Norm[] = ['Linf', 'L2']) {
    if (typeof model?.forward !== 'function') throw new TypeError('an attack needs a model with forward(x) → logits');
    this.model = model;
    this.norm = options.norm ?? 'Linf';
    if (!supportedNorms.includes(this.norm)) throw new RangeError(`${new.target.name} supports ${supportedNorms.join(', ')}, not ${this.norm}`);
    this.eps = options.eps ?? DEFAULT_EPS;
    if (!(this.eps >= 0) || !Number.isFinite(this.eps)) throw new RangeError(`eps must be a finite non-negative number, got ${this.eps}`);
    this.seed = checkPositiveInteger('seed', options.seed ?? 0, true);
    this.onProgress = options.onProgress;
    this.recordLoss = options.recordLoss ?? false;
  }

  /**
   * Attacks `images` [N, C, H, W] (values in [0, 1]) labelled `labels` [N] (int64). Only images the model
   * classifies correctly are attacked. The returned adversarial images belong to the caller's scope.
   */
  run(images: Tensor, labels: Tensor): AttackResult {
    return this.attackImages(images, labels, null);
  }

  /**
   * Attacks the images flagged in `plan.attack` and leaves the others unchanged, without a clean pass of its own:
   * for an attack that wraps this one (surrogate, transfer, per-member), whose own run already decided on the
   * defended model which images to attack. Deciding again here would be a second decision on another model (the
   * surrogate, one member) or another random draw of the same one, and could skip an image the outer run counts
   * as attacked. `plan.classes` is the number of classes the outer run saw. libtorch's default generator is not
   * re-seeded: the outer run seeded it, and its draws continue.
   */
  runOn(images: Tensor, labels: Tensor, plan: { attack: readonly boolean[]; classes: number }): AttackResult {
    if (plan.attack.length !== images.shape[0]) throw new RangeError(`runOn: ${plan.attack.length} flags for ${images.shape[0]} images`);
    checkPositiveInteger('classes', plan.classes);
    return this.attackImages(images, labels, plan);
  }

  private attackImages(images: Tensor, labels: Tensor, plan: { attack: readonly boolean[]; classes: number } | null): AttackResult {
    checkAttackInputs(images, labels);
    if (plan === null) manualSeed(this.seed);
    return noGrad(() => {
      const state: { run?: AttackRun; attacked?: boolean[] } = {};
      const adversarial = tidy(() => {
        const x = images.detach();
        const y = labels.detach();
        const n = x.shape[0]!;
        let classes: number;
        let robust: boolean[];
        if (plan) {
          classes = plan.classes;
          robust = [...plan.attack];
        } else {
          const logits = this.model.forward(x);
          classes = checkLogits(logits, y, n);
          robust = n === 0 ? [] : logits.argmax({ dim: 1 }).eq(y).toArray().map(Boolean);
        }
        // A copy: the run marks images fooled in its own array as it goes.
        state.attacked = [...robust];
        const run = new AttackRun(this.name, this.seed, classes, robust, this.onProgress, this.recordLoss);
        state.run = run;
        return n === 0 || !robust.includes(true) ? x.clone() : this.perturb(x, y, run);
      });
      try {
        checkAdversarial(images, adversarial, { norm: this.norm, eps: this.eps });
      } catch (err) {
        adversarial.dispose();
        throw err;
      }
      const success = images.shape[0] === 0 ? [] : tidy(() => this.model.forward(adversarial).argmax({ dim: 1 }).ne(labels).toArray().map(Boolean));
      const result: AttackResult = { adversarial, success, attacked: state.attacked ?? [] };
      if (state.run?.lossTrace) result.lossTrace = state.run.lossTrace;
      if (state.run?.queries) result.queries = state.run.queries;
      return result;
    });
  }

  /** The attack proper, on all images of the call; returns adversarial images inside the threat model. */
  protected abstract perturb(x: Tensor, y: Tensor, run: AttackRun): Tensor;

  /** This attack's projection onto its threat model around `clean` (see threatModelProjector). */
  protected projector(clean: Tensor): (point: Tensor) => Tensor {
    return threatModelProjector(clean, this.norm, this.eps);
  }

  /**
   * The gradient of the summed per-example loss with respect to the input, averaged over `eot` draws of the model
   * (Expectation over Transformation), with the logits and loss of the last draw (as the reference uses them). Only
   * the input is differentiated: parameters accumulate no .grad.
   *
   * Batched EOT: the draws run as replicas of the batch stacked along dim 0, up to `imagesPerPass` images in one
   * forward/backward pass (the reference runs one pass per draw). `lossOf` is then given the logits of k stacked
   * replicas, [k·n, classes] with row r·n + i replica r of image i, and must return their losses [k·n] (the
   * objective() of GradientAttack does); the input gradient of the summed loss is the sum over replicas, since the
   * backward of repeat() sums them. This equals the sequential loop (one pass per draw, `imagesPerPass` ≤ n) in
   * distribution whenever the model draws its randomness per image and its images do not interact: crossmax's
   * prior draws every shift, jitter and noise value per image (prior/multi-resolution-prior.ts, `shared` meaning one
   * draw per image for contrast and colour, and backboneClassifierDraw 'independent' a second per-image draw), and
   * attacks run in eval mode (BatchNorm on running statistics; dropout is per element anyway). The random numbers
   * come from the same seeded generator in another order, so a run is reproducible under its seed but differs from
   * the sequential loop's draw for draw. A model that is a Module with any part in training mode gets the
   * sequential loop: BatchNorm's batch statistics would couple the replicas (a wrapper that is no Module, such as
   * the surrogate classifier, hides its model's mode: the robustness evaluation puts every model in eval mode).
   */
  protected lossGradient(
    point: Tensor, lossOf: (logits: Tensor) => Tensor, eot: number, imagesPerPass = 1,
  ): EotGradient {
    checkPositiveInteger('eot', eot);
    const n = point.shape[0]!;
    const replicasPerPass = n === 0 || inTrainingMode(this.model) ? 1 : Math.max(1, Math.min(eot, Math.floor(imagesPerPass / n)));
    let sum: Tensor | null = null;
    let last: { loss: Tensor; logits: Tensor } | null = null;
    for (let done = 0; done < eot; done += replicasPerPass) {
      const replicas = Math.min(replicasPerPass, eot - done);
      const sample = tidy(() => enableGrad(() => {
        const input = point.detach().setRequiresGrad(true);
        const stacked = replicas === 1 ? input : input.repeat([replicas, ...Array<number>(point.ndim - 1).fill(1)]);
        const logits = this.model.forward(stacked);
        const loss = lossOf(logits);
        if (replicas > 1 && (loss.ndim !== 1 || loss.shape[0] !== replicas * n)) {
          throw new Error(`the attack loss returned shape [${loss.shape}] for logits [${logits.shape}]: one loss per row of the stacked EOT replicas is needed`);
        }
        const [g] = grad(loss.sum(), [input]);
        // The last replica's rows, copied so the whole pass's logits can go.
        const lastRows = (t: Tensor) => (replicas === 1 ? t.detach() : t.narrow(0, (replicas - 1) * n, n).detach().clone());
        return { g: g!, loss: lastRows(loss), logits: lastRows(logits) };
      }));
      if (sum === null) {
        sum = sample.g;
      } else {
        const next: Tensor = sum.add(sample.g);
        sum.dispose();
        sample.g.dispose();
        sum = next;
      }
      if (last) {
        last.loss.dispose();
        last.logits.dispose();
      }
      last = { loss: sample.loss, logits: sample.logits };
    }
    if (sum === null || last === null) throw new RangeError(`eot must be a positive integer, got ${eot}`);
    if (eot === 1) return { gradient: sum, ...last };
    const mean = sum.div(eot);
    sum.dispose();
    return { gradient: mean, ...last };
  }

  /** The model's predicted classes [N] (int64) for `x`. */
  protected predict(x: Tensor): Tensor {
    return tidy(() => this.model.forward(x).argmax({ dim: 1 }));
  }

  /**
   * AutoAttack's outer loop: for each target class (k = 2 … nTargetClasses + 1 of the clean logits, fewer if
   * the model has fewer classes; one untargeted pass otherwise) and each restart, run `single` on the images
   * not fooled yet, and keep each image's adversarial example (or its highest-loss point).
   */
  protected attackRobust(
    x: Tensor, y: Tensor, run: AttackRun,
    plan: { targeted: boolean; nTargetClasses: number; restarts: number; stepsPerRun: number },
    single: (input: SingleRunInput) => SingleRunResult,
  ): Tensor {
    const targets: (number | null)[] = [];
    if (plan.targeted) {
      const count = Math.min(plan.nTargetClasses, run.classes - 1);
      for (let k = 2; k <= count + 1; k++) targets.push(k);
    } else {
      targets.push(null);
    }
    run.plan(targets.length * plan.restarts * plan.stepsPerRun);
    let adversarial = keep(x.clone());
    let bestLoss = keep(full([x.shape[0]!], -Infinity, { dtype: 'float32', device: x.device as Device }));
    try {
      for (const target of targets) {
        for (let restart = 0; restart < plan.restarts; restart++) {
          const indices = run.robust.flatMap((r, i) => (r ? [i] : []));
          if (indices.length === 0) break;
          run.begin(indices);
          const next = tidy(() => {
            const index = tensor(indices, { dtype: 'int64', device: x.device as Device });
            const xs = x.indexSelect(0, index);
            const ys = y.indexSelect(0, index);
            const targetClasses = target === null ? null : kthLargestClass(this.model.forward(xs), target);
            const result = single({ x: xs, y: ys, targets: targetClasses, restart, run });
            const previous = adversarial.indexSelect(0, index);
            const previousLoss = bestLoss.indexSelect(0, index);
            let rows = previous;
            let losses = previousLoss;
            if (result.best && result.bestLoss) {
              const better = result.bestLoss.float().gt(previousLoss);
              rows = where(perImage(better, xs.ndim), result.best, previous);
              losses = where(better, result.bestLoss.float(), previousLoss);
            }
            rows = where(perImage(result.fooled, xs.ndim), result.adversarial, rows);
            return {
              adversarial: keep(replaceRows(adversarial, index, rows)),
              bestLoss: keep(replaceRows(bestLoss, index, losses)),
              fooled: result.fooled.toArray(),
            };
          });
          adversarial.dispose();
          bestLoss.dispose();
          ({ adversarial, bestLoss } = next);
          indices.forEach((image, j) => { if (next.fooled[j]) run.robust[image] = false; });
        }
      }
    } catch (err) {
      adversarial.dispose();
      throw err;
    } finally {
      bestLoss.dispose();
    }
    // Back into the caller's scope, which keep() took it out of.
    trackInScope(adversarial);
    return adversarial;
  }
}

/** Options shared by the gradient attacks (FGSM, PGD, APGD). */
export interface GradientAttackOptions extends AttackOptions {
  /** Objective: cross-entropy or DLR (targeted forms when `targeted`). */
  loss?: 'ce' | 'dlr';
  /**
   * Attack towards the classes with the 2nd … (nTargetClasses+1)-th largest clean logits in turn, each run only
   * on the images still robust; success still means misclassification (AutoAttack's targeted attacks). Default false.
   */
  targeted?: boolean;
  /** Target classes tried when targeted. Default 9 (capped at classes − 1). */
  nTargetClasses?: number;
  /** Forward/backward passes whose input gradients are averaged per step (EOT). Default 1. */
  eot?: number;
  /**
   * Batched EOT: the most images in one forward/backward pass when the `eot` draws of a step run as stacked
   * replicas of the batch (see Attack.lossGradient); the draws go in passes of ⌊eotImagesPerPass / n⌋ replicas
   * of the n images attacked. 1 (or any value below 2n) runs one pass per draw, the reference's sequential loop:
   * needed for a model whose randomness is drawn per batch rather than per image. Default: 256 images of 32×32,
   * fewer in proportion to the pixels of larger images (5 at 224×224), so that a pass holds about as much as 256
   * CIFAR images: {@link defaultEotImagesPerPass}.
   */
  eotImagesPerPass?: number;
}

/** Images of 32×32 pixels in one batched-EOT pass by default; see GradientAttackOptions.eotImagesPerPass. */
export const EOT_IMAGES_PER_PASS_32PX = 256;

/**
 * The default of GradientAttackOptions.eotImagesPerPass for images [N, C, H, W]: 256 at 32×32, in proportion to
 * H·W otherwise (at least 1). The batches of one to a few images that APGD reaches on the last robust points gain
 * most: there the fixed cost of each operator, not the arithmetic, sets the time of a pass. Measured on the demo
 * model (cifar-small), one thread, forward + backward per image: 8.9 ms at batch 1, 4.4 at 4, 2.9 at 16, about
 * 2.4-2.8 from 32 to 256, and 3.1 at 512 (memory traffic): hence 256. A pass then holds about as many images as
 * one batch of the AutoAttack runner (250) did in the sequential loop, so memory per pass does not grow either.
 */
export function defaultEotImagesPerPass(shape: readonly number[]): number {
  const pixels = (shape[2] ?? 32) * (shape[3] ?? 32);
  return Math.max(1, Math.floor((EOT_IMAGES_PER_PASS_32PX * 32 * 32) / pixels));
}

/** What FGSM, PGD and APGD share: the objective, the target classes and EOT. */
export abstract class GradientAttack extends Attack {
  /** The objective: cross-entropy or DLR (Croce & Hein 2020). */
  readonly loss: 'ce' | 'dlr';
  /** Whether runs aim at target classes in turn. */
  readonly targeted: boolean;
  /** Target classes tried when targeted. */
  readonly nTargetClasses: number;
  /** Forward/backward passes averaged per gradient (EOT). */
  readonly eot: number;
  /** The most images per batched-EOT pass, or undefined for the default by image size (defaultEotImagesPerPass). */
  readonly eotImagesPerPass: number | undefined;

  protected constructor(model: Classifier, options: GradientAttackOptions) {
    super(model, options);
    this.loss = options.loss ?? 'ce';
    this.targeted = options.targeted ?? false;
    this.nTargetClasses = checkPositiveInteger('nTargetClasses', options.nTargetClasses ?? 9);
    this.eot = checkPositiveInteger('eot', options.eot ?? 1);
    this.eotImagesPerPass = options.eotImagesPerPass === undefined ? undefined : checkPositiveInteger('eotImagesPerPass', options.eotImagesPerPass);
  }

  /**
   * The objective of one run: `loss` against the labels, or its targeted form against `targets`. It takes the
   * logits of the n images or of k stacked replicas of them ([k·n, classes], batched EOT), the labels and targets
   * repeated to match.
   */
  protected objective(y: Tensor, targets: Tensor | null): (logits: Tensor) => Tensor {
    const n = y.shape[0]!;
    return (logits) => {
      const rows = logits.shape[0]!;
      if (rows === n) return attackLoss(this.loss, logits, y, targets);
      if (n === 0 || rows % n !== 0) throw new Error(`internal: logits of ${rows} rows for ${n} labels`);
      const k = rows / n;
      return attackLoss(this.loss, logits, y.repeat([k]), targets === null ? null : targets.repeat([k]));
    };
  }

  /** The gradient averaged over this attack's `eot` draws, in batched passes (see Attack.lossGradient). */
  protected eotGradient(point: Tensor, lossOf: (logits: Tensor) => Tensor): EotGradient {
    return this.lossGradient(point, lossOf, this.eot, this.eotImagesPerPass ?? defaultEotImagesPerPass(point.shape));
  }

  /** Runs `single` over the target classes (when targeted) and `restarts`, on the images still robust. */
  protected attackWithRestarts(x: Tensor, y: Tensor, run: AttackRun, restarts: number, stepsPerRun: number,
    single: (input: SingleRunInput) => SingleRunResult): Tensor {
    return this.attackRobust(x, y, run, { targeted: this.targeted, nTargetClasses: this.nTargetClasses, restarts, stepsPerRun }, single);
  }
}

/** A random starting point in the threat model as the reference's APGD draws it: on the sphere of radius eps. */
export function randomSphereStart(x: Tensor, run: AttackRun, norm: Norm, eps: number): Tensor {
  const direction = norm === 'Linf' ? run.uniform(x.shape, x).mul(2).sub(1) : run.normal(x.shape, x);
  return x.add(normalizePerImage(direction, norm).mul(eps)).clamp(0, 1);
}

/** All-true bool tensor [n] on the device of `like`. */
export function allTrue(n: number, like: Tensor): Tensor {
  return ones([n], { dtype: 'bool', device: like.device as Device });
}
