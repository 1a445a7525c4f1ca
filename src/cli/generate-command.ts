// `crossmax generate`: images optimised to be a class of a crossmax model or of a torchvision ResNet, or to match
// CLIP prompts, through the multi-resolution parametrisation or raw pixels. Flags and wiring only: the recipe and
// the judging are in src/generate (recipe.ts, judge.ts), the report in src/report/generate-report.ts.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  clipSource, crossmaxSource, generateImages, judgeImages, intendedClasses, modelClassNames, resnetSource,
  type GenerationSettings, type GenerationSource, type Judgement,
} from '../generate/index.js';
import { cifar100SuperclassRepresentatives } from '../data/cifar100.js';
import type { SelfEnsemble } from '../ensemble/index.js';
import { loadClip, loadTorchvisionResNet, type ClipModel } from '../models/index.js';
import type { ResNet } from '../nn/resnet.js';
import { writeJsonAtomic } from '../util/json.js';
import { formatEstimate } from '../util/statistics.js';
import { writeGenerateReport, writeGeneratedImages } from '../report/generate-report.js';
import type { Device } from '../tensor/index.js';
import { applyAggregatorFlag, loadModelFile, modelLabel } from './model-files.js';
import {
  DEVICE_HELP, UsageError, choiceFlag, deviceFlag, integerListFlag, listFlag, numberFlag, parseCommandArgs, repeatedFlag, stringFlag, threadsFlag, type ParsedArgs,
} from './args.js';

export const GENERATE_OPTIONS = {
  model: { type: 'string' }, resnet: { type: 'string' }, clip: { type: 'string' }, prompt: { type: 'string', multiple: true },
  negative: { type: 'string', multiple: true }, 'class-names': { type: 'string' }, size: { type: 'string' },
  class: { type: 'string' }, steps: { type: 'string' }, copies: { type: 'string' },
  lr: { type: 'string' }, parametrisation: { type: 'string' }, member: { type: 'string' }, out: { type: 'string' },
  seed: { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' }, config: { type: 'string' },
  'per-class': { type: 'string' }, judge: { type: 'string' }, passes: { type: 'string' }, json: { type: 'boolean' },
  resolutions: { type: 'string' }, squash: { type: 'string' }, optimizer: { type: 'string' }, jitter: { type: 'string' },
  noise: { type: 'string' }, flip: { type: 'boolean' }, scale: { type: 'string' }, aggregator: { type: 'string' },
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
  --class LIST|all|superclasses  --model: class names or indices, comma-separated; default all (one image per
                          class); superclasses: CIFAR-100's 20, one fine class each; --resnet: class indices
  --class-names FILE      --resnet: a text file with one class name per line (e.g. ImageNet's 1,000)
  --size N                --resnet: the model's input side (default 224); the canvas adds a quarter on each side
  --steps N               optimisation steps (default per model kind, above)
  --copies N              augmented copies per step (default per model kind)
  --lr X                  SGD step on the parameters (default per model kind)
  --parametrisation P     multires (default) | pixels (raw pixels, for comparison)
  --resolutions LIST      the multi-resolution sides on the canvas, e.g. 1,2,4,8,16,48 (default per model kind, above;
                          the canvas is the input plus --jitter on each side: 48 for a 32-pixel model)
  --squash KIND           tanh (default, DAS: pixels = (tanh(sum) + 1)/2) | clamp (the sum clamped to [0, 1])
  --optimizer KIND        sgd (default, DAS) | adam (give --lr: about 0.01-0.05 suits it)
  --jitter N              largest random shift of each copy in pixels (default a quarter of the input, as DAS)
  --noise X               uniform noise amplitude added to each copy (default 0.2, DAS)
  --flip                  flip each copy left-right at random (default off, as DAS)
  --scale LO,HI           random resized crop of each copy, side LO..HI of the input, e.g. 0.7,1 (default none)
  --member NAME           --model: read one member (e.g. fc, layer3.1) instead of the aggregated output
  --aggregator NAME[:k=N] --model: maximise (and judge by the generator) another aggregation of the same members,
                          e.g. mean-logits: CrossMax's score is capped at 0 once the class leads in its members, a
                          flat objective on 100 classes (default: the model's own)
  --per-class N           images per class or prompt, optimised together from different augmentations (default 1)
  --judge FILES           --model: other crossmax model files (comma-separated; trained independently, never used
                          here) that classify the generated images: the share they give the intended class measures
                          whether the images carry the class or only fool the generating model
  --passes R              forward passes per image when judging (default 10)
  --out DIR               generate.png, generate.html, generate.json, and images/ with every image as a PNG and
                          manifest.json (model, prompt, settings: what a vision-language model is given) (default report)
  --seed N                default 0
  --device DEV            ${DEVICE_HELP}
  --threads N             intra-op threads (default all cores)
  --json                  print the summary as JSON`;

/** The generation settings the flags give (each absent one takes the model kind's default). */
export function generationSettings(values: ParsedArgs['values']): GenerationSettings {
  return {
    steps: numberFlag(values, 'steps', { integer: true, min: 1 }),
    copies: numberFlag(values, 'copies', { integer: true, min: 1 }),
    lr: numberFlag(values, 'lr', { min: 0 }),
    seed: numberFlag(values, 'seed', { integer: true, min: 0 }) ?? 0,
    parametrisation: choiceFlag(values, 'parametrisation', ['multires', 'pixels'] as const) ?? 'multires',
    perTarget: numberFlag(values, 'per-class', { integer: true, min: 1 }) ?? 1,
    resolutions: values.resolutions === undefined ? undefined : integerListFlag(values, 'resolutions', { min: 1, example: '1,2,4,8,16,48' }),
    squash: choiceFlag(values, 'squash', ['tanh', 'clamp'] as const),
    optimizer: choiceFlag(values, 'optimizer', ['sgd', 'adam'] as const),
    jitter: numberFlag(values, 'jitter', { integer: true, min: 0 }),
    noise: numberFlag(values, 'noise', { min: 0 }),
    flip: values.flip === true ? true : undefined,
    scale: values.scale === undefined ? undefined : scaleRange(values),
  };
}

/** Resolution sides for the report: '1–48 (every side)' for a contiguous run, else the list. */
function describeSides(sides: readonly number[]): string {
  if (sides.length === 0) return 'none (pixels)';
  const contiguous = sides.length > 2 && sides.every((s, i) => s === sides[0]! + i);
  return contiguous ? `${sides[0]}–${sides[sides.length - 1]} (every side)` : sides.join(', ');
}

/** --scale LO,HI: 0 < LO <= HI <= 1. */
function scaleRange(values: ParsedArgs['values']): [number, number] {
  const parts = listFlag(values, 'scale').map(Number);
  if (parts.length !== 2 || !(parts[0]! > 0 && parts[0]! <= parts[1]! && parts[1]! <= 1)) {
    throw new UsageError(`--scale ${String(values.scale)}: two numbers LO,HI with 0 < LO <= HI <= 1, e.g. 0.7,1`);
  }
  return [parts[0]!, parts[1]!];
}

/** --class (default all) and --member on a crossmax model. */
function crossmaxFromFlags(model: SelfEnsemble, values: ParsedArgs['values'], device: Device): GenerationSource {
  const classNames = modelClassNames(model);
  const which = stringFlag(values, 'class') ?? 'all';
  const member = stringFlag(values, 'member');
  if (member !== undefined && !model.memberNames().includes(member)) {
    throw new UsageError(`--member ${member}: the model's members are ${model.memberNames().join(', ')}`);
  }
  let classIndices: number[] | undefined;
  if (which === 'superclasses') {
    // CIFAR-100's 100 classes are too many for one grid: one fine class per coarse superclass (20 rows).
    if (classNames.length !== 100) throw new UsageError(`--class superclasses: for a CIFAR-100 model (100 classes); this one has ${classNames.length}`);
    classIndices = cifar100SuperclassRepresentatives();
  } else if (which !== 'all') {
    classIndices = listFlag(values, 'class').map((c) => resolveClass(c, classNames));
  }
  return crossmaxSource(model, { classIndices, member, device });
}

/** --class (required) and --class-names on a torchvision ResNet. */
function resnetFromFlags(resnet: ResNet, values: ParsedArgs['values'], device: Device): GenerationSource {
  const classes = listFlag(values, 'class');
  const namesFile = stringFlag(values, 'class-names');
  const classNames = namesFile ? readClassNames(namesFile, resnet.numClasses) : Array.from({ length: resnet.numClasses }, (_, i) => `class ${i}`);
  return resnetSource(resnet, {
    classIndices: classes.map((c) => resolveClass(c, classNames)), classNames, device,
    inputSize: numberFlag(values, 'size', { integer: true, min: 8 }) ?? 224,
  });
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

function resolveClass(which: string, classNames: readonly string[]): number {
  const byName = classNames.indexOf(which);
  if (byName >= 0) return byName;
  const index = Number(which);
  if (Number.isInteger(index) && index >= 0 && index < classNames.length) return index;
  const named = classNames.length <= 20 ? classNames.join(', ') : `${classNames.slice(0, 5).join(', ')}, ...`;
  throw new UsageError(`--class ${which}: a class name (${named}) or an index below ${classNames.length}`);
}

export async function generateCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, GENERATE_OPTIONS);
  threadsFlag(values);
  const sources = (['model', 'resnet', 'clip'] as const).filter((k) => values[k] !== undefined);
  if (sources.length !== 1) throw new UsageError('give exactly one of --model FILE, --resnet FILE, --clip DIR');
  const device = deviceFlag(values);
  const modelPath = stringFlag(values, sources[0]!)!;
  const judgePaths = listFlag(values, 'judge');
  if (judgePaths.length > 0 && sources[0] !== 'model') throw new UsageError('--judge takes crossmax models, which judge images of a crossmax model\'s classes: use it with --model');
  if (sources[0] !== 'clip' && (values.prompt !== undefined || values.negative !== undefined)) throw new UsageError('--prompt and --negative go with --clip');
  const passes = numberFlag(values, 'passes', { integer: true, min: 1 }) ?? 10;
  if (sources[0] === 'resnet' && listFlag(values, 'class').length === 0) {
    throw new UsageError('--resnet needs --class: one or more class indices, e.g. --class 107 (jellyfish in ImageNet)');
  }
  const prompts = repeatedFlag(values, 'prompt');
  if (sources[0] === 'clip' && prompts.length === 0) throw new UsageError('--clip needs --prompt TEXT (repeat it for several images)');
  // The model the source reads; disposed at the end (the source frees only what it made itself).
  let model: SelfEnsemble | ResNet | ClipModel | null = null;
  let source: GenerationSource;
  // The judges load before the (long) generation, so that a missing or mismatched file fails at once.
  const judges: SelfEnsemble[] = [];
  try {
    if (sources[0] === 'model') {
      const crossmaxModel = loadModelFile(modelPath, { device });
      model = crossmaxModel;
      applyAggregatorFlag(crossmaxModel, values);
      const numClasses = modelClassNames(crossmaxModel).length;
      for (const path of judgePaths) judges.push(loadModelFile(path, { device, numClasses, classesOf: `the generator ${modelPath}` }));
      source = crossmaxFromFlags(crossmaxModel, values, device);
    } else if (sources[0] === 'resnet') {
      const resnet = loadTorchvisionResNet(modelPath, { device });
      model = resnet;
      source = resnetFromFlags(resnet, values, device);
    } else {
      const clip = loadClip(modelPath, { device });
      model = clip;
      if (!clip.tokenizer) throw new UsageError(`--clip ${modelPath}: prompts need the tokenizer's vocab.json and merges.txt in that folder`);
      source = clipSource(clip, { prompts, negatives: repeatedFlag(values, 'negative'), device });
    }
  } catch (err) {
    for (const judge of judges) judge.dispose();
    model?.dispose();
    throw err;
  }
  try {
    const run = generateImages(source, generationSettings(values));
    try {
      const judgements: Judgement[] = [];
      if (source.classifier) {
        const everyPath = [modelPath, ...judgePaths];
        const intended = intendedClasses(source, run);
        // A plain ResNet is deterministic: one pass says all.
        const ownPasses = source.kind === 'resnet' ? 1 : passes;
        judgements.push({ judge: `${modelLabel(modelPath, everyPath)} (generator)`, path: modelPath, ...judgeImages(source.classifier, run.images, intended, source.classNames, ownPasses) });
        judgePaths.forEach((path, i) => {
          judgements.push({ judge: modelLabel(path, everyPath), path, ...judgeImages(judges[i]!, run.images, intended, source.classNames, passes) });
        });
      }
      const dir = resolve(stringFlag(values, 'out') ?? 'report');
      const facts = {
        model: modelPath, 'model kind': source.kind,
        ...(source.kind === 'crossmax' ? { member: values.member ?? 'aggregated output', aggregator: values.aggregator ?? 'the model\'s own' } : {}),
        ...(source.kind === 'clip' ? { prompts: run.targets, 'negative prompts': repeatedFlag(values, 'negative') } : { classes: run.targets }),
        parametrisation: run.settings.parametrisation, steps: run.settings.steps, copies: run.settings.copies, lr: run.settings.lr,
        'images per target': run.settings.perTarget, canvas: run.settings.canvas, resolutions: run.settings.resolutions,
        'resolution sides': describeSides(run.settings.resolutionSizes), squash: run.settings.squash, optimizer: run.settings.optimizer,
        jitter: run.settings.jitter, noise: run.settings.noise, flip: run.settings.flip, scale: run.settings.scale, seed: run.settings.seed,
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
        for (const j of judgements) {
          const shares = j.intervals
            ? `${formatEstimate(j.intervals.agreement, { showN: false })} of passes, ${formatEstimate(j.intervals.allPasses, { showN: false })} on every pass (95%, n = ${j.intervals.allPasses.n} images)`
            : `${(100 * j.agreement).toFixed(1)}% of passes (no images)`;
          console.log(`  ${j.judge.padEnd(32)} gives the intended class ${shares}`);
        }
        console.log(`grid:   ${join(dir, 'generate.png')}\nimages: ${manifest}\nreport: ${html}`);
      }
    } finally {
      run.images.dispose();
    }
  } finally {
    source.dispose();
    for (const judge of judges) judge.dispose();
    model.dispose();
  }
  return 0;
}
