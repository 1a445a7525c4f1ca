// `crossmax eval`: clean accuracy of every member and every aggregator of a saved model, and its confusion matrix.
import { join } from 'node:path';
import { aggregatorFromSpec, loadModel, type AggregatorName } from '../ensemble/index.js';
import { evaluate } from '../train/index.js';
import { MAX_CONFUSION_MATRIX_CLASSES, writeTrainingReport } from '../report/index.js';
import { type Device } from '../tensor/index.js';
import { DATA_HELP, loadData } from './datasets.js';
import { UsageError, deviceFlag, numberFlag, parseCommandArgs, stringFlag, threadsFlag } from './args.js';
import { formatEvaluation } from './train-command.js';
import { ROBUST_HELP, ROBUST_OPTIONS, robustEvalCommand } from './robust-command.js';

export const EVAL_USAGE = `crossmax eval --model FILE [options]

Clean accuracy of every member (head) and every aggregator of a crossmax model, with the confusion matrix. Each
accuracy comes with its Wilson 95% interval over the images, and each aggregator with its paired difference from
the model's output on the same images (Newcombe's interval, McNemar's exact test); the JSON keeps every image's
verdict, so that two evaluations can be compared image by image (crossmax compare A.json B.json).
  --model FILE        a crossmax model file (model.safetensors from crossmax train)
  --data SPEC         ${DATA_HELP}
  --limit N           the first N test images (RobustBench's protocol takes the first N); default all
  --batch-size N      default 256
  --report DIR        also write an HTML report there
  --device DEV        cpu (default) | cuda | cuda:N
  --threads N         intra-op threads (default all cores)
  --json              print the result as JSON

crossmax eval --robust --model FILE [options]

Robust accuracy on the first N test points (RobustBench's protocol, L-inf eps 8/255): the worst case per image over
AutoAttack 'rand' and the adaptive attacks for this defence (transfer from the mean-logit twin then refinement,
surrogate gradients through mean logits and soft CrossMax, per-head attacks, Square), each point of a stochastic
model counted robust only if all R re-evaluations are correct; gradient-masking checks; report/robust.html.
Every accuracy carries its 95% interval over the N images (Wilson; a seeded bootstrap for mean over R), and
robust.json keeps the per-image results that crossmax compare pairs.
  --suite NAME          worst-case (default) | adaptive | autoattack-rand | autoattack-standard | pgd
${ROBUST_HELP}`;

const AGGREGATORS: AggregatorName[] = ['crossmax', 'mean-logits', 'mean-probabilities', 'median', 'crossmax-median', 'single'];

export async function evalCommand(args: string[]): Promise<number> {
  if (args.includes('--robust')) {
    return robustEvalCommand(parseCommandArgs(args.filter((a) => a !== '--robust'), ROBUST_OPTIONS).values);
  }
  const { values } = parseCommandArgs(args, {
    model: { type: 'string' }, data: { type: 'string' }, limit: { type: 'string' }, 'batch-size': { type: 'string' },
    report: { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' },
  });
  const modelPath = stringFlag(values, 'model');
  if (!modelPath) throw new UsageError('--model FILE is required');
  threadsFlag(values);
  const model = loadModel(modelPath, { device: deviceFlag(values) });
  try {
    const testSet = await loadData(stringFlag(values, 'data') ?? 'cifar10', 'test');
    if (model.config && model.config.numClasses !== testSet.classes.length) {
      throw new UsageError(`the model has ${model.config.numClasses} classes, ${testSet.name} has ${testSet.classes.length}`);
    }
    const evaluation = evaluate(model, testSet, {
      limit: numberFlag(values, 'limit', { integer: true, min: 1 }),
      batchSize: numberFlag(values, 'batch-size', { integer: true, min: 1 }) ?? 256,
      aggregators: AGGREGATORS.map((n) => aggregatorFromSpec(n)), samples: 24, progress: !values.json,
    });
    const report = stringFlag(values, 'report');
    if (report) {
      writeTrainingReport(report, {
        title: `crossmax eval: ${modelPath}`, facts: { model: modelPath, 'test data': testSet.source }, metrics: [],
        evaluation, memberNames: model.memberNames(), testSet,
      });
    }
    if (values.json) {
      console.log(JSON.stringify({ model: modelPath, members: model.memberNames(), evaluation }, null, 2));
    } else {
      console.log(formatEvaluation(evaluation, model.memberNames()));
      if (testSet.classes.length <= MAX_CONFUSION_MATRIX_CLASSES) {
        console.log('\nconfusion matrix (rows: true, columns: predicted):');
        const names = testSet.classes.map((c) => c.slice(0, 6));
        console.log('        ' + names.map((c) => c.padStart(7)).join(''));
        evaluation.confusion.forEach((row, i) => console.log(names[i]!.padEnd(8) + row.map((v) => String(v).padStart(7)).join('')));
      } else {
        // 100 columns do not fit a terminal: the most frequent confusions instead (the matrix is in --json).
        const pairs = evaluation.confusion.flatMap((row, i) => row.map((n, j) => ({ i, j, n }))).filter((p) => p.i !== p.j && p.n > 0);
        pairs.sort((a, b) => b.n - a.n || a.i - b.i || a.j - b.j);
        console.log(`\nmost frequent confusions (of ${testSet.classes.length} classes; the whole matrix with --json):`);
        for (const p of pairs.slice(0, 10)) console.log(`  ${String(p.n).padStart(5)}  ${testSet.classes[p.i]} -> ${testSet.classes[p.j]}`);
      }
      if (report) console.log(`\nreport: ${join(report, 'index.html')}`);
    }
    return 0;
  } finally {
    model.dispose();
  }
}
