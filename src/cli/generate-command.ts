// `crossmax generate`: images optimised to be a class of a crossmax model, through the multi-resolution
// parametrisation (the paper's second contribution; DAS's recipe scaled to the model's input size), or through raw
// pixels for comparison. Writes a PNG grid and report/generate.html with each run's loss curve.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MultiResolutionImage, classObjective, everyResolution, generate, pixelImage } from '../generate/index.js';
import { loadModel } from '../ensemble/index.js';
import { repeatedAccuracy } from '../attacks/evaluation.js';
import type { Classifier } from '../attacks/attack.js';
import { writeJsonAtomic } from '../report/json.js';
import { loadModelFile, modelLabel } from './model-files.js';
import { HtmlReport, saveImageGrid } from '../report/index.js';
import { ProgressBar } from '../util/progress.js';
import { cat, setNumThreads, tidy, type Device, type Tensor } from '../tensor/index.js';
import { UsageError, choiceFlag, listFlag, numberFlag, parseCommandArgs, stringFlag, type ParsedArgs } from './args.js';

export const GENERATE_OPTIONS = {
  model: { type: 'string' }, class: { type: 'string' }, steps: { type: 'string' }, copies: { type: 'string' },
  lr: { type: 'string' }, parametrisation: { type: 'string' }, member: { type: 'string' }, out: { type: 'string' },
  seed: { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' }, config: { type: 'string' },
  'per-class': { type: 'string' }, judge: { type: 'string' }, passes: { type: 'string' }, json: { type: 'boolean' },
} as const;

export const GENERATE_USAGE = `crossmax generate --model FILE [options]

Optimises images from grey so that a crossmax model sees a class in them: the sum of up-sampled tensors at every
resolution from 1 px to the canvas, squashed by tanh, with random shifts and noise on each of several copies per
step (Direct Ascent Synthesis's recipe), maximising the class logit of the aggregated output or of one member.
  --model FILE            a crossmax model file
  --class NAME|INDEX|all  default all: one image per class
  --steps N               default 100
  --copies N              augmented copies per step (default 16)
  --lr X                  SGD step on the parameters (default 0.4, DAS's with our mean over copies)
  --parametrisation P     multires (default) | pixels (raw pixels, for comparison)
  --member NAME           read one member (e.g. fc, layer3.1) instead of the aggregated output
  --per-class N           images per class, optimised together from different random augmentations (default 1)
  --judge FILES           other crossmax model files (comma-separated; trained independently, never used here) that
                          classify the generated images: the share they give the intended class measures whether
                          the images carry the class or only fool the generating model
  --passes R              forward passes per image when judging (default 10)
  --out DIR               where generate.png and generate.html go (default report)
  --seed N                default 0
  --device DEV            cpu (default) | cuda | cuda:N
  --threads N             intra-op threads (default all cores)
  --json                  print the summary as JSON`;

export interface GeneratedClasses {
  /** [classes × perClass, 3, H, W], class by class. */
  images: Tensor;
  /** The intended class of each image (an index into the model's classes). */
  intended: number[];
  /** The model's class names. */
  classNames: string[];
  classes: string[];
  losses: number[][];
  seconds: number;
}

/** One image per requested class (the caller disposes `images`). */
export function generateClasses(modelPath: string | null, values: ParsedArgs['values'], model = modelPath ? loadModel(modelPath) : null): GeneratedClasses {
  if (!model) throw new UsageError('--model FILE is required');
  const classNames = model.config?.classes ?? Array.from({ length: model.config?.numClasses ?? 0 }, (_, i) => String(i));
  const which = stringFlag(values, 'class') ?? 'all';
  const indices = which === 'all' ? classNames.map((_, i) => i) : [resolveClass(which, classNames)];
  const steps = numberFlag(values, 'steps', { integer: true, min: 1 }) ?? 100;
  const copies = numberFlag(values, 'copies', { integer: true, min: 1 }) ?? 16;
  const lr = numberFlag(values, 'lr', { min: 0 }) ?? 0.4;
  const seed = numberFlag(values, 'seed', { integer: true, min: 0 }) ?? 0;
  const kind = choiceFlag(values, 'parametrisation', ['multires', 'pixels'] as const) ?? 'multires';
  const perClass = numberFlag(values, 'per-class', { integer: true, min: 1 }) ?? 1;
  const member = stringFlag(values, 'member');
  if (member !== undefined && !model.memberNames().includes(member)) {
    throw new UsageError(`--member ${member}: the model's members are ${model.memberNames().join(', ')}`);
  }
  const [h] = model.inputSize;
  // DAS pads its 224 px view by 56 px (1/4) on each side and crops a shifted window each copy; the same proportion here.
  const jitter = Math.max(1, Math.round(h / 4));
  const canvas = h + 2 * jitter;
  model.eval();
  const bar = new ProgressBar({ label: 'generate', unit: 'step', total: steps * indices.length });
  const started = performance.now();
  const images: Tensor[] = [];
  const losses: number[][] = [];
  for (const classIndex of indices) {
    const options = { size: canvas, batch: perClass };
    const parametrisation = kind === 'multires' ? new MultiResolutionImage({ ...options, resolutions: everyResolution(canvas) }) : pixelImage(options);
    try {
      const result = generate({
        parametrisation,
        objectives: [classObjective(model, { classIndex, member, name: classNames[classIndex] })],
        steps, optimizer: { kind: 'sgd', lr }, seed,
        augment: { copies, jitter, cropSize: h },
        onProgress: () => bar.tick(1, { class: classNames[classIndex]! }),
      });
      images.push(result.images.narrow(2, jitter, h).narrow(3, jitter, h).contiguous());
      result.images.dispose();
      losses.push(result.loss);
    } finally {
      parametrisation.dispose();
    }
  }
  bar.finish();
  const stacked = cat(images, 0);
  for (const t of images) t.dispose();
  return {
    images: stacked, intended: indices.flatMap((i) => new Array<number>(perClass).fill(i)), classNames: [...classNames],
    classes: indices.map((i) => classNames[i]!), losses, seconds: (performance.now() - started) / 1000,
  };
}

function resolveClass(which: string, classNames: readonly string[]): number {
  const byName = classNames.indexOf(which);
  if (byName >= 0) return byName;
  const index = Number(which);
  if (Number.isInteger(index) && index >= 0 && index < classNames.length) return index;
  throw new UsageError(`--class ${which}: one of ${classNames.join(', ')}, an index below ${classNames.length}, or all`);
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

export function writeGenerateReport(dir: string, run: GeneratedClasses, facts: Record<string, unknown>, judgements: readonly Judgement[] = []): string {
  mkdirSync(dir, { recursive: true });
  const perClass = run.images.shape[0]! / run.classes.length;
  // One row per class when there are several images of each; else one row of classes.
  saveImageGrid(join(dir, 'generate.png'), run.images, { columns: perClass > 1 ? perClass : Math.min(10, run.classes.length), scale: 3 });
  const report = new HtmlReport({ title: 'crossmax generate', subtitle: 'images optimised from grey to be each class' });
  report.keyValues({ ...facts, time: `${run.seconds.toFixed(0)} s` }, { title: 'Run' });
  if (judgements.length > 0) {
    report.heading('Do other models see the class?');
    report.paragraph('Share of forward passes in which each model gives a generated image its intended class (the generating model first; the others were trained independently and never used in generation).');
    report.table({
      columns: [{ key: 'judge' }, { key: 'agreement', percent: true, best: 'max' }, { key: 'allPasses', label: 'every pass', percent: true },
        ...run.classes.map((c) => ({ key: `c:${c}`, label: c, percent: true }))],
      rows: judgements.map((j) => ({ judge: j.judge, agreement: j.agreement, allPasses: j.allPasses, ...Object.fromEntries(Object.entries(j.perClass).map(([c, v]) => [`c:${c}`, v])) })),
    });
  }
  tidy(() => report.gallery(run.intended.map((c, i) => ({ image: run.images.select(0, i), caption: run.classNames[c] })), {
    imageWidth: 96, pixelated: true, ...(perClass > 1 ? { columns: perClass } : {}),
  }));
  report.chart({
    title: 'Loss per step (negative class logit, summed over the class\'s images)', xLabel: 'step', yLabel: 'loss',
    series: run.classes.map((c, i) => ({ name: c, x: run.losses[i]!.map((_, s) => s + 1), y: run.losses[i]! })),
  });
  return report.save(dir, 'generate.html');
}

export async function generateCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, GENERATE_OPTIONS);
  const threads = numberFlag(values, 'threads', { integer: true, min: 1 });
  if (threads !== undefined) setNumThreads(threads);
  const modelPath = stringFlag(values, 'model');
  if (!modelPath) throw new UsageError('--model FILE is required');
  const device = (stringFlag(values, 'device') ?? 'cpu') as Device;
  const judgePaths = listFlag(values, 'judge');
  const passes = numberFlag(values, 'passes', { integer: true, min: 1 }) ?? 10;
  const model = loadModelFile(modelPath, { device });
  try {
    const run = generateClasses(modelPath, values, model);
    try {
      const everyPath = [modelPath, ...judgePaths];
      const judgements: Judgement[] = [{ judge: `${modelLabel(modelPath, everyPath)} (generator)`, path: modelPath, ...judgeImages(model, run.images, run.intended, run.classNames, passes) }];
      for (const path of judgePaths) {
        const judge = loadModelFile(path, { device, numClasses: run.classNames.length });
        try {
          judgements.push({ judge: modelLabel(path, everyPath), path, ...judgeImages(judge, run.images, run.intended, run.classNames, passes) });
        } finally {
          judge.dispose();
        }
      }
      const dir = resolve(stringFlag(values, 'out') ?? 'report');
      const facts = {
        model: modelPath, parametrisation: values.parametrisation ?? 'multires', member: values.member ?? 'aggregated output',
        steps: values.steps ?? 100, copies: values.copies ?? 16, 'images per class': values['per-class'] ?? 1, 'judging passes': passes,
      };
      const html = writeGenerateReport(dir, run, facts, judgements);
      const summary = { ...facts, classes: run.classes, seconds: run.seconds, judgements };
      writeJsonAtomic(join(dir, 'generate.json'), summary);
      if (values.json) {
        console.log(JSON.stringify(summary, null, 2));
      } else {
        console.log(`generated ${run.images.shape[0]} image(s) in ${run.seconds.toFixed(0)} s`);
        for (const j of judgements) console.log(`  ${j.judge.padEnd(32)} gives the intended class ${(100 * j.agreement).toFixed(1)}% of passes`);
        console.log(`grid:   ${join(dir, 'generate.png')}\nreport: ${html}`);
      }
    } finally {
      run.images.dispose();
    }
  } finally {
    model.dispose();
  }
  return 0;
}
