// Attacks that take their gradients from a surrogate instead of the defended model, while the defended model
// judges success. BPDA-style: A. Athalye, N. Carlini, D. Wagner, "Obfuscated gradients give a false sense of
// security", ICML 2018, https://arxiv.org/abs/1802.00420; F. Tramèr, N. Carlini, W. Brendel, A. Madry, "On adaptive
// attacks to adversarial example defenses", NeurIPS 2020, https://arxiv.org/abs/2002.08347.
//
// Why the self-ensemble needs them: Zhang, Nikolić, Schlarmann, Croce, Hein, Carlini, Tramèr, "Evaluating the
// robustness of the 'Ensemble Everything Everywhere' defense" (arXiv 2411.14834) find that CrossMax's
// max-subtractions and top-k selection mask gradients: with the randomness fixed, PGD-20 leaves CrossMax at 32.5%
// but the same model with the mean of logits at 1.2%. Attacking through the mean (or a soft CrossMax, or one head)
// and judging on CrossMax removes that masking without changing the defended model.
import { Tensor, type Device, isGradEnabled, noGrad, tensor, tidy } from '../tensor/index.js';
import { Single, type Aggregator } from '../ensemble/aggregators.js';
import type { Classifier } from '../nn/classifier.js';
import { Attack, type AttackRun, type ProgressEvent, replaceRows } from './attack.js';
import { APGD, type ApgdOptions } from './apgd.js';
import { PGD, type PgdOptions } from './pgd.js';

/**
 * A classifier whose output aggregates its members' logits, forward(x) = aggregator.aggregate(memberLogits(x)):
 * SelfEnsemble and SelfEnsemble.withAggregator(...) are. Surrogates that are aggregators, and per-head attacks,
 * need it (they reuse one memberLogits pass, so the surrogate sees the same random draw as the model).
 */
export interface MemberEnsemble extends Classifier {
  /** Logits of every member, [N, members, classes]. */
  memberLogits(images: Tensor): Tensor;
  /** The rule that turns member logits into the output. */
  readonly aggregator: Aggregator;
}

/** Whether `model` has memberLogits() and an aggregator (a SelfEnsemble or one seen through another aggregator). */
export function isMemberEnsemble(model: Classifier): model is MemberEnsemble {
  const m = model as Partial<MemberEnsemble>;
  return typeof m.memberLogits === 'function' && typeof m.aggregator?.aggregate === 'function';
}

/**
 * Where an adaptive attack's gradients come from: another aggregator of the same members (MeanLogits,
 * SoftCrossMax, Single for one head), applied to the defended model's own memberLogits, or any classifier
 * (an undefended model, a smooth twin). For the same model with another aggregator pass the aggregator, not
 * model.withAggregator(...): that would be a second forward pass with its own random draw.
 */
export type Surrogate = Aggregator | Classifier;

/** Whether the surrogate is an aggregator of the model's own members (else a classifier of its own). */
export function isAggregator(surrogate: Surrogate): surrogate is Aggregator {
  return typeof (surrogate as Aggregator).aggregate === 'function';
}

/** A short name for reports: the aggregator's name, or the classifier's `name` / class name. */
export function surrogateName(surrogate: Surrogate): string {
  if (isAggregator(surrogate)) return surrogate.name;
  const named = (surrogate as { name?: unknown }).name;
  if (typeof named === 'string' && named) return named;
  const constructorName = (surrogate as object).constructor?.name;
  return constructorName && constructorName !== 'Object' ? constructorName : 'classifier';
}

/**
 * 'straight-through': the output's value is the defended model's logits, its gradient the surrogate's
 *   (real + (s − s.detach())), so the attack's loss, its best points, early stopping and success are all the
 *   defended model's; only the backward pass goes through the surrogate (BPDA).
 * 'transfer': the output is the surrogate's logits; the attack optimises the surrogate alone (a transfer attack,
 *   Zhang et al.'s first stage) and only the final selection is the defended model's.
 */
export type SurrogateMode = 'straight-through' | 'transfer';

/** The Classifier an attack sees: the defended model's values with the surrogate's gradients (see SurrogateMode). */
export class SurrogateClassifier implements Classifier {
  /** The defended model. */
  readonly model: Classifier;
  /** Where the gradients come from. */
  readonly surrogate: Surrogate;
  /** 'straight-through' or 'transfer'. */
  readonly mode: SurrogateMode;

  constructor(model: Classifier, surrogate: Surrogate, mode: SurrogateMode = 'straight-through') {
    if (typeof model?.forward !== 'function') throw new TypeError('SurrogateClassifier needs a model with forward(x) → logits');
    if (surrogate === null || typeof surrogate !== 'object') throw new TypeError('SurrogateClassifier needs a surrogate (an Aggregator or a Classifier)');
    if (isAggregator(surrogate) && !isMemberEnsemble(model)) {
      throw new TypeError(`the surrogate '${surrogate.name}' is an aggregator, so the model must have memberLogits() and an aggregator (a SelfEnsemble)`);
    }
    if (!isAggregator(surrogate) && typeof surrogate.forward !== 'function') throw new TypeError('the surrogate must be an Aggregator or have forward(x) → logits');
    if (mode !== 'straight-through' && mode !== 'transfer') throw new RangeError(`unknown surrogate mode '${mode as string}' (straight-through, transfer)`);
    this.model = model;
    this.surrogate = surrogate;
    this.mode = mode;
  }

  /** The mode and the surrogate's name, e.g. 'straight-through(mean-logits)'. */
  get name(): string {
    return `${this.mode}(${surrogateName(this.surrogate)})`;
  }

  /**
   * Logits [N, classes]: the model's values with the surrogate's gradients, or the surrogate's logits in 'transfer'
   * mode.
   */
  forward(x: Tensor): Tensor {
    if (this.mode === 'transfer') return this.surrogateLogits(x);
    // Without gradients the straight-through value is just the model's: no surrogate pass needed.
    if (!isGradEnabled()) return this.model.forward(x);
    return tidy(() => {
      let real: Tensor;
      let surrogate: Tensor;
      if (isAggregator(this.surrogate)) {
        const ensemble = this.model as MemberEnsemble;
        const members = ensemble.memberLogits(x);
        real = noGrad(() => ensemble.aggregator.aggregate(members.detach()));
        surrogate = this.surrogate.aggregate(members);
      } else {
        real = noGrad(() => this.model.forward(x));
        surrogate = this.surrogate.forward(x);
      }
      if (real.shape.join() !== surrogate.shape.join()) {
        throw new Error(`the surrogate's logits [${surrogate.shape}] differ in shape from the model's [${real.shape}]`);
      }
      // s − s.detach() is exactly zero, so the value is exactly the model's logits.
      return real.detach().add(surrogate.sub(surrogate.detach()));
    });
  }

  private surrogateLogits(x: Tensor): Tensor {
    if (!isAggregator(this.surrogate)) return this.surrogate.forward(x);
    const aggregator = this.surrogate;
    return tidy(() => aggregator.aggregate((this.model as MemberEnsemble).memberLogits(x)));
  }
}

/** The gradient attacks a surrogate attack can be built on. */
export type SurrogateBaseAttack = 'apgd' | 'pgd';

/** SurrogateGradientAttack's options: the base attack's (APGD's or PGD's) plus where gradients come from. */
export interface SurrogateGradientAttackOptions extends PgdOptions, ApgdOptions {
  /** Where gradients come from (see Surrogate). Required. */
  surrogate: Surrogate;
  /** Default 'straight-through'. */
  mode?: SurrogateMode;
  /** The attack run on the surrogate classifier: APGD (default) or PGD, with this object's options. */
  attack?: SurrogateBaseAttack;
}

/**
 * APGD or PGD whose gradients go through a surrogate while the defended model judges success: the attack runs
 * on a SurrogateClassifier, and the final check (inside the threat model, misclassified by the defended model)
 * is this Attack's, on the defended model. With the defended model itself as surrogate (a deterministic one) it
 * is exactly the plain attack. Every option of the base attack applies, `eot` included.
 */
export class SurrogateGradientAttack extends Attack {
  readonly name: string;
  /** Where the gradients come from. */
  readonly surrogate: Surrogate;
  /** 'straight-through' or 'transfer'. */
  readonly mode: SurrogateMode;
  /** The attack run through the surrogate: 'apgd' or 'pgd'. */
  readonly baseAttack: SurrogateBaseAttack;
  private readonly surrogateModel: SurrogateClassifier;
  private readonly baseOptions: PgdOptions & ApgdOptions;

  constructor(model: Classifier, options: SurrogateGradientAttackOptions) {
    super(model, options);
    const { surrogate, mode, attack, ...baseOptions } = options;
    this.mode = mode ?? 'straight-through';
    this.surrogateModel = new SurrogateClassifier(model, surrogate, this.mode);
    this.surrogate = surrogate;
    this.baseAttack = attack ?? 'apgd';
    if (this.baseAttack !== 'apgd' && this.baseAttack !== 'pgd') throw new RangeError(`unknown base attack '${this.baseAttack as string}' (apgd, pgd)`);
    this.baseOptions = { ...baseOptions, norm: this.norm, eps: this.eps, seed: this.seed };
    // Built once here so that bad options fail at construction, not in the middle of an evaluation.
    const probe = this.base();
    this.name = `${probe.name}-${this.mode === 'transfer' ? 'transfer' : 'bpda'}`;
  }

  protected perturb(x: Tensor, y: Tensor, run: AttackRun): Tensor {
    // The images this run attacks were chosen on the defended model; the base attack must not choose again on
    // the surrogate (which may misclassify an image the defended model gets right) or on another draw.
    const result = this.base().runOn(x, y, { attack: run.robust, classes: run.classes });
    // The base attack ran on the same images in the same order: its traces are this run's.
    if (run.lossTrace && result.lossTrace) result.lossTrace.forEach((trace, i) => run.lossTrace![i]!.push(...trace));
    return result.adversarial;
  }

  private base(): APGD | PGD {
    const onProgress = this.onProgress ? (event: ProgressEvent) => this.onProgress!({ ...event, attack: this.name }) : undefined;
    const options = { ...this.baseOptions, onProgress, recordLoss: this.recordLoss };
    return this.baseAttack === 'apgd' ? new APGD(this.surrogateModel, options) : new PGD(this.surrogateModel, options);
  }
}

/** PerHeadAttack's options: the per-member surrogate attack's, and which members. */
export interface PerHeadAttackOptions extends Omit<SurrogateGradientAttackOptions, 'surrogate' | 'mode'> {
  /** Members attacked, in order (indices into memberLogits' dimension 1; negative from the end). Default: all. */
  members?: number[];
  /**
   * Default 'transfer': each run optimises one member's own logits (that member fooled as hard as it can be)
   * and the ensemble judges the result; 'straight-through' keeps the ensemble's loss with the member's gradient.
   */
  mode?: SurrogateMode;
}

/**
 * One surrogate attack per member of the ensemble (member i's logits, memberLogits(x)[:, i], as the surrogate),
 * each on the images no earlier member's attack has fooled; an image counts as fooled when the defended model
 * misclassifies any of them: the worst case over heads. Unfooled images keep the last member's attempt.
 */
export class PerHeadAttack extends Attack {
  readonly name = 'per-head';
  /** Members attacked, in order; null for all. */
  readonly members: number[] | null;
  private readonly options: PerHeadAttackOptions;

  constructor(model: Classifier, options: PerHeadAttackOptions = {}) {
    super(model, options);
    if (!isMemberEnsemble(model)) throw new TypeError('PerHeadAttack needs a model with memberLogits() and an aggregator (a SelfEnsemble)');
    this.members = options.members ? [...options.members] : null;
    if (this.members && (this.members.length === 0 || !this.members.every(Number.isInteger))) {
      throw new RangeError(`members must be a non-empty list of integers, got [${this.members.join(', ')}]`);
    }
    this.options = { ...options, mode: options.mode ?? 'transfer' };
  }

  protected perturb(x: Tensor, y: Tensor, run: AttackRun): Tensor {
    const count = noGrad(() => tidy(() => (this.model as MemberEnsemble).memberLogits(x.narrow(0, 0, 1)).shape[1]!));
    const members = (this.members ?? Array.from({ length: count }, (_, i) => i)).map((m) => (m < 0 ? m + count : m));
    const outside = members.find((m) => m < 0 || m >= count);
    if (outside !== undefined) throw new RangeError(`member ${outside} out of range for ${count} members`);
    const { members: _members, ...attackOptions } = this.options;
    let adversarial = x.clone();
    for (const member of members) {
      const indices = run.robust.flatMap((r, i) => (r ? [i] : []));
      if (indices.length === 0) break;
      const next = tidy(() => {
        const index = tensor(indices, { dtype: 'int64', device: x.device as Device });
        const attack = new SurrogateGradientAttack(this.model, {
          ...attackOptions, norm: this.norm, eps: this.eps, seed: this.seed, surrogate: new Single({ memberIndex: member }),
          onProgress: this.onProgress ? (event) => this.onProgress!({ ...event, attack: `${this.name}[${member}]` }) : undefined,
        });
        // Every image of `indices` is attacked: chosen on the defended model, not by this member's own verdict.
        const result = attack.runOn(x.indexSelect(0, index), y.indexSelect(0, index), { attack: indices.map(() => true), classes: run.classes });
        return { adversarial: replaceRows(adversarial, index, result.adversarial), fooled: result.success };
      });
      adversarial.dispose();
      adversarial = next.adversarial;
      indices.forEach((image, j) => { if (next.fooled[j]) run.robust[image] = false; });
    }
    return adversarial;
  }
}
