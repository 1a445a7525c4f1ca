// `crossmax demo`: the project's main job on its default. Trains a small multi-resolution self-ensemble on
// CIFAR-10 on this machine's CPU, evaluates every member and aggregator on the full test set, and writes
// report/index.html. Sized to finish within 10 minutes on a 2-core machine.
import { resolve } from 'node:path';
import { parseCommandArgs } from './args.js';
import { TRAIN_OPTIONS, formatEvaluation, runTraining } from './train-command.js';
import { formatRobustness, runRobustness } from './robust-command.js';
import type { RobustnessResults } from '../attacks/index.js';

export const DEMO_USAGE = `crossmax demo [train options]

Trains the 'cifar-small' multi-resolution self-ensemble (ResNet-18 layout at 1/4 width, pooled heads on every
block, CrossMax) for 1 epoch on CIFAR-10 (the official binary copy in ../shared/datasets if present, else the
JPEG copy, else a download), evaluates every head and aggregator on the 10,000 test images, measures robust
accuracy on 100 test images (worst case over AutoAttack 'rand' and the adaptive attacks, at a quick budget), and
writes report/index.html and report/robust.html. Any \`crossmax train\` option applies (e.g. --epochs 3, --no-prior, --threads 1);
--out (default runs/demo) holds the model and checkpoint; the report goes to ./report.`;

const ROBUST_IMAGES = 100;

export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, TRAIN_OPTIONS);
  // A demo starts afresh each time unless asked to resume.
  if (values.resume !== true) values.overwrite = true;
  let robust: RobustnessResults | undefined;
  const run = await runTraining(values, {
    preset: 'cifar-small', epochs: 1, outDir: resolve('runs', 'demo'), reportDir: resolve('report'),
    title: 'crossmax demo: a multi-resolution self-ensemble with CrossMax on CIFAR-10',
    beforeReport: async (model, _testSet, reportDir) => {
      process.stderr.write(`robustness: ${ROBUST_IMAGES} test images, worst case over AutoAttack 'rand' and the adaptive attacks (quick budget)\n`);
      const r = await runRobustness({ data: values.data, seed: values.seed, threads: values.threads }, {
        model, n: ROBUST_IMAGES, budget: 'quick', suite: 'worst-case', reportDir,
      });
      robust = r.evaluation.results;
      r.images.dispose();
      r.labels.dispose();
      return (report) => {
        report.heading('Robustness (quick budget)');
        report.paragraph(`Robust accuracy on the first ${robust!.images} test images at L-inf eps 8/255: the worst case ` +
          'per image over AutoAttack \'rand\' and the adaptive attacks for this defence, at a reduced budget that fits the ' +
          'demo (its numbers over-state robustness; `crossmax eval --robust` runs the published budgets). A point counts ' +
          `as robust only if all ${robust!.reEvaluations} re-evaluations of the randomised model are correct.`);
        report.table({
          columns: [{ key: 'attack' }, { key: 'allR', label: 'all-R', percent: true }, { key: 'meanR', label: 'mean over R', percent: true },
            { key: 'single', label: 'single evaluation', percent: true }],
          rows: [
            { attack: 'clean', allR: robust!.cleanAccuracy['all-R'], meanR: robust!.cleanAccuracy['mean-over-R'], single: robust!.cleanAccuracy['single-evaluation'] },
            ...robust!.attacks.map((a) => ({ attack: `after ${a.name}`, allR: a.robustAccuracyAfter['all-R'], meanR: a.robustAccuracyAfter['mean-over-R'], single: a.robustAccuracyAfter['single-evaluation'] })),
          ],
        });
        report.paragraph('Adversarial images, perturbations and the masking checks: robust.html in this folder.');
      };
    },
  });
  console.log(formatEvaluation(run.evaluation, run.model.memberNames()));
  if (robust) console.log('\n' + formatRobustness(robust));
  console.log(`\ntrained in ${run.seconds.toFixed(0)} s on ${run.trainSet.length} images (${run.trainSet.source})`);
  console.log(`model:  ${run.modelPath}`);
  console.log(`report: ${run.reportPath}`);
  run.model.dispose();
  return 0;
}
