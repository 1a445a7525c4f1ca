// `crossmax generate`: images optimised to be a class of a crossmax model, through the multi-resolution
// parametrisation (the paper's second contribution; DAS's recipe scaled to the model's input size), or through raw
// pixels for comparison. Writes a PNG grid and report/generate.html with each run's loss curve.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MultiResolutionImage, classObjective, everyResolution, generate, pixelImage } from '../generate/index.js';
import { loadModel } from '../ensemble/index.js';
import { HtmlReport, saveImageGrid } from '../report/index.js';
import { ProgressBar } from '../util/progress.js';
import { cat, setNumThreads, type Device, type Tensor } from '../tensor/index.js';
import { UsageError, choiceFlag, numberFlag, parseCommandArgs, stringFlag, type ParsedArgs } from './args.js';

export const GENERATE_OPTIONS = {
  model: { type: 'string' }, class: { type: 'string' }, steps: { type: 'string' }, copies: { type: 'string' },
  lr: { type: 'string' }, parametrisation: { type: 'string' }, member: { type: 'string' }, out: { type: 'string' },
  seed: { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' }, config: { type: 'string' },
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
  --out DIR               where generate.png and generate.html go (default report)
  --seed N                default 0
  --device DEV            cpu (default) | cuda | cuda:N
  --threads N             intra-op threads (default all cores)`;

export interface GeneratedClasses {
  images: Tensor;
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
    const options = { size: canvas, batch: 1 };
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
  return { images: stacked, classes: indices.map((i) => classNames[i]!), losses, seconds: (performance.now() - started) / 1000 };
}

function resolveClass(which: string, classNames: readonly string[]): number {
  const byName = classNames.indexOf(which);
  if (byName >= 0) return byName;
  const index = Number(which);
  if (Number.isInteger(index) && index >= 0 && index < classNames.length) return index;
  throw new UsageError(`--class ${which}: one of ${classNames.join(', ')}, an index below ${classNames.length}, or all`);
}

export function writeGenerateReport(dir: string, run: GeneratedClasses, facts: Record<string, unknown>): string {
  mkdirSync(dir, { recursive: true });
  saveImageGrid(join(dir, 'generate.png'), run.images, { columns: Math.min(10, run.classes.length), scale: 3 });
  const report = new HtmlReport({ title: 'crossmax generate', subtitle: 'images optimised from grey to be each class' });
  report.keyValues({ ...facts, time: `${run.seconds.toFixed(0)} s` }, { title: 'Run' });
  report.gallery(run.classes.map((c, i) => ({ image: run.images.select(0, i), caption: c })), { imageWidth: 96, pixelated: true });
  report.chart({
    title: 'Loss per step (negative class logit)', xLabel: 'step', yLabel: 'loss',
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
  const model = loadModel(modelPath, { device: (stringFlag(values, 'device') ?? 'cpu') as Device });
  try {
    const run = generateClasses(modelPath, values, model);
    const dir = resolve(stringFlag(values, 'out') ?? 'report');
    const html = writeGenerateReport(dir, run, {
      model: modelPath, parametrisation: values.parametrisation ?? 'multires', member: values.member ?? 'aggregated output',
      steps: values.steps ?? 100, copies: values.copies ?? 16,
    });
    run.images.dispose();
    console.log(`generated ${run.classes.length} image(s) in ${run.seconds.toFixed(0)} s\ngrid:   ${join(dir, 'generate.png')}\nreport: ${html}`);
  } finally {
    model.dispose();
  }
  return 0;
}
