// Self-ensembles as plain JSON configurations (what a model file stores, a preset returns and `--model-config`
// reads): the schema, its resolution (every default written out, unknown keys refused) and the backbone it names.
import { ResNet, type FeatureBackbone, type ResNetDepth } from '../nn/resnet.js';
import { WideResNet } from '../nn/wide-resnet.js';
import type { Generator } from '../tensor/index.js';
import { resolvePriorConfig, type MultiResolutionPriorOptions } from '../prior/multi-resolution-prior.js';
import { resolveAggregatorSpec, type AggregatorSpec } from './aggregator-spec.js';
import type { HeadKind } from './heads.js';
import { IMAGENET_NORMALIZATION, type InputNormalizeOptions, type InputResizeOptions } from './input-adapter.js';

/** A torchvision-layout ResNet backbone (see ResNetOptions in crossmax/nn). */
export interface ResNetBackboneConfig {
  /** Selects this kind of backbone. */
  arch: 'resnet';
  /** 18, 34, 50, 101 or 152. */
  depth: ResNetDepth;
  /** 'imagenet' (7x7 stride-2 convolution and max-pool, for 224x224) or 'cifar' (3x3, for 32x32). Default 'imagenet'. */
  stem?: 'imagenet' | 'cifar';
  /** Scales every width (64 -> 64·m channels ...). Default 1. */
  widthMultiplier?: number;
  /** Default false. */
  zeroInitResidual?: boolean;
}

/** A wide ResNet backbone, WRN-d-k (see WideResNetOptions in crossmax/nn). */
export interface WideResNetBackboneConfig {
  /** Selects this kind of backbone. */
  arch: 'wide-resnet';
  /** 6n + 4. Default 28. */
  depth?: number;
  /** Default 10. */
  widenFactor?: number;
  /** Default 0. */
  dropRate?: number;
  /** Default true. */
  biasLast?: boolean;
}

/** Either kind of backbone, told apart by `arch`. */
export type BackboneConfig = ResNetBackboneConfig | WideResNetBackboneConfig;

/** MultiResolutionPriorOptions without its Generator (not JSON). */
export type PriorConfig = Omit<MultiResolutionPriorOptions, 'generator'>;

/** The {@link InputAdapter} between the prior and the backbone, as JSON. */
export interface InputAdapterConfig {
  /** Default null: no resizing. */
  resize?: InputResizeOptions | null;
  /** 'imagenet' for ImageNet's mean and std. Default null: no normalisation. */
  normalize?: InputNormalizeOptions | 'imagenet' | null;
}

/** Which activations get a classifier head, and what kind. */
export interface HeadsConfig {
  /** Features that get a head, in member order: the backbone's featureNames() or 'input'. */
  features: string[];
  /** Default 'flatten' (the paper's). */
  kind?: HeadKind;
  /** Grid side of 'pooled' heads. Default 2. */
  poolSize?: number;
}

/** A self-ensemble as plain JSON. Fields marked optional have the defaults given. */
export interface SelfEnsembleConfig {
  /** The backbone network. */
  backbone: BackboneConfig;
  /** Number of classes every member answers. */
  numClasses: number;
  /** Class names, numClasses of them. Default null. */
  classes?: string[] | null;
  /** [height, width] of the input images (flatten heads are sized for it), or one number for both. Default 32. */
  inputSize?: number | [number, number];
  /** The multi-resolution prior's options, or null for the single-resolution baseline. */
  prior: PriorConfig | null;
  /** Between the prior and the backbone. Default null. */
  inputAdapter?: InputAdapterConfig | null;
  /** The intermediate-layer heads. */
  heads: HeadsConfig;
  /** The backbone's own classifier as the last member. Default true. */
  includeBackboneClassifier?: boolean;
  /**
   * 'shared': every member from one draw of the prior. 'independent': the backbone's classifier from a second,
   * independent draw and a second backbone pass (the notebook's quirk, see BackboneClassifierDraw). Default 'shared'.
   */
  backboneClassifierDraw?: BackboneClassifierDraw;
  /** Default {name: 'crossmax', k: 3}. */
  aggregator?: AggregatorSpec;
}

/** A configuration with every default written out: what checkpoints store and configurations are compared as. */
export interface ResolvedSelfEnsembleConfig {
  /** The backbone, every field given. */
  backbone: Required<ResNetBackboneConfig> | Required<WideResNetBackboneConfig>;
  /** Number of classes. */
  numClasses: number;
  /** Class names, or null. */
  classes: string[] | null;
  /** [height, width] of the input images. */
  inputSize: [number, number];
  /** The prior's options (resolved), or null for the single-resolution baseline. */
  prior: PriorConfig | null;
  /** Resizing and normalisation, each null when absent; null when there is no adapter. */
  inputAdapter: { resize: Required<InputResizeOptions> | null; normalize: InputNormalizeOptions | null } | null;
  /** The heads: `features` in member order, their `kind`, and `poolSize` for pooled heads. */
  heads: { features: string[]; kind: HeadKind; poolSize?: number };
  /** Whether the backbone's classifier is the last member. */
  includeBackboneClassifier: boolean;
  /**
   * Which draw of the prior the backbone's own classifier sees: 'shared' (the heads' draw) or 'independent' (a second
   * draw and backbone pass, the notebook's quirk). Default 'shared'.
   */
  backboneClassifierDraw: BackboneClassifierDraw;
  /**
   * How the members' logits are combined, with every default of the aggregator filled in. Default {name: 'crossmax',
   * k: 3}.
   */
  aggregator: AggregatorSpec;
}

/**
 * Which draw of the prior the backbone's own classifier (the last member) sees. The official notebook's
 * WrappedCombinedModel.forward takes the heads from predict_from_several_layers(x) and the backbone's prediction from
 * model(prepare_input(x)): prepare_input runs the prior again, so that member sees a second, independent draw
 * (and costs a second backbone pass). 'independent' reproduces that quirk; 'shared' uses one draw for all members.
 */
export type BackboneClassifierDraw = 'shared' | 'independent';

/** Checks a configuration (unknown keys included: a typo must not silently fall back to a default) and fills in defaults. */
export function resolveSelfEnsembleConfig(config: SelfEnsembleConfig): ResolvedSelfEnsembleConfig {
  const c = object(config, 'config');
  checkKeys(c, ['backbone', 'numClasses', 'classes', 'inputSize', 'prior', 'inputAdapter', 'heads', 'includeBackboneClassifier', 'backboneClassifierDraw', 'aggregator'], 'config');
  for (const required of ['backbone', 'numClasses', 'prior', 'heads']) {
    if (!(required in c)) throw new Error(`config.${required} is required${required === 'prior' ? ' (null for no prior)' : ''}`);
  }
  const numClasses = c.numClasses;
  if (!Number.isInteger(numClasses) || (numClasses as number) < 1) throw new Error(`config.numClasses must be a positive integer, got ${JSON.stringify(numClasses)}`);
  const classes = c.classes ?? null;
  if (classes !== null && (!Array.isArray(classes) || classes.length !== numClasses || !classes.every((n) => typeof n === 'string'))) {
    throw new Error(`config.classes must be ${numClasses as number} class names`);
  }
  const inputSize = c.inputSize ?? 32;
  const size: [number, number] = typeof inputSize === 'number' ? [inputSize, inputSize] : [...(inputSize as [number, number])];
  if (size.length !== 2 || !size.every((s) => Number.isInteger(s) && s >= 1)) throw new Error(`config.inputSize must be a positive integer or [height, width], got ${JSON.stringify(inputSize)}`);
  const heads = object(c.heads, 'config.heads');
  checkKeys(heads, ['features', 'kind', 'poolSize'], 'config.heads');
  if (!Array.isArray(heads.features) || !heads.features.every((f) => typeof f === 'string')) throw new Error('config.heads.features must be a list of feature names');
  const kind = (heads.kind ?? 'flatten') as HeadKind;
  if (kind !== 'flatten' && kind !== 'pooled') throw new Error(`config.heads.kind must be 'flatten' or 'pooled', got ${JSON.stringify(kind)}`);
  if (kind === 'flatten' && heads.poolSize !== undefined) throw new Error("config.heads.poolSize applies to 'pooled' heads only");
  const includeBackboneClassifier = c.includeBackboneClassifier ?? true;
  if (typeof includeBackboneClassifier !== 'boolean') throw new Error('config.includeBackboneClassifier must be true or false');
  // Model files written before this field existed used one draw: absent means 'shared'.
  const backboneClassifierDraw = c.backboneClassifierDraw ?? 'shared';
  if (backboneClassifierDraw !== 'shared' && backboneClassifierDraw !== 'independent') {
    throw new Error(`config.backboneClassifierDraw must be 'shared' or 'independent', got ${JSON.stringify(backboneClassifierDraw)}`);
  }
  return {
    backbone: resolveBackbone(c.backbone),
    numClasses: numClasses as number,
    classes: classes === null ? null : [...(classes as string[])],
    inputSize: size,
    prior: resolvePrior(c.prior),
    inputAdapter: resolveInputAdapter(c.inputAdapter),
    heads: { features: [...(heads.features as string[])], kind, ...(kind === 'pooled' ? { poolSize: (heads.poolSize ?? 2) as number } : {}) },
    includeBackboneClassifier,
    backboneClassifierDraw,
    aggregator: resolveAggregatorSpec((c.aggregator ?? { name: 'crossmax', k: 3 }) as AggregatorSpec),
  };
}

function resolveBackbone(value: unknown): ResolvedSelfEnsembleConfig['backbone'] {
  const b = object(value, 'config.backbone');
  if (b.arch === 'resnet') {
    checkKeys(b, ['arch', 'depth', 'stem', 'widthMultiplier', 'zeroInitResidual'], 'config.backbone');
    return {
      arch: 'resnet', depth: b.depth as ResNetDepth, stem: (b.stem ?? 'imagenet') as 'imagenet' | 'cifar',
      widthMultiplier: (b.widthMultiplier ?? 1) as number, zeroInitResidual: (b.zeroInitResidual ?? false) as boolean,
    };
  }
  if (b.arch === 'wide-resnet') {
    checkKeys(b, ['arch', 'depth', 'widenFactor', 'dropRate', 'biasLast'], 'config.backbone');
    return {
      arch: 'wide-resnet', depth: (b.depth ?? 28) as number, widenFactor: (b.widenFactor ?? 10) as number,
      dropRate: (b.dropRate ?? 0) as number, biasLast: (b.biasLast ?? true) as boolean,
    };
  }
  throw new Error(`config.backbone.arch must be 'resnet' or 'wide-resnet', got ${JSON.stringify(b.arch)}`);
}

// The prior's own resolution checks the options; they are written back with every default explicit, so that two
// configurations that build the same prior compare equal.
function resolvePrior(value: unknown): PriorConfig | null {
  if (value === null) return null;
  const options = object(value, 'config.prior') as PriorConfig;
  if ('generator' in options) throw new Error('config.prior cannot hold a generator (set model.prior.generator after building)');
  const r = resolvePriorConfig(options);
  return {
    preset: r.preset,
    ...(r.resolutions ? { resolutions: [...r.resolutions] } : { resolutionFactors: [...r.resolutionFactors] }),
    downsample: r.downsample,
    upsample: r.upsample,
    antialias: r.antialias,
    shift: r.shift,
    noise: r.noise ? { ...r.noise } : false,
    jitter: r.jitter ? { contrast: r.jitter.contrast && [...r.jitter.contrast] as [number, number], color: r.jitter.color && [...r.jitter.color] as [number, number], shared: r.jitter.shared, steps: r.jitter.steps } : false,
    clip: r.clip,
    deterministic: options.deterministic ?? false,
    enabled: options.enabled ?? true,
  };
}

function resolveInputAdapter(value: unknown): ResolvedSelfEnsembleConfig['inputAdapter'] {
  if (value === undefined || value === null) return null;
  const a = object(value, 'config.inputAdapter');
  checkKeys(a, ['resize', 'normalize'], 'config.inputAdapter');
  let resize: Required<InputResizeOptions> | null = null;
  if (a.resize !== undefined && a.resize !== null) {
    const r = object(a.resize, 'config.inputAdapter.resize');
    checkKeys(r, ['size', 'mode', 'antialias'], 'config.inputAdapter.resize');
    const size = typeof r.size === 'number' ? [r.size, r.size] : r.size;
    if (!Array.isArray(size) || size.length !== 2) throw new Error('config.inputAdapter.resize.size must be a number or [height, width]');
    resize = { size: [size[0] as number, size[1] as number], mode: (r.mode ?? 'bicubic') as Required<InputResizeOptions>['mode'], antialias: (r.antialias ?? false) as boolean };
  }
  let normalize: InputNormalizeOptions | null = null;
  if (a.normalize === 'imagenet') {
    normalize = { mean: [...IMAGENET_NORMALIZATION.mean], std: [...IMAGENET_NORMALIZATION.std] };
  } else if (a.normalize !== undefined && a.normalize !== null) {
    const n = object(a.normalize, 'config.inputAdapter.normalize');
    checkKeys(n, ['mean', 'std'], 'config.inputAdapter.normalize');
    if (!Array.isArray(n.mean) || !Array.isArray(n.std)) throw new Error("config.inputAdapter.normalize must be 'imagenet' or {mean: [...], std: [...]}");
    normalize = { mean: [...(n.mean as number[])], std: [...(n.std as number[])] };
  }
  return resize || normalize ? { resize, normalize } : null;
}

function object(value: unknown, where: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${where} must be an object`);
  return value as Record<string, unknown>;
}

function checkKeys(value: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw new Error(`${where} has an unknown field '${key}' (known: ${allowed.join(', ')})`);
  }
}

/** Settings of {@link buildSelfEnsemble} beyond the configuration. */
export interface BuildOptions {
  /** Random stream for the backbone's and heads' initial weights. Default: libtorch's global generator. */
  generator?: Generator;
}

/** The backbone of a configuration, taking `inChannels` channels. */
export function buildBackbone(config: BackboneConfig, inChannels: number, numClasses: number, options: BuildOptions = {}): FeatureBackbone {
  const b = resolveBackbone(config);
  if (b.arch === 'resnet') {
    return new ResNet({ depth: b.depth, stem: b.stem, widthMultiplier: b.widthMultiplier, zeroInitResidual: b.zeroInitResidual, inChannels, numClasses, generator: options.generator });
  }
  return new WideResNet({ depth: b.depth, widenFactor: b.widenFactor, dropRate: b.dropRate, biasLast: b.biasLast, inChannels, numClasses, generator: options.generator });
}
