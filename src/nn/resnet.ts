// ResNets as torchvision 0.14 builds them (He et al. 2016, "Deep Residual Learning for Image Recognition";
// torchvision's Bottleneck puts the stride on the 3x3 convolution, "ResNet v1.5"). Module names, construction
// order and initialisation follow torchvision's, so its state dicts load by name and, with the same seed,
// a fresh crossmax ResNet has torchvision's exact initial weights.
import { type Generator, type Tensor, tidy } from '../tensor/index.js';
import { constant_, kaimingNormal_ } from './init.js';
import { AdaptiveAvgPool2d, BatchNorm, BatchNorm2d, Conv2d, Identity, Linear, MaxPool2d, ReLU, Sequential, pipe } from './layers.js';
import { Module } from './module.js';

/** The depths torchvision builds: 18 and 34 from basic blocks, 50, 101 and 152 from bottlenecks. */
export type ResNetDepth = 18 | 34 | 50 | 101 | 152;

/** Settings of {@link ResNet}; the defaults are torchvision's. */
export interface ResNetOptions {
  /** Number of layers: 18, 34, 50, 101 or 152. */
  depth: ResNetDepth;
  /** Default 1000. */
  numClasses?: number;
  /** Input channels of the first convolution. Default 3. */
  inChannels?: number;
  /**
   * 'imagenet' (default): 7x7 stride-2 convolution and 3x3 stride-2 max-pool, for 224x224 inputs.
   * 'cifar': 3x3 stride-1 convolution and no max-pool (maxpool is an Identity), for 32x32 inputs.
   */
  stem?: 'imagenet' | 'cifar';
  /** Start each residual branch's last BatchNorm at weight 0, so every block starts as the identity. Default false. */
  zeroInitResidual?: boolean;
  /**
   * Scales every width (the stem's 64 channels and the stages' 64, 128, 256, 512 planes, rounded, at least 1), for
   * narrow ResNets that train on a CPU. Module and parameter names do not change. Default 1 (torchvision's).
   */
  widthMultiplier?: number;
  /** Random stream for the initial weights. Default: libtorch's global generator (seeded by manualSeed). */
  generator?: Generator;
}

interface BlockOptions {
  stride: number;
  downsample: Sequential | null;
  generator: Generator | undefined;
}

function conv3x3(inPlanes: number, outPlanes: number, stride: number, generator: Generator | undefined): Conv2d {
  return new Conv2d(inPlanes, outPlanes, 3, { stride, padding: 1, bias: false, generator });
}

function conv1x1(inPlanes: number, outPlanes: number, stride: number, generator: Generator | undefined): Conv2d {
  return new Conv2d(inPlanes, outPlanes, 1, { stride, bias: false, generator });
}

/** Two 3x3 convolutions and a shortcut (ResNet-18/34). */
export class BasicBlock extends Module {
  /** Output channels per `planes` (1: the block keeps its width). */
  static readonly expansion = 1;
  /** First 3x3 convolution (carries the stride). */
  readonly conv1: Conv2d;
  /** BatchNorm after conv1. */
  readonly bn1: BatchNorm2d;
  /** ReLU after bn1 and after the residual sum. */
  readonly relu: ReLU;
  /** Second 3x3 convolution. */
  readonly conv2: Conv2d;
  /** BatchNorm after conv2 (zero-initialised with zeroInitResidual). */
  readonly bn2: BatchNorm2d;
  /** 1x1 convolution and BatchNorm on the shortcut when the shape changes, else null. */
  readonly downsample: Sequential | null;

  constructor(inPlanes: number, planes: number, options: BlockOptions) {
    super();
    this.conv1 = this.registerModule('conv1', conv3x3(inPlanes, planes, options.stride, options.generator));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes));
    this.relu = this.registerModule('relu', new ReLU());
    this.conv2 = this.registerModule('conv2', conv3x3(planes, planes, 1, options.generator));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    this.downsample = options.downsample && this.registerModule('downsample', options.downsample);
  }

  /** [N, in, H, W] to [N, planes, H/stride, W/stride]. */
  forward(x: Tensor): Tensor {
    // torchvision's order, with its in-place ReLUs and residual sum: fewer allocations, same values and gradients.
    const hidden = pipe(x, this.conv1, this.bn1).relu_();
    return addResidual(pipe(hidden, this.conv2, this.bn2), x, this.downsample, hidden);
  }

  /** The BatchNorm that ends the residual branch. */
  get lastBatchNorm(): BatchNorm2d {
    return this.bn2;
  }
}

/** 1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, and a shortcut (ResNet-50/101/152). */
export class Bottleneck extends Module {
  /** Output channels per `planes` (4: the block widens fourfold). */
  static readonly expansion = 4;
  /** 1x1 convolution reducing to `planes` channels. */
  readonly conv1: Conv2d;
  /** BatchNorm after conv1. */
  readonly bn1: BatchNorm2d;
  /** 3x3 convolution (carries the stride, "ResNet v1.5"). */
  readonly conv2: Conv2d;
  /** BatchNorm after conv2. */
  readonly bn2: BatchNorm2d;
  /** 1x1 convolution expanding to 4·planes channels. */
  readonly conv3: Conv2d;
  /** BatchNorm after conv3 (zero-initialised with zeroInitResidual). */
  readonly bn3: BatchNorm2d;
  /** ReLU between the convolutions and after the residual sum. */
  readonly relu: ReLU;
  /** 1x1 convolution and BatchNorm on the shortcut when the shape changes, else null. */
  readonly downsample: Sequential | null;

  constructor(inPlanes: number, planes: number, options: BlockOptions) {
    super();
    const g = options.generator;
    this.conv1 = this.registerModule('conv1', conv1x1(inPlanes, planes, 1, g));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes));
    this.conv2 = this.registerModule('conv2', conv3x3(planes, planes, options.stride, g));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    this.conv3 = this.registerModule('conv3', conv1x1(planes, planes * Bottleneck.expansion, 1, g));
    this.bn3 = this.registerModule('bn3', new BatchNorm2d(planes * Bottleneck.expansion));
    this.relu = this.registerModule('relu', new ReLU());
    this.downsample = options.downsample && this.registerModule('downsample', options.downsample);
  }

  /** [N, in, H, W] to [N, 4·planes, H/stride, W/stride]. */
  forward(x: Tensor): Tensor {
    const reduced = pipe(x, this.conv1, this.bn1).relu_();
    const spatial = pipe(reduced, this.conv2, this.bn2).relu_();
    reduced.dispose();
    return addResidual(pipe(spatial, this.conv3, this.bn3), x, this.downsample, spatial);
  }

  /** The BatchNorm on the residual branch's output (bn3), whose width is the block's output width. */
  get lastBatchNorm(): BatchNorm2d {
    return this.bn3;
  }
}

/** relu(branch + shortcut(x)) in place on `branch`, freeing `consumed` (the branch's input) and the shortcut. */
function addResidual(branch: Tensor, x: Tensor, downsample: Sequential | null, consumed: Tensor): Tensor {
  consumed.dispose();
  if (downsample) {
    const identity = downsample.forward(x);
    branch.add_(identity);
    identity.dispose();
  } else {
    branch.add_(x);
  }
  return branch.relu_();
}

/**
 * Blocks per stage and block type of every depth (torchvision's resnet.py): the one layout table, shared by the
 * ResNet constructor, the reader of torchvision files and the presets' block names.
 */
export const RESNET_LAYOUTS: Readonly<Record<ResNetDepth, { readonly block: 'basic' | 'bottleneck'; readonly blocks: readonly [number, number, number, number] }>> = Object.freeze({
  18: { block: 'basic', blocks: [2, 2, 2, 2] },
  34: { block: 'basic', blocks: [3, 4, 6, 3] },
  50: { block: 'bottleneck', blocks: [3, 4, 6, 3] },
  101: { block: 'bottleneck', blocks: [3, 4, 23, 3] },
  152: { block: 'bottleneck', blocks: [3, 8, 36, 3] },
});

/** The residual blocks' feature names of a depth, in order: 'layer1.0', 'layer1.1', ..., 'layer4.1' for ResNet-18. */
export function resnetBlockNames(depth: ResNetDepth): string[] {
  const layout = RESNET_LAYOUTS[depth];
  if (!layout) throw new Error(`ResNet depth must be one of 18, 34, 50, 101, 152, got ${depth}`);
  return layout.blocks.flatMap((count, stage) => Array.from({ length: count }, (_, i) => `layer${stage + 1}.${i}`));
}

/** The feature name of a backbone's input (what it receives after the prior and any input adapter): the notebook's layer 0. */
export const INPUT_FEATURE = 'input';

/** What {@link ResNet.forwardWithFeatures} returns. */
export interface ResNetOutput {
  /** [N, numClasses]. */
  logits: Tensor;
  /** The requested activations by feature name. */
  features: Map<string, Tensor>;
}

/** Anything that exposes named intermediate activations and its own classifier, as the self-ensemble needs. */
export interface FeatureBackbone extends Module {
  /** Number of classes the backbone's own classifier answers. */
  readonly numClasses: number;
  /** Names of the activations forwardWithFeatures can return, from input to output. */
  featureNames(): string[];
  /** One image's activation shape per feature ([C, H, W], or [C] after pooling) for a height × width input. */
  featureShapes(height: number, width: number): Map<string, number[]>;
  /** Logits [N, numClasses] and the requested activations (default: all). */
  forwardWithFeatures(x: Tensor, names?: readonly string[]): ResNetOutput;
}

/** One step of a backbone: the name of the activation it produces, and how it makes it from the previous one. */
export type Stage = [name: string, run: (previous: Tensor) => Tensor];

/**
 * Runs `stages` from `x`, then `classifier` on the last activation. Returns its output and the activations named in
 * `names` (default: every stage's). An activation nobody asked for is freed as soon as the next stage has used it
 * (autograd keeps what it needs), so a deep network holds one activation at a time plus the requested ones.
 */
export function runStages(x: Tensor, stages: readonly Stage[], classifier: (last: Tensor) => Tensor,
  names: readonly string[] | undefined, owner: string): { output: Tensor; features: Map<string, Tensor> } {
  const all = stages.map(([name]) => name);
  const wanted = new Set(names ?? all);
  for (const name of wanted) {
    if (!all.includes(name)) throw new Error(`${owner} has no feature '${name}' (one of ${all.join(', ')})`);
  }
  const features = new Map<string, Tensor>();
  let h = x;
  let hKept = true; // the caller's input, or an activation handed back in `features`
  try {
    for (const [name, run] of stages) {
      const next = run(h);
      if (!hKept && next !== h) h.dispose();
      h = next;
      hKept = wanted.has(name);
      if (hKept) features.set(name, h);
    }
    const output = classifier(h);
    if (!hKept) h.dispose();
    return { output, features };
  } catch (err) {
    if (!hKept) h.dispose();
    for (const t of features.values()) t.dispose();
    throw err;
  }
}

/**
 * Feature shapes of a backbone made of a stem (whose output shape is given) and residual blocks whose size changes
 * only through a 3x3, padding-1 convolution of the given stride, then global pooling to `pooledChannels`.
 * `blocks`: [name, output channels, stride].
 */
export function blockFeatureShapes(owner: string, stem: [number, number, number], blocks: readonly [string, number, number][],
  pooledChannels: number, inputSize: [number, number]): Map<string, number[]> {
  let [, h, w] = stem;
  const shapes = new Map<string, number[]>([['stem', [...stem]]]);
  for (const [name, channels, stride] of blocks) {
    [h, w] = [convOutputSize(h, 3, stride, 1), convOutputSize(w, 3, stride, 1)];
    shapes.set(name, [channels, h, w]);
  }
  if (!(h >= 1 && w >= 1 && stem[1] >= 1 && stem[2] >= 1)) throw new Error(`${owner}: a ${inputSize[0]}x${inputSize[1]} input is too small`);
  shapes.set('avgpool', [pooledChannels]);
  return shapes;
}

/** Output size of a convolution or pooling window along one axis (PyTorch's formula, floor mode). */
export function convOutputSize(size: number, kernel: number, stride: number, padding: number): number {
  return Math.floor((size + 2 * padding - kernel) / stride) + 1;
}

/**
 * torchvision.models.ResNet. Besides the logits, it exposes the activation after the stem, after every
 * residual block ('layer1.0', ..., 'layer4.1' for ResNet-18) and after global average pooling ('avgpool',
 * flattened to [N, C]): the taps of the self-ensemble's intermediate heads.
 */
export class ResNet extends Module {
  /** Number of layers. */
  readonly depth: ResNetDepth;
  /** Outputs of `fc`. */
  readonly numClasses: number;
  /** Which stem it was built with ('imagenet' for 224x224 inputs, 'cifar' for 32x32). */
  readonly stem: 'imagenet' | 'cifar';
  /** Factor on every width (1 is torchvision's). */
  readonly widthMultiplier: number;
  /** The stem's convolution (7x7 stride 2, or 3x3 stride 1 for the CIFAR stem). */
  readonly conv1: Conv2d;
  /** BatchNorm after conv1. */
  readonly bn1: BatchNorm2d;
  /** ReLU after bn1. */
  readonly relu: ReLU;
  /** 3x3 stride-2 max-pool (ImageNet stem) or an Identity (CIFAR stem). */
  readonly maxpool: MaxPool2d | Identity;
  /** Stage 1: stride 1, 64 planes (times widthMultiplier). */
  readonly layer1: Sequential;
  /** Stage 2: stride 2, 128 planes. */
  readonly layer2: Sequential;
  /** Stage 3: stride 2, 256 planes. */
  readonly layer3: Sequential;
  /** Stage 4: stride 2, 512 planes. */
  readonly layer4: Sequential;
  /** Global average pooling to [N, C, 1, 1]. */
  readonly avgpool: AdaptiveAvgPool2d;
  /** The classifier, [numClasses, C]. */
  readonly fc: Linear;

  constructor(options: ResNetOptions) {
    super();
    const layout = RESNET_LAYOUTS[options.depth];
    if (!layout) throw new Error(`ResNet depth must be one of 18, 34, 50, 101, 152, got ${options.depth}`);
    const block = layout.block === 'basic' ? BasicBlock : Bottleneck;
    this.depth = options.depth;
    this.numClasses = options.numClasses ?? 1000;
    this.stem = options.stem ?? 'imagenet';
    this.widthMultiplier = options.widthMultiplier ?? 1;
    if (!(Number.isFinite(this.widthMultiplier) && this.widthMultiplier > 0)) {
      throw new RangeError(`ResNet widthMultiplier must be a positive number, got ${this.widthMultiplier}`);
    }
    const width = (channels: number) => Math.max(1, Math.round(channels * this.widthMultiplier));
    const generator = options.generator;
    const inChannels = options.inChannels ?? 3;
    const stemWidth = width(64);
    this.conv1 = this.registerModule('conv1', this.stem === 'imagenet'
      ? new Conv2d(inChannels, stemWidth, 7, { stride: 2, padding: 3, bias: false, generator })
      : new Conv2d(inChannels, stemWidth, 3, { stride: 1, padding: 1, bias: false, generator }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(stemWidth));
    this.relu = this.registerModule('relu', new ReLU());
    this.maxpool = this.registerModule('maxpool', this.stem === 'imagenet' ? new MaxPool2d(3, { stride: 2, padding: 1 }) : new Identity());

    let inPlanes = stemWidth;
    const makeLayer = (planes: number, blocks: number, stride: number): Sequential => {
      const outPlanes = planes * block.expansion;
      // Made before the first block, as torchvision does: the order of random draws decides the weights.
      const downsample = stride !== 1 || inPlanes !== outPlanes
        ? new Sequential(conv1x1(inPlanes, outPlanes, stride, generator), new BatchNorm2d(outPlanes))
        : null;
      const layer = new Sequential(new block(inPlanes, planes, { stride, downsample, generator }));
      inPlanes = outPlanes;
      for (let i = 1; i < blocks; i++) layer.append(new block(inPlanes, planes, { stride: 1, downsample: null, generator }));
      return layer;
    };
    this.layer1 = this.registerModule('layer1', makeLayer(width(64), layout.blocks[0], 1));
    this.layer2 = this.registerModule('layer2', makeLayer(width(128), layout.blocks[1], 2));
    this.layer3 = this.registerModule('layer3', makeLayer(width(256), layout.blocks[2], 2));
    this.layer4 = this.registerModule('layer4', makeLayer(width(512), layout.blocks[3], 2));
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.registerModule('fc', new Linear(width(512) * block.expansion, this.numClasses, { generator }));

    for (const m of this.modules()) {
      if (m instanceof Conv2d) {
        kaimingNormal_(m.weight, { mode: 'fan_out', nonlinearity: 'relu', generator });
      } else if (m instanceof BatchNorm) {
        constant_(m.weight!, 1);
        constant_(m.bias!, 0);
      }
    }
    if (options.zeroInitResidual) {
      for (const [, block] of this.namedBlocks()) constant_(block.lastBatchNorm.weight!, 0);
    }
  }

  /** The residual blocks in order, by name ('layer1.0', ...). */
  namedBlocks(): [string, BasicBlock | Bottleneck][] {
    const out: [string, BasicBlock | Bottleneck][] = [];
    for (const [layerName, layer] of this.namedChildren()) {
      if (!(layer instanceof Sequential)) continue;
      for (const [i, block] of layer.namedChildren()) out.push([`${layerName}.${i}`, block as BasicBlock | Bottleneck]);
    }
    return out;
  }

  /** Names of the activations forwardWithFeatures can return, from input to output. */
  featureNames(): string[] {
    return ['stem', ...this.namedBlocks().map(([name]) => name), 'avgpool'];
  }

  /**
   * The shape of one image's activation at each feature, [C, H, W] ('avgpool': [C]), for an input of
   * height × width pixels, computed from the layer arithmetic without running the network.
   */
  featureShapes(height: number, width: number): Map<string, number[]> {
    let [h, w] = [height, width];
    if (this.stem === 'imagenet') {
      [h, w] = [convOutputSize(h, 7, 2, 3), convOutputSize(w, 7, 2, 3)];
      [h, w] = [convOutputSize(h, 3, 2, 1), convOutputSize(w, 3, 2, 1)];
    }
    const blocks = this.namedBlocks().map(([name, block]): [string, number, number] => {
      const conv = block instanceof Bottleneck ? block.conv2 : block.conv1; // the 3x3 convolution carrying the stride
      return [name, block.lastBatchNorm.numFeatures, conv.stride[0]];
    });
    return blockFeatureShapes(`ResNet-${this.depth}`, [this.conv1.outChannels, h, w], blocks, this.fc.inFeatures, [height, width]);
  }

  /** Logits [N, numClasses] of images [N, inChannels, H, W]. */
  forward(x: Tensor): Tensor {
    return this.forwardWithFeatures(x, []).logits;
  }

  /**
   * Logits [N, numClasses] and the named activations (default: all of featureNames()). Activations that are
   * not requested are freed as soon as the next stage has used them.
   */
  forwardWithFeatures(x: Tensor, names?: readonly string[]): ResNetOutput {
    const stages: Stage[] = [
      ['stem', (h) => {
        const activated = pipe(h, this.conv1, this.bn1).relu_();
        const pooled = this.maxpool.forward(activated);
        if (pooled !== activated) activated.dispose();
        return pooled;
      }],
      ...this.namedBlocks().map(([name, block]): Stage => [name, (h) => block.forward(h)]),
      ['avgpool', (h) => tidy(() => this.avgpool.forward(h).flatten(1))],
    ];
    const { output, features } = runStages(x, stages, (h) => this.fc.forward(h), names, `ResNet-${this.depth}`);
    return { logits: output, features };
  }
}

/** {@link ResNetOptions} without the depth, which the factory fixes. */
export type ResNetFactoryOptions = Omit<ResNetOptions, 'depth'>;

/** torchvision's resnet18 (basic blocks 2, 2, 2, 2). */
export function resnet18(options: ResNetFactoryOptions = {}): ResNet { return new ResNet({ ...options, depth: 18 }); }
/** torchvision's resnet34 (basic blocks 3, 4, 6, 3). */
export function resnet34(options: ResNetFactoryOptions = {}): ResNet { return new ResNet({ ...options, depth: 34 }); }
/** torchvision's resnet50 (bottlenecks 3, 4, 6, 3). */
export function resnet50(options: ResNetFactoryOptions = {}): ResNet { return new ResNet({ ...options, depth: 50 }); }
/** torchvision's resnet101 (bottlenecks 3, 4, 23, 3). */
export function resnet101(options: ResNetFactoryOptions = {}): ResNet { return new ResNet({ ...options, depth: 101 }); }
/** torchvision's resnet152 (bottlenecks 3, 8, 36, 3), the backbone of the paper's ImageNet-pretrained setting. */
export function resnet152(options: ResNetFactoryOptions = {}): ResNet { return new ResNet({ ...options, depth: 152 }); }
