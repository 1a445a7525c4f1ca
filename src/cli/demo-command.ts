// `crossmax demo`: the project's main job on its default. Trains a small multi-resolution self-ensemble on
// CIFAR-10 on this machine's CPU, evaluates every member and aggregator on the full test set, and writes
// report/index.html. Sized to finish within 10 minutes on a 2-core machine.
import { resolve } from 'node:path';
import { parseCommandArgs } from './args.js';
import { TRAIN_OPTIONS, formatEvaluation, runTraining } from './train-command.js';

export const DEMO_USAGE = `crossmax demo [train options]

Trains the 'cifar-small' multi-resolution self-ensemble (ResNet-18 layout at 1/4 width, pooled heads on every
block, CrossMax) for 1 epoch on CIFAR-10 (the official binary copy in ../shared/datasets if present, else the
JPEG copy, else a download), evaluates every head and aggregator on the 10,000 test images, and writes
report/index.html. Any \`crossmax train\` option applies (e.g. --epochs 3, --no-prior, --threads 1);
--out (default runs/demo) holds the model and checkpoint; the report goes to ./report.`;

export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, TRAIN_OPTIONS);
  // A demo starts afresh each time unless asked to resume.
  if (values.resume !== true) values.overwrite = true;
  const run = await runTraining(values, {
    preset: 'cifar-small', epochs: 1, outDir: resolve('runs', 'demo'), reportDir: resolve('report'),
    title: 'crossmax demo: a multi-resolution self-ensemble with CrossMax on CIFAR-10',
  });
  console.log(formatEvaluation(run.evaluation, run.model.memberNames()));
  console.log(`\ntrained in ${run.seconds.toFixed(0)} s on ${run.trainSet.length} images (${run.trainSet.source})`);
  console.log(`model:  ${run.modelPath}`);
  console.log(`report: ${run.reportPath}`);
  run.model.dispose();
  return 0;
}
