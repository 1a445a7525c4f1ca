// The linear read-outs that turn intermediate activations into ensemble members (Fort & Lakshminarayanan 2024,
// arXiv 2408.05446, section 3.2: "we train a linear layer on top of the representation at each intermediate
// layer"). The official notebook's BatchNormLinear: BatchNorm1d over the flattened activation, then a Linear
// layer to the classes. The BatchNorm puts features of very different scales (early and late layers) on one
// footing, so the same learning rate trains every head.
import { type Generator, type Tensor, tidy } from '../tensor/index.js';
import { adaptiveAvgPool2d } from '../nn/functional.js';
import { BatchNorm1d, Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';

/**
 * How a head reads its activation [N, C, H, W]:
 * - 'flatten' (the paper's): all C·H·W values. Most expressive, but its size grows with the activation: at a 32x32
 *   input with a CIFAR stem, a ResNet-18 layer1 activation has 64·32·32 = 65,536 features, so one head holds
 *   65,536·(classes + 4) numbers (BatchNorm parameters and statistics plus the linear weight): 7 M for 100
 *   classes; at the paper's 224x224 ResNet-152, a layer3 head reads 200,704 features (20 M numbers). Its
 *   weights also tie the model to one input size.
 * - 'pooled': adaptive average pooling to a poolSize × poolSize grid first, so C·poolSize² features: a few
 *   hundred to a few thousand, independent of the input size, cheap enough for CPU training. Pooling discards
 *   where in the image a pattern is (beyond the coarse grid), which costs the early heads some accuracy.
 * A 1-d activation ([N, C], e.g. after global pooling) is read as is by both kinds.
 */
export type HeadKind = 'flatten' | 'pooled';

/** Settings of a {@link ClassifierHead}. */
export interface ClassifierHeadOptions {
  /** Default 'flatten' (the paper's). */
  kind?: HeadKind;
  /** Grid side of a 'pooled' head. Default 2 (four cells). */
  poolSize?: number;
  /** Random stream for the linear layer's initial weights. Default: libtorch's global generator. */
  generator?: Generator;
}

/** BatchNorm1d + Linear on one activation: parameters `bn.*` and `linear.*`. */
export class ClassifierHead extends Module {
  /** 'flatten' or 'pooled'. */
  readonly kind: HeadKind;
  /** Grid side of a pooled head. */
  readonly poolSize: number;
  /** One image's activation shape this head reads, [C, H, W] or [C]. */
  readonly featureShape: readonly number[];
  /** Inputs of `linear` after flattening or pooling. */
  readonly inFeatures: number;
  /** BatchNorm over the flattened activation. */
  readonly bn: BatchNorm1d;
  /** The linear classifier, [numClasses, inFeatures]. */
  readonly linear: Linear;

  constructor(featureShape: readonly number[], numClasses: number, options: ClassifierHeadOptions = {}) {
    super();
    this.kind = options.kind ?? 'flatten';
    this.poolSize = options.poolSize ?? 2;
    if (this.kind !== 'flatten' && this.kind !== 'pooled') throw new Error(`unknown head kind '${this.kind as string}' (flatten or pooled)`);
    if (!Number.isInteger(this.poolSize) || this.poolSize < 1) throw new RangeError(`poolSize must be a positive integer, got ${this.poolSize}`);
    if ((featureShape.length !== 1 && featureShape.length !== 3) || !featureShape.every((s) => Number.isInteger(s) && s >= 1)) {
      throw new Error(`a head reads activations of shape [C] or [C, H, W], got [${featureShape.join(', ')}]`);
    }
    this.featureShape = [...featureShape];
    this.inFeatures = this.pools ? featureShape[0]! * this.poolSize ** 2 : featureShape.reduce((a, b) => a * b, 1);
    this.bn = this.registerModule('bn', new BatchNorm1d(this.inFeatures));
    this.linear = this.registerModule('linear', new Linear(this.inFeatures, numClasses, { generator: options.generator }));
  }

  private get pools(): boolean {
    return this.kind === 'pooled' && this.featureShape.length === 3;
  }

  /** activation [N, ...featureShape] -> logits [N, classes] */
  forward(activation: Tensor): Tensor {
    const got = activation.shape.slice(1);
    if (got.length !== this.featureShape.length || (!this.pools && got.some((s, i) => s !== this.featureShape[i]))
      || got[0] !== this.featureShape[0]) {
      throw new Error(`this ${this.kind} head reads activations [N, ${this.featureShape.join(', ')}], got [${activation.shape.join(', ')}]`
        + (this.kind === 'flatten' ? ' (a flatten head is sized for one input size)' : ''));
    }
    return tidy(() => {
      const x = this.pools ? adaptiveAvgPool2d(activation, this.poolSize) : activation;
      return this.linear.forward(this.bn.forward(x.flatten(1)));
    });
  }
}

/** The heads in member order, registered as "0", "1", ... (a torch.nn.ModuleList). */
export class ClassifierHeads extends Module {
  private readonly list: ClassifierHead[] = [];

  /** Adds a head as the next member; returns this. */
  append(head: ClassifierHead): this {
    this.registerModule(String(this.list.length), head);
    this.list.push(head);
    return this;
  }

  /** Number of heads. */
  get length(): number {
    return this.list.length;
  }

  /** The head at `index` (negative counts from the end); throws when out of range. */
  at(index: number): ClassifierHead {
    const head = this.list.at(index);
    if (!head) throw new RangeError(`there are ${this.list.length} heads, no index ${index}`);
    return head;
  }

  /** The heads in member order. */
  [Symbol.iterator](): Iterator<ClassifierHead> {
    return this.list[Symbol.iterator]();
  }

  /** Always throws: the heads are called one by one, each on its own activation. */
  forward(): never {
    throw new Error('ClassifierHeads holds the heads; call each head on its own activation');
  }
}
