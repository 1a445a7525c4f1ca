// Layers as in torch.nn: the same constructor arguments (as an options object after the sizes), the same
// parameter and buffer names and the same default initialisation. The math is in functional.ts.
import { empty, noGrad, ones, zeros, type Device, type DType, type Generator, Tensor } from '../tensor/index.js';
import * as F from './functional.js';
import { defaultLayerInit_, normal_, ones_, zeros_ } from './init.js';
import { Module, type Layer } from './module.js';

/** Where new parameters are made and which random stream fills them. */
export interface ParameterFactoryOptions {
  /** Default float32. */
  dtype?: DType;
  /** Default 'cpu'. */
  device?: Device;
  /** Random stream for the initial weights. Default: libtorch's global generator (seeded by manualSeed). */
  generator?: Generator;
}

function pair(v: F.Pair): [number, number] {
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

export interface Conv2dConfig extends ParameterFactoryOptions {
  /** Default 1. */
  stride?: F.Pair;
  /** Zero padding on each side. Default 0. */
  padding?: F.Pair;
  /** Default 1. */
  dilation?: F.Pair;
  /** Default 1. */
  groups?: number;
  /** Default true. */
  bias?: boolean;
}

/** 2-d convolution (torch.nn.Conv2d): weight [out, in/groups, kH, kW], bias [out]. */
export class Conv2d extends Module {
  /** Kernel [kH, kW]. */
  readonly kernelSize: [number, number];
  /** Stride [sH, sW]. */
  readonly stride: [number, number];
  /** Zero padding [pH, pW] on each side. */
  readonly padding: [number, number];
  /** Dilation [dH, dW]. */
  readonly dilation: [number, number];
  /** Number of channel groups (in and out channels are each divided into this many). */
  readonly groups: number;
  /** Parameter `weight`, [out, in/groups, kH, kW]. */
  readonly weight: Tensor;
  /** Parameter `bias`, [out], or null without bias. */
  readonly bias: Tensor | null;

  /**
   * @param inChannels - Channels of the input [N, in, H, W].
   * @param outChannels - Channels of the output.
   * @param kernelSize - Kernel size (one number for a square kernel).
   * @param config - Stride, padding, dilation, groups, bias and initialisation.
   */
  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: F.Pair, config: Conv2dConfig = {}) {
    super();
    this.groups = config.groups ?? 1;
    if (inChannels % this.groups !== 0 || outChannels % this.groups !== 0) {
      throw new Error(`Conv2d: in (${inChannels}) and out (${outChannels}) channels must be divisible by groups (${this.groups})`);
    }
    this.kernelSize = pair(kernelSize);
    this.stride = pair(config.stride ?? 1);
    this.padding = pair(config.padding ?? 0);
    this.dilation = pair(config.dilation ?? 1);
    const factory = { dtype: config.dtype, device: config.device };
    this.weight = this.registerParameter('weight', empty([outChannels, inChannels / this.groups, ...this.kernelSize], factory));
    this.bias = (config.bias ?? true) ? this.registerParameter('bias', empty([outChannels], factory)) : null;
    defaultLayerInit_(this.weight, this.bias, config);
  }

  /** [N, in, H, W] to [N, out, H', W']. */
  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, {
      bias: this.bias, stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups,
    });
  }
}

export interface LinearConfig extends ParameterFactoryOptions {
  /** Default true. */
  bias?: boolean;
}

/** x·Wᵀ + b (torch.nn.Linear): weight [out, in], bias [out]. */
export class Linear extends Module {
  /** Parameter `weight`, [out, in]. */
  readonly weight: Tensor;
  /** Parameter `bias`, [out], or null without bias. */
  readonly bias: Tensor | null;

  /**
   * @param inFeatures - Size of the input's last dimension.
   * @param outFeatures - Size of the output's last dimension.
   * @param config - Bias and initialisation.
   */
  constructor(readonly inFeatures: number, readonly outFeatures: number, config: LinearConfig = {}) {
    super();
    const factory = { dtype: config.dtype, device: config.device };
    this.weight = this.registerParameter('weight', empty([outFeatures, inFeatures], factory));
    this.bias = (config.bias ?? true) ? this.registerParameter('bias', empty([outFeatures], factory)) : null;
    defaultLayerInit_(this.weight, this.bias, config);
  }

  /** [..., in] to [..., out]. */
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

/** Settings of {@link BatchNorm1d} and {@link BatchNorm2d}; defaults as PyTorch's. */
export interface BatchNormConfig {
  /** Added to the variance. Default 1e-5. */
  eps?: number;
  /**
   * Weight of the new batch in the running statistics. Default 0.1. null: cumulative average over all
   * batches seen (1/num_batches_tracked).
   */
  momentum?: number | null;
  /** Learnable scale `weight` (init 1) and shift `bias` (init 0). Default true. */
  affine?: boolean;
  /** Keep running_mean / running_var / num_batches_tracked and use them in eval mode. Default true. */
  trackRunningStats?: boolean;
  /** dtype of the parameters and buffers. Default 'float32'. */
  dtype?: DType;
  /** Device of the parameters and buffers. Default 'cpu'. */
  device?: Device;
}

/** Per-channel sums of one BatchNorm call's input: float64 [C] sum and sum of squares, and the values counted per channel. */
export interface BatchStatistics {
  /** Σx per channel, float64 [C]. */
  sum: Tensor;
  /** Σx² per channel, float64 [C]. */
  sumSq: Tensor;
  /** Values per channel (batch × spatial size). */
  count: number;
}

/** What a {@link BatchStatisticsSource} answers for one BatchNorm call. */
export interface CombinedBatchStatistics {
  /** The sums over every rank's batch (constants: no autograd history). */
  total: BatchStatistics;
  /** Whether this is the real pass (update the running statistics, record the call) or a statistics-only pass. */
  final: boolean;
}

/**
 * Where a BatchNorm in training mode takes its batch statistics from instead of its own input: the statistics of
 * the global batch over all ranks (src/distributed's SyncBatchNorm implements it). BatchNorm asks it once per call.
 */
export interface BatchStatisticsSource {
  /**
   * The statistics to normalise this call with, given this process's own (`local`, values with autograd history).
   * Returns the combined sums (constants: no history) and whether this pass is the real one (it updates the running
   * statistics and records the call); a source may throw here to end a statistics-only pass early.
   */
  combine(layer: BatchNorm, local: BatchStatistics): CombinedBatchStatistics;
  /**
   * The real pass's record of a call: this process's sums (`local`, with history) and the combined sums used
   * (`combined` = local + the other ranks' part as a constant, so gradients reach `local`); the source corrects
   * their gradients after backward with the other ranks' share.
   */
  record(local: BatchStatistics, combined: BatchStatistics): void;
}

/**
 * Batch normalisation over the channel dimension 1 (torch.nn.modules.batchnorm._BatchNorm): parameters weight,
 * bias; buffers running_mean, running_var and num_batches_tracked (int64, counts training batches).
 */
export abstract class BatchNorm extends Module {
  /** Added to the variance. */
  readonly eps: number;
  /** Weight of a new batch in the running statistics; null for a cumulative average. */
  readonly momentum: number | null;
  /** Whether `weight` and `bias` exist. */
  readonly affine: boolean;
  /** Whether the running statistics exist and are used in eval mode. */
  readonly trackRunningStats: boolean;
  /** Parameter `weight` (γ, [numFeatures]), or null when not affine. */
  readonly weight: Tensor | null = null;
  /** Parameter `bias` (β, [numFeatures]), or null when not affine. */
  readonly bias: Tensor | null = null;
  /** Buffer `running_mean` ([numFeatures]), or null without running statistics. */
  readonly runningMean: Tensor | null = null;
  /** Buffer `running_var` ([numFeatures]), or null without running statistics. */
  readonly runningVar: Tensor | null = null;
  /** Buffer `num_batches_tracked` (0-d int64), or null without running statistics. */
  readonly numBatchesTracked: Tensor | null = null;
  /**
   * In training mode, take the batch statistics from this source (synchronised BatchNorm over ranks) rather than
   * from the input alone. Default null. Not state: it is neither saved nor loaded.
   */
  statisticsSource: BatchStatisticsSource | null = null;

  /**
   * @param numFeatures - Channels C of the input.
   * @param config - eps, momentum, affine, running statistics, dtype and device.
   */
  constructor(readonly numFeatures: number, config: BatchNormConfig = {}) {
    super();
    this.eps = config.eps ?? 1e-5;
    this.momentum = config.momentum === undefined ? 0.1 : config.momentum;
    this.affine = config.affine ?? true;
    this.trackRunningStats = config.trackRunningStats ?? true;
    const factory = { dtype: config.dtype, device: config.device };
    if (this.affine) {
      this.weight = ones_(this.registerParameter('weight', empty([numFeatures], factory)));
      this.bias = zeros_(this.registerParameter('bias', empty([numFeatures], factory)));
    }
    if (this.trackRunningStats) {
      this.runningMean = this.registerBuffer('running_mean', zeros([numFeatures], factory));
      this.runningVar = this.registerBuffer('running_var', ones([numFeatures], factory));
      this.numBatchesTracked = this.registerBuffer('num_batches_tracked', zeros([], { dtype: 'int64', device: config.device }));
    }
  }

  /** Throws a clear error when `x` does not have the dimensions this variant normalises. */
  protected abstract checkInput(x: Tensor): void;

  /**
   * Normalises with batch statistics in training mode (updating the running ones), with the running statistics in
   * eval mode.
   */
  forward(x: Tensor): Tensor {
    this.checkInput(x);
    if (this.training && this.statisticsSource) return this.forwardWithSource(x, this.statisticsSource);
    let averagingFactor = this.momentum ?? 0;
    if (this.training && this.numBatchesTracked) {
      noGrad(() => this.numBatchesTracked!.add_(1));
      if (this.momentum === null) averagingFactor = 1 / this.numBatchesTracked.item();
    }
    // Batch statistics in training, and in eval too when there are no running statistics to use.
    const useBatchStatistics = this.training || (this.runningMean === null && this.runningVar === null);
    const useRunning = !this.training || this.trackRunningStats;
    return F.batchNorm(x, {
      weight: this.weight, bias: this.bias,
      runningMean: useRunning ? this.runningMean : null, runningVar: useRunning ? this.runningVar : null,
      training: useBatchStatistics, momentum: averagingFactor, eps: this.eps,
    });
  }

  /**
   * Training-mode normalisation with statistics from `source` (torch.nn.SyncBatchNorm's forward): mean = Σx / n and
   * biased variance = Σx² / n − mean² over the combined batch, both in float64 (the difference of two sums loses
   * digits in float32); the running variance takes the unbiased n / (n − 1) form, as PyTorch's does.
   */
  private forwardWithSource(x: Tensor, source: BatchStatisticsSource): Tensor {
    const channels = x.shape[1]!;
    if (channels !== this.numFeatures) throw new Error(`BatchNorm expects ${this.numFeatures} channels, got shape [${x.shape.join(', ')}]`);
    const reduce = [0, ...Array.from({ length: x.ndim - 2 }, (_, i) => i + 2)];
    const wide = x.double();
    const local: BatchStatistics = { sum: wide.sum({ dim: reduce }), sumSq: wide.square().sum({ dim: reduce }), count: x.numel / channels };
    const { total, final } = source.combine(this, local);
    if (total.count < 2) throw new Error(`BatchNorm: expected more than 1 value per channel in training, got ${total.count} over all ranks`);
    // Forward values are the combined sums; gradients reach this process's own sums (the rest is a constant here,
    // and the source adds the other ranks' part of the gradient after backward).
    const combined: BatchStatistics = {
      sum: local.sum.add(total.sum.sub(local.sum).detach()),
      sumSq: local.sumSq.add(total.sumSq.sub(local.sumSq).detach()),
      count: total.count,
    };
    const mean = combined.sum.div(total.count);
    const variance = combined.sumSq.div(total.count).sub(mean.square());
    const broadcast = [1, channels, ...Array<number>(x.ndim - 2).fill(1)];
    let y = x.sub(mean.to(x.dtype).reshape(broadcast)).mul(variance.add(this.eps).rsqrt().to(x.dtype).reshape(broadcast));
    if (this.weight) y = y.mul(this.weight.reshape(broadcast));
    if (this.bias) y = y.add(this.bias.reshape(broadcast));
    if (final) {
      source.record(local, combined);
      if (this.trackRunningStats && this.runningMean && this.runningVar && this.numBatchesTracked) {
        noGrad(() => {
          this.numBatchesTracked!.add_(1);
          const factor = this.momentum ?? 1 / this.numBatchesTracked!.item();
          const unbiased = variance.mul(total.count / (total.count - 1));
          this.runningMean!.mul_(1 - factor).add_(mean.to(this.runningMean!.dtype), factor);
          this.runningVar!.mul_(1 - factor).add_(unbiased.to(this.runningVar!.dtype), factor);
          unbiased.dispose();
        });
      }
    }
    return y;
  }

  // Checkpoints written before PyTorch 0.4.1 (torchvision's original ResNet weights) have no
  // num_batches_tracked; PyTorch then loads it as 0.
  protected override acceptMissingState(localName: string, target: Tensor, fills: (() => void)[]): boolean {
    if (localName !== 'num_batches_tracked') return false;
    fills.push(() => target.zero_());
    return true;
  }
}

/** Batch normalisation of [N, C] or [N, C, L] inputs. */
export class BatchNorm1d extends BatchNorm {
  /** Accepts [N, C] or [N, C, L]. */
  protected checkInput(x: Tensor): void {
    if (x.ndim !== 2 && x.ndim !== 3) throw new Error(`BatchNorm1d expects a 2-d or 3-d input, got shape [${x.shape.join(', ')}]`);
  }
}

/** Batch normalisation of [N, C, H, W] inputs. */
export class BatchNorm2d extends BatchNorm {
  /** Accepts [N, C, H, W]. */
  protected checkInput(x: Tensor): void {
    if (x.ndim !== 4) throw new Error(`BatchNorm2d expects a 4-d input, got shape [${x.shape.join(', ')}]`);
  }
}

/** Settings of {@link LayerNorm}; defaults as PyTorch's. */
export interface LayerNormConfig {
  /** Added to the variance. Default 1e-5. */
  eps?: number;
  /** Learnable per-element scale `weight` (init 1) and shift `bias` (init 0). Default true. */
  elementwiseAffine?: boolean;
  /** dtype of the parameters. Default 'float32'. */
  dtype?: DType;
  /** Device of the parameters. Default 'cpu'. */
  device?: Device;
}

/**
 * Layer normalisation over the trailing dimensions `normalizedShape` (torch.nn.LayerNorm): parameters weight and
 * bias of that shape.
 */
export class LayerNorm extends Module {
  /** The trailing dimensions normalised over. */
  readonly normalizedShape: number[];
  /** Added to the variance. */
  readonly eps: number;
  /** Whether `weight` and `bias` exist. */
  readonly elementwiseAffine: boolean;
  /** Parameter `weight` (shape normalizedShape), or null. */
  readonly weight: Tensor | null = null;
  /** Parameter `bias` (shape normalizedShape), or null. */
  readonly bias: Tensor | null = null;

  constructor(normalizedShape: number | readonly number[], config: LayerNormConfig = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
    this.eps = config.eps ?? 1e-5;
    this.elementwiseAffine = config.elementwiseAffine ?? true;
    if (this.elementwiseAffine) {
      const factory = { dtype: config.dtype, device: config.device };
      this.weight = ones_(this.registerParameter('weight', empty(this.normalizedShape, factory)));
      this.bias = zeros_(this.registerParameter('bias', empty(this.normalizedShape, factory)));
    }
  }

  /** Normalises each element's trailing normalizedShape values to mean 0 and variance 1, then scales and shifts. */
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.normalizedShape, { weight: this.weight, bias: this.bias, eps: this.eps });
  }
}

export interface EmbeddingConfig extends ParameterFactoryOptions {
  /**
   * Standard deviation of the N(0, initStd²) initial weights. Default 1, as torch.nn.Embedding; HF transformers
   * models draw theirs with their initializer_range (0.02) instead.
   */
  initStd?: number;
}

/** A lookup table (torch.nn.Embedding): weight [numEmbeddings, embeddingDim], indexed by integer tensors. */
export class Embedding extends Module {
  /** Parameter `weight`, [numEmbeddings, embeddingDim]. */
  readonly weight: Tensor;

  /**
   * @param numEmbeddings - Size of the table (indices run 0..numEmbeddings-1).
   * @param embeddingDim - Size of each entry.
   * @param config - Initialisation, dtype and device.
   */
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, config: EmbeddingConfig = {}) {
    super();
    this.weight = normal_(this.registerParameter('weight', empty([numEmbeddings, embeddingDim], { dtype: config.dtype, device: config.device })),
      { std: config.initStd ?? 1, generator: config.generator });
  }

  /** indices of any shape (int64 or int32) → [...indices.shape, embeddingDim]. */
  forward(indices: Tensor): Tensor {
    return F.embedding(this.weight, indices);
  }
}

export class ReLU extends Module {
  /** max(x, 0) elementwise. */
  forward(x: Tensor): Tensor {
    return x.relu();
  }
}

/** Returns its input (the same tensor). */
export class Identity extends Module {
  /** Returns `x` itself (no copy). */
  forward(x: Tensor): Tensor {
    return x;
  }
}

export class Flatten extends Module {
  /** First dimension merged. */
  readonly startDim: number;
  /** Last dimension merged (−1: the last). */
  readonly endDim: number;
  /** Defaults: startDim 1 (keeps the batch dimension), endDim -1. */
  constructor(config: { startDim?: number; endDim?: number } = {}) {
    super();
    this.startDim = config.startDim ?? 1;
    this.endDim = config.endDim ?? -1;
  }
  /** Merges dimensions startDim..endDim into one. */
  forward(x: Tensor): Tensor {
    return x.flatten(this.startDim, this.endDim);
  }
}

/** Zeroes elements with probability p and scales the rest by 1/(1-p), in training mode only. */
export class Dropout extends Module {
  /** @param p - Probability of zeroing an element, in [0, 1]. Default 0.5. */
  constructor(readonly p = 0.5) {
    super();
    if (p < 0 || p > 1) throw new RangeError(`dropout probability must be in [0, 1], got ${p}`);
  }
  /** Drops and rescales in training mode; returns `x` unchanged in eval mode. */
  forward(x: Tensor): Tensor {
    return F.dropout(x, { p: this.p, training: this.training });
  }
}

export class MaxPool2d extends Module {
  /**
   * @param kernelSize - Window size.
   * @param config - Stride (default: the window), padding, dilation, ceil mode.
   */
  constructor(readonly kernelSize: F.Pair, readonly config: F.PoolOptions & { dilation?: F.Pair } = {}) {
    super();
  }
  /** [N, C, H, W] to the maximum over each window. */
  forward(x: Tensor): Tensor {
    return F.maxPool2d(x, this.kernelSize, this.config);
  }
}

export class AvgPool2d extends Module {
  /**
   * @param kernelSize - Window size.
   * @param config - Stride (default: the window), padding, ceil mode, whether padding counts.
   */
  constructor(readonly kernelSize: F.Pair, readonly config: F.PoolOptions & { countIncludePad?: boolean } = {}) {
    super();
  }
  /** [N, C, H, W] to the average over each window. */
  forward(x: Tensor): Tensor {
    return F.avgPool2d(x, this.kernelSize, this.config);
  }
}

export class AdaptiveAvgPool2d extends Module {
  /** @param outputSize - Output [H, W] (one number for both; 1 for global average pooling). */
  constructor(readonly outputSize: F.Pair) {
    super();
  }
  /** [N, C, H, W] to [N, C, outH, outW]. */
  forward(x: Tensor): Tensor {
    return F.adaptiveAvgPool2d(x, this.outputSize);
  }
}

/**
 * Layers applied in order, registered as children "0", "1", ... (torch.nn.Sequential). Outputs between layers
 * are freed as soon as the next layer has consumed them (autograd keeps what it needs).
 */
export class Sequential extends Module {
  private readonly layers: Layer[] = [];

  constructor(...layers: Layer[]) {
    super();
    for (const layer of layers) this.append(layer);
  }

  /** Adds a layer at the end (as child str(length)); returns this. */
  append(layer: Layer): this {
    this.registerModule(String(this.layers.length), layer);
    this.layers.push(layer);
    return this;
  }

  /** Number of layers. */
  get length(): number {
    return this.layers.length;
  }

  /** The layer at `index` (negative counts from the end); throws when out of range. */
  at(index: number): Layer {
    const layer = this.layers.at(index);
    if (!layer) throw new RangeError(`Sequential has ${this.layers.length} layers, no index ${index}`);
    return layer;
  }

  /** Applies every layer in order. */
  forward(x: Tensor): Tensor {
    return pipe(x, ...this.layers);
  }
}

/**
 * x through each layer in turn, freeing every intermediate output as soon as the next layer has used it (autograd
 * keeps its own references to what backward needs), so memory is reused while it is still in cache, as PyTorch's
 * reference counting does. The input itself is left alone.
 */
export function pipe(x: Tensor, ...layers: readonly Layer[]): Tensor {
  let current = x;
  for (const layer of layers) {
    const next = layer.forward(current);
    if (current !== x && next !== current) current.dispose();
    current = next;
  }
  return current;
}
