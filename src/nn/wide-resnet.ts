// Wide residual networks (Zagoruyko & Komodakis 2016, "Wide Residual Networks", arXiv 1605.07146) in the
// pre-activation layout of the authors' PyTorch port that RobustBench's CIFAR models use
// (robustbench/model_zoo/architectures/wide_resnet.py, also TRADES' and MART's wideresnet.py): WRN-d-k has
// (d - 4) / 6 basic blocks in each of three groups of widths 16k, 32k, 64k after a 16-channel 3x3 convolution.
// Module names, construction order and initialisation follow that file, so its state dicts (RobustBench
// checkpoints, e.g. WRN-28-10 and WRN-34-10) load by name, and a fresh model drawn with the same seed has
// PyTorch's exact initial weights.
//
// One quirk of that code is kept because trained weights depend on it: in a block that changes the width, the
// shortcut 1x1 convolution sees the pre-activated input relu(bn1(x)), not x itself.
import { type Generator, type Tensor, tidy } from '../tensor/index.js';
import * as F from './functional.js';
import { constant_, kaimingNormal_, zeros_ } from './init.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, ReLU, Sequential } from './layers.js';
import { Module } from './module.js';
import { blockFeatureShapes, runStages, type FeatureBackbone, type ResNetOutput, type Stage } from './resnet.js';

/** Settings of {@link WideResNet}; defaults give WRN-28-10 for CIFAR-10. */
export interface WideResNetOptions {
  /** Total depth d = 6n + 4 (n blocks per group). Default 28. */
  depth?: number;
  /** Width multiplier k of the groups (16k, 32k, 64k channels). Default 10. */
  widenFactor?: number;
  /** Default 10. */
  numClasses?: number;
  /** Input channels of the first convolution. Default 3. */
  inChannels?: number;
  /** Dropout between the two convolutions of every block, in training mode. Default 0. */
  dropRate?: number;
  /** Bias on the final linear layer (RobustBench's bias_last). Default true. */
  biasLast?: boolean;
  /** Random stream for the initial weights. Default: libtorch's global generator (seeded by manualSeed). */
  generator?: Generator;
}

/** bn-relu-conv twice, with an identity or 1x1-convolution shortcut (the pre-activation basic block). */
export class WideBasicBlock extends Module {
  /** BatchNorm before conv1 (pre-activation). */
  readonly bn1: BatchNorm2d;
  /** ReLU after bn1. */
  readonly relu1: ReLU;
  /** First 3x3 convolution (carries the stride). */
  readonly conv1: Conv2d;
  /** BatchNorm before conv2. */
  readonly bn2: BatchNorm2d;
  /** ReLU after bn2. */
  readonly relu2: ReLU;
  /** Second 3x3 convolution. */
  readonly conv2: Conv2d;
  /** 1x1 convolution on the shortcut when the width changes (it sees relu(bn1(x))), else null. */
  readonly convShortcut: Conv2d | null;

  /**
   * @param inPlanes - Input channels.
   * @param outPlanes - Output channels.
   * @param stride - Stride of conv1 (and of the shortcut convolution).
   * @param dropRate - Dropout probability between the convolutions, in training mode.
   * @param generator - Random stream for the initial weights (undefined: the global one).
   */
  constructor(inPlanes: number, outPlanes: number, readonly stride: number, readonly dropRate: number, generator: Generator | undefined) {
    super();
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(inPlanes));
    this.relu1 = this.registerModule('relu1', new ReLU());
    this.conv1 = this.registerModule('conv1', new Conv2d(inPlanes, outPlanes, 3, { stride, padding: 1, bias: false, generator }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(outPlanes));
    this.relu2 = this.registerModule('relu2', new ReLU());
    this.conv2 = this.registerModule('conv2', new Conv2d(outPlanes, outPlanes, 3, { stride: 1, padding: 1, bias: false, generator }));
    // The reference decides by widths alone (equalInOut); a stride with equal widths would break its shortcut too.
    this.convShortcut = inPlanes === outPlanes
      ? null
      : this.registerModule('convShortcut', new Conv2d(inPlanes, outPlanes, 1, { stride, bias: false, generator }));
  }

  /** [N, in, H, W] to [N, out, H/stride, W/stride]. */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const preActivated = this.relu1.forward(this.bn1.forward(x));
      const shortcut = this.convShortcut ? this.convShortcut.forward(preActivated) : x;
      let out = this.relu2.forward(this.bn2.forward(this.conv1.forward(preActivated)));
      if (this.dropRate > 0) out = F.dropout(out, { p: this.dropRate, training: this.training });
      return shortcut.add(this.conv2.forward(out));
    });
  }
}

/** A group of blocks, the reference's NetworkBlock: its blocks live in `layer` ("block1.layer.0.conv1.weight"). */
export class WideResNetGroup extends Module {
  /** The blocks, in order. */
  readonly layer: Sequential;

  constructor(blocks: number, inPlanes: number, outPlanes: number, stride: number, dropRate: number, generator: Generator | undefined) {
    super();
    this.layer = this.registerModule('layer', new Sequential());
    for (let i = 0; i < blocks; i++) {
      this.layer.append(new WideBasicBlock(i === 0 ? inPlanes : outPlanes, outPlanes, i === 0 ? stride : 1, dropRate, generator));
    }
  }

  /** Applies the blocks in order. */
  forward(x: Tensor): Tensor {
    return this.layer.forward(x);
  }
}

/**
 * WRN-d-k for 32x32 inputs. Besides the logits it exposes the activation after the first convolution ('stem'),
 * after every block ('block1.layer.0', ..., pre-activation outputs as the next block receives them) and after the
 * final bn-relu and global average pooling ('avgpool', [N, 64k]).
 *
 * The reference pools with avg_pool2d(out, 8), which equals global average pooling only for 32x32 inputs (an 8x8
 * final map); this class pools globally, so it gives the same logits at 32x32 and also runs on other sizes.
 */
export class WideResNet extends Module implements FeatureBackbone {
  /** Total depth d = 6n + 4. */
  readonly depth: number;
  /** Width multiplier k. */
  readonly widenFactor: number;
  /** Outputs of `fc`. */
  readonly numClasses: number;
  /** Dropout probability inside every block. */
  readonly dropRate: number;
  /** The 3x3 stem convolution to 16 channels. */
  readonly conv1: Conv2d;
  /** Group 1: width 16k, stride 1. */
  readonly block1: WideResNetGroup;
  /** Group 2: width 32k, stride 2. */
  readonly block2: WideResNetGroup;
  /** Group 3: width 64k, stride 2. */
  readonly block3: WideResNetGroup;
  /** Final BatchNorm (pre-activation layout). */
  readonly bn1: BatchNorm2d;
  /** ReLU after bn1. */
  readonly relu: ReLU;
  /** Global average pooling. */
  readonly avgpool: AdaptiveAvgPool2d;
  /** The classifier, [numClasses, 64k]. */
  readonly fc: Linear;

  constructor(options: WideResNetOptions = {}) {
    super();
    this.depth = options.depth ?? 28;
    this.widenFactor = options.widenFactor ?? 10;
    this.numClasses = options.numClasses ?? 10;
    this.dropRate = options.dropRate ?? 0;
    if (!Number.isInteger(this.depth) || this.depth < 10 || (this.depth - 4) % 6 !== 0) {
      throw new RangeError(`WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, 40, ...), got ${this.depth}`);
    }
    if (!Number.isInteger(this.widenFactor) || this.widenFactor < 1) {
      throw new RangeError(`WideResNet widenFactor must be a positive integer, got ${this.widenFactor}`);
    }
    if (!(this.dropRate >= 0 && this.dropRate <= 1)) throw new RangeError(`WideResNet dropRate must be in [0, 1], got ${this.dropRate}`);
    const n = (this.depth - 4) / 6;
    const k = this.widenFactor;
    const widths = [16, 16 * k, 32 * k, 64 * k] as const;
    const generator = options.generator;
    this.conv1 = this.registerModule('conv1', new Conv2d(options.inChannels ?? 3, widths[0], 3, { stride: 1, padding: 1, bias: false, generator }));
    this.block1 = this.registerModule('block1', new WideResNetGroup(n, widths[0], widths[1], 1, this.dropRate, generator));
    this.block2 = this.registerModule('block2', new WideResNetGroup(n, widths[1], widths[2], 2, this.dropRate, generator));
    this.block3 = this.registerModule('block3', new WideResNetGroup(n, widths[2], widths[3], 2, this.dropRate, generator));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(widths[3]));
    this.relu = this.registerModule('relu', new ReLU());
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.registerModule('fc', new Linear(widths[3], this.numClasses, { bias: options.biasLast ?? true, generator }));

    // The reference's loop: convolutions N(0, 2/(k·k·out)) (He et al. with fan-out), BatchNorm 1 and 0, linear bias 0.
    for (const m of this.modules()) {
      if (m instanceof Conv2d) {
        kaimingNormal_(m.weight, { mode: 'fan_out', nonlinearity: 'relu', generator });
      } else if (m instanceof BatchNorm2d) {
        constant_(m.weight!, 1);
        constant_(m.bias!, 0);
      } else if (m instanceof Linear && m.bias) {
        zeros_(m.bias);
      }
    }
  }

  /** The residual blocks in order, by name ('block1.layer.0', ...). */
  namedBlocks(): [string, WideBasicBlock][] {
    return (['block1', 'block2', 'block3'] as const).flatMap((group) =>
      this[group].layer.namedChildren().map(([i, block]): [string, WideBasicBlock] => [`${group}.layer.${i}`, block as WideBasicBlock]));
  }

  featureNames(): string[] {
    return ['stem', ...this.namedBlocks().map(([name]) => name), 'avgpool'];
  }

  featureShapes(height: number, width: number): Map<string, number[]> {
    const blocks = this.namedBlocks().map(([name, block]): [string, number, number] => [name, block.conv2.outChannels, block.stride]);
    return blockFeatureShapes(`WRN-${this.depth}-${this.widenFactor}`, [this.conv1.outChannels, height, width], blocks, this.fc.inFeatures, [height, width]);
  }

  /** Logits [N, numClasses] of images [N, inChannels, H, W]. */
  forward(x: Tensor): Tensor {
    return this.forwardWithFeatures(x, []).logits;
  }

  /** Logits [N, numClasses] and the named activations (default: all of featureNames()). */
  forwardWithFeatures(x: Tensor, names?: readonly string[]): ResNetOutput {
    const stages: Stage[] = [
      ['stem', (h) => this.conv1.forward(h)],
      ...this.namedBlocks().map(([name, block]): Stage => [name, (h) => block.forward(h)]),
      ['avgpool', (h) => tidy(() => this.avgpool.forward(this.relu.forward(this.bn1.forward(h))).flatten(1))],
    ];
    const { output, features } = runStages(x, stages, (h) => this.fc.forward(h), names, `WRN-${this.depth}-${this.widenFactor}`);
    return { logits: output, features };
  }
}
