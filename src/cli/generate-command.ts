// `crossmax generate`: images optimised to be a class of a crossmax model or of a torchvision ResNet, or to match
// CLIP prompts, through the multi-resolution parametrisation (the paper's second contribution; Direct Ascent
// Synthesis's recipe scaled to the model's input size), or through raw pixels for comparison. One GenerationSource
// per model kind says what each run maximises and DAS's defaults for that kind; one loop serves all. Writes a PNG
// grid, report/generate.html with each run's loss curve, generate.json, and every image with a manifest.
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  DAS_CLASSIFIER_DEFAULTS, DAS_CLIP_DEFAULTS, MultiResolutionImage, classObjective, clipObjective, everyResolution, generate, pixelImage, type Objective,
} from '../generate/index.js';
import { IMAGENET_NORMALIZATION, InputAdapter, type SelfEnsemble } from '../ensemble/index.js';
import { loadClip, loadTorchvisionResNet } from '../models/index.js';
import { repeatedAccuracy } from '../robustness/definitions.js';
import type { Classifier } from '../nn/classifier.js';
import { writeJsonAtomic } from '../report/json.js';
import { loadModelFile, modelLabel } from './model-files.js';
import { HtmlReport, saveImageGrid, savePng } from '../report/index.js';
import { ProgressBar } from '../util/progress.js';
import { cat, noGrad, setNumThreads, tidy, type Device, type Tensor } from '../tensor/index.js';
import { UsageError, choiceFlag, listFlag, numberFlag, parseCommandArgs, repeatedFlag, stringFlag, type ParsedArgs } from './args.js';

export const GENERATE_OPTIONS = {
  model: { type: 'string' }, resnet: { type: 'string' }, clip: { type: 'string' }, prompt: { type: 'string', multiple: true },
  negative: { type: 'string', multiple: true }, 'class-names': { type: 'string' }, size: { type: 'string' },
  class: { type: 'string' }, steps: { type: 'string' }, copies: { type: 'string' },
  lr: { type: 'string' }, parametrisation: { type: 'string' }, member: { type: 'string' }, out: { type: 'string' },
  seed: { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' }, config: { type: 'string' },
  'per-class': { type: 'string' }, judge: { type: 'string' }, passes: { type: 'string' }, json: { type: 'boolean' },
} as const;

export const GENERATE_USAGE = `crossmax generate (--model FILE | --resnet FILE | --clip DIR) [options]

Optimises images from grey so that a model sees a class (or CLIP a prompt) in them: the sum of up-sampled tensors
at many resolutions from 1 px to the canvas, squashed by tanh, with random shifts and noise on each of several
copies per step (Direct Ascent Synthesis's recipe). Each model kind gets DAS's settings for it as defaults.
  --model FILE            a crossmax model file: maximise a class logit of the aggregated output or of one member
                          (defaults: 100 steps, 16 copies, lr 0.4, every resolution)
  --resnet FILE           a torchvision ResNet-18/34/50/101/152 state dict as safetensors (architecture read from
                          the file), ImageNet normalisation: maximise a class logit (DAS's classifier example:
                          100 steps, 16 copies, lr 0.005, resolutions 1, 5, 9, ...)
  --clip DIR              a CLIP model folder with HF transformers names (model.safetensors, config.json, vocab.json,
                          merges.txt; e.g. openai/clip-vit-base-patch32): maximise similarity to --prompt
                          (DAS's CLIP settings: 100 steps, 64 copies, lr 0.4, every resolution)
  --prompt TEXT           with --clip: what the image should be; repeat for one image per prompt
  --negative TEXT         with --clip: what it should not be (weight -0.3, as DAS); repeatable
  --class NAME|INDEX|all  --model: default all (one image per class); --resnet: class indices, comma-separated
  --class-names FILE      --resnet: a text file with one class name per line (e.g. ImageNet's 1,000)
  --size N                --resnet: the model's input side (default 224); the canvas adds a quarter on each side
  --steps N               optimisation steps (default per model kind, above)
  --copies N              augmented copies per step (default per model kind)
  --lr X                  SGD step on the parameters (default per model kind)
  --parametrisation P     multires (default) | pixels (raw pixels, for comparison)
  --member NAME           --model: read one member (e.g. fc, layer3.1) instead of the aggregated output
  --per-class N           images per class or prompt, optimised together from different augmentations (default 1)
  --judge FILES           --model: other crossmax model files (comma-separated; trained independently, never used
                          here) that classify the generated images: the share they give the intended class measures
                          whether the images carry the class or only fool the generating model
  --passes R              forward passes per image when judging (default 10)
  --out DIR               generate.png, generate.html, generate.json, and images/ with every image as a PNG and
                          manifest.json (model, prompt, settings: what a vision-language model is given) (default report)
  --seed N                default 0
  --device DEV            cpu (default) | cuda | cuda:N
  --threads N             intra-op threads (default all cores)
  --json                  print the summary as JSON`;

/** DAS's settings for a model kind, used where the flags are silent. */
interface GenerationDefaults {
  steps: number;
  copies: number;
  lr: number;
  /** Copies per forward/backward pass (memory only). */
  chunkSize: number;
  /** Resolutions 1, 1 + step, 1 + 2·step, ... up to the canvas (DAS: every one for CLIP, every 4th for classifiers). */
  resolutionStep: number;
}

/** What images are generated for: one run per target, each maximising its objective. */
export interface GenerationSource {
  kind: 'crossmax' | 'resnet' | 'clip';
  device: Device;
  /** The model's input side: the crops the objectives see. */
  inputSize: number;
  targets: { name: string; objective: Objective; classIndex?: number }[];
  /** Class names of the model's output (for judging); [] for CLIP. */
  classNames: string[];
  /** The model as a classifier of [0, 1] images, for judging the results; null for CLIP. */
  classifier: Classifier | null;
  defaults: GenerationDefaults;
  dispose(): void;
}

const CROSSMAX_DEFAULTS: GenerationDefaults = { steps: 100, copies: 16, lr: 0.4, chunkSize: 32, resolutionStep: 1 };
const RESNET_DEFAULTS: GenerationDefaults = {
  steps: DAS_CLASSIFIER_DEFAULTS.steps, copies: DAS_CLASSIFIER_DEFAULTS.copies, lr: DAS_CLASSIFIER_DEFAULTS.lr,
  chunkSize: DAS_CLASSIFIER_DEFAULTS.chunkSize, resolutionStep: 4,
};
const CLIP_DEFAULTS: GenerationDefaults = {
  steps: DAS_CLIP_DEFAULTS.steps, copies: DAS_CLIP_DEFAULTS.copies, lr: DAS_CLIP_DEFAULTS.lr, chunkSize: DAS_CLIP_DEFAULTS.chunkSize, resolutionStep: 1,
};
/** DAS's weight of a negative prompt. */
const NEGATIVE_PROMPT_WEIGHT = 0.3;

/** Classes of a crossmax model (all by default), its aggregated output or one member. Does not own the model. */
export function crossmaxSource(model: SelfEnsemble, values: ParsedArgs['values'], device: Device = 'cpu'): GenerationSource {
  const classNames = model.config?.classes ?? Array.from({ length: model.config?.numClasses ?? 0 }, (_, i) => String(i));
  const which = stringFlag(values, 'class') ?? 'all';
  const indices = which === 'all' ? classNames.map((_, i) => i) : [resolveClass(which, classNames)];
  const member = stringFlag(values, 'member');
  if (member !== undefined && !model.memberNames().includes(member)) {
    throw new UsageError(`--member ${member}: the model's members are ${model.memberNames().join(', ')}`);
  }
  model.eval();
  return {
    kind: 'crossmax', device, inputSize: model.inputSize[0], classNames: [...classNames], classifier: model, defaults: CROSSMAX_DEFAULTS,
    targets: indices.map((classIndex) => ({ name: classNames[classIndex]!, classIndex, objective: classObjective(model, { classIndex, member, name: classNames[classIndex] }) })),
    dispose: () => undefined,
  };
}

/** ImageNet classes of a torchvision ResNet (DAS's classifier example). Owns the model it loads. */
export function resnetSource(path: string, values: ParsedArgs['values'], device: Device): GenerationSource {
  const classes = listFlag(values, 'class');
  if (classes.length === 0) throw new UsageError('--resnet needs --class: one or more class indices, e.g. --class 107 (jellyfish in ImageNet)');
  const resnet = loadTorchvisionResNet(path, { device });
  try {
    const namesFile = stringFlag(values, 'class-names');
    const classNames = namesFile ? readClassNames(namesFile, resnet.numClasses) : Array.from({ length: resnet.numClasses }, (_, i) => `class ${i}`);
    const indices = classes.map((c) => resolveClass(c, classNames));
    const adapter = new InputAdapter(3, { normalize: IMAGENET_NORMALIZATION });
    if (device !== 'cpu') adapter.to(device);
    const classifier: Classifier = { forward: (x) => tidy(() => resnet.forward(adapter.forward(x))) };
    return {
      kind: 'resnet', device, inputSize: numberFlag(values, 'size', { integer: true, min: 8 }) ?? 224, classNames, classifier, defaults: RESNET_DEFAULTS,
      targets: indices.map((classIndex) => ({ name: classNames[classIndex]!, classIndex, objective: classObjective(classifier, { classIndex, name: classNames[classIndex] }) })),
      dispose: () => { resnet.dispose(); adapter.dispose(); },
    };
  } catch (err) {
    resnet.dispose();
    throw err;
  }
}

/** CLIP prompts, each with every negative prompt at DAS's weight. Owns the model it loads. */
export function clipSource(path: string, values: ParsedArgs['values'], device: Device): GenerationSource {
  const prompts = repeatedFlag(values, 'prompt');
  if (prompts.length === 0) throw new UsageError('--clip needs --prompt TEXT (repeat it for several images)');
  const negatives = repeatedFlag(values, 'negative');
  const clip = loadClip(path, { device });
  const objectives: Objective[] = [];
  try {
    if (!clip.tokenizer) throw new UsageError(`--clip ${path}: prompts need the tokenizer's vocab.json and merges.txt in that folder`);
    for (const prompt of prompts) {
      objectives.push(clipObjective(clip, [{ text: prompt }, ...negatives.map((text) => ({ text, weight: -NEGATIVE_PROMPT_WEIGHT }))], { name: prompt }));
    }
  } catch (err) {
    for (const o of objectives) o.dispose?.();
    clip.dispose();
    throw err;
  }
  return {
    kind: 'clip', device, inputSize: clip.imageSize, classNames: [], classifier: null, defaults: CLIP_DEFAULTS,
    targets: prompts.map((name, i) => ({ name, objective: objectives[i]! })),
    dispose: () => { for (const o of objectives) o.dispose?.(); clip.dispose(); },
  };
}

function readClassNames(path: string, count: number): string[] {
  let names: string[];
  try {
    names = readFileSync(path, 'utf8').split(/\r?\n/u).map((l) => l.trim()).filter(Boolean);
  } catch (err) {
    throw new UsageError(`--class-names ${path}: ${(err as Error).message}`);
  }
  if (names.length !== count) throw new UsageError(`--class-names ${path}: ${names.length} names, the model has ${count} classes`);
  return names;
}

export interface GeneratedImages {
  /** [targets × perTarget, 3, H, W], target by target. */
  images: Tensor;
  /** Each run's target (class name or prompt). */
  targets: string[];
  /** For each image, its target's index in `targets`. */
  targetOfImage: number[];
  losses: number[][];
  /** Each image's objective score on the final image, as the model sees it (no augmentation). */
  finalScores: number[];
  seconds: number;
  /** The settings used (flags, else the model kind's defaults). */
  settings: { steps: number; copies: number; lr: number; parametrisation: 'multires' | 'pixels'; perTarget: number; canvas: number; resolutions: number; seed: number };
}

/** Runs the generation for every target of `source` (the caller disposes `images`). */
export function generateImages(source: GenerationSource, values: ParsedArgs['values']): GeneratedImages {
  const d = source.defaults;
  const steps = numberFlag(values, 'steps', { integer: true, min: 1 }) ?? d.steps;
  const copies = numberFlag(values, 'copies', { integer: true, min: 1 }) ?? d.copies;
  const lr = numberFlag(values, 'lr', { min: 0 }) ?? d.lr;
  const seed = numberFlag(values, 'seed', { integer: true, min: 0 }) ?? 0;
  const kind = choiceFlag(values, 'parametrisation', ['multires', 'pixels'] as const) ?? 'multires';
  const perTarget = numberFlag(values, 'per-class', { integer: true, min: 1 }) ?? 1;
  const h = source.inputSize;
  // DAS pads its 224 px view by 56 px (1/4) on each side and crops a shifted window each copy; the same proportion here.
  const jitter = Math.max(1, Math.round(h / 4));
  const canvas = h + 2 * jitter;
  const resolutions = everyResolution(canvas).filter((r) => (r - 1) % d.resolutionStep === 0);
  const bar = new ProgressBar({ label: 'generate', unit: 'step', total: steps * source.targets.length });
  const started = performance.now();
  const images: Tensor[] = [];
  const losses: number[][] = [];
  const finalScores: number[] = [];
  for (const target of source.targets) {
    const options = { size: canvas, batch: perTarget, device: source.device };
    const parametrisation = kind === 'multires' ? new MultiResolutionImage({ ...options, resolutions }) : pixelImage(options);
    try {
      const result = generate({
        parametrisation, objectives: [target.objective], steps, optimizer: { kind: 'sgd', lr }, seed, chunkSize: d.chunkSize,
        augment: { copies, jitter, cropSize: h },
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
    settings: { steps, copies, lr, parametrisation: kind, perTarget, canvas, resolutions: resolutions.length, seed },
  };
}

/** The intended class of each generated image (for judging), from a classifier source's targets. */
export function intendedClasses(source: GenerationSource, run: GeneratedImages): number[] {
  return run.targetOfImage.map((t) => source.targets[t]!.classIndex!);
}

function resolveClass(which: string, classNames: readonly string[]): number {
  const byName = classNames.indexOf(which);
  if (byName >= 0) return byName;
  const index = Number(which);
  if (Number.isInteger(index) && index >= 0 && index < classNames.length) return index;
  const named = classNames.length <= 20 ? classNames.join(', ') : `${classNames.slice(0, 5).join(', ')}, ...`;
  throw new UsageError(`--class ${which}: a class name (${named}) or an index below ${classNames.length}`);
}

/** How one model classifies the generated images: the share of passes that give each image its intended class. */
export interface Judgement {
  judge: string;
  path: string;
  /** Over images and passes. */
  agreement: number;
  /** Images given their intended class on every pass. */
  allPasses: number;
  /** Per intended class, over its images and the passes. */
  perClass: Record<string, number>;
}

/** R passes of `model` over the images; agreement with the intended classes (repeatedAccuracy's protocol, seeded). */
export function judgeImages(model: Classifier, images: Tensor, intended: readonly number[], classNames: readonly string[], passes: number, seed = 0): Omit<Judgement, 'judge' | 'path'> {
  const { correct, accuracy } = repeatedAccuracy(model, images, intended, passes, { seed });
  const perClass: Record<string, number> = {};
  for (const c of [...new Set(intended)]) {
    const rows = intended.map((_, i) => i).filter((i) => intended[i] === c);
    perClass[classNames[c]!] = rows.reduce((a, i) => a + correct[i]!.filter(Boolean).length / passes, 0) / rows.length;
  }
  return { agreement: accuracy['mean-over-R'], allPasses: accuracy['all-R'], perClass };
}

export function writeGenerateReport(dir: string, run: GeneratedImages, facts: Record<string, unknown>, judgements: readonly Judgement[] = []): string {
  mkdirSync(dir, { recursive: true });
  const perTarget = run.settings.perTarget;
  // One row per target when there are several images of each; else one row of targets.
  const scale = Math.max(1, Math.round(96 / run.images.shape[2]!));
  saveImageGrid(join(dir, 'generate.png'), run.images, { columns: perTarget > 1 ? perTarget : Math.min(10, run.targets.length), scale });
  const report = new HtmlReport({ title: 'crossmax generate', subtitle: 'images optimised from grey to be each class or prompt' });
  report.keyValues({ ...facts, time: `${run.seconds.toFixed(0)} s` }, { title: 'Run' });
  if (judgements.length > 0) {
    report.heading('Do other models see the class?');
    report.paragraph('Share of forward passes in which each model gives a generated image its intended class (the generating model first; the others were trained independently and never used in generation).');
    report.table({
      columns: [{ key: 'judge' }, { key: 'agreement', percent: true, best: 'max' }, { key: 'allPasses', label: 'every pass', percent: true },
        ...run.targets.map((c) => ({ key: `c:${c}`, label: c, percent: true }))],
      rows: judgements.map((j) => ({ judge: j.judge, agreement: j.agreement, allPasses: j.allPasses, ...Object.fromEntries(Object.entries(j.perClass).map(([c, v]) => [`c:${c}`, v])) })),
    });
  }
  tidy(() => report.gallery(run.targetOfImage.map((t, i) => ({ image: run.images.select(0, i), caption: `${run.targets[t]} (score ${run.finalScores[i]!.toFixed(3)})` })), {
    imageWidth: Math.max(96, run.images.shape[3]!), pixelated: true, ...(perTarget > 1 ? { columns: perTarget } : {}),
  }));
  report.chart({
    title: 'Loss per step (minus the objective, summed over the target\'s images)', xLabel: 'step', yLabel: 'loss',
    series: run.targets.map((c, i) => ({ name: c, x: run.losses[i]!.map((_, s) => s + 1), y: run.losses[i]! })),
  });
  return report.save(dir, 'generate.html');
}

/** Every image as a PNG in <dir>/images with manifest.json: what to give a model this machine cannot reach. */
export function writeGeneratedImages(dir: string, run: GeneratedImages, facts: Record<string, unknown>): string {
  const folder = join(dir, 'images');
  mkdirSync(folder, { recursive: true });
  const entries = run.targetOfImage.map((t, i) => {
    const file = `${String(i).padStart(3, '0')}.png`;
    tidy(() => savePng(join(folder, file), run.images.select(0, i)));
    return { file, target: run.targets[t], score: run.finalScores[i] };
  });
  const manifest = join(folder, 'manifest.json');
  writeJsonAtomic(manifest, { ...facts, settings: run.settings, images: entries });
  return manifest;
}

export async function generateCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, GENERATE_OPTIONS);
  const threads = numberFlag(values, 'threads', { integer: true, min: 1 });
  if (threads !== undefined) setNumThreads(threads);
  const sources = (['model', 'resnet', 'clip'] as const).filter((k) => values[k] !== undefined);
  if (sources.length !== 1) throw new UsageError('give exactly one of --model FILE, --resnet FILE, --clip DIR');
  const device = (stringFlag(values, 'device') ?? 'cpu') as Device;
  const modelPath = stringFlag(values, sources[0]!)!;
  const judgePaths = listFlag(values, 'judge');
  if (judgePaths.length > 0 && sources[0] !== 'model') throw new UsageError('--judge takes crossmax models, which judge images of a crossmax model\'s classes: use it with --model');
  if (sources[0] !== 'clip' && (values.prompt !== undefined || values.negative !== undefined)) throw new UsageError('--prompt and --negative go with --clip');
  const passes = numberFlag(values, 'passes', { integer: true, min: 1 }) ?? 10;
  const crossmaxModel = sources[0] === 'model' ? loadModelFile(modelPath, { device }) : null;
  let source: GenerationSource;
  try {
    source = crossmaxModel ? crossmaxSource(crossmaxModel, values, device)
      : sources[0] === 'resnet' ? resnetSource(modelPath, values, device) : clipSource(modelPath, values, device);
  } catch (err) {
    crossmaxModel?.dispose();
    throw err;
  }
  try {
    const run = generateImages(source, values);
    try {
      const judgements: Judgement[] = [];
      if (source.classifier) {
        const everyPath = [modelPath, ...judgePaths];
        const intended = intendedClasses(source, run);
        // A plain ResNet is deterministic: one pass says all.
        const ownPasses = source.kind === 'resnet' ? 1 : passes;
        judgements.push({ judge: `${modelLabel(modelPath, everyPath)} (generator)`, path: modelPath, ...judgeImages(source.classifier, run.images, intended, source.classNames, ownPasses) });
        for (const path of judgePaths) {
          const judge = loadModelFile(path, { device, numClasses: source.classNames.length });
          try {
            judgements.push({ judge: modelLabel(path, everyPath), path, ...judgeImages(judge, run.images, intended, source.classNames, passes) });
          } finally {
            judge.dispose();
          }
        }
      }
      const dir = resolve(stringFlag(values, 'out') ?? 'report');
      const facts = {
        model: modelPath, 'model kind': source.kind, ...(source.kind === 'crossmax' ? { member: values.member ?? 'aggregated output' } : {}),
        ...(source.kind === 'clip' ? { prompts: run.targets, 'negative prompts': repeatedFlag(values, 'negative') } : { classes: run.targets }),
        parametrisation: run.settings.parametrisation, steps: run.settings.steps, copies: run.settings.copies, lr: run.settings.lr,
        'images per target': run.settings.perTarget, canvas: run.settings.canvas, resolutions: run.settings.resolutions, seed: run.settings.seed,
        ...(judgements.length > 0 ? { 'judging passes': passes } : {}),
      };
      const html = writeGenerateReport(dir, run, facts, judgements);
      const manifest = writeGeneratedImages(dir, run, facts);
      const summary = { ...facts, seconds: run.seconds, finalScores: run.finalScores, judgements };
      writeJsonAtomic(join(dir, 'generate.json'), summary);
      if (values.json) {
        console.log(JSON.stringify(summary, null, 2));
      } else {
        console.log(`generated ${run.images.shape[0]} image(s) in ${run.seconds.toFixed(0)} s`);
        run.targets.forEach((t, i) => {
          const scores = run.finalScores.filter((_, j) => run.targetOfImage[j] === i);
          console.log(`  ${t.slice(0, 40).padEnd(40)} final score ${(scores.reduce((a, b) => a + b, 0) / scores.length).toFixed(4)}`);
        });
        for (const j of judgements) console.log(`  ${j.judge.padEnd(32)} gives the intended class ${(100 * j.agreement).toFixed(1)}% of passes`);
        console.log(`grid:   ${join(dir, 'generate.png')}\nimages: ${manifest}\nreport: ${html}`);
      }
    } finally {
      run.images.dispose();
    }
  } finally {
    source.dispose();
    crossmaxModel?.dispose();
  }
  return 0;
}
