// The report of a generation run: a PNG grid, generate.html (judges' agreement, every image with its score, each
// run's loss curve) and every image as a PNG with a manifest (what to give a model this machine cannot reach).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { GeneratedImages, Judgement } from '../generate/index.js';
import { tidy } from '../tensor/index.js';
import { HtmlReport } from './html.js';
import { saveImageGrid } from './image-grid.js';
import { writeJsonAtomic } from '../util/json.js';
import { savePng } from './png.js';

/** Writes generate.png and generate.html into `dir`; returns the HTML file. */
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
    const images = run.targetOfImage.length;
    report.paragraph('Share of forward passes in which each model gives a generated image its intended class (the generating model first; the others were trained independently and never used in generation). '
      + `Brackets: 95% intervals over the ${images} images (a seeded bootstrap for the share of passes, Wilson for every pass).`);
    report.table({
      columns: [
        { key: 'judge' }, { key: 'agreement', label: `agreement, n = ${images}`, percent: true, best: 'max' },
        { key: 'allPasses', label: `every pass, n = ${images}`, percent: true },
      ],
      rows: judgements.map((j) => ({ judge: j.judge, agreement: j.intervals?.agreement ?? j.agreement, allPasses: j.intervals?.allPasses ?? j.allPasses })),
    });
    // One row per target and one column per judge: targets are many (100 classes, long prompts) and judges few, so
    // targets as columns made the table wider than the page.
    report.table({
      caption: 'Per intended class',
      columns: [{ key: 'target', label: 'class' }, ...judgements.map((j, k) => ({ key: `j${k}`, label: j.judge, percent: true }))],
      rows: run.targets.map((c) => ({ target: c, ...Object.fromEntries(judgements.map((j, k) => [`j${k}`, j.perClass[c]])) })),
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
