// The report of a training run (crossmax train / demo): curves, per-member and per-aggregator accuracy, the
// confusion matrix, and sample test images with the ensemble's and every member's prediction.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageClassificationDataset } from '../data/index.js';
import type { EvaluationResult, MetricRecord } from '../train/index.js';
import { saveChart, type LineChartSpec } from './chart.js';
import { HtmlReport } from './html.js';
import { writeJsonAtomic } from '../util/json.js';

export interface TrainingReportInput {
  title: string;
  /** Facts shown at the top (model, data copy, machine, timings...). */
  facts: Record<string, unknown>;
  metrics: readonly MetricRecord[];
  evaluation: EvaluationResult;
  /** Member names in member order (e.g. 'layer1.0', ..., 'fc'). */
  memberNames: readonly string[];
  /** The test set the evaluation ran on (for the sample images). */
  testSet: ImageClassificationDataset;
  /** Extra sections appended by callers (robustness, generation). */
  extend?: (report: HtmlReport) => void;
}

export interface TrainingReportFiles {
  html: string;
  curvesPng: string;
  curvesSvg: string;
  resultsJson: string;
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
    'aggregation; the others are ablations.');
  report.table({
    columns: [{ key: 'name', label: 'member / aggregator' }, { key: 'kind' }, { key: 'accuracy', percent: true, best: 'max' }],
    rows: [
      ...ev.aggregators.map((a) => ({ name: a.name, kind: 'aggregator', accuracy: a.accuracy })),
      ...ev.memberAccuracies.map((acc, i) => ({ name: input.memberNames[i] ?? `member ${i}`, kind: 'member', accuracy: acc })),
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
        { key: 'acc', label: 'class accuracy', percent: true }],
      rows: ev.confusion.map((row, i) => ({
        class: classes[i], ...Object.fromEntries(row.map((v, j) => [`p${j}`, v])), acc: ev.perClassAccuracy[i],
      })),
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
      columns: [{ key: 'class' }, { key: 'images' }, { key: 'acc', label: 'class accuracy', percent: true }],
      rows: classes.map((c, i) => ({ class: c, images: ev.confusion[i]!.reduce((a, b) => a + b, 0), acc: ev.perClassAccuracy[i] })),
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
