// `crossmax demo`: the project's main job on its default. Trains a small multi-resolution self-ensemble on
// CIFAR-10 on this machine's CPU, evaluates every member and aggregator on the full test set, and writes
// report/index.html. Sized to finish within 10 minutes on a 2-core machine.
import { resolve } from 'node:path';
import { numberFlag, parseCommandArgs } from './args.js';
import { TRAIN_OPTIONS, formatEvaluation, runTraining } from './train-command.js';
import { formatRobustness, runRobustness } from './robust-command.js';
import type { EstimateByDefinition, RobustnessResults } from '../robustness/index.js';
import { crossmaxSource, generateImages, intendedClasses, judgeImages, type Judgement } from '../generate/index.js';
import { writeGenerateReport } from '../report/generate-report.js';
import { tidy } from '../tensor/index.js';
import { formatEstimate } from '../util/statistics.js';

export const DEMO_USAGE = `crossmax demo [train options]

Trains the 'cifar-small' multi-resolution self-ensemble (ResNet-18 layout at 1/4 width, pooled heads on every
block, CrossMax) for 1 epoch on CIFAR-10 (the official binary copy in ../shared/datasets if present, else the
JPEG copy, else a download), evaluates every head and aggregator on the 10,000 test images, measures robust
accuracy on 100 test images (worst case over AutoAttack 'rand' and the adaptive attacks, at a quick budget),
generates one image per class through the multi-resolution parametrisation, and writes report/index.html,
report/robust.html and report/generate.html. Any \`crossmax train\` option applies (e.g. --epochs 3, --no-prior, --threads 1);
--out (default runs/demo) holds the model and checkpoint; the report goes to ./report.`;

const ROBUST_IMAGES = 100;
/** The generation section's budget: a short run of \`crossmax generate\` (about 20 s for cifar-small on 2 cores). */
const GENERATION = { steps: 40, copies: 8 } as const;

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
      process.stderr.write(`generation: one image per class through the multi-resolution parametrisation (${GENERATION.steps} steps)\n`);
      const source = crossmaxSource(model);
      const generated = generateImages(source, { ...GENERATION, seed: numberFlag(values, 'seed', { integer: true, min: 0 }) ?? 0 });
      const judged = { judge: 'the demo model (generator)', path: 'runs/demo', ...judgeImages(model, generated.images, intendedClasses(source, generated), source.classNames, 10) };
      writeGenerateReport(reportDir, generated, { model: 'the demo model', parametrisation: 'multires', steps: GENERATION.steps, copies: GENERATION.copies }, [judged]);
      return (report) => {
        report.heading('Generation');
        report.paragraph(`One image per class, optimised from grey through the multi-resolution parametrisation (${GENERATION.steps} steps, ` +
          `${GENERATION.copies} augmented copies per step) to raise that class under the demo model, which then gives the intended class in ` +
          `${demoAgreement(judged)} The loss curves and the same images judged by other models: ` +
          '`crossmax generate --judge`; this run: generate.html in this folder.');
        tidy(() => report.gallery(generated.targetOfImage.map((t, i) => ({ image: generated.images.select(0, i), caption: generated.targets[t] })), { imageWidth: 64 }));
        generated.images.dispose();
        report.heading('Robustness (quick budget)');
        report.paragraph(`Robust accuracy on the first ${robust!.images} test images at L-inf eps 8/255: the worst case ` +
          'per image over AutoAttack \'rand\' and the adaptive attacks for this defence, at a reduced budget that fits the ' +
          'demo (its numbers over-state robustness; `crossmax eval --robust` runs the published budgets). A point counts ' +
          `as robust only if all ${robust!.reEvaluations} re-evaluations of the randomised model are correct.`);
        report.table({
          // Each cell an accuracy with its 95% interval over the images (robustness/intervals.ts).
          caption: `n = ${robust!.images} images; brackets: 95% intervals`,
          columns: [{ key: 'attack' }, { key: 'allR', label: 'all-R', percent: true }, { key: 'meanR', label: 'mean over R', percent: true },
            { key: 'single', label: 'single evaluation', percent: true }],
          rows: [
            { attack: 'clean', ...demoCells(robust!.intervals.cleanAccuracy) },
            ...robust!.attacks.map((a, k) => ({ attack: `after ${a.name}`, ...demoCells(robust!.intervals.attacks[k]!.robustAccuracyAfter) })),
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

function demoCells(e: EstimateByDefinition): Record<string, unknown> {
  return { allR: e['all-R'], meanR: e['mean-over-R'], single: e['single-evaluation'] };
}

/**
 * The demo generator's own verdict on its images, with 95% intervals over the generated images: the mean share of
 * the 10 passes (a bootstrap over images) and the share right on every pass (Wilson).
 */
export function demoAgreement(judged: Pick<Judgement, 'agreement' | 'intervals'>): string {
  if (!judged.intervals) return `${(100 * judged.agreement).toFixed(0)}% of 10 forward passes (no images).`;
  const { agreement, allPasses } = judged.intervals;
  return `${formatEstimate(agreement, { decimals: 0, showN: false })} of 10 forward passes (mean over the ${agreement.n} images, 95% bootstrap interval over them), ` +
    `and on all 10 passes for ${formatEstimate(allPasses, { decimals: 0, showN: false })} of the images (95% Wilson).`;
}
