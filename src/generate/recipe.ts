// The generation recipe behind `crossmax generate` (the paper's second contribution; Direct Ascent Synthesis's
// recipe scaled to the model's input size): one GenerationSource per model kind says what each run maximises and
// DAS's defaults for that kind, and one loop (generateImages) serves all. Flags and files are the CLI's business:
// these functions take models already loaded and classes already resolved.
import type { Classifier } from '../nn/classifier.js';
import type { SelfEnsemble } from '../ensemble/self-ensemble.js';
import { IMAGENET_NORMALIZATION, InputAdapter } from '../ensemble/input-adapter.js';
import type { ClipModel } from '../models/clip.js';
import type { ResNet } from '../nn/resnet.js';
import { cat, noGrad, tidy, type Device, type Tensor } from '../tensor/index.js';
import { ProgressBar } from '../util/progress.js';
import { DAS_CLASSIFIER_DEFAULTS, DAS_CLIP_DEFAULTS, generate } from './generate.js';
import { classObjective, clipObjective, type Objective } from './objectives.js';
import { MultiResolutionImage, everyResolution, pixelImage, resolutionSides, type Squash } from './parametrisation.js';
import { resolveAugmentOptions } from './augment.js';

/** DAS's settings for a model kind, used where the caller is silent. */
export interface GenerationDefaults {
  /** Optimisation steps. */
  steps: number;
  /** Augmented copies per image per step. */
  copies: number;
  /** Learning rate of the SGD step. */
  lr: number;
  /** Copies per forward/backward pass (memory only). */
  chunkSize: number;
  /** Resolutions 1, 1 + step, 1 + 2·step, ... up to the canvas (DAS: every one for CLIP, every 4th for classifiers). */
  resolutionStep: number;
}

/** One run of generation: a name and the objective to maximise. */
export interface GenerationTarget {
  /** Class name or prompt. */
  name: string;
  /** The objective maximised. */
  objective: Objective;
  /** The class a classifier should see (absent for CLIP prompts). */
  classIndex?: number;
}

/** What images are generated for: one run per target, each maximising its objective. */
export interface GenerationSource {
  /** What kind of model generates. */
  kind: 'crossmax' | 'resnet' | 'clip';
  /** Where generation runs. */
  device: Device;
  /** The model's input side: the crops the objectives see. */
  inputSize: number;
  /** One run per target. */
  targets: GenerationTarget[];
  /** Class names of the model's output (for judging); [] for CLIP. */
  classNames: string[];
  /** The model as a classifier of [0, 1] images, for judging the results; null for CLIP. */
  classifier: Classifier | null;
  /** The settings used where the caller gives none. */
  defaults: GenerationDefaults;
  /** Frees what the source made (objectives, adapters); never the model it was given. */
  dispose(): void;
}

/** The settings for a crossmax self-ensemble (100 steps, 16 copies, lr 0.4, every resolution). */
export const CROSSMAX_GENERATION_DEFAULTS: Readonly<GenerationDefaults> = Object.freeze({ steps: 100, copies: 16, lr: 0.4, chunkSize: 32, resolutionStep: 1 });
/** DAS's settings for a torchvision classifier (every 4th resolution). */
export const RESNET_GENERATION_DEFAULTS: Readonly<GenerationDefaults> = Object.freeze({
  steps: DAS_CLASSIFIER_DEFAULTS.steps, copies: DAS_CLASSIFIER_DEFAULTS.copies, lr: DAS_CLASSIFIER_DEFAULTS.lr,
  chunkSize: DAS_CLASSIFIER_DEFAULTS.chunkSize, resolutionStep: 4,
});
/** DAS's settings for CLIP (every resolution). */
export const CLIP_GENERATION_DEFAULTS: Readonly<GenerationDefaults> = Object.freeze({
  steps: DAS_CLIP_DEFAULTS.steps, copies: DAS_CLIP_DEFAULTS.copies, lr: DAS_CLIP_DEFAULTS.lr, chunkSize: DAS_CLIP_DEFAULTS.chunkSize, resolutionStep: 1,
});
/** DAS's weight of a negative prompt. */
export const NEGATIVE_PROMPT_WEIGHT = 0.3;

/** The class names of a crossmax model: its recorded classes, else '0', '1', .... */
export function modelClassNames(model: SelfEnsemble): string[] {
  return [...(model.config?.classes ?? Array.from({ length: model.config?.numClasses ?? 0 }, (_, i) => String(i)))];
}

/** Settings of {@link crossmaxSource}. */
export interface CrossmaxSourceOptions {
  /** Class indices to generate. Default: every class. */
  classIndices?: readonly number[];
  /** Maximise one member's logit (a head's feature name, or 'fc') instead of the aggregated output. */
  member?: string;
  /** Default 'cpu'. */
  device?: Device;
}

/** Classes of a crossmax model, its aggregated output or one member. Puts the model in eval mode. */
export function crossmaxSource(model: SelfEnsemble, options: CrossmaxSourceOptions = {}): GenerationSource {
  const classNames = modelClassNames(model);
  const indices = options.classIndices ?? classNames.map((_, i) => i);
  const member = options.member;
  if (member !== undefined && !model.memberNames().includes(member)) {
    throw new RangeError(`member '${member}': the model's members are ${model.memberNames().join(', ')}`);
  }
  model.eval();
  return {
    kind: 'crossmax', device: options.device ?? 'cpu', inputSize: model.inputSize[0], classNames, classifier: model, defaults: CROSSMAX_GENERATION_DEFAULTS,
    targets: indices.map((classIndex) => ({ name: classNames[classIndex]!, classIndex, objective: classObjective(model, { classIndex, member, name: classNames[classIndex] }) })),
    dispose: () => undefined,
  };
}

/** Settings of {@link resnetSource}. */
export interface ResNetSourceOptions {
  /** ImageNet class indices to generate. */
  classIndices: readonly number[];
  /** One per class of the model. Default 'class 0', 'class 1', .... */
  classNames?: readonly string[];
  /** The model's input side. Default 224. */
  inputSize?: number;
  /** Where generation runs. Default 'cpu'. */
  device?: Device;
}

/** ImageNet classes of a torchvision ResNet (DAS's classifier example), with ImageNet normalisation in front. */
export function resnetSource(resnet: ResNet, options: ResNetSourceOptions): GenerationSource {
  const device = options.device ?? 'cpu';
  const classNames = [...(options.classNames ?? Array.from({ length: resnet.numClasses }, (_, i) => `class ${i}`))];
  const adapter = new InputAdapter(3, { normalize: IMAGENET_NORMALIZATION });
  if (device !== 'cpu') adapter.to(device);
  const classifier: Classifier = { forward: (x) => tidy(() => resnet.forward(adapter.forward(x))) };
  return {
    kind: 'resnet', device, inputSize: options.inputSize ?? 224, classNames, classifier, defaults: RESNET_GENERATION_DEFAULTS,
    targets: options.classIndices.map((classIndex) => ({ name: classNames[classIndex]!, classIndex, objective: classObjective(classifier, { classIndex, name: classNames[classIndex] }) })),
    dispose: () => adapter.dispose(),
  };
}

/** Settings of {@link clipSource}. */
export interface ClipSourceOptions {
  /** One run per prompt. */
  prompts: readonly string[];
  /** What no image should be, each at DAS's weight −0.3. Default none. */
  negatives?: readonly string[];
  /** Where generation runs. Default 'cpu'. */
  device?: Device;
}

/** CLIP prompts, each with every negative prompt at DAS's weight. The model needs its tokenizer. */
export function clipSource(clip: ClipModel, options: ClipSourceOptions): GenerationSource {
  const negatives = options.negatives ?? [];
  const objectives: Objective[] = [];
  try {
    for (const prompt of options.prompts) {
      objectives.push(clipObjective(clip, [{ text: prompt }, ...negatives.map((text) => ({ text, weight: -NEGATIVE_PROMPT_WEIGHT }))], { name: prompt }));
    }
  } catch (err) {
    for (const o of objectives) o.dispose?.();
    throw err;
  }
  return {
    kind: 'clip', device: options.device ?? 'cpu', inputSize: clip.imageSize, classNames: [], classifier: null, defaults: CLIP_GENERATION_DEFAULTS,
    targets: options.prompts.map((name, i) => ({ name, objective: objectives[i]! })),
    dispose: () => { for (const o of objectives) o.dispose?.(); },
  };
}

/** The settings of one generation; each left out takes the source's default (and seed 0, multires, one image per target). */
export interface GenerationSettings {
  /** Optimisation steps. */
  steps?: number;
  /** Augmented copies per image per step. */
  copies?: number;
  /** Learning rate. */
  lr?: number;
  /** Seed of the augmentations and initial noise. Default 0. */
  seed?: number;
  /** Multi-resolution (default) or plain pixels, for comparison. */
  parametrisation?: 'multires' | 'pixels';
  /** Images per target, optimised together from different augmentations. */
  perTarget?: number;
  /**
   * The multi-resolution parametrisation's sides on the canvas (each in [1, canvas]), e.g. powers of two for a
   * 32-pixel model. Default: the model kind's (every resolution for crossmax and CLIP, every 4th for a ResNet).
   */
  resolutions?: readonly number[];
  /** How the raw sum becomes pixels: 'tanh' (default, DAS) or 'clamp'. */
  squash?: Squash;
  /** The step: 'sgd' (default, DAS) or 'adam'. */
  optimizer?: 'sgd' | 'adam';
  /** Largest random shift of each copy in pixels; the canvas is the input plus this on every side. Default input/4. */
  jitter?: number;
  /** Noise amplitude of each copy (uniform, as DAS). Default 0.2. */
  noise?: number;
  /** Flip each copy left-right with probability 1/2. Default false (DAS does not). */
  flip?: boolean;
  /** Random resized crop of each copy, side in [lo, hi] of the input. Default null: none (DAS). */
  scale?: readonly [number, number] | null;
}

/** What {@link generateImages} returns. */
export interface GeneratedImages {
  /** [targets × perTarget, 3, H, W], target by target. */
  images: Tensor;
  /** Each run's target (class name or prompt). */
  targets: string[];
  /** For each image, its target's index in `targets`. */
  targetOfImage: number[];
  /** Each run's loss per step. */
  losses: number[][];
  /** Each image's objective score on the final image, as the model sees it (no augmentation). */
  finalScores: number[];
  /** Time the generation took. */
  seconds: number;
  /** The settings used (given, else the model kind's defaults). */
  settings: {
    steps: number; copies: number; lr: number; parametrisation: 'multires' | 'pixels'; perTarget: number; canvas: number; resolutions: number; seed: number;
    /** The parametrisation's sides on the canvas (empty for pixels). */
    resolutionSizes: number[];
    /** How the raw sum became pixels. */
    squash: Squash;
    /** The step's kind. */
    optimizer: 'sgd' | 'adam';
    /** Largest random shift of each copy, in pixels. */
    jitter: number;
    /** Noise amplitude of each copy. */
    noise: number;
    /** Whether copies were flipped at random. */
    flip: boolean;
    /** Random resized crop range, or null for none. */
    scale: readonly [number, number] | null;
  };
}

/** Runs the generation for every target of `source` (the caller disposes `images`). */
export function generateImages(source: GenerationSource, settings: GenerationSettings = {}): GeneratedImages {
  const d = source.defaults;
  const steps = settings.steps ?? d.steps;
  const copies = settings.copies ?? d.copies;
  const lr = settings.lr ?? d.lr;
  const seed = settings.seed ?? 0;
  const kind = settings.parametrisation ?? 'multires';
  const perTarget = settings.perTarget ?? 1;
  const h = source.inputSize;
  // DAS pads its 224 px view by 56 px (1/4) on each side and crops a shifted window each copy; the same proportion here.
  const jitter = settings.jitter ?? Math.max(1, Math.round(h / 4));
  if (!Number.isInteger(jitter) || jitter < 0) throw new RangeError(`jitter ${jitter}: a whole number of pixels, 0 or more`);
  const canvas = h + 2 * jitter;
  let resolutions: number[];
  try {
    resolutions = resolutionSides(settings.resolutions ?? everyResolution(canvas).filter((r) => (r - 1) % d.resolutionStep === 0), canvas);
  } catch {
    throw new RangeError(`resolutions ${settings.resolutions?.join(',')}: sides in [1, ${canvas}] (the canvas: the ${h}-pixel input and ${jitter} pixels of jitter on each side)`);
  }
  const squash = settings.squash ?? 'tanh';
  const optimizer = settings.optimizer ?? 'sgd';
  // The augmentations' own defaults (DAS's noise, no flip or crop), resolved once for the loop and the record.
  const augment = resolveAugmentOptions({ copies, jitter, cropSize: h, noise: settings.noise, flip: settings.flip, scale: settings.scale }, canvas);
  const bar = new ProgressBar({ label: 'generate', unit: 'step', total: steps * source.targets.length });
  const started = performance.now();
  const images: Tensor[] = [];
  const losses: number[][] = [];
  const finalScores: number[] = [];
  for (const target of source.targets) {
    const options = { size: canvas, batch: perTarget, device: source.device, squash };
    const parametrisation = kind === 'multires' ? new MultiResolutionImage({ ...options, resolutions }) : pixelImage(options);
    try {
      const result = generate({
        parametrisation, objectives: [target.objective], steps, optimizer: { kind: optimizer, lr }, seed, chunkSize: d.chunkSize,
        augment,
        onProgress: () => bar.tick(1, { target: target.name.slice(0, 24) }),
      });
      const cropped = tidy(() => result.images.narrow(2, jitter, h).narrow(3, jitter, h).contiguous());
      result.images.dispose();
      images.push(cropped);
      losses.push(result.loss);
      finalScores.push(...noGrad(() => tidy(() => target.objective.score(cropped).toArray().map(Number))));
    } finally {
      parametrisation.dispose();
    }
  }
  bar.finish();
  const stacked = cat(images, 0);
  for (const t of images) t.dispose();
  return {
    images: stacked, targets: source.targets.map((t) => t.name), targetOfImage: source.targets.flatMap((_, i) => new Array<number>(perTarget).fill(i)),
    losses, finalScores, seconds: (performance.now() - started) / 1000,
    settings: {
      steps, copies, lr, parametrisation: kind, perTarget, canvas, resolutions: kind === 'multires' ? resolutions.length : 0, seed,
      resolutionSizes: kind === 'multires' ? resolutions : [], squash, optimizer, jitter, noise: augment.noise, flip: augment.flip, scale: augment.scale,
    },
  };
}

/** The intended class of each generated image (for judging), from a classifier source's targets. */
export function intendedClasses(source: GenerationSource, run: GeneratedImages): number[] {
  return run.targetOfImage.map((t) => source.targets[t]!.classIndex!);
}
