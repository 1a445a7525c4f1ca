// The page a robustness evaluation leaves behind (report/robust.html) and its machine-readable twin
// (report/robust.json): the headline number with its definition, every attack under every definition of robust
// accuracy, the gradient-masking checks (failed ones in a warnings box at the top), accuracy against eps, and
// clean / adversarial / amplified-perturbation triples so that a person can look at what the attacks did.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tensor, tidy, type Device, type Tensor } from '../tensor/index.js';
import { formatEps } from '../robustness/masking.js';
import type { AccuracyByDefinition, AccuracyDefinition } from '../robustness/definitions.js';
import type { RobustnessEvaluation, RobustnessResults } from '../robustness/evaluation.js';
import { holdsImageZero } from '../robustness/merge.js';
import type { ChartSeries } from './chart.js';
import { HtmlReport, type GalleryItem } from './html.js';
import { writeJsonAtomic } from '../util/json.js';
import { autoAmplification, perturbationToImage } from './png.js';
import { formatEstimate } from '../util/statistics.js';
import { robustnessIntervals, type EstimateByDefinition } from '../robustness/intervals.js';

/** Where and how writeRobustReport writes robust.html and robust.json. */
export interface RobustReportOptions {
  /** Folder of the page, its images and the JSON file. Default 'report'. */
  dir?: string;
  /** Default 'robust.html'. */
  htmlFileName?: string;
  /** Default 'robust.json'. */
  jsonFileName?: string;
  /** Default 'Robustness of <model>'. */
  title?: string;
  /** Class names by label; labels without one are shown as numbers. */
  classNames?: readonly string[];
  /** Clean / adversarial / perturbation triples in the gallery (images the attacks broke first). Default 8. */
  galleryImages?: number;
  /** Shown in the footer; left out by default so equal evaluations give equal pages. */
  generatedAt?: Date;
}

const DEFINITION_ORDER: readonly AccuracyDefinition[] = ['all-R', 'mean-over-R', 'single-evaluation'];

/**
 * Writes the JSON results and then the page (each atomically) for an evaluation of `images` (the clean images it
 * was given). Returns both paths.
 */
export function writeRobustReport(evaluation: RobustnessEvaluation, images: Tensor, options: RobustReportOptions = {}): { html: string; json: string } {
  const results = evaluation.results;
  if (images.shape[0] !== results.images) throw new RangeError(`the evaluation has ${results.images} images, got ${images.shape[0]}`);
  const dir = options.dir ?? 'report';
  const jsonFileName = options.jsonFileName ?? 'robust.json';
  const report = new HtmlReport({
    title: options.title ?? `Robustness of ${results.model}`,
    subtitle: `${results.dataSource}: ${results.images} images${results.partial ? ` of ${results.partial.of} (partial merge)` : ''}, ${results.norm} eps ${formatEps(results.eps)}, ${results.reEvaluations} re-evaluations per adversarial image`,
    generatedAt: options.generatedAt,
  });
  const className = (c: number) => options.classNames?.[c] ?? String(c);

  // Results made before intervals were kept in them get theirs here, from their per-image counts.
  const intervals = results.intervals ?? robustnessIntervals(results);
  const headline = results.headline.definition;
  const shown = (e: EstimateByDefinition, value: number, d = headline) => (e[d] ? formatEstimate(e[d]!) : `${percent(value)} (n = ${results.images}; no interval)`);
  report.heading('Summary');
  if (results.partial) report.paragraph(partialNote(results));
  report.paragraph(`Robust accuracy: ${shown(intervals.worstCase, results.headline.value)} (definition ${headline}; ${results.headline.scope}). `
    + `Clean accuracy: ${shown(intervals.cleanAccuracy, results.cleanAccuracy[headline])} (${headline}). `
    + `Brackets: 95% intervals over the ${results.images} images (${intervals.methods['all-R']} for all-R and single evaluation; ${intervals.methods['mean-over-R']} for mean over R).`);
  const failed = results.masking?.checks.filter((c) => !c.passed) ?? [];
  report.warnings(failed.map((c) => `${c.name}: ${c.details}`), { title: 'Signs of gradient masking: the numbers below may over-state robustness' });
  if (!results.masking && holdsImageZero(results)) report.paragraph('No gradient-masking checks were run with this evaluation.');
  // An estimate where there is one, else the bare accuracy.
  const cells = (accuracy: AccuracyByDefinition, estimates: EstimateByDefinition | null | undefined) =>
    Object.fromEntries(DEFINITION_ORDER.map((d) => [d, estimates?.[d] ?? accuracy[d]]));
  const definitionColumns = (best?: 'min') => DEFINITION_ORDER.map((d) => ({ key: d, label: d, percent: true, ...(best ? { best } : {}) }));
  report.table({
    caption: `Robust accuracy after each attack (worst case over it and every row above it), under each definition: accuracy [95% interval] over n = ${results.images} images`,
    columns: [
      { key: 'row', label: 'after' },
      ...definitionColumns(),
      { key: 'attacked', label: 'attacked' },
      { key: 'fooled', label: 'fooled (own pass)' },
      { key: 'retried', label: 'retried' },
      { key: 'seconds', decimals: 1 },
    ],
    rows: [
      { row: 'clean', ...cells(results.cleanAccuracy, intervals.cleanAccuracy) },
      ...results.attacks.map((a, k) => ({
        row: a.name, ...cells(a.robustAccuracyAfter, intervals.attacks[k]?.robustAccuracyAfter), attacked: a.attackedImages, fooled: a.fooledImages,
        retried: a.retriedImages, seconds: a.seconds,
      })),
      { row: 'worst case', ...cells(results.worstCase, intervals.worstCase), seconds: results.seconds.attacks },
    ],
  });
  const alone = results.attacks.filter((a) => a.robustAccuracy !== null);
  if (alone.length > 0) {
    report.table({
      caption: `Each attack alone (worst of the clean image and its adversarial image), where it ran on every point: accuracy [95% interval] over n = ${results.images} images`,
      columns: [{ key: 'row', label: 'attack' }, ...definitionColumns('min')],
      rows: alone.map((a) => ({
        row: a.name, ...cells(a.robustAccuracy as AccuracyByDefinition, intervals.attacks.find((i) => i.name === a.name)?.robustAccuracy),
      })),
    });
  }
  report.keyValues(Object.fromEntries(DEFINITION_ORDER.map((d) => [d, results.definitions[d]])), { title: 'Definitions' });

  if (results.masking) {
    report.heading('Gradient-masking checks');
    report.paragraph(`On the first ${results.masking.images} images, accuracy definition ${results.masking.definition}.`);
    report.table({
      columns: [{ key: 'name', label: 'check' }, { key: 'result' }, { key: 'details' }],
      rows: results.masking.checks.map((c) => ({ name: c.name, result: c.passed ? 'passed' : 'FAILED', details: c.details })),
    });
    addEpsChart(report, results);
  }

  report.heading('Adversarial examples');
  addGallery(report, evaluation, images, className, options.galleryImages ?? 8);

  report.heading('Settings');
  report.keyValues({
    model: results.model, data: results.dataSource, norm: results.norm, eps: formatEps(results.eps), images: results.images,
    're-evaluations (R)': results.reEvaluations, seed: results.settings.seed, 'batch size': results.settings.batchSize,
    'every attack on every point': results.settings.independent, 'seconds (total)': results.seconds.total,
    // A resumed evaluation's times include the work of the runs before it: say how much, so a rate is read right.
    ...(results.seconds.earlierRuns !== undefined ? { 'of which before a resume (s)': results.seconds.earlierRuns } : {}),
    ...(results.seconds.untimedBatches ? { 'resumed batches without a stored time': results.seconds.untimedBatches } : {}),
  });
  report.json(results.attacks.map((a) => ({ name: a.name, attack: a.attack, options: a.options })), { caption: 'Attacks and their settings' });
  report.paragraph(`All numbers, per attack and per image: ${jsonFileName}.`);

  mkdirSync(dir, { recursive: true });
  const json = join(dir, jsonFileName);
  writeJsonAtomic(json, results);
  const html = report.save(dir, options.htmlFileName ?? 'robust.html');
  return { html, json };
}

function addEpsChart(report: HtmlReport, results: RobustnessResults): void {
  const curve = results.masking!.epsCurve;
  if (curve.length === 0) return;
  const series: ChartSeries[] = [];
  for (const attack of [...new Set(curve.map((p) => p.attack))]) {
    const points = curve.filter((p) => p.attack === attack).sort((a, b) => a.eps - b.eps);
    for (const definition of ['all-R', 'mean-over-R'] as const) {
      series.push({ name: `${attack} (${definition})`, x: points.map((p) => p.eps), y: points.map((p) => p.robustAccuracy[definition]) });
    }
  }
  const logScale = curve.every((p) => p.eps > 0);
  report.chart({
    series, title: 'Robust accuracy against eps', xLabel: `eps (${results.norm})`, yLabel: 'robust accuracy', yRange: [0, 1],
    xScale: logScale ? 'log' : 'linear',
  }, { caption: 'It must reach ~0 as eps grows; a curve that stays up is a sign of gradient masking.' });
}

function addGallery(report: HtmlReport, evaluation: RobustnessEvaluation, images: Tensor, className: (c: number) => string, count: number): void {
  const { perImage, reEvaluations } = evaluation.results;
  const order = perImage.labels.map((_, i) => i)
    .sort((a, b) => Number(perImage.worstAttack[b] !== null) - Number(perImage.worstAttack[a] !== null) || perImage.worstCorrect[a]! - perImage.worstCorrect[b]! || a - b)
    .slice(0, Math.max(0, count));
  if (order.length === 0) {
    report.paragraph('No images.');
    return;
  }
  tidy(() => {
    const index = tensor(order, { dtype: 'int64', device: images.device as Device });
    const clean = images.indexSelect(0, index).to('cpu');
    const adversarial = evaluation.worstAdversarial.indexSelect(0, index).to('cpu');
    const amplification = autoAmplification(adversarial, clean);
    const perturbation = perturbationToImage(adversarial, clean);
    const items: GalleryItem[] = [];
    order.forEach((i, j) => {
      const label = perImage.labels[i]!;
      const cleanPredicted = perImage.cleanPredicted[i]!;
      const worstPredicted = perImage.worstPredicted[i]!;
      const size = tidy(() => adversarial.select(0, j).sub(clean.select(0, j)).abs().max().item());
      items.push({
        image: clean.select(0, j),
        caption: `#${i} clean\ntrue: ${className(label)}\npred: ${className(cleanPredicted)} (${perImage.cleanCorrect[i]}/${reEvaluations} correct)`,
        highlight: cleanPredicted === label ? 'correct' : 'wrong',
      });
      items.push({
        image: adversarial.select(0, j),
        caption: `${perImage.worstAttack[i] ?? 'no attack beat clean'}\npred: ${className(worstPredicted)} (${perImage.worstCorrect[i]}/${reEvaluations} correct)`,
        highlight: worstPredicted === label ? 'correct' : 'wrong',
      });
      items.push({ image: perturbation.select(0, j), caption: `perturbation ×${amplification.toPrecision(3)}\n‖δ‖∞ = ${(size * 255).toFixed(2)}/255` });
    });
    report.gallery(items, {
      columns: 3,
      caption: `Clean image, its worst adversarial image (the attack with the fewest correct re-evaluations) and the perturbation, amplified ×${amplification.toPrecision(3)} around grey. Predictions are the first re-evaluation's.`,
    });
  });
}

function percent(v: number): string {
  return `${(100 * v).toFixed(2)}%`;
}

/**
 * The results as plain text for a terminal: every row's accuracy under each definition with its 95% interval,
 * the headline with its number of images, and the masking checks.
 */
export function formatRobustnessText(r: RobustnessResults): string {
  const intervals = r.intervals ?? robustnessIntervals(r);
  const cell = (accuracy: AccuracyByDefinition, estimates: EstimateByDefinition | null | undefined, d: AccuracyDefinition) =>
    (estimates?.[d] ? formatEstimate(estimates[d]!, { showN: false }) : `${(100 * accuracy[d]).toFixed(1)}%`).padStart(19);
  const row = (name: string, accuracy: AccuracyByDefinition, estimates: EstimateByDefinition | null | undefined) =>
    `  ${name.padEnd(26)} ${DEFINITION_ORDER.map((d) => cell(accuracy, estimates, d)).join(' ')}`;
  const headline = intervals.headline ? formatEstimate(intervals.headline) : `${(100 * r.headline.value).toFixed(1)}% (n = ${r.images})`;
  const lines = [
    ...(r.partial ? [partialNote(r)] : []),
    `robust accuracy on ${r.images} images (${r.dataSource}), ${r.norm} eps ${r.eps.toFixed(5)}, R = ${r.reEvaluations}; [95% intervals over the images]:`,
    `  ${'attack'.padEnd(26)} ${DEFINITION_ORDER.map((d) => (d === 'mean-over-R' ? 'mean-R' : d === 'single-evaluation' ? 'single' : d).padStart(19)).join(' ')}   (accuracy after the attack, cumulative)`,
    row('clean', r.cleanAccuracy, intervals.cleanAccuracy),
    ...r.attacks.map((a, k) => row(a.name, a.robustAccuracyAfter, intervals.attacks[k]?.robustAccuracyAfter)),
    row('worst case over attacks', r.worstCase, intervals.worstCase),
    `headline: ${headline} (${r.headline.definition}: ${r.definitions[r.headline.definition]})`,
  ];
  if (r.masking) {
    for (const check of r.masking.checks) lines.push(`masking check ${check.passed ? 'passed' : 'FAILED'}: ${check.name}: ${check.details}`);
  }
  return lines.join('\n');
}

/** What a partial merge (`crossmax merge --partial`) holds, said before its numbers. */
function partialNote(r: RobustnessResults): string {
  const p = r.partial!;
  return `PARTIAL: ${r.images} of the evaluation's ${p.of} images (held ${p.held.join(', ')}; missing ${p.missing.join(', ')}), `
    + 'the shards done so far, not the evaluation\'s result'
    + (!holdsImageZero(r) ? '; the gradient-masking checks come with the shard holding image 0, not among these' : '');
}

