// `crossmax eval --robust` and `crossmax attack`: robustness of a saved model on the first N test points
// (RobustBench's protocol), with the worst case over attacks as the headline, the stochastic-model definitions
// spelled out, gradient-masking checks, and report/robust.html with the adversarial images.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ATTACK_PRESETS, ATTACK_PRESET_NAMES, resizeAttackBudget, withEot, type AttackEntry } from '../attacks/index.js';
import {
  ADAPTIVE_BUDGETS, BUDGET_NAMES, EvaluationCheckpoint, autoAttackSuite, adaptiveSuite, evaluateRobustness, type BudgetName, type RobustnessEvaluation,
} from '../robustness/index.js';
import { AGGREGATOR_NAMES, loadModel, type SelfEnsemble } from '../ensemble/index.js';
import { formatRobustnessText, saveImageGrid, writeRobustReport } from '../report/index.js';
import { saveSafetensors } from '../serialize/safetensors.js';
import { ProgressBar } from '../util/progress.js';
import { tidy, type Device, type Tensor } from '../tensor/index.js';
import { DATA_HELP, loadData } from './datasets.js';
import { UsageError, choiceFlag, deviceFlag, numberFlag, stringFlag, threadsFlag, type ParsedArgs } from './args.js';

export const SUITES = ['worst-case', 'adaptive', 'autoattack-rand', 'autoattack-standard', 'pgd'] as const;
export type SuiteName = (typeof SUITES)[number];

export const SINGLE_ATTACKS = ATTACK_PRESET_NAMES;

export const ROBUST_OPTIONS = {
  model: { type: 'string' }, data: { type: 'string' }, n: { type: 'string' }, eps: { type: 'string' },
  suite: { type: 'string' }, attack: { type: 'string' }, budget: { type: 'string' }, steps: { type: 'string' },
  eot: { type: 'string' }, 're-evaluations': { type: 'string' }, 'batch-size': { type: 'string' },
  'no-masking': { type: 'boolean' }, report: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' },
  device: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' }, config: { type: 'string' },
  aggregator: { type: 'string' }, resume: { type: 'boolean' }, overwrite: { type: 'boolean' },
} as const;

export const ROBUST_HELP = `  --model FILE          a crossmax model file
  --data SPEC           ${DATA_HELP}
  --n N                 the first N test images (default 1000)
  --eps X               L-inf radius (default 8/255)
  --budget B            published (the papers' iterations and EOT; hours on a CPU) | cpu (APGD's 100 iterations
                        with EOT 4, AutoAttack 'rand' included; transfer 100 steps EOT 2, refine 20 EOT 2; Square
                        1000 queries in the adaptive suite: an upper bound sized for a CPU) | quick (a smoke test
                        whose numbers over-state robustness) (default published)
  --aggregator NAME     attack the model with another aggregator of the same members (e.g. mean-logits, the
                        ablation of CrossMax): ${AGGREGATOR_NAMES.join(' | ')}
  --steps N, --eot N    override the gradient attacks' iterations and EOT samples
  --re-evaluations R    a point of a stochastic model counts as robust only if all R re-evaluations of its
                        adversarial image are correct (default 10)
  --batch-size N        default 100
  --no-masking          skip the gradient-masking checks (eps sweep, black-box vs white-box, budget doubling)
  --report DIR          where robust.html and robust.json go (default report); while the evaluation runs,
                        DIR/robust-checkpoint holds every finished attack batch (deleted at the end)
  --resume              continue an evaluation that was killed, from DIR/robust-checkpoint: the finished
                        batches are taken as they are, bit for bit, and only the rest is attacked
  --overwrite           discard an unfinished evaluation's DIR/robust-checkpoint and start afresh
  --seed N              default 0
  --device DEV          cpu (default) | cuda | cuda:N
  --threads N           intra-op threads (default all cores)
  --json                print the results as JSON`;

// The threat model (eps, Linf) is not in the entries: evaluateRobustness gives it to every attack.
function suiteFor(model: SelfEnsemble, name: SuiteName, settings: { budget: BudgetName; steps?: number; eot?: number }): AttackEntry[] {
  const adaptive = () => adaptiveSuite(model, { budget: settings.budget, steps: settings.steps, eot: settings.eot });
  const rand = () => autoAttackSuite('rand').map((e) => atBudget(e, settings));
  switch (name) {
    // AutoAttack's entries keep their reference names with a prefix: the adaptive suite has its own apgd-ce.
    case 'worst-case': return [...rand().map((e) => ({ ...e, name: `aa-rand/${e.name}` })), ...adaptive()];
    case 'adaptive': return adaptive();
    case 'autoattack-rand': return rand();
    case 'autoattack-standard': return autoAttackSuite('standard').map((e) => atBudget(e, settings));
    case 'pgd': return [{ name: 'pgd-20', attack: 'pgd', options: { steps: settings.steps ?? 20, restarts: 1 } }];
  }
}

/**
 * AutoAttack's entries at the quick budget (10 iterations, 100 queries), with EOT capped at the cpu budget's, or
 * with explicit steps / an EOT cap (the reference's counts otherwise).
 */
function atBudget(entry: AttackEntry, settings: { budget: BudgetName; steps?: number; eot?: number }): AttackEntry {
  const quick = settings.budget === 'quick';
  const eotCap = settings.eot ?? (settings.budget === 'published' ? undefined : ADAPTIVE_BUDGETS[settings.budget].eot);
  const eot = (entry.options as { eot?: number } | undefined)?.eot;
  return resizeAttackBudget(entry, {
    steps: settings.steps ?? (quick ? 10 : undefined),
    eot: eot === undefined || eotCap === undefined ? undefined : Math.min(eot, eotCap),
    queries: quick ? 100 : undefined,
  });
}

export interface RobustRun {
  evaluation: RobustnessEvaluation;
  reportHtml: string;
  reportJson: string;
  model: SelfEnsemble;
  images: Tensor;
  labels: Tensor;
}

/** Shared by `eval --robust`, `attack` and the demo: loads model and data, runs the attacks, writes the report. */
export async function runRobustness(values: ParsedArgs['values'], defaults: { suite?: SuiteName; n?: number; budget?: BudgetName; reportDir?: string; model?: SelfEnsemble; masking?: boolean; attack?: string } = {}): Promise<RobustRun> {
  threadsFlag(values);
  const device = deviceFlag(values);
  const modelPath = stringFlag(values, 'model');
  if (!defaults.model && !modelPath) throw new UsageError('--model FILE is required');
  const model = defaults.model ?? loadModel(modelPath!, { device });
  const testSet = await loadData(stringFlag(values, 'data') ?? 'cifar10', 'test');
  const n = Math.min(numberFlag(values, 'n', { integer: true, min: 1 }) ?? defaults.n ?? 1000, testSet.length);
  const eps = numberFlag(values, 'eps', { min: 0, max: 1 }) ?? 8 / 255;
  const seed = numberFlag(values, 'seed', { integer: true, min: 0 }) ?? 0;
  const budget = choiceFlag(values, 'budget', BUDGET_NAMES) ?? defaults.budget ?? 'published';
  const steps = numberFlag(values, 'steps', { integer: true, min: 1 });
  const eot = numberFlag(values, 'eot', { integer: true, min: 1 });
  const attackName = choiceFlag(values, 'attack', SINGLE_ATTACKS) ?? (defaults.attack as (typeof SINGLE_ATTACKS)[number] | undefined);
  const suiteName = choiceFlag(values, 'suite', SUITES) ?? defaults.suite ?? 'worst-case';
  const aggregator = choiceFlag(values, 'aggregator', AGGREGATOR_NAMES);
  if (aggregator) model.setAggregator({ name: aggregator });
  // --steps is a single attack's iterations, or Square's queries. A quirk kept as it was: --eot does not reach a
  // single FGSM (withEot and the suites do set FGSM's EOT).
  const single = attackName && resizeAttackBudget(ATTACK_PRESETS[attackName], { steps, eot: attackName === 'fgsm' ? undefined : eot, queries: steps });
  const suite = single ? [single] : suiteFor(model, suiteName, { budget, steps, eot });
  // Without the prior the model is deterministic in eval mode: EOT over k draws averages k equal gradients.
  const deterministic = model.prior === null;
  const attacks = deterministic ? suite.map((e) => withEot(e, 1)) : suite;
  if (deterministic) process.stderr.write('deterministic model (no prior): every EOT set to 1, which gives the same gradients as any larger EOT\n');

  const { images, labels } = tidy(() => {
    const batch = testSet.batch([...Array(n).keys()], { device });
    return { images: batch.images, labels: batch.labels };
  });
  const reportDir = resolve(stringFlag(values, 'report') ?? defaults.reportDir ?? 'report');
  // A model given in memory (the demo's) has no file to identify it by, and its evaluation is minutes long.
  const checkpoint = modelPath && !defaults.model
    ? EvaluationCheckpoint.open(join(reportDir, 'robust-checkpoint'), {
      model: createHash('sha256').update(readFileSync(modelPath)).digest('hex'),
      aggregator: aggregator ?? 'the model\'s own',
      data: testSet.source,
      device,
    }, { resume: values.resume === true, overwrite: values.overwrite === true })
    : undefined;
  const bar = new ProgressBar({ label: 'robustness', unit: 'update', total: 0 });
  const evaluation = evaluateRobustness(model, images, labels, {
    attacks, eps, seed, checkpoint,
    reEvaluations: numberFlag(values, 're-evaluations', { integer: true, min: 1 }) ?? 10,
    batchSize: numberFlag(values, 'batch-size', { integer: true, min: 1 }) ?? 100,
    // The quick budget keeps the checks cheap too: a smaller sweep subset and a short black-box attack.
    masking: values['no-masking'] || defaults.masking === false ? false
      : budget === 'quick' ? { images: Math.min(n, 32), blackBoxAttack: { name: 'square', attack: 'square', options: { queries: 100 } } }
        : budget === 'cpu' ? { images: Math.min(n, 50) } : {},
    modelName: (modelPath ?? 'demo model') + (aggregator ? ` (aggregator ${aggregator})` : ''),
    dataSource: `${testSet.source}, first ${n} test images`,
    onProgress: (e) => bar.tick(1, { phase: e.phase, attack: e.attack ?? '-', step: `${e.step}/${e.total}`, robust: `${e.robust}/${e.images}` }),
    log: (line) => bar.log(line),
  });
  bar.finish();
  if (checkpoint) {
    const { reused, computed } = checkpoint.stats;
    if (reused > 0) process.stderr.write(`resumed: ${reused} attack batches taken from ${checkpoint.dir}, ${computed} computed\n`);
  }
  const files = writeRobustReport(evaluation, images, { dir: reportDir, classNames: testSet.classes });
  checkpoint?.remove();
  return { evaluation, reportHtml: files.html, reportJson: files.json, model, images, labels };
}

/** The results as text for the terminal, each accuracy with its 95% interval (formatRobustnessText). */
export function formatRobustness(r: RobustnessEvaluation['results']): string {
  return formatRobustnessText(r);
}

export async function robustEvalCommand(values: ParsedArgs['values']): Promise<number> {
  const run = await runRobustness(values);
  try {
    if (values.json) console.log(JSON.stringify(run.evaluation.results, null, 2));
    else console.log(`${formatRobustness(run.evaluation.results)}\n\nreport: ${run.reportHtml}\nresults: ${run.reportJson}`);
  } finally {
    run.model.dispose();
  }
  return 0;
}

export const ATTACK_USAGE = `crossmax attack --model FILE (--attack NAME | --suite NAME) [options]

Runs one attack or suite on the first N test images and saves the adversarial images (safetensors and a PNG grid).
  --attack NAME         ${SINGLE_ATTACKS.join(' | ')}
  --suite NAME          ${SUITES.join(' | ')} (worst-case = AutoAttack rand + the adaptive attacks)
  --out DIR             where adversarial.safetensors and adversarial.png go (default runs/attack)
${ROBUST_HELP}`;

export async function attackCommand(args: string[], parse: (args: string[]) => ParsedArgs): Promise<number> {
  const { values } = parse(args);
  if (!values.attack && !values.suite) throw new UsageError('give --attack NAME or --suite NAME');
  if (values.attack && values.suite) throw new UsageError('give --attack or --suite, not both');
  const run = await runRobustness(values, { masking: false });
  try {
    const out = resolve(stringFlag(values, 'out') ?? join('runs', 'attack'));
    mkdirSync(out, { recursive: true });
    const adversarial = run.evaluation.worstAdversarial;
    saveSafetensors(join(out, 'adversarial.safetensors'), { adversarial, clean: run.images, labels: run.labels },
      { eps: String(run.evaluation.results.eps), attacks: run.evaluation.results.attacks.map((a) => a.name).join(',') });
    saveImageGrid(join(out, 'adversarial.png'), adversarial.narrow(0, 0, Math.min(64, adversarial.shape[0]!)), { columns: 8, scale: 2 });
    if (values.json) console.log(JSON.stringify(run.evaluation.results, null, 2));
    else console.log(`${formatRobustness(run.evaluation.results)}\n\nadversarial images: ${join(out, 'adversarial.safetensors')}, ${join(out, 'adversarial.png')}\nreport: ${run.reportHtml}`);
  } finally {
    run.model.dispose();
  }
  return 0;
}
