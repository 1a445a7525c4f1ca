// Surgery on a ResNet, kept beside it (as torchvision keeps a new stem or head next to the model it changes): the
// official notebook's layer indices as feature names, and its fresh stem for the stacked views of the multi-
// resolution prior on pretrained weights (Fort & Lakshminarayanan 2024, section 3).
import { disposeAll, noGrad, type Generator } from '../tensor/index.js';
import { loadSafetensors } from '../serialize/safetensors.js';
import { defaultLayerInit_ } from './init.js';
import type { Module, StateDict } from './module.js';
import { INPUT_FEATURE, RESNET_LAYOUTS, ResNet, type ResNetDepth } from './resnet.js';

/**
 * Layers of the official notebook's ResNet-152 that carry a head (layers_to_use); the self-ensemble is these seven
 * heads plus the backbone's own fc, aggregated by CrossMax with k = 3.
 */
export const PAPER_LAYER_INDICES: readonly number[] = Object.freeze([20, 30, 35, 40, 45, 50, 52]);

/**
 * The feature name of the notebook's layer index for a torchvision ResNet (WrapModelForResNet152.layer_operations):
 * 0 is the input, 1 the stem (conv1, bn1, relu, maxpool), 1 + b the b-th residual block counted from 1 over all
 * stages, and blocks + 2 the global average pool. For ResNet-152 (3 + 8 + 36 + 3 = 50 blocks): 20 -> 'layer3.7',
 * 50 -> 'layer4.1', 51 -> 'layer4.2', 52 -> 'avgpool'.
 */
export function notebookLayerFeature(index: number, depth: ResNetDepth = 152): string {
  const stages = RESNET_LAYOUTS[depth]?.blocks;
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

/** What the surgery always re-initialises in torchvision weights: the stem (its input channels become 3·views) and fc. */
const FRESH_TORCHVISION_KEYS = ['conv1.weight', 'fc.weight', 'fc.bias'];
/** The name under which a model that holds a ResNet (a crossmax SelfEnsemble) keeps it. */
const BACKBONE = 'backbone';
/** In a crossmax model as the source only the stem is fresh: its fc and heads already answer the same classes. */
const FRESH_SELF_ENSEMBLE_KEYS = [`${BACKBONE}.conv1.weight`];

/** A model that holds its ResNet as `backbone` (with parameter names 'backbone.*'), as a crossmax SelfEnsemble does. */
export interface WithResNetBackbone extends Module {
  /** The ResNet inside. */
  readonly backbone: Module;
}

/** Settings of {@link adaptPretrainedStem}. */
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
 * The model (a SelfEnsemble, or any module holding its ResNet as `backbone`) must already have the new shapes (as
 * buildSelfEnsemble makes it). Accepts a bare ResNet for the first source only. Nothing is changed if any other
 * weight is missing, extra or of another shape.
 */
export function adaptPretrainedStem(model: ResNet | WithResNetBackbone, weights: StateDict | string, options: AdaptPretrainedOptions = {}): void {
  const holdsBackbone = !(model instanceof ResNet);
  const resnet = holdsBackbone ? model.backbone : model;
  if (!(resnet instanceof ResNet)) throw new Error('adaptPretrainedStem needs a ResNet backbone');
  const loaded = typeof weights === 'string' ? loadSafetensors(weights).tensors : null;
  const state = loaded ?? (weights as StateDict);
  try {
    const fromSelfEnsemble = [...state.keys()].some((key) => key.startsWith(`${BACKBONE}.`));
    if (fromSelfEnsemble && !holdsBackbone) {
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
