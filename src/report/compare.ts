// Two results files on the same images, compared image by image: for a proportion (clean accuracy, single
// evaluation, all-R) the paired difference A − B with Newcombe's interval and McNemar's exact test; for mean over
// R the paired bootstrap of the per-image differences. Pairing is what makes "CrossMax vs mean logits on the same
// 200 images" sharper than two separate intervals: the images both get right or both get wrong say nothing about
// the difference. Results on different images are refused, not compared.
import type { RobustnessResults } from '../robustness/evaluation.js';
import { heldImageRanges } from '../robustness/merge.js';
import type { EvaluationResult } from '../train/evaluate.js';
import {
  formatDifference, formatEstimate, pairedBootstrapDifference, pairedDifference, proportionEstimate, bootstrapMeanEstimate,
  type AccuracyEstimate, type PairedDifference,
} from '../util/statistics.js';

/** One accuracy of both results and their paired difference. */
export interface ComparisonRow {
  /** What is compared ("worst case, all-R", "clean, output", ...). */
  what: string;
  /** Result A's accuracy, in [0, 1], with its 95% interval (Wilson for a proportion, bootstrap for mean over R). */
  a: AccuracyEstimate;
  /** Result B's accuracy on the same images, with its 95% interval, as for `a`. */
  b: AccuracyEstimate;
  /** A − B: Newcombe's interval and McNemar's test for a proportion, a paired bootstrap for mean over R. */
  difference: PairedDifference | AccuracyEstimate;
}

/** The comparison of two results files. */
export interface Comparison {
  /** What was compared: two robustness results (robust.json) or two clean evaluations. */
  kind: 'robustness' | 'clean';
  /** Images, the same in both. */
  images: number;
  /** Result A's name (its file's path, or 'A'). */
  nameA: string;
  /** Result B's name (its file's path, or 'B'). */
  nameB: string;
  /** One row per accuracy both results report, each with the paired difference A − B. */
  rows: ComparisonRow[];
  /** Differences in settings worth knowing (eps, R, data source) that do not prevent the pairing. */
  notes: string[];
}

/** A results file's content and a name for it (its path). */
export interface NamedResults {
  /** What messages and the comparison call the result: usually its file's path. */
  name: string;
  /** The file's parsed JSON: a robustness result, or a clean evaluation (bare or under `evaluation`). */
  value: unknown;
}

/**
 * Compares two results on the same images: two robustness results (robust.json) or two clean evaluations
 * (results.json of train / demo, the JSON of `crossmax eval --json` or `crossmax train --json`).
 */
export function compareResults(a: NamedResults, b: NamedResults): Comparison {
  const ra = robustnessOf(a.value);
  const rb = robustnessOf(b.value);
  if (ra && rb) return compareRobustness(ra, rb, a.name, b.name);
  const ea = evaluationOf(a.value);
  const eb = evaluationOf(b.value);
  if (ea && eb) return compareEvaluations(ea, eb, a.name, b.name);
  const kind = (r: unknown, e: unknown) => (r ? 'a robustness result' : e ? 'a clean evaluation' : 'neither a robustness result nor a clean evaluation');
  throw new Error(`cannot compare ${a.name} (${kind(ra, ea)}) with ${b.name} (${kind(rb, eb)}): give two robust.json files or two clean evaluations`);
}

function robustnessOf(value: unknown): RobustnessResults | null {
  const v = value as Partial<RobustnessResults> | null;
  return typeof v === 'object' && v !== null && v.format === 'crossmax-robustness-v1' ? v as RobustnessResults : null;
}

function evaluationOf(value: unknown): EvaluationResult | null {
  const v = value as { evaluation?: unknown } | null;
  if (typeof v !== 'object' || v === null) return null;
  const e = (v.evaluation ?? v) as Partial<EvaluationResult>;
  return typeof e.count === 'number' && typeof e.correct === 'number' && Array.isArray(e.aggregators) ? e as EvaluationResult : null;
}

/** The paired comparison of two robustness evaluations of the same images. */
export function compareRobustness(a: RobustnessResults, b: RobustnessResults, nameA = 'A', nameB = 'B'): Comparison {
  for (const [name, r] of [[nameA, a], [nameB, b]] as const) {
    if (!r.perImage || !Array.isArray(r.perImage.labels) || r.perImage.labels.length !== r.images) {
      throw new Error(`${name}: no per-image results for its ${r.images} images (perImage.labels); a paired comparison needs them`);
    }
  }
  if (a.images !== b.images) throw new Error(`${nameA} has ${a.images} images and ${nameB} ${b.images}: a paired comparison needs the same images`);
  // A partial merge holds some ranges of the first N images, a complete evaluation of n images the range 0–(n−1):
  // pairs need the same ranges (a partial merge of images 0–199 pairs with a complete evaluation of the first 200).
  if (heldImageRanges(a).join() !== heldImageRanges(b).join()) {
    const held = (r: RobustnessResults) => (r.partial ? `images ${r.partial.held.join(', ')} of ${r.partial.of} (a partial merge)` : `all ${r.images} images`);
    throw new Error(`${nameA} holds ${held(a)}, ${nameB} ${held(b)}: a paired comparison needs the same images`);
  }
  const mismatch = a.perImage.labels.findIndex((label, i) => label !== b.perImage.labels[i]);
  if (mismatch >= 0) {
    throw new Error(`${nameA} and ${nameB} are not on the same images: image ${mismatch} has label ${a.perImage.labels[mismatch]} in one and ${b.perImage.labels[mismatch]} in the other`);
  }
  const notes: string[] = [];
  if (a.dataSource !== b.dataSource) notes.push(`data sources differ ('${a.dataSource}' vs '${b.dataSource}'); the labels agree image by image`);
  if (a.norm !== b.norm || a.eps !== b.eps) notes.push(`threat models differ: ${a.norm} eps ${a.eps} vs ${b.norm} eps ${b.eps}`);
  if (a.reEvaluations !== b.reEvaluations) notes.push(`R differs: ${a.reEvaluations} vs ${b.reEvaluations}`);
  const rows: ComparisonRow[] = [];
  const cleanSingle = (r: RobustnessResults) => r.perImage.cleanPredicted.map((p, i) => p === r.perImage.labels[i]);
  const cleanAllR = (r: RobustnessResults) => r.perImage.cleanCorrect.map((k) => k === r.reEvaluations);
  const cleanMean = (r: RobustnessResults) => r.perImage.cleanCorrect.map((k) => k / r.reEvaluations);
  rows.push(proportionRow('clean, single evaluation', cleanSingle(a), cleanSingle(b)));
  rows.push(proportionRow('clean, all-R', cleanAllR(a), cleanAllR(b)));
  rows.push(meanRow('clean, mean over R', cleanMean(a), cleanMean(b)));
  rows.push(proportionRow('worst case, single evaluation', robustSingle(a), robustSingle(b)));
  rows.push(proportionRow('worst case, all-R', a.perImage.robust, b.perImage.robust));
  rows.push(meanRow('worst case, mean over R', a.perImage.robustEvaluations.map((k) => k / a.reEvaluations), b.perImage.robustEvaluations.map((k) => k / b.reEvaluations)));
  return { kind: 'robustness', images: a.images, nameA, nameB, rows, notes };
}

/** Robust under single evaluation, per image: kept by newer results, derived from the first clean pass and each attack's own pass in older ones. */
function robustSingle(r: RobustnessResults): boolean[] {
  if (Array.isArray(r.perImage.robustSingleEvaluation)) return r.perImage.robustSingleEvaluation;
  return r.perImage.cleanPredicted.map((p, i) => p === r.perImage.labels[i] && r.attacks.every((a) => a.success[i] !== true));
}

/** The paired comparison of two clean evaluations of the same images: the outputs and every aggregator both have. */
export function compareEvaluations(a: EvaluationResult, b: EvaluationResult, nameA = 'A', nameB = 'B'): Comparison {
  if (a.count !== b.count) throw new Error(`${nameA} has ${a.count} images and ${nameB} ${b.count}: a paired comparison needs the same images`);
  if (a.dataset !== b.dataset) throw new Error(`${nameA} is on ${a.dataset} and ${nameB} on ${b.dataset}: a paired comparison needs the same images`);
  // The images per class must agree too (confusion matrices' row sums): a cheap check that the same images were read.
  const perClass = (e: EvaluationResult) => (e.confusion ?? []).map((row) => row.reduce((x, y) => x + y, 0)).join(',');
  if (perClass(a) !== perClass(b)) throw new Error(`${nameA} and ${nameB} have different numbers of images per class: not the same images`);
  const verdicts = (e: EvaluationResult, bits: string | undefined, name: string, what: string): boolean[] => {
    if (typeof bits !== 'string' || bits.length !== e.count || /[^01]/.test(bits)) {
      throw new Error(`${name}: no per-image verdicts for ${what} (perImageCorrect, kept by evaluations since intervals were added); re-run the evaluation`);
    }
    return [...bits].map((c) => c === '1');
  };
  const rows: ComparisonRow[] = [proportionRow('clean, model output', verdicts(a, a.perImageCorrect?.output, nameA, 'the output'), verdicts(b, b.perImageCorrect?.output, nameB, 'the output'))];
  a.aggregators.forEach((agg, i) => {
    const j = b.aggregators.findIndex((x) => x.name === agg.name);
    if (j < 0) return;
    rows.push(proportionRow(`clean, ${agg.name}`, verdicts(a, a.perImageCorrect?.aggregators[i], nameA, agg.name), verdicts(b, b.perImageCorrect?.aggregators[j], nameB, agg.name)));
  });
  return { kind: 'clean', images: a.count, nameA, nameB, rows, notes: [] };
}

function proportionRow(what: string, a: readonly boolean[], b: readonly boolean[]): ComparisonRow {
  const count = (v: readonly boolean[]) => v.filter(Boolean).length;
  return { what, a: proportionEstimate(count(a), a.length), b: proportionEstimate(count(b), b.length), difference: pairedDifference(a, b) };
}

function meanRow(what: string, a: readonly number[], b: readonly number[]): ComparisonRow {
  return { what, a: bootstrapMeanEstimate(a), b: bootstrapMeanEstimate(b), difference: pairedBootstrapDifference(a, b) };
}

/** The comparison as text: each row's two accuracies with their intervals and the paired difference. */
export function formatComparison(c: Comparison): string {
  const width = Math.max(...c.rows.map((r) => r.what.length));
  const cellWidth = 20;
  const lines = [
    `A: ${c.nameA}`,
    `B: ${c.nameB}`,
    `${c.images} images, the same in both; brackets: 95% intervals (Wilson; bootstrap for mean over R); A − B paired (Newcombe and McNemar's exact test; paired bootstrap for mean over R)`,
    ...c.notes.map((n) => `note: ${n}`),
    `  ${''.padEnd(width)}  ${'A'.padEnd(cellWidth)}  ${'B'.padEnd(cellWidth)}  A − B`,
    ...c.rows.map((r) => {
      const d = r.difference;
      const difference = 'mcnemarP' in d ? formatDifference(d, { showN: false }) : formatDifference({ difference: d.value, low: d.low, high: d.high, n: d.n }, { showN: false });
      return `  ${r.what.padEnd(width)}  ${formatEstimate(r.a, { showN: false }).padEnd(cellWidth)}  ${formatEstimate(r.b, { showN: false }).padEnd(cellWidth)}  ${difference}`;
    }),
  ];
  return lines.join('\n');
}
