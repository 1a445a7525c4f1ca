// Self-ensembles as plain JSON configurations (what a checkpoint stores and a CLI flag names), the presets, and
// the paper's surgery on an ImageNet-pretrained ResNet.
import { noGrad, disposeAll, type Generator } from '../tensor/index.js';
import { defaultLayerInit_ } from '../nn/init.js';
import type { StateDict } from '../nn/module.js';
import { ResNet, type FeatureBackbone, type ResNetDepth } from '../nn/resnet.js';
import { WideResNet } from '../nn/wide-resnet.js';
import { MultiResolutionPrior, type MultiResolutionPriorOptions } from '../prior/multi-resolution-prior.js';
import { loadSafetensors } from '../serialize/safetensors.js';
import type { HeadKind } from './heads.js';
import {
  aggregatorFromSpec, IMAGE_CHANNELS, IMAGENET_NORMALIZATION, INPUT_FEATURE, InputAdapter, resolveAggregatorSpec, SelfEnsemble,
  type AggregatorSpec, type InputNormalizeOptions, type InputResizeOptions,
} from './self-ensemble.js';

// ---- the configuration --------------------------------------------------------------------------------------

export interface ResNetBackboneConfig {
  arch: 'resnet';
  depth: ResNetDepth;
  /** 'imagenet' (7x7 stride-2 convolution and max-pool, for 224x224) or 'cifar' (3x3, for 32x32). Default 'imagenet'. */
  stem?: 'imagenet' | 'cifar';
  /** Scales every width (64 -> 64·m channels ...). Default 1. */
  widthMultiplier?: number;
  /** Default false. */
  zeroInitResidual?: boolean;
}

export interface WideResNetBackboneConfig {
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

export type BackboneConfig = ResNetBackboneConfig | WideResNetBackboneConfig;

/** MultiResolutionPriorOptions without its Generator (not JSON). */
export type PriorConfig = Omit<MultiResolutionPriorOptions, 'generator'>;

export interface InputAdapterConfig {
  /** Default null: no resizing. */
  resize?: InputResizeOptions | null;
  /** 'imagenet' for ImageNet's mean and std. Default null: no normalisation. */
  normalize?: InputNormalizeOptions | 'imagenet' | null;
}

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
  backbone: BackboneConfig;
  numClasses: number;
  /** Class names, numClasses of them. Default null. */
  classes?: string[] | null;
  /** [height, width] of the input images (flatten heads are sized for it), or one number for both. Default 32. */
  inputSize?: number | [number, number];
  /** The multi-resolution prior's options, or null for the single-resolution baseline. */
  prior: PriorConfig | null;
  /** Between the prior and the backbone. Default null. */
  inputAdapter?: InputAdapterConfig | null;
  heads: HeadsConfig;
  /** The backbone's own classifier as the last member. Default true. */
  includeBackboneClassifier?: boolean;
  /** Default {name: 'crossmax', k: 3}. */
  aggregator?: AggregatorSpec;
}

/** A configuration with every default written out: what checkpoints store and configurations are compared as. */
export interface ResolvedSelfEnsembleConfig {
  backbone: Required<ResNetBackboneConfig> | Required<WideResNetBackboneConfig>;
  numClasses: number;
  classes: string[] | null;
  inputSize: [number, number];
  prior: PriorConfig | null;
  inputAdapter: { resize: Required<InputResizeOptions> | null; normalize: InputNormalizeOptions | null } | null;
  heads: { features: string[]; kind: HeadKind; poolSize?: number };
  includeBackboneClassifier: boolean;
  aggregator: AggregatorSpec;
}

/** Checks a configuration (unknown keys included: a typo must not silently fall back to a default) and fills in defaults. */
export function resolveSelfEnsembleConfig(config: SelfEnsembleConfig): ResolvedSelfEnsembleConfig {
  const c = object(config, 'config');
  checkKeys(c, ['backbone', 'numClasses', 'classes', 'inputSize', 'prior', 'inputAdapter', 'heads', 'includeBackboneClassifier', 'aggregator'], 'config');
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
  return {
    backbone: resolveBackbone(c.backbone),
    numClasses: numClasses as number,
    classes: classes === null ? null : [...(classes as string[])],
    inputSize: size,
    prior: resolvePrior(c.prior),
    inputAdapter: resolveInputAdapter(c.inputAdapter),
    heads: { features: [...(heads.features as string[])], kind, ...(kind === 'pooled' ? { poolSize: (heads.poolSize ?? 2) as number } : {}) },
    includeBackboneClassifier,
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

// The prior validates its own options; they are written back with every default explicit, so that two
// configurations that build the same prior compare equal.
function resolvePrior(value: unknown): PriorConfig | null {
  if (value === null) return null;
  const options = object(value, 'config.prior');
  if ('generator' in options) throw new Error('config.prior cannot hold a generator (set model.prior.generator after building)');
  const prior = new MultiResolutionPrior(options as PriorConfig);
  const r = prior.config;
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
    deterministic: prior.deterministic,
    enabled: prior.enabled,
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
      aggregator: aggregatorFromSpec(c.aggregator), generator: options.generator, config: c,
    });
  } catch (err) {
    backbone.dispose();
    inputAdapter?.dispose();
    throw err;
  }
}

// ---- presets ------------------------------------------------------------------------------------------------

/**
 * Layers of the official notebook's ResNet-152 that carry a head (layers_to_use); the self-ensemble is these seven
 * heads plus the backbone's own fc, aggregated by CrossMax with k = 3.
 */
export const PAPER_LAYER_INDICES: readonly number[] = Object.freeze([20, 30, 35, 40, 45, 50, 52]);

const resnetStages: Record<ResNetDepth, readonly number[]> = {
  18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3],
};

/**
 * The feature name of the notebook's layer index for a torchvision ResNet (WrapModelForResNet152.layer_operations):
 * 0 is the input, 1 the stem (conv1, bn1, relu, maxpool), 1 + b the b-th residual block counted from 1 over all
 * stages, and blocks + 2 the global average pool. For ResNet-152 (3 + 8 + 36 + 3 = 50 blocks): 20 -> 'layer3.7',
 * 50 -> 'layer4.1', 51 -> 'layer4.2', 52 -> 'avgpool'.
 */
export function notebookLayerFeature(index: number, depth: ResNetDepth = 152): string {
  const stages = resnetStages[depth];
  if (!stages) throw new Error(`unknown ResNet depth ${depth}`);
  const blocks = stages.reduce((a, b) => a + b, 0);
  if (!Number.isInteger(index) || index < 0 || index > blocks + 2) {
    throw new RangeError(`ResNet-${depth} layer indices run from 0 (input) to ${blocks + 2} (avgpool), got ${index}`
      + (index === blocks + 3 ? ` (${index} is the fc output; the backbone's classifier is the member 'fc')` : ''));
  }
  if (index === 0) return INPUT_FEATURE;
  if (index === 1) return 'stem';
  if (index === blocks + 2) return 'avgpool';
  let b = index - 2; // 0-based block
  for (const [stage, count] of stages.entries()) {
    if (b < count) return `layer${stage + 1}.${b}`;
    b -= count;
  }
  throw new Error('unreachable');
}

export type PresetName = 'paper' | 'cifar-resnet18' | 'cifar-small' | 'cifar-fast';

export interface PresetOptions {
  /** Default: the number of `classes`, else the preset's (100 for 'paper', CIFAR-100 as the notebook; 10 otherwise). */
  numClasses?: number;
  classes?: string[];
}

const presetBuilders: Record<PresetName, { defaultClasses: number; make: () => Omit<SelfEnsembleConfig, 'numClasses'> }> = {
  // The official notebook: an ImageNet-pretrained ResNet-152 whose conv1 becomes a fresh 12 -> 64 7x7 stride-2
  // convolution (the 4-view stack of a 32x32 image, up-sampled bicubically to 224x224 and normalised with
  // ImageNet's statistics per view), heads on 7 layers, and CrossMax with k = 3 over those 7 plus the fc. Load the
  // ImageNet weights with adaptPretrainedStem. Heavy: 60 M backbone parameters, and the flatten heads on 14x14x1024
  // activations hold 20 M numbers each at 100 classes (about 170 M parameters in all).
  'paper': {
    defaultClasses: 100,
    make: () => ({
      backbone: { arch: 'resnet', depth: 152, stem: 'imagenet' },
      inputSize: 32,
      prior: { preset: 'paper' },
      inputAdapter: { resize: { size: 224, mode: 'bicubic' }, normalize: 'imagenet' },
      heads: { features: PAPER_LAYER_INDICES.map((i) => notebookLayerFeature(i, 152)), kind: 'flatten' },
      aggregator: { name: 'crossmax', k: 3 },
    }),
  },
  // A ResNet-18 trained from scratch at CIFAR resolution (3x3 stem, no max-pool): the paper's CIFAR-scale
  // setting without the 224px detour (0.56 G multiply-adds per image, 1/20 of ResNet-152 at 224). Paper heads on every
  // block's output (9 members with the fc); the layer1 heads read 65,536 features each, so the heads hold about
  // 3 M parameters at 10 classes (25 M at 100).
  'cifar-resnet18': {
    defaultClasses: 10,
    make: () => ({
      backbone: { arch: 'resnet', depth: 18, stem: 'cifar' },
      inputSize: 32,
      prior: { preset: 'paper' },
      heads: { features: resnetBlockNames(18), kind: 'flatten' },
      aggregator: { name: 'crossmax', k: 3 },
    }),
  },
  // For the CPU demo: ResNet-18's layout at a quarter of its width (16, 32, 64, 128 channels; about 0.7 M
  // parameters, 35 M multiply-adds per image, 1/16 of ResNet-18's) and pooled 2x2 heads (64 to 512 features each) on
  // every block, so an epoch of CIFAR-10 trains in minutes on a few cores while keeping all of the method's parts.
  'cifar-small': {
    defaultClasses: 10,
    make: () => ({
      backbone: { arch: 'resnet', depth: 18, stem: 'cifar', widthMultiplier: 0.25 },
      inputSize: 32,
      prior: { preset: 'paper' },
      heads: { features: resnetBlockNames(18), kind: 'pooled', poolSize: 2 },
      aggregator: { name: 'crossmax', k: 3 },
    }),
  },
  // The model of the 60-minute CPU recipe (recipes/cifar10-cpu-60min.json): cifar-small's backbone, with heads on
  // the later blocks only, layer2.1 to layer4.1 (6 members with the fc), as the paper places its heads on the later
  // part of the network (layers 20 to 52 of ResNet-152's 53). Why not on every block: every member's loss also
  // trains the backbone below it, and a head on layer1 forces the first blocks to make 32x32 features that a
  // linear map over a 2x2 pooling can classify, which costs the later layers accuracy; and a weak member feeds
  // CrossMax noise (measured in 5 epochs of cifar-small: layer1.0 49%, fc 69%, CrossMax 66%).
  'cifar-fast': {
    defaultClasses: 10,
    make: () => ({
      backbone: { arch: 'resnet', depth: 18, stem: 'cifar', widthMultiplier: 0.25 },
      inputSize: 32,
      prior: { preset: 'paper' },
      heads: { features: resnetBlockNames(18).slice(3), kind: 'pooled', poolSize: 2 },
      aggregator: { name: 'crossmax', k: 3 },
    }),
  },
};

export const PRESET_NAMES: readonly PresetName[] = Object.freeze(Object.keys(presetBuilders) as PresetName[]);

/** A preset's configuration (a fresh object, free to edit before buildSelfEnsemble). */
export function presetConfig(name: PresetName, options: PresetOptions = {}): SelfEnsembleConfig {
  const preset = presetBuilders[name];
  if (!preset) throw new Error(`unknown preset '${String(name)}' (one of ${PRESET_NAMES.join(', ')})`);
  const numClasses = options.numClasses ?? options.classes?.length ?? preset.defaultClasses;
  return { ...preset.make(), numClasses, ...(options.classes ? { classes: [...options.classes] } : {}) };
}

function resnetBlockNames(depth: ResNetDepth): string[] {
  return resnetStages[depth].flatMap((count, stage) => Array.from({ length: count }, (_, i) => `layer${stage + 1}.${i}`));
}

// ---- pretrained backbones -----------------------------------------------------------------------------------

/** What the surgery always re-initialises in torchvision weights: the stem (its input channels become 3·views) and fc. */
const FRESH_TORCHVISION_KEYS = ['conv1.weight', 'fc.weight', 'fc.bias'];
/** In a crossmax model as the source only the stem is fresh: its fc and heads already answer the same classes. */
const FRESH_SELF_ENSEMBLE_KEYS = ['backbone.conv1.weight'];

export interface AdaptPretrainedOptions {
  /** Random stream for the fresh conv1 and fc. Default: libtorch's global generator. */
  generator?: Generator;
}

/**
 * The notebook's surgery on a pretrained ResNet, from either of two sources:
 * - torchvision weights (a safetensors file or a StateDict with torchvision's names, e.g. ImageNet-pretrained):
 *   every weight except conv1 and fc, which are re-initialised as the fresh nn.Conv2d(3·views, 64, 7, 2, 3,
 *   bias=False) and nn.Linear(2048, classes) the notebook puts in their place (PyTorch's default initialisation);
 * - a crossmax model (its file, or its state dict: 'backbone.*' and 'heads.*'), e.g. the single-resolution
 *   baseline: every weight, heads and fc included, except the stem's conv1, re-initialised the same way. This is
 *   the paper's recipe (pretrained backbone, fresh stem for the stacked views) where ImageNet weights are out of
 *   reach: pretraining on the task's own images without the prior.
 * The model must already have the new shapes (as buildSelfEnsemble makes it). Accepts a bare ResNet for the first
 * source only. Nothing is changed if any other weight is missing, extra or of another shape.
 */
export function adaptPretrainedStem(model: ResNet | SelfEnsemble, weights: StateDict | string, options: AdaptPretrainedOptions = {}): void {
  const resnet = model instanceof SelfEnsemble ? model.backbone : model;
  if (!(resnet instanceof ResNet)) throw new Error('adaptPretrainedStem needs a ResNet backbone');
  const loaded = typeof weights === 'string' ? loadSafetensors(weights).tensors : null;
  const state = loaded ?? (weights as StateDict);
  try {
    const fromSelfEnsemble = [...state.keys()].some((key) => key.startsWith('backbone.'));
    if (fromSelfEnsemble && !(model instanceof SelfEnsemble)) {
      throw new Error('these weights are a crossmax self-ensemble (\'backbone.*\' names): load them into a SelfEnsemble, not a bare ResNet');
    }
    const target = fromSelfEnsemble ? model : resnet;
    const fresh = fromSelfEnsemble ? FRESH_SELF_ENSEMBLE_KEYS : FRESH_TORCHVISION_KEYS;
    const source = fromSelfEnsemble ? 'crossmax model' : 'pretrained weights';
    const own = target.stateDict();
    const ownShapes = new Map([...own].map(([k, t]) => [k, t.shape]));
    disposeAll(own);
    const problems: string[] = [];
    for (const [key, shape] of ownShapes) {
      if (fresh.includes(key)) continue;
      const value = state.get(key);
      if (!value) {
        if (!key.endsWith('num_batches_tracked')) problems.push(`missing '${key}'`);
      } else if (value.shape.join() !== shape.join()) {
        problems.push(`'${key}' has shape [${value.shape.join(', ')}], the model needs [${shape.join(', ')}]`);
      }
    }
    for (const key of state.keys()) if (!ownShapes.has(key)) problems.push(`unexpected '${key}'`);
    if (problems.length > 0) {
      throw new Error(`the ${source} do${fromSelfEnsemble ? 'es' : ''} not fit this ResNet-${resnet.depth} (width ${resnet.widthMultiplier})`
        + `${fromSelfEnsemble ? ' self-ensemble' : ''}: ${problems.slice(0, 10).join('; ')}`
        + (problems.length > 10 ? `; and ${problems.length - 10} more` : ''));
    }
    const kept = new Map([...state].filter(([key]) => !fresh.includes(key)));
    target.loadStateDict(kept, { strict: false });
    noGrad(() => {
      defaultLayerInit_(resnet.conv1.weight, resnet.conv1.bias, { generator: options.generator });
      if (!fromSelfEnsemble) defaultLayerInit_(resnet.fc.weight, resnet.fc.bias, { generator: options.generator });
    });
  } finally {
    if (loaded) disposeAll(loaded);
  }
}
