// A torchvision ResNet from its state dict saved as safetensors (e.g. `save_file(resnet50(weights=...).state_dict(),
// path)`), with the architecture read off the tensors themselves, so a user passes one file and nothing else:
// depth from the blocks per stage and the block type, width from conv1, classes from fc, stem from conv1's kernel.
import { RESNET_LAYOUTS, ResNet, type ResNetDepth } from '../nn/resnet.js';
import { loadSafetensors, readSafetensorsHeader } from '../serialize/safetensors.js';
import { disposeAll, type Device } from '../tensor/index.js';

/** A ResNet's architecture as read off a torchvision state dict's tensors. */
export interface ResNetArchitecture {
  /** From the blocks per stage and the block type. */
  depth: ResNetDepth;
  /** Rows of fc.weight. */
  numClasses: number;
  /** Input channels of conv1. */
  inChannels: number;
  /** conv1's output channels / 64. */
  widthMultiplier: number;
  /** 'imagenet' when conv1 is 7x7, else 'cifar'. */
  stem: 'imagenet' | 'cifar';
}

/** The architecture a torchvision-named ResNet state dict describes (from the file's header only). */
export function resnetArchitecture(path: string): ResNetArchitecture {
  const { tensors } = readSafetensorsHeader(path);
  const shape = (name: string): readonly number[] => {
    const entry = tensors.get(name);
    if (!entry) throw new Error(`'${path}' is not a torchvision ResNet state dict: it has no '${name}'`);
    return entry.shape;
  };
  const conv1 = shape('conv1.weight');
  const fc = shape('fc.weight');
  const blocks = [1, 2, 3, 4].map((stage) => {
    let count = 0;
    while (tensors.has(`layer${stage}.${count}.conv1.weight`)) count++;
    return count;
  });
  const bottleneck = tensors.has('layer1.0.conv3.weight');
  const found = Object.entries(RESNET_LAYOUTS).find(([, l]) => (l.block === 'bottleneck') === bottleneck && l.blocks.join() === blocks.join());
  if (!found) {
    throw new Error(`'${path}': ${bottleneck ? 'bottleneck' : 'basic'} blocks [${blocks.join(', ')}] per stage are no torchvision ResNet (18, 34, 50, 101, 152)`);
  }
  return {
    depth: Number(found[0]) as ResNetDepth,
    numClasses: fc[0]!,
    inChannels: conv1[1]!,
    widthMultiplier: conv1[0]! / 64,
    stem: conv1[2] === 7 ? 'imagenet' : 'cifar',
  };
}

/** Where {@link loadTorchvisionResNet} puts the model. */
export interface LoadResNetOptions {
  /** Device of the weights. Default 'cpu'. */
  device?: Device;
}

/**
 * A ResNet with a torchvision state dict's weights (strict: every tensor must fit), in eval mode. Input: images
 * normalised as the weights expect (ImageNet's mean and std for torchvision's pretrained ones).
 */
export function loadTorchvisionResNet(path: string, options: LoadResNetOptions = {}): ResNet {
  const architecture = resnetArchitecture(path);
  const model = new ResNet(architecture);
  const { tensors } = loadSafetensors(path);
  try {
    model.loadStateDict(tensors);
  } catch (err) {
    model.dispose();
    throw new Error(`'${path}' does not load into a ResNet-${architecture.depth}: ${(err as Error).message}`);
  } finally {
    disposeAll(tensors);
  }
  if (options.device && options.device !== 'cpu') model.to(options.device);
  return model.eval();
}
