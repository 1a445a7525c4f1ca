// `crossmax gallery`: the interpretable-perturbation gallery (src/generate/gallery.ts). Test images pushed toward
// every class inside a small and a large L-inf ball, on one or more models side by side (the paper's claim: the
// multi-resolution self-ensemble's changes read as the target class, a plain network's do not). Writes
// gallery.html, one PNG grid per model and eps, and gallery.json with the targeted-success rates.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { interpretabilityGallery, type InterpretabilityGallery } from '../generate/index.js';
import { loadModelFile, modelLabel } from './model-files.js';
import { HtmlReport, autoAmplification, perturbationToImage, saveImageGrid, type GalleryItem } from '../report/index.js';
import { writeJsonAtomic } from '../util/json.js';
import { formatEstimate } from '../util/statistics.js';
import { ProgressBar } from '../util/progress.js';
import { cat, full, stack, tidy, type Device, type Tensor } from '../tensor/index.js';
import { UsageError, choiceFlag, deviceFlag, listFlag, numberFlag, parseCommandArgs, stringFlag, threadsFlag } from './args.js';
import { DATA_HELP, loadData } from './datasets.js';

export const GALLERY_OPTIONS = {
  model: { type: 'string' }, data: { type: 'string' }, images: { type: 'string' }, eps: { type: 'string' },
  steps: { type: 'string' }, copies: { type: 'string' }, parametrisation: { type: 'string' }, targets: { type: 'string' }, gradient: { type: 'string' },
  out: { type: 'string' }, seed: { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' },
  json: { type: 'boolean' }, config: { type: 'string' },
} as const;

export const GALLERY_USAGE = `crossmax gallery --model FILE[,FILE...] [options]

Pushes test images toward every class inside a small and a large L-inf ball (targeted PGD on the class's
log-probability, EOT over the model's randomness) and shows the results side by side for each model: the
original, the changed images with the model's prediction, the change amplified, and how often each target was
reached. Compare a multi-resolution self-ensemble with its single-resolution baseline (the paper's claim is that
only the first gives changes a person reads as the target class).
  --model FILES           crossmax model files, comma-separated (shown in this order)
  --data SPEC             ${DATA_HELP} (default cifar10)
  --images LIST           test-set indices, comma-separated (default 0,1,2,3)
  --eps LIST              L-inf radii, comma-separated, e.g. 8/255,32/255 (the default)
  --steps N               sign-gradient steps per change (default 50; step 2.5·eps/steps)
  --copies N              passes averaged per step, over the model's randomness (default 4)
  --parametrisation P     pixels (default) | multires (sum of up-sampled tensors at 1, 2, 4 … px)
  --targets LIST|all      target classes by index or name (default all)
  --gradient G            mean-logits (default: the mean of the members' logits, which CrossMax does not mask) |
                          output (the model's own output); the result is always judged on the model's output
  --out DIR               gallery.html, PNG grids, gallery.json (default report/gallery)
  --seed N                default 0
  --device DEV            cpu (default) | cuda | cuda:N
  --threads N             intra-op threads (default all cores)
  --json                  print the summary as JSON`;

interface ModelGallery {
  label: string;
  path: string;
  gallery: InterpretabilityGallery;
  members: string[];
  /** memberTargetShare() of the gallery; null for a model without members. */
  memberShares: { eps: number; share: number }[] | null;
}

export async function galleryCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, GALLERY_OPTIONS);
  threadsFlag(values);
  const modelPaths = listFlag(values, 'model');
  if (modelPaths.length === 0) throw new UsageError('--model FILE[,FILE...] is required');
  const device = deviceFlag(values);
  const testSet = await loadData(stringFlag(values, 'data') ?? 'cifar10', 'test');
  const indices = listFlag(values, 'images', '0,1,2,3').map((s) => {
    const i = Number(s);
    if (!Number.isInteger(i) || i < 0 || i >= testSet.length) throw new UsageError(`--images ${s}: an index below ${testSet.length}`);
    return i;
  });
  const epsList = listFlag(values, 'eps', '8/255,32/255').map((s) => {
    const v = numberFlag({ eps: s }, 'eps', { min: 0, max: 1 })!;
    if (v <= 0) throw new UsageError(`--eps ${s}: must be above 0`);
    return v;
  });
  const steps = numberFlag(values, 'steps', { integer: true, min: 1 }) ?? 50;
  const copies = numberFlag(values, 'copies', { integer: true, min: 1 }) ?? 4;
  const seed = numberFlag(values, 'seed', { integer: true, min: 0 }) ?? 0;
  const parametrisation = choiceFlag(values, 'parametrisation', ['pixels', 'multires'] as const) ?? 'pixels';
  const gradient = choiceFlag(values, 'gradient', ['mean-logits', 'output'] as const) ?? 'mean-logits';
  const classes = testSet.classes;
  const targetSpec = stringFlag(values, 'targets') ?? 'all';
  const targets = targetSpec === 'all' ? classes.map((_, i) => i) : listFlag(values, 'targets').map((s) => {
    const byName = classes.indexOf(s);
    const index = byName >= 0 ? byName : Number(s);
    if (!Number.isInteger(index) || index < 0 || index >= classes.length) throw new UsageError(`--targets ${s}: a class name or an index below ${classes.length}`);
    return index;
  });
  const dir = resolve(stringFlag(values, 'out') ?? join('report', 'gallery'));

  const batch = testSet.batch(indices, { device });
  const labels = batch.labels.toArray().map(Number);
  const results: ModelGallery[] = [];
  const started = performance.now();
  const bar = new ProgressBar({ label: 'gallery', unit: 'step', total: modelPaths.length * epsList.length * targets.length * steps });
  try {
    for (const [m, path] of modelPaths.entries()) {
      const model = loadModelFile(path, { device, numClasses: classes.length });
      try {
        const gallery = interpretabilityGallery(model, batch.images, labels, {
          eps: epsList, targets, steps, copies, parametrisation, gradient, seed, onStep: () => bar.tick(1, { model: String(m + 1) }),
        });
        results.push({ label: modelLabel(path, modelPaths), path, gallery, members: model.memberNames(), memberShares: memberTargetShare(gallery, labels, epsList) });
      } finally {
        model.dispose();
      }
    }
    bar.finish();
    const seconds = (performance.now() - started) / 1000;
    const summary = {
      data: testSet.source, images: indices, labels: labels.map((l) => classes[l]), eps: epsList, targets: targets.map((t) => classes[t]),
      steps, copies, parametrisation, gradient, seed, seconds,
      models: results.map((r) => ({
        label: r.label, path: r.path, members: r.members,
        targetedSuccess: r.gallery.targetedSuccess,
        memberTargetShare: r.memberShares,
        cells: r.gallery.cells.map((c) => ({ eps: c.eps, target: classes[c.target], predictions: c.predictions.map((p) => classes[p]), memberPredictions: c.memberPredictions?.map((row) => row.map((p) => classes[p])) ?? null })),
      })),
    };
    const html = writeGalleryReport(dir, results, batch.images, labels, classes, targets, epsList, summary);
    writeJsonAtomic(join(dir, 'gallery.json'), summary);
    if (values.json) {
      console.log(JSON.stringify(summary, null, 2));
    } else {
      console.log(`targeted success (model predicts the target class), ${indices.length} images × ${targets.length} targets, ${parametrisation}, ${steps} steps, gradient of ${gradient} [95% Wilson over the (image, target) pairs]:`);
      for (const r of results) {
        console.log(`  ${r.label.padEnd(24)} ${r.gallery.targetedSuccess.map((s) => `eps ${(s.eps * 255).toFixed(0)}/255: ${formatEstimate(s.estimate)}`).join('   ')}`);
      }
      console.log(`report: ${html}\njson:   ${join(dir, 'gallery.json')}`);
    }
  } finally {
    for (const r of results) for (const c of r.gallery.cells) c.images.dispose();
    batch.dispose();
  }
  return 0;
}

/** Per eps: the share of member votes, over (image, target ≠ label) pairs, that went to the target. */
function memberTargetShare(gallery: InterpretabilityGallery, labels: readonly number[], epsList: readonly number[]): { eps: number; share: number }[] | null {
  if (gallery.cells.some((c) => c.memberPredictions === null)) return null;
  return epsList.map((eps) => {
    let votes = 0;
    let total = 0;
    for (const cell of gallery.cells.filter((c) => c.eps === eps)) {
      cell.memberPredictions!.forEach((row, i) => {
        if (labels[i] === cell.target) return;
        total += row.length;
        votes += row.filter((p) => p === cell.target).length;
      });
    }
    return { eps, share: total > 0 ? votes / total : 0 };
  });
}

function writeGalleryReport(dir: string, results: readonly ModelGallery[], images: Tensor, labels: readonly number[], classes: readonly string[],
  targets: readonly number[], epsList: readonly number[], summary: { steps: number; copies: number; parametrisation: string; gradient: string; seconds: number; data: string }): string {
  mkdirSync(dir, { recursive: true });
  const report = new HtmlReport({ title: 'crossmax gallery', subtitle: 'test images pushed toward every class: what the change looks like' });
  report.keyValues({
    data: summary.data, models: results.map((r) => `${r.label} (${r.path})`).join('; '), parametrisation: summary.parametrisation, gradient: summary.gradient,
    steps: summary.steps, 'passes per step': summary.copies, eps: epsList.map((e) => `${(e * 255).toFixed(1)}/255`).join(', '), time: `${summary.seconds.toFixed(0)} s`,
  }, { title: 'Run' });
  report.heading('Targeted success');
  const pairs = results[0]?.gallery.targetedSuccess[0]?.pairs ?? 0;
  report.paragraph('Share of (image, target class ≠ true class) pairs for which the model, on one draw of its randomness, predicts the target after the change; and, for self-ensembles, the share of the members\' votes that went to the target. '
    + `Brackets: 95% Wilson intervals over the ${pairs} pairs (the pairs of one image are not independent, so they understate the uncertainty about other images).`);
  report.table({
    columns: [{ key: 'model' }, { key: 'eps' }, { key: 'success', label: `target reached, n = ${pairs} pairs`, percent: true }, { key: 'members', label: 'member votes for the target', percent: true }],
    rows: results.flatMap((r) => r.gallery.targetedSuccess.map((s, i) => ({
      model: r.label, eps: `${(s.eps * 255).toFixed(1)}/255`, success: s.estimate, members: r.memberShares ? r.memberShares[i]!.share : null,
    }))),
  });
  for (const eps of epsList) {
    const epsText = `${(eps * 255).toFixed(1)}/255`;
    report.heading(`eps ${epsText}`);
    for (const r of results) {
      const cells = targets.map((t) => r.gallery.cells.find((c) => c.eps === eps && c.target === t)!);
      // One PNG per model and eps: a row per image, the original then one column per target.
      const rows: Tensor[] = [];
      for (let i = 0; i < labels.length; i++) rows.push(images.select(0, i), ...cells.map((c) => c.images.select(0, i)));
      const grid = stack(rows, 0);
      const file = `gallery-${r.label.replace(/[^A-Za-z0-9._-]+/g, '_')}-eps${Math.round(eps * 255)}.png`;
      saveImageGrid(join(dir, file), grid, { columns: 1 + targets.length, scale: 2 });
      grid.dispose();
      for (const t of rows) t.dispose();
      const changed = cat(cells.map((c) => c.images), 0);
      const originals = images.repeat([cells.length, 1, 1, 1]);
      const amplification = autoAmplification(changed, originals);
      changed.dispose();
      originals.dispose();
      report.heading(`${r.label}, eps ${epsText}`, { level: 3 });
      // The report encodes the images as they are added; the views and deltas made here go with the scope.
      tidy(() => {
        const items: GalleryItem[] = [];
        for (let i = 0; i < labels.length; i++) {
          items.push({ image: images.select(0, i), caption: `original\n${classes[labels[i]!]}` });
          for (const c of cells) {
            const p = c.predictions[i]!;
            const votes = c.memberPredictions ? `\nmembers ${c.memberPredictions[i]!.filter((v) => v === c.target).length}/${c.memberPredictions[i]!.length}` : '';
            items.push({ image: c.images.select(0, i), caption: `→ ${classes[c.target]}\npred ${classes[p]}${votes}`, highlight: c.target === labels[i] ? undefined : p === c.target ? 'correct' : 'wrong' });
          }
          items.push({ image: full([3, images.shape[2]!, images.shape[3]!], 0.5), caption: `change ×${amplification.toPrecision(3)}` });
          for (const c of cells) {
            const base = images.narrow(0, i, 1);
            const delta = perturbationToImage(c.images.narrow(0, i, 1), base, { amplify: amplification });
            items.push({ image: delta.select(0, 0), caption: `→ ${classes[c.target]}` });
          }
        }
        report.gallery(items, {
          columns: 1 + targets.length, imageWidth: 64,
          caption: `Each image's first row: the original, then the image changed toward each class (green frame: the model now predicts that class; red: it does not). Second row: the change, amplified ×${amplification.toPrecision(3)} around grey. Grid: ${file}`,
        });
      });
    }
  }
  return report.save(dir, 'gallery.html');
}
