// The named self-ensembles (`--preset`): the official notebook's ResNet-152 setting and CIFAR-sized ones, each a
// plain configuration (config.ts) to build with buildSelfEnsemble or to edit first.
import { resnetBlockNames } from '../nn/resnet.js';
import { notebookLayerFeature, PAPER_LAYER_INDICES } from '../nn/resnet-surgery.js';
import type { SelfEnsembleConfig } from './config.js';

/** The named self-ensembles (`--preset`). */
export type PresetName = 'paper' | 'cifar-resnet18' | 'cifar-small' | 'cifar-fast';

/** presetConfig's options. */
export interface PresetOptions {
  /** Default: the number of `classes`, else the preset's (100 for 'paper', CIFAR-100 as the notebook; 10 otherwise). */
  numClasses?: number;
  /** Class names; their number sets numClasses when that is not given. */
  classes?: string[];
}

const presetBuilders: Record<PresetName, { defaultClasses: number; make: () => Omit<SelfEnsembleConfig, 'numClasses'> }> = {
  // The official notebook: an ImageNet-pretrained ResNet-152 whose conv1 becomes a fresh 12 -> 64 7x7 stride-2
  // convolution (the 4-view stack of a 32x32 image, up-sampled bicubically to 224x224 and normalised with
  // ImageNet's statistics per view), heads on 7 layers, and CrossMax with k = 3 over those 7 plus the fc. Load the
  // ImageNet weights with adaptPretrainedStem. Heavy: 60 M backbone parameters, and the flatten heads on 14x14x1024
  // activations hold 20 M numbers each at 100 classes (about 170 M parameters in all). The notebook's quirk of a
  // second, independent prior draw (and backbone pass) for the fc member is kept: backboneClassifierDraw
  // 'independent' (config.ts); the CIFAR presets below use one draw for every member.
  'paper': {
    defaultClasses: 100,
    make: () => ({
      backbone: { arch: 'resnet', depth: 152, stem: 'imagenet' },
      inputSize: 32,
      prior: { preset: 'paper' },
      inputAdapter: { resize: { size: 224, mode: 'bicubic' }, normalize: 'imagenet' },
      heads: { features: PAPER_LAYER_INDICES.map((i) => notebookLayerFeature(i, 152)), kind: 'flatten' },
      backboneClassifierDraw: 'independent',
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

/** Every PresetName, in order. */
export const PRESET_NAMES: readonly PresetName[] = Object.freeze(Object.keys(presetBuilders) as PresetName[]);

/** A preset's configuration (a fresh object, free to edit before buildSelfEnsemble). */
export function presetConfig(name: PresetName, options: PresetOptions = {}): SelfEnsembleConfig {
  const preset = presetBuilders[name];
  if (!preset) throw new Error(`unknown preset '${String(name)}' (one of ${PRESET_NAMES.join(', ')})`);
  const numClasses = options.numClasses ?? options.classes?.length ?? preset.defaultClasses;
  return { ...preset.make(), numClasses, ...(options.classes ? { classes: [...options.classes] } : {}) };
}
