// `crossmax transfer`: adversarial images crafted on source models (each alone and all together) and judged on
// target models never used in crafting (src/robustness/transfer-matrix.ts). Writes transfer.json, transfer.html with
// the table and sample images, and with --save-images the crafted images as PNGs with a manifest.json (sources,
// settings, true classes) that can be taken to models this machine cannot reach, such as vision-language models.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SurrogateClassifier } from '../attacks/index.js';
import { sourceSets, transferMatrix, type EstimateByDefinition, type TransferMatrix } from '../robustness/index.js';
import { formatEstimate, proportionEstimate, type AccuracyEstimate } from '../util/statistics.js';
import { MeanLogits } from '../ensemble/aggregators.js';
import type { SelfEnsemble } from '../ensemble/index.js';
import { loadModelFile, modelLabel } from './model-files.js';
import { HtmlReport, autoAmplification, perturbationToImage, savePng, type GalleryItem } from '../report/index.js';
import { writeJsonAtomic } from '../util/json.js';
import { ProgressBar } from '../util/progress.js';
import { tidy, type Device, type Tensor } from '../tensor/index.js';
import { UsageError, choiceFlag, deviceFlag, listFlag, numberFlag, parseCommandArgs, stringFlag, threadsFlag } from './args.js';
import { DATA_HELP, loadData } from './datasets.js';

export const TRANSFER_OPTIONS = {
  source: { type: 'string' }, target: { type: 'string' }, data: { type: 'string' }, n: { type: 'string' }, eps: { type: 'string' },
  steps: { type: 'string' }, eot: { type: 'string' }, restarts: { type: 'string' }, passes: { type: 'string' }, craft: { type: 'string' },
  'batch-size': { type: 'string' }, gradient: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' }, 'save-images': { type: 'boolean' },
  device: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' }, config: { type: 'string' },
} as const;

export const TRANSFER_USAGE = `crossmax transfer --source FILE[,FILE...] --target FILE[,FILE...] [options]

Crafts adversarial images on the source models (PGD on the mean of their logits, EOT over their randomness; each
source alone and, with two or more, all of them as one ensemble) and measures the accuracy of the target models on
them, each image judged over R forward passes (all-R: correct on every pass; also the mean over passes).
  --source FILES          crossmax model files to craft on, comma-separated
  --target FILES          crossmax model files to judge on (never used in crafting), comma-separated
  --data SPEC             ${DATA_HELP} (default cifar10)
  --n N                   the first N test images (default 100)
  --eps X                 L-inf radius (default 8/255)
  --steps N               PGD steps (default 50)
  --eot N                 passes averaged per step (default 1; raise it for stochastic sources)
  --restarts N            default 1
  --passes R              forward passes per image when judging a target (default 10)
  --craft each|ensemble|both   which source sets craft (default both)
  --gradient G            mean-logits (default: a self-ensemble source's gradient comes from the mean of its
                          members' logits, which CrossMax does not mask; its output is still its own) | output
  --batch-size N          default 100
  --save-images           write every crafted image as a PNG, with manifest.json
  --out DIR               transfer.html, transfer.json, images/ (default report/transfer)
  --seed N                default 0
  --device DEV            cpu (default) | cuda | cuda:N
  --threads N             intra-op threads (default all cores)
  --json                  print the summary as JSON`;

export async function transferCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, TRANSFER_OPTIONS);
  threadsFlag(values);
  const sourcePaths = listFlag(values, 'source');
  const targetPaths = listFlag(values, 'target');
  if (sourcePaths.length === 0) throw new UsageError('--source FILE[,FILE...] is required');
  if (targetPaths.length === 0) throw new UsageError('--target FILE[,FILE...] is required');
  const device = deviceFlag(values);
  const testSet = await loadData(stringFlag(values, 'data') ?? 'cifar10', 'test');
  const n = Math.min(numberFlag(values, 'n', { integer: true, min: 1 }) ?? 100, testSet.length);
  const eps = numberFlag(values, 'eps', { min: 0, max: 1 }) ?? 8 / 255;
  const steps = numberFlag(values, 'steps', { integer: true, min: 1 }) ?? 50;
  const eot = numberFlag(values, 'eot', { integer: true, min: 1 }) ?? 1;
  const restarts = numberFlag(values, 'restarts', { integer: true, min: 1 }) ?? 1;
  const passes = numberFlag(values, 'passes', { integer: true, min: 1 }) ?? 10;
  const batchSize = numberFlag(values, 'batch-size', { integer: true, min: 1 }) ?? 100;
  const seed = numberFlag(values, 'seed', { integer: true, min: 0 }) ?? 0;
  const craft = choiceFlag(values, 'craft', ['each', 'ensemble', 'both'] as const) ?? 'both';
  const gradient = choiceFlag(values, 'gradient', ['mean-logits', 'output'] as const) ?? 'mean-logits';
  const dir = resolve(stringFlag(values, 'out') ?? join('report', 'transfer'));

  // Labels over sources and targets together, so that two files with one name stay apart in the table.
  const everyPath = [...sourcePaths, ...targetPaths];
  const label = (path: string) => modelLabel(path, everyPath);
  // One load per file, though a file may be both a source and a target.
  const loaded = new Map<string, SelfEnsemble>();
  const load = (path: string) => {
    const key = resolve(path);
    let model = loaded.get(key);
    if (!model) {
      model = loadModelFile(path, { device, numClasses: testSet.classes.length });
      loaded.set(key, model);
    }
    return model;
  };
  const batch = testSet.batch([...Array(n).keys()], { device });
  let matrix: TransferMatrix | null = null;
  try {
    // Straight-through: the source's own output, the mean-logit gradient (surrogate.ts).
    const asSource = (model: SelfEnsemble) => (gradient === 'mean-logits' ? new SurrogateClassifier(model, new MeanLogits(), 'straight-through') : model);
    const sources = sourcePaths.map((p) => ({ name: label(p), model: asSource(load(p)) }));
    const targets = targetPaths.map((p) => ({ name: label(p), model: load(p) }));
    const rowsPlanned = sourceSets(sourcePaths, craft).length;
    const bar = new ProgressBar({ label: 'transfer', unit: 'step', total: rowsPlanned * Math.ceil(n / batchSize) * steps * restarts });
    const started = performance.now();
    matrix = transferMatrix(sources, targets, batch.images, batch.labels, {
      eps, steps, eot, restarts, passes, batchSize, seed, craft, onStep: () => bar.tick(1),
    });
    bar.finish();
    const seconds = (performance.now() - started) / 1000;
    const summary = {
      data: testSet.source, n, eps, norm: 'Linf', attack: 'pgd', gradient, steps, eot, restarts, passes, seed, seconds,
      sources: sources.map((s, i) => ({ name: s.name, path: sourcePaths[i] })),
      targets: targets.map((t, i) => ({ name: t.name, path: targetPaths[i] })),
      clean: matrix.clean,
      rows: matrix.rows.map((r) => ({
        sources: r.sources, sourceFooled: r.sourceFooled.filter(Boolean).length / n,
        // The share fooled with its 95% Wilson interval over the n images, and each image's verdict (for pairing).
        sourceFooledEstimate: proportionEstimate(r.sourceFooled.filter(Boolean).length, r.sourceFooled.length),
        sourceFooledPerImage: r.sourceFooled.map((f) => (f ? '1' : '0')).join(''),
        transferred: r.transferred.map((t) => ({ target: t.target, accuracy: t.accuracy, intervals: t.intervals, correctPasses: t.correctPasses })),
      })),
    };
    mkdirSync(dir, { recursive: true });
    if (values['save-images']) saveCraftedImages(dir, matrix, batch.labels.toArray().map(Number), testSet.classes, summary);
    const html = writeTransferReport(dir, matrix, batch.images, batch.labels.toArray().map(Number), testSet.classes, summary);
    writeJsonAtomic(join(dir, 'transfer.json'), summary);
    if (values.json) {
      console.log(JSON.stringify(summary, null, 2));
    } else {
      const pct = (e: AccuracyEstimate | null) => (e ? formatEstimate(e, { showN: false }) : '—').padStart(19);
      const names = targets.map((t) => t.name);
      console.log(`accuracy of each target (all-R [95% interval], R = ${passes}) on the first ${n} test images, eps ${(eps * 255).toFixed(1)}/255, PGD-${steps}${eot > 1 ? ` EOT ${eot}` : ''}:`);
      console.log(`  ${'crafted on'.padEnd(32)} ${names.map((t) => t.padStart(Math.max(7, t.length))).join(' ')}`);
      console.log(`  ${'(clean)'.padEnd(32)} ${matrix.clean.map((c, i) => pct(c.intervals['all-R']).padStart(Math.max(19, names[i]!.length))).join(' ')}`);
      for (const r of matrix.rows) {
        console.log(`  ${r.sources.join(' + ').padEnd(32)} ${r.transferred.map((t, i) => pct(t.intervals['all-R']).padStart(Math.max(19, names[i]!.length))).join(' ')}`);
      }
      console.log(`report: ${html}\njson:   ${join(dir, 'transfer.json')}`);
    }
  } finally {
    if (matrix) for (const r of matrix.rows) r.adversarial.dispose();
    for (const m of loaded.values()) m.dispose();
    batch.dispose();
  }
  return 0;
}

function saveCraftedImages(dir: string, matrix: TransferMatrix, labels: readonly number[], classes: readonly string[], settings: Record<string, unknown>): void {
  const rows = matrix.rows.map((r, k) => {
    const folder = join('images', `${k}-${r.sources.join('+').replace(/[^A-Za-z0-9._+-]+/g, '_')}`);
    mkdirSync(join(dir, folder), { recursive: true });
    const files = labels.map((_, i) => {
      const file = join(folder, `${String(i).padStart(5, '0')}.png`);
      tidy(() => savePng(join(dir, file), r.adversarial.select(0, i)));
      return file;
    });
    return { sources: r.sources, images: files.map((file, i) => ({ file, testIndex: i, trueClass: classes[labels[i]!] })) };
  });
  writeJsonAtomic(join(dir, 'manifest.json'), {
    what: 'adversarial images crafted on the sources below, to be shown to models that were not used in crafting (e.g. a vision-language model asked for the class)',
    classes, settings: { ...settings, clean: undefined, rows: undefined }, rows,
  });
}

function writeTransferReport(dir: string, matrix: TransferMatrix, images: Tensor, labels: readonly number[], classes: readonly string[],
  summary: { n: number; eps: number; steps: number; eot: number; passes: number; gradient: string; seconds: number; data: string }): string {
  const report = new HtmlReport({ title: 'crossmax transfer', subtitle: 'adversarial images crafted on some models, judged on others' });
  report.keyValues({
    data: summary.data, images: `the first ${summary.n} test images`, threat: `L-inf, eps ${(summary.eps * 255).toFixed(1)}/255`,
    attack: `PGD-${summary.steps} on the mean of the sources' logits${summary.eot > 1 ? `, EOT ${summary.eot}` : ''}; gradient of ${summary.gradient}`,
    judged: `${summary.passes} forward passes per image`, time: `${summary.seconds.toFixed(0)} s`,
  }, { title: 'Run' });
  const targets = matrix.clean.map((c) => c.target);
  report.heading('Target accuracy');
  report.paragraph('All-R accuracy of each target (correct on every forward pass) on the clean images and on the images crafted on each source set; the mean over passes in parentheses. The source column is the share of images that fool the sources themselves (one pass). '
    + `Brackets: 95% intervals over the ${summary.n} images (Wilson; a seeded bootstrap for the mean over passes).`);
  const interval = (e: AccuracyEstimate | null) => (e ? ` [${(100 * e.low).toFixed(1)}, ${(100 * e.high).toFixed(1)}]` : '');
  const cell = (i: EstimateByDefinition) => `${(100 * i['all-R']!.value).toFixed(1)}%${interval(i['all-R'])} (${(100 * i['mean-over-R']!.value).toFixed(1)}%${interval(i['mean-over-R'])})`;
  report.table({
    columns: [{ key: 'set', label: 'crafted on' }, { key: 'fooled', label: 'fools the sources', percent: true }, ...targets.map((t) => ({ key: `t:${t}`, label: t }))],
    rows: [
      { set: '(clean images)', fooled: null, ...Object.fromEntries(matrix.clean.map((c) => [`t:${c.target}`, cell(c.intervals)])) },
      ...matrix.rows.map((r) => ({
        set: r.sources.join(' + '), fooled: proportionEstimate(r.sourceFooled.filter(Boolean).length, r.sourceFooled.length),
        ...Object.fromEntries(r.transferred.map((t) => [`t:${t.target}`, cell(t.intervals)])),
      })),
    ],
  });
  const shown = Math.min(8, labels.length);
  for (const r of matrix.rows) {
    report.heading(`Crafted on ${r.sources.join(' + ')}`, { level: 3 });
    const amplification = autoAmplification(r.adversarial.narrow(0, 0, shown), images.narrow(0, 0, shown));
    tidy(() => {
      const items: GalleryItem[] = [];
      for (let i = 0; i < shown; i++) {
        const verdicts = r.transferred.map((t) => `${t.target}: ${classes[t.firstPrediction[i]!]}`).join('\n');
        items.push({ image: images.select(0, i), caption: `clean\n${classes[labels[i]!]}` });
        items.push({ image: r.adversarial.select(0, i), caption: verdicts, highlight: r.transferred.every((t) => t.firstPrediction[i] === labels[i]) ? 'correct' : 'wrong' });
        items.push({ image: perturbationToImage(r.adversarial.narrow(0, i, 1), images.narrow(0, i, 1), { amplify: amplification }).select(0, 0), caption: `change ×${amplification.toPrecision(3)}` });
      }
      report.gallery(items, { columns: 3, caption: 'Clean image, crafted image with each target\'s prediction (first pass; green: every target still right), and the change amplified around grey.' });
    });
  }
  return report.save(dir, 'transfer.html');
}
