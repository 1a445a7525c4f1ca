// Clean accuracy of a (self-ensemble) classifier on a dataset: of its aggregated output, of every member and of
// any other aggregators (CrossMax, mean logits, ... for ablations), all from the same member-logit pass, so that
// the numbers differ only by the aggregation and not by the prior's random draws. Plus a confusion matrix, the
// accuracy per class and a few predictions to look at.
import type { ImageClassificationDataset } from '../data/dataset.js';
import type { Aggregator } from '../ensemble/aggregators.js';
import type { Module } from '../nn/module.js';
import { inferenceMode, tidy, type Device, type Tensor } from '../tensor/index.js';
import { ProgressBar, type ProgressOptions } from '../util/progress.js';
import { withEvalMode } from '../nn/module.js';
import { proportionEstimate, type AccuracyEstimate } from '../util/statistics.js';

/**
 * What training and evaluation need from a model. A plain classifier has forward() only; a self-ensemble also
 * has memberLogits() and, ideally, the aggregator its forward() applies (so that evaluation can reuse one pass).
 */
export interface TrainableModel extends Module {
  /** Images [N, 3, H, W] in [0, 1] -> logits [N, C] (for a self-ensemble, the aggregated logits). */
  forward(images: Tensor): Tensor;
  /** Images -> every member's logits [N, M, C]. */
  memberLogits?(images: Tensor): Tensor;
  /** The aggregator forward() applies to memberLogits(): forward(x) = aggregator.aggregate(memberLogits(x)). */
  readonly aggregator?: Aggregator;
  /** The part frozen in mode 'heads' (everything that is not a head). */
  readonly backbone?: Module;
  /** The members' heads in member order: an array, or a Module whose children they are. */
  readonly heads?: readonly Module[] | Module;
}

/** Settings of {@link evaluate}. */
export interface EvaluateOptions {
  /** Images per forward pass. Default 256. */
  batchSize?: number;
  /** Extra aggregators applied to the same member logits (self-ensembles only). Default none. */
  aggregators?: readonly Aggregator[];
  /** Evaluate the first `limit` images only (RobustBench's protocol: the first N test points). Default all. */
  limit?: number;
  /** Predictions of the first `samples` images to return in `samples`. Default 16. */
  samples?: number;
  /** Where batches are made. Default: the device of the model's first parameter, else 'cpu'. */
  device?: Device;
  /** A progress bar (true, or its options) on stderr. Default false. */
  progress?: boolean | ProgressOptions;
}

/** One image's prediction, for a look at examples. */
export interface SamplePrediction {
  /** Index in the dataset. */
  index: number;
  /** The class the model's output predicts. */
  predicted: number;
  /** The true class. */
  label: number;
  /** Each member's predicted class (empty for a single-output model). */
  memberVotes: number[];
}

/** Accuracy of one extra aggregator on the same member logits. */
export interface AggregatorAccuracy {
  /** The aggregator's name, e.g. 'mean-logits'. */
  name: string;
  /** Accuracy in [0, 1]. */
  accuracy: number;
  /** Images it classified correctly. */
  correct: number;
}

/**
 * Clean accuracy of a model on a dataset, with every member's, each extra aggregator's, per class and a confusion
 * matrix.
 */
export interface EvaluationResult {
  /** The dataset's name, e.g. 'cifar10/test'. */
  dataset: string;
  /** Images evaluated. */
  count: number;
  /** Accuracy of the model's output (the aggregated output of a self-ensemble), in [0, 1]. */
  accuracy: number;
  /** Images the model's output classified correctly. */
  correct: number;
  /** Accuracy of each member alone, in member order (empty for a single-output model). */
  memberAccuracies: number[];
  /** Accuracy of each extra aggregator, in the order given. */
  aggregators: AggregatorAccuracy[];
  /** confusion[true][predicted]: counts for the model's output. */
  confusion: number[][];
  /** Accuracy of the model's output on each class's images (NaN for a class with none). */
  perClassAccuracy: number[];
  /** Predictions of the first few images. */
  samples: SamplePrediction[];
  /**
   * How the output accuracy was obtained: 'shared-pass' (the model's aggregator on the same member logits as the
   * members and extra aggregators), 'separate-pass' (forward() called separately: a stochastic model then draws
   * different noise for it), or 'forward' (a single-output model).
   */
  outputSource: 'shared-pass' | 'separate-pass' | 'forward';
  /** 95% Wilson intervals over the images of the accuracies above, each with its number of images. */
  intervals: {
    /** `accuracy` (the model's output) with its interval. */
    output: AccuracyEstimate;
    /** Each of `memberAccuracies` with its interval, in member order (empty for a single-output model). */
    members: AccuracyEstimate[];
    /** Each extra aggregator's accuracy with its interval, in the order of `aggregators`. */
    aggregators: AccuracyEstimate[];
  };
  /**
   * Per image, in dataset order, one character each ('1' right, '0' wrong): the output's and each extra
   * aggregator's verdicts, kept so that two results on the same images can be compared pair by pair (McNemar).
   */
  perImageCorrect: {
    /** The model output's verdicts: `count` characters, '1' where image i was classified correctly, else '0'. */
    output: string;
    /** Each extra aggregator's verdicts in the same form, in the order of `aggregators`. */
    aggregators: string[];
  };
  /** Wall-clock time the evaluation took, in seconds. */
  seconds: number;
}

/**
 * Evaluates `model` on the first `limit` images of `dataset`, in order, in eval mode (each module's mode is
 * restored afterwards) and inference mode, freeing each batch's tensors before the next.
 */
export function evaluate(model: TrainableModel, dataset: ImageClassificationDataset, options: EvaluateOptions = {}): EvaluationResult {
  const batchSize = options.batchSize ?? 256;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  const count = Math.min(dataset.length, options.limit ?? dataset.length);
  if (!(Number.isInteger(count) && count >= 0)) throw new RangeError(`limit must be a non-negative integer, got ${options.limit}`);
  const sampleCount = Math.min(count, options.samples ?? 16);
  const extra = options.aggregators ?? [];
  const hasMembers = typeof model.memberLogits === 'function';
  if (extra.length > 0 && !hasMembers) throw new Error('evaluate: aggregators need a model with memberLogits()');
  const outputSource: EvaluationResult['outputSource'] = !hasMembers ? 'forward' : hasAggregator(model) ? 'shared-pass' : 'separate-pass';
  const device = options.device ?? modelDevice(model);
  const classes = dataset.classes.length;

  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  let memberCorrect: number[] = [];
  const aggregatorCorrect = new Array<number>(extra.length).fill(0);
  let correct = 0;
  const outputVerdicts: string[] = [];
  const aggregatorVerdicts = extra.map(() => [] as string[]);
  const samples: SamplePrediction[] = [];
  const started = performance.now();
  const bar = options.progress
    ? new ProgressBar({ label: `eval ${dataset.name}`, ...(options.progress === true ? {} : options.progress), unit: 'img', total: count })
    : null;

  withEvalMode(model, () => inferenceMode(() => {
    for (let start = 0; start < count; start += batchSize) {
      const size = Math.min(batchSize, count - start);
      const indices = Array.from({ length: size }, (_, i) => start + i);
      const batch = dataset.batch(indices, { device });
      try {
        const labels = batch.labels.toArray();
        const { output, members, extras } = tidy(() => predictions(model, batch.images, extra, outputSource));
        if (members && memberCorrect.length === 0) memberCorrect = new Array<number>(members.length / size).fill(0);
        const m = memberCorrect.length;
        for (let i = 0; i < size; i++) {
          const label = labels[i]!;
          const predicted = output[i]!;
          confusion[label]![predicted]!++;
          if (predicted === label) correct++;
          outputVerdicts.push(predicted === label ? '1' : '0');
          for (let j = 0; j < m; j++) if (members![i * m + j] === label) memberCorrect[j]!++;
          extras.forEach((p, a) => { if (p[i] === label) aggregatorCorrect[a]!++; aggregatorVerdicts[a]!.push(p[i] === label ? '1' : '0'); });
          if (start + i < sampleCount) {
            samples.push({ index: start + i, predicted, label, memberVotes: members ? members.slice(i * m, (i + 1) * m) : [] });
          }
        }
      } finally {
        batch.dispose();
      }
      bar?.tick(size, { acc: correct / (start + size) });
    }
  }));
  bar?.finish();

  const perClassAccuracy = confusion.map((row, c) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total === 0 ? Number.NaN : row[c]! / total;
  });
  const ratio = (k: number) => (count === 0 ? Number.NaN : k / count);
  return {
    dataset: dataset.name,
    count,
    accuracy: ratio(correct),
    correct,
    memberAccuracies: memberCorrect.map(ratio),
    aggregators: extra.map((a, i) => ({ name: a.name, accuracy: ratio(aggregatorCorrect[i]!), correct: aggregatorCorrect[i]! })),
    confusion,
    perClassAccuracy,
    samples,
    outputSource,
    intervals: {
      output: proportionEstimate(correct, count),
      members: memberCorrect.map((k) => proportionEstimate(k, count)),
      aggregators: aggregatorCorrect.map((k) => proportionEstimate(k, count)),
    },
    perImageCorrect: { output: outputVerdicts.join(''), aggregators: aggregatorVerdicts.map((v) => v.join('')) },
    seconds: (performance.now() - started) / 1000,
  };
}

/** Predicted classes as plain arrays: the output's [N], the members' [N·M] (row-major), each extra's [N]. */
function predictions(model: TrainableModel, images: Tensor, extra: readonly Aggregator[], source: EvaluationResult['outputSource']):
  { output: number[]; members: number[] | null; extras: number[][] } {
  if (source === 'forward') return { output: argmax(model.forward(images)), members: null, extras: [] };
  const memberLogits = model.memberLogits!(images);
  const output = source === 'shared-pass' ? argmax(model.aggregator!.aggregate(memberLogits)) : argmax(model.forward(images));
  return {
    output,
    members: memberLogits.argmax({ dim: 2 }).toArray(),
    extras: extra.map((a) => argmax(a.aggregate(memberLogits))),
  };
}

function argmax(logits: Tensor): number[] {
  return logits.argmax({ dim: 1 }).toArray();
}

function hasAggregator(model: TrainableModel): boolean {
  return typeof model.aggregator?.aggregate === 'function';
}

/** The device of the model's first parameter (or buffer), 'cpu' for a model without tensors. */
export function modelDevice(model: Module): Device {
  const first = model.parameters()[0] ?? model.buffers()[0];
  return (first?.device ?? 'cpu') as Device;
}
