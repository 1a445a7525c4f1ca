// The report of a training run (crossmax train / demo): curves, per-member and per-aggregator accuracy, the
// confusion matrix, and sample test images with the ensemble's and every member's prediction.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageClassificationDataset } from '../data/index.js';
import type { EvaluationResult, MetricRecord } from '../train/index.js';
import { saveChart, type LineChartSpec } from './chart.js';
import { HtmlReport } from './html.js';
import { writeJsonAtomic } from '../util/json.js';
import { formatDifference, formatEstimate, pairedDifference, proportionEstimate, type AccuracyEstimate, type PairedDifference } from '../util/statistics.js';

/** What a training report shows. */
export interface TrainingReportInput {
  /** The page's title. */
  title: string;
  /** Facts shown at the top (model, data copy, machine, timings...). */
  facts: Record<string, unknown>;
  /** The metric records of the run (metrics.jsonl). */
  metrics: readonly MetricRecord[];
  /** The final clean evaluation. */
  evaluation: EvaluationResult;
  /** Member names in member order (e.g. 'layer1.0', ..., 'fc'). */
  memberNames: readonly string[];
  /** The test set the evaluation ran on (for the sample images). */
  testSet: ImageClassificationDataset;
  /** Extra sections appended by callers (robustness, generation). */
  extend?: (report: HtmlReport) => void;
}

/** The files writeTrainingReport writes. */
export interface TrainingReportFiles {
  /** The HTML page. */
  html: string;
  /** The training curves as PNG. */
  curvesPng: string;
  /** The training curves as SVG. */
  curvesSvg: string;
  /** The evaluation as JSON. */
  resultsJson: string;
}

/** The model output's accuracy with its Wilson interval (computed here for results made before evaluate kept it). */
export function outputEstimate(ev: EvaluationResult): AccuracyEstimate {
  return ev.intervals?.output ?? proportionEstimate(ev.correct, ev.count);
}

/**
 * Each extra aggregator minus the model's output on the same images (paired, from the per-image verdicts), in the
 * order of ev.aggregators; null where the verdicts were not kept.
 */
export function aggregatorDifferences(ev: EvaluationResult): (PairedDifference | null)[] {
  const verdicts = (bits: string | undefined) => (bits === undefined || bits.length !== ev.count ? null : [...bits].map((c) => c === '1'));
  const output = verdicts(ev.perImageCorrect?.output);
  return ev.aggregators.map((_, i) => {
    const own = verdicts(ev.perImageCorrect?.aggregators[i]);
    return output && own && ev.count > 0 ? pairedDifference(own, output) : null;
  });
}

/** Training curves: loss per logged step and test accuracy per epoch (output and members). */
export function trainingCurves(metrics: readonly MetricRecord[], memberNames: readonly string[]): { loss: LineChartSpec; accuracy: LineChartSpec } {
  const steps = metrics.filter((m) => m.type === 'step');
  const epochs = metrics.filter((m) => m.type === 'epoch' && m.test);
  const loss: LineChartSpec = {
    title: 'Training loss',
    xLabel: 'optimiser step',
    yLabel: 'loss (mean over members)',
    series: [{ name: 'train loss', x: steps.map((m) => m.step), y: steps.map((m) => m.loss) }],
  };
  const accuracy: LineChartSpec = {
    title: 'Test accuracy per epoch',
    xLabel: 'epoch',
    yLabel: 'accuracy',
    yRange: [0, 1],
    series: [
      { name: 'ensemble output', x: epochs.map((m) => m.epoch), y: epochs.map((m) => m.test!.accuracy), color: '#000000' },
      ...memberNames.map((name, i) => ({
        name, x: epochs.map((m) => m.epoch), y: epochs.map((m) => m.test!.memberAccuracies[i] ?? null),
      })),
    ],
  };
  return { loss, accuracy };
}

/** Above this many classes the report shows the largest confusions and per-class accuracy instead of the matrix. */
export const MAX_CONFUSION_MATRIX_CLASSES = 20;


/** Writes index.html (curves, accuracies with their intervals, samples, confusion matrix), the curves and results.json into `dir`. */
export function writeTrainingReport(dir: string, input: TrainingReportInput): TrainingReportFiles {
  const { evaluation: ev, testSet } = input;
  const classes = testSet.classes;
  const curves = trainingCurves(input.metrics, input.memberNames);
  mkdirSync(dir, { recursive: true });
  const curvesPng = join(dir, 'training-curves.png');
  const curvesSvg = join(dir, 'training-curves.svg');
  saveChart(curvesPng, curves.accuracy);
  saveChart(curvesSvg, curves.accuracy);

  const report = new HtmlReport({ title: input.title, subtitle: `${ev.count} test images of ${ev.dataset}` });
  report.keyValues(input.facts, { title: 'Run' });

  report.heading('Accuracy of every member and every aggregator');
  report.paragraph('Clean accuracy on the same forward pass: each member (a head on an intermediate layer, and the ' +
    'backbone\'s own classifier) alone, and the ensemble aggregated in several ways. CrossMax is the paper\'s ' +
    `aggregation; the others are ablations. Model output: ${formatEstimate(outputEstimate(ev))}. Brackets: Wilson 95% intervals ` +
    `over the ${ev.count} images; the last column is each aggregator minus the model's output on the same images, ` +
    'with Newcombe\'s paired 95% interval and McNemar\'s exact test.');
  const versusOutput = aggregatorDifferences(ev);
  report.table({
    columns: [
      { key: 'name', label: 'member / aggregator' }, { key: 'kind' },
      { key: 'accuracy', label: `accuracy [95% interval], n = ${ev.count}`, percent: true, best: 'max' },
      { key: 'paired', label: 'minus the output (paired)' },
    ],
    rows: [
      ...ev.aggregators.map((a, i) => ({
        name: a.name, kind: 'aggregator', accuracy: ev.intervals?.aggregators[i] ?? proportionEstimate(a.correct, ev.count),
        paired: versusOutput[i] ? formatDifference(versusOutput[i]!, { showN: false }) : null,
      })),
      ...ev.memberAccuracies.map((acc, i) => ({
        name: input.memberNames[i] ?? `member ${i}`, kind: 'member', accuracy: ev.intervals?.members[i] ?? acc, paired: null,
      })),
    ],
  });

  report.heading('Training');
  report.chart(curves.accuracy);
  if (curves.loss.series[0]!.x.length > 1) report.chart(curves.loss);

  report.heading('Sample test predictions');
  report.paragraph('Green: the ensemble is right; red: wrong. Under each image: the true class, the ensemble\'s ' +
    'prediction, and how many members voted for it.');
  report.gallery(ev.samples.map((s) => {
    using batch = testSet.batch([s.index]);
    const image = batch.images.select(0, 0);
    const agree = s.memberVotes.filter((v) => v === s.predicted).length;
    const item = {
      image,
      caption: `true: ${classes[s.label]}\npred: ${classes[s.predicted]}` +
        (s.memberVotes.length ? `\n${agree}/${s.memberVotes.length} members agree` : ''),
      highlight: s.predicted === s.label ? 'correct' as const : 'wrong' as const,
    };
    return item;
  }), { imageWidth: 96, pixelated: true });

  if (classes.length <= MAX_CONFUSION_MATRIX_CLASSES) {
    report.heading('Confusion matrix (rows: true class, columns: predicted)');
    report.table({
      columns: [{ key: 'class', label: 'true \\ predicted' }, ...classes.map((c, j) => ({ key: `p${j}`, label: c })),
        { key: 'acc', label: 'accuracy [95%]', percent: true }],
      // Each class's accuracy is over its own images (its row's sum), with its Wilson interval.
      caption: 'Class accuracy: over the class\'s images (the row\'s sum), with its Wilson 95% interval',
      rows: ev.confusion.map((row, i) => {
        const n = row.reduce((a, b) => a + b, 0);
        return { class: classes[i], ...Object.fromEntries(row.map((v, j) => [`p${j}`, v])), acc: n > 0 ? proportionEstimate(row[i]!, n) : null };
      }),
    });
  } else {
    // A 100×100 matrix (CIFAR-100) is unreadable in a page: the most frequent confusions and each class's accuracy
    // say the same; the whole matrix stays in results.json.
    const pairs = ev.confusion.flatMap((row, i) => row.map((count, j) => ({ i, j, count }))).filter((p) => p.i !== p.j && p.count > 0);
    pairs.sort((a, b) => b.count - a.count || a.i - b.i || a.j - b.j);
    report.heading(`The ${Math.min(MAX_CONFUSION_MATRIX_CLASSES, pairs.length)} most frequent confusions (the whole matrix is in results.json)`);
    report.table({
      columns: [{ key: 'true', label: 'true class' }, { key: 'predicted', label: 'predicted' }, { key: 'count', label: 'images' }],
      rows: pairs.slice(0, MAX_CONFUSION_MATRIX_CLASSES).map((p) => ({ true: classes[p.i], predicted: classes[p.j], count: p.count })),
    });
    report.heading('Accuracy per class');
    report.table({
      columns: [{ key: 'class' }, { key: 'images' }, { key: 'acc', label: 'accuracy [95%]', percent: true }],
      rows: classes.map((c, i) => {
        const n = ev.confusion[i]!.reduce((a, b) => a + b, 0);
        return { class: c, images: n, acc: n > 0 ? proportionEstimate(ev.confusion[i]![i]!, n) : null };
      }),
    });
  }
  input.extend?.(report);

  const html = report.save(dir);
  const resultsJson = join(dir, 'results.json');
  writeJsonAtomic(resultsJson, {
    format: 'crossmax-training-report', title: input.title, facts: input.facts, evaluation: ev,
    memberNames: input.memberNames, metrics: input.metrics,
  });
  return { html, curvesPng, curvesSvg, resultsJson };
}

/**
 * Clean accuracy of every aggregator and member as plain text: each with its Wilson 95% interval, and each
 * aggregator's paired difference from the model's output with McNemar's test.
 */
export function formatEvaluationText(ev: EvaluationResult, memberNames: readonly string[]): string {
  const differences = aggregatorDifferences(ev);
  const estimate = (e: AccuracyEstimate | number) => (typeof e === 'number' ? `${(100 * e).toFixed(2)}%` : formatEstimate(e, { decimals: 2, showN: false }));
  const rows: [string, string, string][] = [
    ...ev.aggregators.map((a, i): [string, string, string] => [
      a.name, estimate(ev.intervals?.aggregators[i] ?? proportionEstimate(a.correct, ev.count)),
      differences[i] ? `${formatDifference(differences[i]!, { showN: false })} vs output` : '',
    ]),
    ...ev.memberAccuracies.map((a, i): [string, string, string] => [`member ${memberNames[i] ?? i}`, estimate(ev.intervals?.members[i] ?? a), '']),
  ];
  const width = Math.max(0, ...rows.map(([k]) => k.length));
  const valueWidth = Math.max(0, ...rows.map(([, v]) => v.length));
  return [
    `clean accuracy on ${ev.count} images of ${ev.dataset} [95% intervals]; output ${formatEstimate(outputEstimate(ev), { decimals: 2 })}:`,
    ...rows.map(([k, v, d]) => `  ${k.padEnd(width)}  ${v.padEnd(valueWidth)}  ${d}`.trimEnd()),
  ].join('\n');
}
