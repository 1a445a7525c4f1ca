// The report of a training run (crossmax train / demo): curves, per-member and per-aggregator accuracy, the
// confusion matrix, and sample test images with the ensemble's and every member's prediction.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageClassificationDataset } from '../data/index.js';
import type { EvaluationResult, MetricRecord } from '../train/index.js';
import { saveChart, type LineChartSpec } from './chart.js';
import { HtmlReport } from './html.js';
import { writeJsonAtomic } from '../util/json.js';

/**
 * What {@link writeTrainingReport} shows: the run's facts, its metrics, the final evaluation and sample test images.
 */
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

/** The files {@link writeTrainingReport} wrote. */
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

/**
 * Writes a training report into `dir`: an HTML page with the facts, the accuracy of every member and aggregator, the
 * training curves (PNG and SVG), sample test predictions and the confusion matrix, plus the evaluation as JSON. Files
 * are written atomically.
 */
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

  report.heading('Confusion matrix (rows: true class, columns: predicted)');
  report.table({
    columns: [{ key: 'class', label: 'true \\ predicted' }, ...classes.map((c, j) => ({ key: `p${j}`, label: c })),
      { key: 'acc', label: 'class accuracy', percent: true }],
    rows: ev.confusion.map((row, i) => ({
      class: classes[i], ...Object.fromEntries(row.map((v, j) => [`p${j}`, v])), acc: ev.perClassAccuracy[i],
    })),
  });
  input.extend?.(report);

  const html = report.save(dir);
  const resultsJson = join(dir, 'results.json');
  writeJsonAtomic(resultsJson, {
    format: 'crossmax-training-report', title: input.title, facts: input.facts, evaluation: ev,
    memberNames: input.memberNames, metrics: input.metrics,
  });
  return { html, curvesPng, curvesSvg, resultsJson };
}
