// Neural-network operations as plain functions over tensors (torch.nn.functional), each one libtorch call.
import { aten, Tensor, type Shape } from '../tensor/index.js';

const op = {
  conv2d: aten('conv2d'),
  batchNorm: aten('batch_norm'),
  layerNorm: aten('layer_norm'),
  linear: aten('linear'),
  maxPool2d: aten('max_pool2d'),
  avgPool2d: aten('avg_pool2d'),
  adaptiveAvgPool2d: aten('adaptive_avg_pool2d'),
  nearest: aten('upsample_nearest2d'),
  bilinear: aten('upsample_bilinear2d'),
  bicubic: aten('upsample_bicubic2d'),
  bilinearAA: aten('_upsample_bilinear2d_aa'),
  bicubicAA: aten('_upsample_bicubic2d_aa'),
  area: aten('adaptive_avg_pool2d'),
  constantPad: aten('constant_pad_nd'),
  reflectionPad: aten('reflection_pad2d'),
  replicationPad: aten('replication_pad2d'),
  dropout: aten('dropout'),
  crossEntropy: aten('cross_entropy_loss'),
  nllLoss: aten('nll_loss_nd'),
  mseLoss: aten('mse_loss'),
  embedding: aten('embedding'),
};

const t = (raw: unknown) => new Tensor(raw as Tensor['handle']);

/** A size for both spatial dimensions (one number) or [height, width]. */
export type Pair = number | [number, number];

/** Settings of {@link conv2d}. */
export interface Conv2dOptions {
  /** Added per output channel, shape [out]. Default none. */
  bias?: Tensor | null;
  /** Default 1. */
  stride?: Pair;
  /** Default 0. */
  padding?: Pair;
  /** Default 1. */
  dilation?: Pair;
  /** Default 1. */
  groups?: number;
}
/** 2-d convolution: input [N, C, H, W], weight [out, C/groups, kH, kW]. */
export function conv2d(input: Tensor, weight: Tensor, options: Conv2dOptions = {}): Tensor {
  return t(op.conv2d(input, weight, options.bias ?? null, options.stride ?? 1, options.padding ?? 0,
    options.dilation ?? 1, options.groups ?? 1));
}

/** Settings of {@link batchNorm}: the affine parameters, running statistics and mode. */
export interface BatchNormOptions {
  /** Per-channel scale γ, shape [C]. Default none (1). */
  weight?: Tensor | null;
  /** Per-channel shift β, shape [C]. Default none (0). */
  bias?: Tensor | null;
  /** Running statistics, updated in place when training. */
  runningMean?: Tensor | null;
  /** Running variance [C], updated in place when training (unbiased batch variance). */
  runningVar?: Tensor | null;
  /** Batch statistics (and running-stat updates) when true; running statistics when false. Default false. */
  training?: boolean;
  /** Default 0.1 (PyTorch's). */
  momentum?: number;
  /** Default 1e-5. */
  eps?: number;
}
/**
 * Batch normalisation over dimension 1 of [N, C, ...] (torch.nn.functional.batch_norm): (x − mean) / √(var + eps) · γ
 * + β.
 */
export function batchNorm(input: Tensor, options: BatchNormOptions = {}): Tensor {
  return t(op.batchNorm(input, options.weight ?? null, options.bias ?? null, options.runningMean ?? null,
    options.runningVar ?? null, options.training ?? false, options.momentum ?? 0.1, options.eps ?? 1e-5, true));
}

/**
 * Layer normalisation over the trailing dimensions `normalizedShape`, with optional elementwise weight and bias of
 * that shape (eps default 1e-5).
 */
export function layerNorm(input: Tensor, normalizedShape: Shape, options: { weight?: Tensor | null; bias?: Tensor | null; eps?: number } = {}): Tensor {
  return t(op.layerNorm(input, [...normalizedShape], options.weight ?? null, options.bias ?? null, options.eps ?? 1e-5, true));
}

/** x · weightᵀ + bias; weight [out, in]. */
export function linear(input: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return t(op.linear(input, weight, bias ?? null));
}

/** Window settings of the 2-d pooling functions. */
export interface PoolOptions {
  /** Default: the kernel size. */
  stride?: Pair;
  /** Default 0. */
  padding?: Pair;
  /** Default false. */
  ceilMode?: boolean;
}
/** 2-d max pooling of [N, C, H, W] with a kernelSize window. */
export function maxPool2d(input: Tensor, kernelSize: Pair, options: PoolOptions & { dilation?: Pair } = {}): Tensor {
  return t(op.maxPool2d(input, kernelSize, options.stride ?? [], options.padding ?? 0, options.dilation ?? 1, options.ceilMode ?? false));
}
/**
 * 2-d average pooling of [N, C, H, W] with a kernelSize window; `countIncludePad` (default true) counts padding zeros
 * in the average.
 */
export function avgPool2d(input: Tensor, kernelSize: Pair, options: PoolOptions & { countIncludePad?: boolean } = {}): Tensor {
  return t(op.avgPool2d(input, kernelSize, options.stride ?? [], options.padding ?? 0, options.ceilMode ?? false,
    options.countIncludePad ?? true, null));
}
/**
 * Average pooling of [N, C, H, W] to a fixed output size [outH, outW], whatever the input size (1 gives global
 * average pooling).
 */
export function adaptiveAvgPool2d(input: Tensor, outputSize: Pair): Tensor {
  return t(op.adaptiveAvgPool2d(input, outputSize));
}

/**
 * How {@link interpolate} resamples: nearest neighbour, bilinear, bicubic (both with align_corners false), or area
 * (average over the source pixels, for downsampling).
 */
export type InterpolationMode = 'nearest' | 'bilinear' | 'bicubic' | 'area';
/** Settings of {@link interpolate}. */
export interface InterpolateOptions {
  /** Output [H, W] (or one number for both). */
  size: Pair;
  /** Default 'nearest'. */
  mode?: InterpolationMode;
  /** For bilinear/bicubic; default false (PyTorch's). */
  alignCorners?: boolean;
  /** Low-pass filter before down-sampling (bilinear/bicubic only, as PIL does); default false. */
  antialias?: boolean;
}
/** Resizes [N, C, H, W] images (torch.nn.functional.interpolate with a size). */
export function interpolate(input: Tensor, options: InterpolateOptions): Tensor {
  const size = typeof options.size === 'number' ? [options.size, options.size] : options.size;
  const align = options.alignCorners ?? false;
  const mode = options.mode ?? 'nearest';
  if (options.antialias && mode !== 'bilinear' && mode !== 'bicubic') {
    throw new Error(`antialias applies to bilinear and bicubic interpolation, not ${mode}`);
  }
  if (mode !== 'bilinear' && mode !== 'bicubic' && options.alignCorners !== undefined) {
    throw new Error(`alignCorners applies to bilinear and bicubic interpolation, not ${mode}`);
  }
  switch (mode) {
    case 'nearest': return t(op.nearest(input, size, null, null));
    case 'bilinear': return t((options.antialias ? op.bilinearAA : op.bilinear)(input, size, align, null, null));
    case 'bicubic': return t((options.antialias ? op.bicubicAA : op.bicubic)(input, size, align, null, null));
    case 'area': return t(op.area(input, size));
    default: throw new Error(`unknown interpolation mode '${mode as string}'`);
  }
}

/**
 * How {@link pad} fills the border: a constant, a mirror image without the edge pixel, or the edge pixel repeated.
 */
export type PadMode = 'constant' | 'reflect' | 'replicate';
/** Pads the last dimensions: `pad` is [left, right, top, bottom, ...] as in torch.nn.functional.pad. */
export function pad(input: Tensor, padding: number[], options: { mode?: PadMode; value?: number } = {}): Tensor {
  const mode = options.mode ?? 'constant';
  if (mode === 'constant') return t(op.constantPad(input, padding, options.value ?? 0));
  if (padding.length !== 4 || input.ndim !== 4) throw new Error(`${mode} padding takes [left, right, top, bottom] of a 4-d input`);
  return t((mode === 'reflect' ? op.reflectionPad : op.replicationPad)(input, padding));
}

/** Zeroes elements with probability p and scales the rest by 1/(1-p), when training. */
export function dropout(input: Tensor, options: { p?: number; training?: boolean } = {}): Tensor {
  const p = options.p ?? 0.5;
  if (p < 0 || p > 1) throw new RangeError(`dropout probability must be in [0, 1], got ${p}`);
  return t(op.dropout(input, p, options.training ?? true));
}

/** How a loss over a batch is reduced: per element ('none'), averaged, or summed. */
export type Reduction = 'none' | 'mean' | 'sum';
const reductionCode: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };

/** Settings of {@link crossEntropy}. */
export interface CrossEntropyOptions {
  /** Default 'mean'. */
  reduction?: Reduction;
  /** Default 0: no smoothing. */
  labelSmoothing?: number;
  /** Per-class weights. */
  weight?: Tensor | null;
  /** Target value that contributes nothing. Default -100. */
  ignoreIndex?: number;
}
/** Cross-entropy of logits [N, C] against class indices [N] (int64). */
export function crossEntropy(logits: Tensor, target: Tensor, options: CrossEntropyOptions = {}): Tensor {
  return t(op.crossEntropy(logits, target, options.weight ?? null, reductionCode[options.reduction ?? 'mean'],
    options.ignoreIndex ?? -100, options.labelSmoothing ?? 0));
}
/** Negative log-likelihood of log-probabilities [N, C] against class indices [N]. */
export function nllLoss(logProbs: Tensor, target: Tensor, options: { reduction?: Reduction; weight?: Tensor | null; ignoreIndex?: number } = {}): Tensor {
  return t(op.nllLoss(logProbs, target, options.weight ?? null, reductionCode[options.reduction ?? 'mean'], options.ignoreIndex ?? -100));
}
/** Mean squared error between `input` and `target` (same shape), reduced by `reduction` (default 'mean'). */
export function mseLoss(input: Tensor, target: Tensor, options: { reduction?: Reduction } = {}): Tensor {
  return t(op.mseLoss(input, target, reductionCode[options.reduction ?? 'mean']));
}
/** Rows of `weight` [num, dim] at integer `indices` (any shape): output [...indices.shape, dim]. */
export function embedding(weight: Tensor, indices: Tensor): Tensor {
  return t(op.embedding(weight, indices));
}
