// The multi-resolution self-ensemble of Fort & Lakshminarayanan (2024), "Ensemble everything everywhere",
// arXiv 2408.05446, section 3: one backbone sees the multi-resolution stack of an image; linear heads on several
// intermediate activations, and the backbone's own classifier, are the members of an ensemble whose logits
// CrossMax aggregates. Everything from the [0, 1] pixels to the aggregated logits is one differentiable function,
// so an attack on forward() goes through the prior, the backbone, the heads and the aggregation.
import { stack, tidy, type Generator, type Tensor } from '../tensor/index.js';
import { Module } from '../nn/module.js';
import { INPUT_FEATURE, type FeatureBackbone } from '../nn/resnet.js';
import { MultiResolutionPrior } from '../prior/multi-resolution-prior.js';
import type { Aggregator } from './aggregators.js';
import { aggregatorFromSpec, resolveAggregatorSpec, type AggregatorSpec } from './aggregator-spec.js';
import {
  buildBackbone, resolveSelfEnsembleConfig, type BackboneClassifierDraw, type BuildOptions, type ResolvedSelfEnsembleConfig, type SelfEnsembleConfig,
} from './config.js';
import { CrossMax } from './crossmax.js';
import { ClassifierHead, ClassifierHeads, type HeadKind } from './heads.js';
import { InputAdapter } from './input-adapter.js';

/** Channels of the images a self-ensemble takes (RGB). */
export const IMAGE_CHANNELS = 3;

/** The member name of the backbone's own classifier, always the last member. */
export const BACKBONE_CLASSIFIER_MEMBER = 'fc';

// ---- the model --------------------------------------------------------------------------------------------------

/** Where the heads go and what kind they are. */
export interface SelfEnsembleHeadsOptions {
  /** Backbone feature names (or 'input') that get a head, in member order; each at most once. */
  features: readonly string[];
  /** Default 'flatten' (the paper's). */
  kind?: HeadKind;
  /** For 'pooled' heads. Default 2. */
  poolSize?: number;
}

/** SelfEnsemble's constructor options (buildSelfEnsemble fills them from a configuration). */
export interface SelfEnsembleOptions {
  /** The network whose activations the heads read. */
  backbone: FeatureBackbone;
  /** The multi-resolution prior; null for the single-resolution baseline (3-channel backbone). Default null. */
  prior?: MultiResolutionPrior | null;
  /** Resizing and normalisation between the prior and the backbone. Default null (none). */
  inputAdapter?: InputAdapter | null;
  /** The intermediate-layer heads. */
  heads: SelfEnsembleHeadsOptions;
  /**
   * [height, width] of the images the model takes. Flatten heads are sized for it (and then only this size is
   * accepted); pooled heads accept any size.
   */
  inputSize: [number, number];
  /** Add the backbone's own classifier as the last member. Default true (the notebook's 8th member). */
  includeBackboneClassifier?: boolean;
  /**
   * 'independent': the backbone's classifier member from a second, independent draw of the prior and a second
   * backbone pass, the notebook's quirk (BackboneClassifierDraw in config.ts); 'shared': one draw for every member.
   * Default 'shared'.
   */
  backboneClassifierDraw?: BackboneClassifierDraw;
  /** Default CrossMax with k = 3 (the notebook's). */
  aggregator?: Aggregator;
  /** Random stream for the heads' initial weights. Default: libtorch's global generator. */
  generator?: Generator;
  /** How the model was built, recorded by buildSelfEnsemble so that saveModel can write it. Default null. */
  config?: ResolvedSelfEnsembleConfig | null;
}

/** Options of SelfEnsemble.freezeBackbone. */
export interface FreezeBackboneOptions {
  /**
   * Let the frozen backbone's BatchNorm layers use batch statistics and update their running statistics when the
   * model is in training mode. Default false: a frozen backbone stays in eval mode, so heads train on the same
   * features they see at test time. The notebook trains the heads with the whole model in train() mode, which
   * does update the backbone's statistics; true reproduces that.
   */
  updateBatchNormStatistics?: boolean;
}

/** The backbone's and the heads' parameters, for one learning rate each. */
export interface ParameterGroups {
  /** The backbone's parameters. */
  backbone: Tensor[];
  /** The heads' parameters. */
  heads: Tensor[];
}

/**
 * prior -> input adapter -> backbone -> heads on chosen activations (+ the backbone's classifier) -> aggregator.
 * forward(images) gives aggregated logits, so the model is a Classifier for attacks. Parameter names:
 * 'backbone.' + the backbone's own (torchvision's for a ResNet), then 'heads.<i>.bn.*' and 'heads.<i>.linear.*'.
 */
export class SelfEnsemble extends Module {
  /** The multi-resolution prior, or null for the single-resolution baseline. */
  readonly prior: MultiResolutionPrior | null;
  /** Resizing and normalisation before the backbone, or null. */
  readonly inputAdapter: InputAdapter | null;
  /** The backbone network. */
  readonly backbone: FeatureBackbone;
  /** The heads, in member order. */
  readonly heads: ClassifierHeads;
  /** The feature each head reads, in member order. */
  readonly headFeatures: readonly string[];
  /** Whether the backbone's own classifier is the last member. */
  readonly includeBackboneClassifier: boolean;
  /** See SelfEnsembleOptions.backboneClassifierDraw. */
  readonly backboneClassifierDraw: BackboneClassifierDraw;
  /**
   * [height, width] in pixels of the images the model takes (before the input adapter, if any). Flatten heads are
   * sized for it, so only this size is accepted; pooled heads accept any size.
   */
  readonly inputSize: [number, number];
  /** Number of classes. */
  readonly numClasses: number;
  /** How the model was built (null when assembled by hand); saveModel writes it. */
  config: ResolvedSelfEnsembleConfig | null;
  private currentAggregator: Aggregator;
  private backboneFrozen = false;
  private frozenBackboneUpdatesStatistics = false;

  constructor(options: SelfEnsembleOptions) {
    super();
    this.prior = options.prior ?? null;
    this.inputAdapter = options.inputAdapter ?? null;
    this.backbone = options.backbone;
    this.numClasses = options.backbone.numClasses;
    this.inputSize = [options.inputSize[0], options.inputSize[1]];
    this.includeBackboneClassifier = options.includeBackboneClassifier ?? true;
    this.backboneClassifierDraw = options.backboneClassifierDraw ?? 'shared';
    if (this.backboneClassifierDraw !== 'shared' && this.backboneClassifierDraw !== 'independent') {
      throw new Error(`backboneClassifierDraw must be 'shared' or 'independent', got '${String(this.backboneClassifierDraw)}'`);
    }
    this.currentAggregator = options.aggregator ?? new CrossMax({ k: 3 });
    this.config = options.config ?? null;
    if (this.prior) this.registerModule('prior', this.prior);
    if (this.inputAdapter) this.registerModule('input_adapter', this.inputAdapter);
    this.registerModule('backbone', this.backbone);
    this.heads = this.registerModule('heads', new ClassifierHeads());

    const features = [...options.heads.features];
    const duplicate = features.find((f, i) => features.indexOf(f) !== i);
    if (duplicate !== undefined) throw new Error(`feature '${duplicate}' has more than one head`);
    if (features.length === 0 && !this.includeBackboneClassifier) throw new Error('a self-ensemble needs at least one member');
    const shapes = this.featureShapes();
    try {
      for (const name of features) {
        const shape = shapes.get(name);
        if (!shape) throw new Error(`the backbone has no feature '${name}' (one of ${[...shapes.keys()].join(', ')})`);
        this.heads.append(new ClassifierHead(shape, this.numClasses, { kind: options.heads.kind, poolSize: options.heads.poolSize, generator: options.generator }));
      }
    } catch (err) {
      this.heads.dispose(); // the caller still owns the backbone it passed in
      throw err;
    }
    this.headFeatures = features;
  }

  /** Channels the backbone receives: 3 per view of the prior (3 without a prior). */
  get backboneInChannels(): number {
    return IMAGE_CHANNELS * (this.prior ? this.prior.numViews : 1);
  }

  /** Activation shapes of one image at every tappable feature ('input' first), for images of inputSize. */
  featureShapes(): Map<string, number[]> {
    const [h, w] = this.inputAdapter ? this.inputAdapter.outputSize(...this.inputSize) : this.inputSize;
    return new Map([[INPUT_FEATURE, [this.backboneInChannels, h, w]], ...this.backbone.featureShapes(h, w)]);
  }

  /** One name per member, in the order of memberLogits' dimension 1: the heads' features, then 'fc'. */
  memberNames(): string[] {
    return [...this.headFeatures, ...(this.includeBackboneClassifier ? [BACKBONE_CLASSIFIER_MEMBER] : [])];
  }

  /** Number of members: heads plus the backbone's classifier when included. */
  get numMembers(): number {
    return this.headFeatures.length + (this.includeBackboneClassifier ? 1 : 0);
  }

  /** The rule forward() aggregates the members with. */
  get aggregator(): Aggregator {
    return this.currentAggregator;
  }

  /**
   * Replaces the aggregator. A spec also updates the recorded config (what saveModel writes); an Aggregator object
   * does not, as it cannot be written as JSON.
   */
  setAggregator(aggregator: Aggregator | AggregatorSpec): this {
    if (isAggregator(aggregator)) {
      this.currentAggregator = aggregator;
    } else {
      this.currentAggregator = aggregatorFromSpec(aggregator);
      if (this.config) this.config = { ...this.config, aggregator: resolveAggregatorSpec(aggregator) };
    }
    return this;
  }

  /** A Classifier sharing this model's weights with another aggregator (this model is unchanged). */
  withAggregator(aggregator: Aggregator | AggregatorSpec): AggregatedSelfEnsemble {
    return new AggregatedSelfEnsemble(this, isAggregator(aggregator) ? aggregator : aggregatorFromSpec(aggregator));
  }

  /**
   * Every member's logits, [N, members, classes], for images [N, 3, H, W] in [0, 1]. The prior runs inside (and
   * draws new randomness at every call), so gradients flow from any member back to the pixels. With
   * backboneClassifierDraw 'independent' the prior draws twice: the heads' draw first, then the backbone
   * classifier's (the notebook's order).
   */
  memberLogits(images: Tensor): Tensor {
    this.checkImages(images);
    return tidy(() => {
      const x = this.backboneInput(images);
      const tapped = this.headFeatures.filter((f) => f !== INPUT_FEATURE);
      const { logits, features } = this.backbone.forwardWithFeatures(x, tapped);
      const members: Tensor[] = [];
      [...this.heads].forEach((head, i) => {
        const name = this.headFeatures[i]!;
        const activation = name === INPUT_FEATURE ? x : features.get(name)!;
        members.push(head.forward(activation));
        // Autograd keeps what backward needs; the activation itself can go now rather than at the scope's end.
        if (activation !== images) activation.dispose();
      });
      if (this.includeBackboneClassifier) members.push(this.secondDraw() ? this.backbone.forwardWithFeatures(this.backboneInput(images), []).logits : logits);
      return stack(members, 1);
    });
  }

  /** The prior's stack (a new draw), through the input adapter: what the backbone sees. */
  private backboneInput(images: Tensor): Tensor {
    const x = this.prior ? this.prior.forward(images) : images;
    return this.inputAdapter ? this.inputAdapter.forward(x) : x;
  }

  /** A second draw changes something only where the prior draws at all. */
  private secondDraw(): boolean {
    return this.backboneClassifierDraw === 'independent' && this.prior !== null && this.prior.enabled && !this.prior.deterministic;
  }

  /** Aggregated logits [N, classes] (the current aggregator applied to memberLogits). */
  forward(images: Tensor): Tensor {
    return tidy(() => this.currentAggregator.aggregate(this.memberLogits(images)));
  }

  /** Logits of several aggregators from one memberLogits pass (one draw of the prior), by aggregator name. */
  forwardAll(images: Tensor, aggregators: readonly (Aggregator | AggregatorSpec)[]): Map<string, Tensor> {
    return tidy(() => {
      const members = this.memberLogits(images);
      const out = new Map<string, Tensor>();
      for (const a of aggregators) {
        const aggregator = isAggregator(a) ? a : aggregatorFromSpec(a);
        if (out.has(aggregator.name)) throw new Error(`aggregator '${aggregator.name}' is listed twice`);
        out.set(aggregator.name, aggregator.aggregate(members));
      }
      return out;
    });
  }

  /**
   * Turns gradients of every backbone parameter off (true) or back on (false), for the paper's heads-only training
   * on a fixed backbone. See FreezeBackboneOptions for what happens to its BatchNorm statistics.
   */
  freezeBackbone(frozen = true, options: FreezeBackboneOptions = {}): this {
    for (const p of this.backbone.parameters()) p.setRequiresGrad(!frozen);
    this.backboneFrozen = frozen;
    this.frozenBackboneUpdatesStatistics = options.updateBatchNormStatistics ?? false;
    if (frozen && !this.frozenBackboneUpdatesStatistics) this.backbone.eval();
    else this.backbone.train(this.training);
    return this;
  }

  /** Whether freezeBackbone(true) is in force. */
  get isBackboneFrozen(): boolean {
    return this.backboneFrozen;
  }

  /** Training mode for everything, except a frozen backbone, which stays in eval mode (see freezeBackbone). */
  override train(mode = true): this {
    super.train(mode);
    if (this.backboneFrozen && !this.frozenBackboneUpdatesStatistics) this.backbone.eval();
    return this;
  }

  /** The parameters in two groups, for optimisers with a learning rate each (e.g. a small one for a pretrained backbone). */
  parameterGroups(): ParameterGroups {
    return { backbone: this.backbone.parameters(), heads: this.heads.parameters() };
  }

  /** The parameters an optimiser should update now (those with requiresGrad). */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((p) => p.requiresGrad);
  }

  private checkImages(images: Tensor): void {
    if (images.ndim !== 4 || images.shape[1] !== IMAGE_CHANNELS) {
      throw new Error(`SelfEnsemble expects images [N, ${IMAGE_CHANNELS}, H, W] in [0, 1], got [${images.shape.join(', ')}]`);
    }
    const [h, w] = [images.shape[2]!, images.shape[3]!];
    const flatten = [...this.heads].some((head) => head.kind === 'flatten' && head.featureShape.length === 3);
    if (flatten && (h !== this.inputSize[0] || w !== this.inputSize[1])) {
      throw new Error(`this model's flatten heads are sized for ${this.inputSize[0]}x${this.inputSize[1]} images, got ${h}x${w}`);
    }
  }
}

/** A SelfEnsemble seen through another aggregator (see SelfEnsemble.withAggregator). */
export class AggregatedSelfEnsemble {
  /**
   * @param model - The self-ensemble whose members are read.
   * @param aggregator - The rule applied to them instead of the model's.
   */
  constructor(readonly model: SelfEnsemble, readonly aggregator: Aggregator) {}

  /** Member logits [N, members, classes] of images [N, 3, H, W] in [0, 1]. */
  memberLogits(images: Tensor): Tensor {
    return this.model.memberLogits(images);
  }

  /** Logits [N, classes] through this aggregator. */
  forward(images: Tensor): Tensor {
    return tidy(() => this.aggregator.aggregate(this.model.memberLogits(images)));
  }
}

function isAggregator(a: Aggregator | AggregatorSpec): a is Aggregator {
  return typeof (a as Aggregator).aggregate === 'function';
}

// ---- from a configuration ----------------------------------------------------------------------------------------

/** Builds the self-ensemble a configuration describes, freshly initialised; the model records the resolved config. */
export function buildSelfEnsemble(config: SelfEnsembleConfig, options: BuildOptions = {}): SelfEnsemble {
  const c = resolveSelfEnsembleConfig(config);
  const prior = c.prior ? new MultiResolutionPrior(c.prior) : null;
  const channels = IMAGE_CHANNELS * (prior ? prior.numViews : 1);
  const backbone = buildBackbone(c.backbone, channels, c.numClasses, options);
  const inputAdapter = c.inputAdapter ? new InputAdapter(channels, c.inputAdapter) : null;
  try {
    return new SelfEnsemble({
      backbone, prior, inputAdapter, inputSize: c.inputSize, heads: c.heads, includeBackboneClassifier: c.includeBackboneClassifier,
      backboneClassifierDraw: c.backboneClassifierDraw,
      aggregator: aggregatorFromSpec(c.aggregator), generator: options.generator, config: c,
    });
  } catch (err) {
    backbone.dispose();
    inputAdapter?.dispose();
    throw err;
  }
}
