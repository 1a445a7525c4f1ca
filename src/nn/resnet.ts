// ResNets as torchvision 0.14 builds them (He et al. 2016, "Deep Residual Learning for Image Recognition";
// torchvision's Bottleneck puts the stride on the 3x3 convolution, "ResNet v1.5"). Module names, construction
// order and initialisation follow torchvision's, so its state dicts load by name and, with the same seed,
// a fresh crossmax ResNet has torchvision's exact initial weights.
import { type Generator, type Tensor, tidy } from '../tensor/index.js';
import { constant_, kaimingNormal_ } from './init.js';
import { AdaptiveAvgPool2d, BatchNorm, BatchNorm2d, Conv2d, Identity, Linear, MaxPool2d, ReLU, Sequential } from './layers.js';
import { Module, type Layer } from './module.js';

export type ResNetDepth = 18 | 34 | 50 | 101 | 152;

export interface ResNetOptions {
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
  static readonly expansion = 1;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu: ReLU;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
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

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const out = this.bn2.forward(this.conv2.forward(this.relu.forward(this.bn1.forward(this.conv1.forward(x)))));
      const identity = this.downsample ? this.downsample.forward(x) : x;
      return out.add(identity).relu();
    });
  }

  /** The BatchNorm that ends the residual branch. */
  get lastBatchNorm(): BatchNorm2d {
    return this.bn2;
  }
}

/** 1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, and a shortcut (ResNet-50/101/152). */
export class Bottleneck extends Module {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly relu: ReLU;
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

  forward(x: Tensor): Tensor {
    return tidy(() => {
      let out = this.relu.forward(this.bn1.forward(this.conv1.forward(x)));
      out = this.relu.forward(this.bn2.forward(this.conv2.forward(out)));
      out = this.bn3.forward(this.conv3.forward(out));
      const identity = this.downsample ? this.downsample.forward(x) : x;
      return out.add(identity).relu();
    });
  }

  get lastBatchNorm(): BatchNorm2d {
    return this.bn3;
  }
}

type BlockClass = (typeof BasicBlock | typeof Bottleneck);

const architectures: Record<ResNetDepth, { block: BlockClass; layers: [number, number, number, number] }> = {
  18: { block: BasicBlock, layers: [2, 2, 2, 2] },
  34: { block: BasicBlock, layers: [3, 4, 6, 3] },
  50: { block: Bottleneck, layers: [3, 4, 6, 3] },
  101: { block: Bottleneck, layers: [3, 4, 23, 3] },
  152: { block: Bottleneck, layers: [3, 8, 36, 3] },
};

export interface ResNetOutput {
  logits: Tensor;
  /** The requested activations by feature name. */
  features: Map<string, Tensor>;
}

/**
 * torchvision.models.ResNet. Besides the logits, it exposes the activation after the stem, after every
 * residual block ('layer1.0', ..., 'layer4.1' for ResNet-18) and after global average pooling ('avgpool',
 * flattened to [N, C]): the taps of the self-ensemble's intermediate heads.
 */
export class ResNet extends Module {
  readonly depth: ResNetDepth;
  readonly numClasses: number;
  readonly stem: 'imagenet' | 'cifar';
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu: ReLU;
  readonly maxpool: MaxPool2d | Identity;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  readonly fc: Linear;

  constructor(options: ResNetOptions) {
    super();
    const arch = architectures[options.depth];
    if (!arch) throw new Error(`ResNet depth must be one of 18, 34, 50, 101, 152, got ${options.depth}`);
    this.depth = options.depth;
    this.numClasses = options.numClasses ?? 1000;
    this.stem = options.stem ?? 'imagenet';
    const generator = options.generator;
    const inChannels = options.inChannels ?? 3;
    this.conv1 = this.registerModule('conv1', this.stem === 'imagenet'
      ? new Conv2d(inChannels, 64, 7, { stride: 2, padding: 3, bias: false, generator })
      : new Conv2d(inChannels, 64, 3, { stride: 1, padding: 1, bias: false, generator }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(64));
    this.relu = this.registerModule('relu', new ReLU());
    this.maxpool = this.registerModule('maxpool', this.stem === 'imagenet' ? new MaxPool2d(3, { stride: 2, padding: 1 }) : new Identity());

    let inPlanes = 64;
    const makeLayer = (planes: number, blocks: number, stride: number): Sequential => {
      const block = arch.block;
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
    this.layer1 = this.registerModule('layer1', makeLayer(64, arch.layers[0], 1));
    this.layer2 = this.registerModule('layer2', makeLayer(128, arch.layers[1], 2));
    this.layer3 = this.registerModule('layer3', makeLayer(256, arch.layers[2], 2));
    this.layer4 = this.registerModule('layer4', makeLayer(512, arch.layers[3], 2));
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.registerModule('fc', new Linear(512 * arch.block.expansion, this.numClasses, { generator }));

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

  forward(x: Tensor): Tensor {
    return this.forwardWithFeatures(x, []).logits;
  }

  /**
   * Logits [N, numClasses] and the named activations (default: all of featureNames()). Activations that are
   * not requested are freed as soon as the next stage has used them.
   */
  forwardWithFeatures(x: Tensor, names?: readonly string[]): ResNetOutput {
    const all = this.featureNames();
    const wanted = new Set(names ?? all);
    for (const name of wanted) {
      if (!all.includes(name)) throw new Error(`ResNet-${this.depth} has no feature '${name}' (one of ${all.join(', ')})`);
    }
    const features = new Map<string, Tensor>();
    const record = (name: string, t: Tensor) => { if (wanted.has(name)) features.set(name, t); };
    const release = (name: string, t: Tensor) => { if (!wanted.has(name)) t.dispose(); };

    let h = tidy(() => this.maxpool.forward(this.relu.forward(this.bn1.forward(this.conv1.forward(x)))));
    let hName = 'stem';
    record(hName, h);
    for (const [name, block] of this.namedBlocks()) {
      const next = block.forward(h);
      release(hName, h);
      [h, hName] = [next, name];
      record(hName, h);
    }
    const pooled = tidy(() => this.avgpool.forward(h).flatten(1));
    release(hName, h);
    record('avgpool', pooled);
    const logits = this.fc.forward(pooled);
    release('avgpool', pooled);
    return { logits, features };
  }
}

export type ResNetFactoryOptions = Omit<ResNetOptions, 'depth'>;

export function resnet18(options: ResNetFactoryOptions = {}): ResNet { return new ResNet({ ...options, depth: 18 }); }
export function resnet34(options: ResNetFactoryOptions = {}): ResNet { return new ResNet({ ...options, depth: 34 }); }
export function resnet50(options: ResNetFactoryOptions = {}): ResNet { return new ResNet({ ...options, depth: 50 }); }
export function resnet101(options: ResNetFactoryOptions = {}): ResNet { return new ResNet({ ...options, depth: 101 }); }
export function resnet152(options: ResNetFactoryOptions = {}): ResNet { return new ResNet({ ...options, depth: 152 }); }
