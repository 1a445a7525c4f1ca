// `crossmax train`: build a self-ensemble from a preset (or a config), train it, evaluate every member and
// aggregator on the test set, and write the model, metrics and an HTML report.
import { basename, join, resolve } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import {
  AGGREGATOR_NAMES, PRESET_NAMES, aggregatorFromSpec, buildSelfEnsemble, loadModel, presetConfig,
  type AggregatorName, type AggregatorSpec, type PresetName, type SelfEnsemble, type SelfEnsembleConfig,
} from '../ensemble/index.js';
import { adaptPretrainedStem } from '../nn/resnet-surgery.js';
import { train, evaluate, normalisedWeights, type TrainOptions, type MetricRecord, type EvaluationResult } from '../train/index.js';
import { formatEvaluationText, writeTrainingReport, type HtmlReport } from '../report/index.js';
import type { ImageClassificationDataset } from '../data/index.js';
import { getNumThreads, manualSeed } from '../tensor/index.js';
import { initProcessGroup, worldFromEnvironment, type ProcessGroup } from '../distributed/index.js';
import { DATA_HELP, loadData } from './datasets.js';
import { formatRate } from '../util/progress.js';
import {
  DEVICE_HELP, UsageError, choiceFlag, deviceFlag, integerListFlag, listFlag, numberFlag, parseCommandArgs, stringFlag, threadsFlag, type ParsedArgs,
} from './args.js';

export const TRAIN_OPTIONS = {
  config: { type: 'string' },
  preset: { type: 'string' },
  'model-config': { type: 'string' },
  'dist-timeout': { type: 'string' },
  'sync-batchnorm': { type: 'boolean' },
  resolutions: { type: 'string' },
  noise: { type: 'string' },
  k: { type: 'string' },
  heads: { type: 'string' },
  data: { type: 'string' },
  out: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  optimizer: { type: 'string' },
  lr: { type: 'string' },
  momentum: { type: 'string' },
  'weight-decay': { type: 'string' },
  nesterov: { type: 'boolean' },
  schedule: { type: 'string' },
  'warmup-steps': { type: 'string' },
  'no-prior': { type: 'boolean' },
  aggregator: { type: 'string' },
  'label-smoothing': { type: 'string' },
  'member-weights': { type: 'string' },
  augment: { type: 'boolean' },
  adversarial: { type: 'string' },
  'adv-eps': { type: 'string' },
  'adv-steps': { type: 'string' },
  'adv-fraction': { type: 'string' },
  mode: { type: 'string' },
  'init-model': { type: 'string' },
  pretrained: { type: 'string' },
  seed: { type: 'string' },
  resume: { type: 'boolean' },
  overwrite: { type: 'boolean' },
  'train-limit': { type: 'string' },
  'eval-limit': { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const TRAIN_USAGE = `crossmax train [options]

Trains a multi-resolution self-ensemble (the paper's method) and evaluates it.
  --preset NAME          ${PRESET_NAMES.join(' | ')} (default cifar-small: CPU-sized ResNet-18 layout)
  --model-config FILE    a whole model configuration as JSON (backbone, prior, heads, aggregator; numClasses and
                         classes default to the data's) instead of a preset; \`crossmax info --model\` prints one
  --resolutions LIST     the prior's views, e.g. 32,16,8,4 (default: the preset's, 1, 1/2, 1/4, 1/8 of the input)
  --noise X              the prior's noise amplitude at each resolution (default 0.2; 0 for none)
  --k N|median           CrossMax's k: agreement of the k highest members (default 3)
  --heads LIST           the features with a head, e.g. layer2.1,layer3.0,layer3.1 (default: the preset's)
  --config FILE          JSON object of these options (flags given here win)
  --data SPEC            ${DATA_HELP}
  --out DIR              run folder: model.safetensors, checkpoint, metrics.jsonl, report/ (default runs/<preset>)
  --epochs N             default 10
  --batch-size N         default 128
  --optimizer KIND       sgd | adam | adamw (default sgd, Nesterov momentum 0.9)
  --lr X                 peak learning rate (default 0.1 for sgd, 1e-3 for adam/adamw)
  --momentum X           sgd momentum (default 0.9);  --nesterov (default on for sgd)
  --weight-decay X       default 5e-4 (sgd), 0 (adam), 1e-2 (adamw)
  --schedule KIND        onecycle | cosine | step | constant (default onecycle)
  --warmup-steps N       cosine warm-up steps
  --no-prior             single-resolution baseline: the same backbone without the multi-resolution prior
  --aggregator NAME      crossmax (default, k=3) | mean-logits | mean-probabilities | median | crossmax-median | soft-crossmax | single
  --label-smoothing X    default 0
  --member-weights LIST  the members' losses: weights in member order (e.g. 1,1,1,1,1,2), or the names of the
                         members to train, equally weighted (e.g. fc: the backbone's own classifier alone, the
                         notebook's first stage before its heads are trained with --mode heads); default every member
                         equally (the mean of their cross-entropies)
  --augment              random crop (pad 4) and horizontal flip (default off: the prior jitters the input)
  --adversarial KIND     light adversarial training: fgsm | pgd;  --adv-eps (8/255), --adv-steps, --adv-fraction (1)
  --mode MODE            from-scratch (default) | fine-tune | heads (frozen backbone, heads one at a time)
  --init-model FILE      start from a crossmax model file (for fine-tune / heads)
  --pretrained FILE      start from pretrained weights with a fresh stem for the views (the paper's surgery): torchvision
                         ResNet weights (safetensors; conv1 and fc re-initialised) or a crossmax model of the same
                         preset, e.g. a --no-prior run (everything kept but conv1)
  --seed N               default 0
  --resume               continue a killed run from <out>/checkpoint.safetensors, bit for bit
  --overwrite            start afresh although <out> holds a checkpoint
  --dist-timeout S       launched distributed (crossmax launch, torchrun, srun): seconds a rank waits for the
                         others before failing, naming the lost rank (default 300). The ranks train on slices of
                         each --batch-size batch (global), rank 0 writes everything; --resume on every rank.
  --sync-batchnorm       launched distributed: BatchNorm normalises with the statistics of the global batch over
                         all ranks (torch.nn.SyncBatchNorm), so W ranks take the single-process step exactly;
                         costs up to one partial forward per BatchNorm per step. Default: per-rank statistics (as
                         PyTorch's DDP). Nothing to synchronise in one process; not with --adversarial.
  --train-limit N        train on the first N training images only
  --eval-limit N         evaluate on the first N test images only (default all)
  --device DEV           ${DEVICE_HELP}
  --threads N            intra-op threads (default all cores)
  --json                 print the result as JSON`;

export interface TrainingRun {
  model: SelfEnsemble;
  metrics: MetricRecord[];
  evaluation: EvaluationResult;
  testSet: ImageClassificationDataset;
  trainSet: ImageClassificationDataset;
  outDir: string;
  reportPath: string;
  modelPath: string;
  facts: Record<string, unknown>;
  seconds: number;
}

const EVAL_AGGREGATORS: AggregatorName[] = ['crossmax', 'mean-logits', 'mean-probabilities', 'median', 'single'];

/** Parses train flags (also used by demo, with other defaults) and runs training end to end. */
export interface TrainingDefaults {
  preset?: PresetName;
  epochs?: number;
  outDir?: string;
  reportDir?: string;
  title?: string;
  /** Runs after the evaluation, before the report is written; what it returns adds sections to the report. */
  beforeReport?: (model: SelfEnsemble, testSet: ImageClassificationDataset, reportDir: string) => Promise<((report: HtmlReport) => void) | undefined>;
}

export async function runTraining(values: ParsedArgs['values'], defaults: TrainingDefaults = {}): Promise<TrainingRun> {
  threadsFlag(values);
  // Launched distributed (crossmax launch, torchrun, srun, PyTorchJob): join the process group first, so that a
  // rank that cannot reach the others fails before loading data. Each rank takes its own GPU: cuda:LOCAL_RANK.
  const world = worldFromEnvironment();
  let device = deviceFlag(values);
  if (world && device === 'cuda') device = `cuda:${world.localRank}`;
  const timeoutSeconds = numberFlag(values, 'dist-timeout', { min: 1 }) ?? 300;
  const group: ProcessGroup | undefined = world ? await initProcessGroup({ world, device, timeoutMs: timeoutSeconds * 1000 }) : undefined;
  const modelConfigPath = stringFlag(values, 'model-config');
  if (modelConfigPath !== undefined && values.preset !== undefined) throw new UsageError('give --preset or --model-config, not both');
  const preset = choiceFlag(values, 'preset', PRESET_NAMES) ?? defaults.preset ?? 'cifar-small';
  const modelName = modelConfigPath !== undefined ? basename(modelConfigPath).replace(/\.json$/, '') : preset;
  const dataSpec = stringFlag(values, 'data') ?? 'cifar10';
  const optimizerKind = choiceFlag(values, 'optimizer', ['sgd', 'adam', 'adamw'] as const) ?? 'sgd';
  const scheduleKind = choiceFlag(values, 'schedule', ['onecycle', 'cosine', 'step', 'constant'] as const) ?? 'onecycle';
  const mode = choiceFlag(values, 'mode', ['from-scratch', 'fine-tune', 'heads'] as const) ?? 'from-scratch';
  const aggregatorName = choiceFlag(values, 'aggregator', AGGREGATOR_NAMES);
  const epochs = numberFlag(values, 'epochs', { integer: true, min: 1 }) ?? defaults.epochs ?? 10;
  const batchSize = numberFlag(values, 'batch-size', { integer: true, min: 1 }) ?? 128;
  const seed = numberFlag(values, 'seed', { integer: true, min: 0 }) ?? 0;
  const trainLimit = numberFlag(values, 'train-limit', { integer: true, min: 1 });
  const evalLimit = numberFlag(values, 'eval-limit', { integer: true, min: 1 });
  const adversarialKind = choiceFlag(values, 'adversarial', ['fgsm', 'pgd'] as const);
  if (values['sync-batchnorm'] === true && adversarialKind) {
    throw new UsageError("--sync-batchnorm and --adversarial don't go together: the attack's forward passes would use per-rank statistics");
  }
  const outDir = resolve(stringFlag(values, 'out') ?? defaults.outDir ?? join('runs', modelName + (values['no-prior'] ? '-single-resolution' : '')));

  const [fullTrain, testSet] = [await loadData(dataSpec, 'train'), await loadData(dataSpec, 'test')];
  const trainSet = trainLimit !== undefined && trainLimit < fullTrain.length && 'subset' in fullTrain
    ? (fullTrain as ImageClassificationDataset & { subset(i: number[]): ImageClassificationDataset }).subset([...Array(trainLimit).keys()])
    : fullTrain;

  // The initial weights (backbone, heads, a --pretrained run's fresh stem and fc) are drawn from libtorch's
  // default generator, which libtorch seeds from the OS at start-up: seed it first (torch.manual_seed before
  // building the model, so the backbone is torchvision's for this seed). The trainer seeds it again for training.
  manualSeed(seed);
  let model: SelfEnsemble;
  const initModel = stringFlag(values, 'init-model');
  if (initModel) {
    const modelFlags = ['model-config', 'resolutions', 'noise', 'k', 'heads'].filter((f) => values[f] !== undefined);
    if (modelFlags.length > 0) throw new UsageError(`--${modelFlags[0]} sets up a new model; --init-model loads one with its own configuration`);
    model = loadModel(initModel);
  } else {
    const base = modelConfigPath !== undefined ? readModelConfig(modelConfigPath, testSet.classes) : presetConfig(preset, { classes: [...testSet.classes] });
    const config = withModelFlags(base, values, aggregatorName);
    try {
      model = buildSelfEnsemble(config);
    } catch (err) {
      // The configuration is the user's (flags or file): say so, with the resolver's message naming the field.
      throw new UsageError(`the model configuration${modelConfigPath ? ` (${modelConfigPath} and the flags)` : ''} does not build: ${(err as Error).message}`);
    }
  }
  const pretrained = stringFlag(values, 'pretrained');
  if (pretrained) adaptPretrainedStem(model, pretrained);
  if (device !== 'cpu') model.to(device);
  if (mode === 'heads' && values['member-weights'] !== undefined) {
    throw new UsageError('--member-weights weighs the members of one loss; --mode heads trains each head alone on its own loss');
  }
  if (mode !== 'from-scratch' && !initModel && !pretrained) {
    throw new UsageError(`--mode ${mode} starts from trained weights: give --init-model or --pretrained`);
  }

  const lrDefault = optimizerKind === 'sgd' ? 0.1 : 1e-3;
  const weightDecayDefault = optimizerKind === 'sgd' ? 5e-4 : optimizerKind === 'adamw' ? 1e-2 : 0;
  const options: TrainOptions = {
    model, trainSet, testSet, outDir, epochs, batchSize, seed, mode,
    optimizer: {
      kind: optimizerKind,
      lr: numberFlag(values, 'lr', { min: 0 }) ?? lrDefault,
      weightDecay: numberFlag(values, 'weight-decay', { min: 0 }) ?? weightDecayDefault,
      ...(optimizerKind === 'sgd' ? { momentum: numberFlag(values, 'momentum', { min: 0 }) ?? 0.9, nesterov: values.nesterov !== false } : {}),
    },
    schedule: { kind: scheduleKind, warmupSteps: numberFlag(values, 'warmup-steps', { integer: true, min: 0 }) },
    augment: values.augment === true,
    labelSmoothing: numberFlag(values, 'label-smoothing', { min: 0, max: 1 }) ?? 0,
    memberWeights: memberWeightsFlag(values, model.memberNames()),
    adversarial: adversarialKind ? {
      attack: adversarialKind,
      eps: numberFlag(values, 'adv-eps', { min: 0, max: 1 }) ?? 8 / 255,
      steps: numberFlag(values, 'adv-steps', { integer: true, min: 1 }),
      fraction: numberFlag(values, 'adv-fraction', { min: 0, max: 1 }) ?? 1,
    } : undefined,
    // Per-epoch test evaluation on a subset keeps the curves cheap; the final evaluation below uses evalLimit.
    evalLimit: Math.min(evalLimit ?? 2000, testSet.length),
    resume: values.resume === true,
    overwrite: values.overwrite === true,
    distributed: group,
    syncBatchNorm: group !== undefined && values['sync-batchnorm'] === true,
  };
  if (!options.resume && !options.overwrite && existsSync(join(outDir, 'checkpoint.safetensors'))) {
    throw new UsageError(`${outDir} holds a training checkpoint: --resume to continue it, --overwrite to start afresh, or --out elsewhere`);
  }
  const started = performance.now();
  let result;
  try {
    result = await train(options);
  } finally {
    group?.destroy();
  }
  const seconds = (performance.now() - started) / 1000;
  // Rank 0 alone evaluates and writes the report (the model it saved is the one every rank holds).
  if (group && group.rank !== 0) throw new SecondaryRankDone(group.rank);

  process.stderr.write(`evaluating on ${evalLimit ?? testSet.length} test images (every member and aggregator)\n`);
  const evaluation = evaluate(model, testSet, {
    limit: evalLimit, aggregators: EVAL_AGGREGATORS.map((n) => aggregatorFromSpec(n)), samples: 24, progress: true,
  });
  const epochRecords = result.metrics.filter((m) => m.type === 'epoch');
  const facts: Record<string, unknown> = {
    // A model from --init-model keeps its own configuration: the preset flag's default does not describe it.
    ...(initModel ? { 'initial model': initModel } : modelConfigPath !== undefined ? { 'model config': modelConfigPath } : { preset }),
    prior: model.prior ? 'multi-resolution (views ' + model.prior.numViews + ')' : 'none (single-resolution baseline)',
    parameters: model.parameters().reduce((n, p) => n + p.numel, 0),
    members: model.memberNames().join(', '),
    aggregator: model.aggregator.name,
    'training data': `${trainSet.length} images, ${fullTrain.source}`,
    'test data': `${evaluation.count} images, ${testSet.source}`,
    epochs, 'batch size': batchSize, optimizer: `${optimizerKind}, lr ${options.optimizer.lr}, ${scheduleKind}`,
    adversarial: adversarialKind ?? 'none',
    'training time': `${seconds.toFixed(0)} s`,
    'training speed': `${formatRate(epochRecords.at(-1)?.imagesPerSecond ?? 0)} img/s`,
    machine: `${os.cpus()[0]?.model ?? 'cpu'} × ${os.availableParallelism()}, ${getNumThreads()} threads, device ${device}`,
    seed,
  };
  const reportDir = defaults.reportDir ?? join(outDir, 'report');
  const extend = await defaults.beforeReport?.(model, testSet, reportDir);
  const files = writeTrainingReport(reportDir, {
    title: defaults.title ?? `crossmax train: ${modelName}${model.prior ? '' : ' (single resolution)'}`,
    facts, metrics: result.metrics, evaluation, memberNames: model.memberNames(), testSet, extend,
  });
  return {
    model, metrics: result.metrics, evaluation, testSet, trainSet, outDir, reportPath: files.html,
    modelPath: result.modelPath, facts, seconds,
  };
}

/**
 * --member-weights: numbers (one per member, in member order) or member names (weight 1 on those, 0 elsewhere).
 * Undefined when the flag is absent (the trainer's default: every member equally).
 */
export function memberWeightsFlag(values: ParsedArgs['values'], memberNames: readonly string[]): number[] | undefined {
  const items = listFlag(values, 'member-weights');
  if (items.length === 0) return undefined;
  const given = String(values['member-weights']);
  const numbers = items.map(Number);
  if (items.every((item, i) => item !== '' && Number.isFinite(numbers[i]))) {
    if (numbers.length !== memberNames.length) {
      throw new UsageError(`--member-weights ${given}: ${numbers.length} weights for ${memberNames.length} members (${memberNames.join(', ')})`);
    }
    // The values are checked where the loss uses them (losses.ts), here early and as a usage error.
    try {
      normalisedWeights(numbers, memberNames.length);
    } catch (err) {
      throw new UsageError(`--member-weights ${given}: ${(err as Error).message}`);
    }
    return numbers;
  }
  const unknown = items.filter((name) => !memberNames.includes(name));
  if (unknown.length > 0) {
    throw new UsageError(`--member-weights ${given}: no member named ${unknown.join(', ')}; this model's members are ${memberNames.join(', ')}`);
  }
  return memberNames.map((name) => (items.includes(name) ? 1 : 0));
}

/** A whole model configuration from a JSON file; numClasses and classes default to the data's (and must agree with it). */
export function readModelConfig(path: string, classes: readonly string[]): SelfEnsembleConfig {
  let config: unknown;
  try {
    config = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`--model-config ${path}: ${(err as Error).message}`);
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new UsageError(`--model-config ${path}: expected a JSON object (a model configuration: backbone, prior, heads, ...)`);
  }
  const c = config as Partial<SelfEnsembleConfig>;
  if (c.numClasses !== undefined && c.numClasses !== classes.length) {
    throw new UsageError(`--model-config ${path}: numClasses is ${c.numClasses}, the data has ${classes.length} classes`);
  }
  return { ...c, numClasses: classes.length, classes: c.classes ?? [...classes] } as SelfEnsembleConfig;
}

/**
 * The configuration with the model flags applied: --no-prior, --resolutions, --noise (the prior), --heads (head
 * features), --aggregator and --k (the aggregator). A fresh object; `config` is not changed.
 */
export function withModelFlags(config: SelfEnsembleConfig, values: ParsedArgs['values'], aggregatorName?: AggregatorName): SelfEnsembleConfig {
  const out: SelfEnsembleConfig = { ...config };
  const resolutions = integerListFlag(values, 'resolutions', { min: 1, example: '32,16,8,4' });
  const noise = numberFlag(values, 'noise', { min: 0 });
  if (values['no-prior']) {
    const priorFlag = resolutions.length > 0 ? 'resolutions' : noise !== undefined ? 'noise' : null;
    if (priorFlag) throw new UsageError(`--${priorFlag} sets the multi-resolution prior, which --no-prior removes`);
    out.prior = null;
  } else if (resolutions.length > 0 || noise !== undefined) {
    if (out.prior === null) throw new UsageError(`--${resolutions.length > 0 ? 'resolutions' : 'noise'}: this model configuration has no prior`);
    const prior = { ...out.prior };
    if (resolutions.length > 0) {
      delete prior.resolutionFactors;
      prior.resolutions = resolutions;
    }
    if (noise !== undefined) prior.noise = noise === 0 ? false : { ...(prior.noise || {}), downAmplitude: noise, upAmplitude: noise };
    out.prior = prior;
  }
  const heads = listFlag(values, 'heads');
  if (heads.length > 0) out.heads = { ...out.heads, features: heads };
  const kRaw = stringFlag(values, 'k');
  let aggregator: AggregatorSpec | undefined = aggregatorName ? { name: aggregatorName } : undefined;
  if (kRaw !== undefined) {
    const k = kRaw === 'median' ? 'median' as const : numberFlag(values, 'k', { integer: true, min: 1 })!;
    const name = aggregator?.name ?? out.aggregator?.name ?? 'crossmax';
    if (name !== 'crossmax' && name !== 'soft-crossmax') throw new UsageError(`--k is CrossMax's k: it applies to crossmax and soft-crossmax, not ${name}`);
    const { k: _, ...rest } = aggregator ?? (out.aggregator?.name === name ? out.aggregator : { name });
    aggregator = { ...rest, k };
  }
  if (aggregator) out.aggregator = aggregator;
  return out;
}

/** Every aggregator's and member's clean accuracy with its 95% interval, as text (formatEvaluationText). */
export function formatEvaluation(ev: EvaluationResult, memberNames: readonly string[]): string {
  return formatEvaluationText(ev, memberNames);
}

/** Thrown by runTraining on ranks other than 0 once training is done: they have nothing more to write. */
export class SecondaryRankDone extends Error {
  constructor(readonly rank: number) {
    super(`rank ${rank} finished training; rank 0 evaluates and writes the report`);
  }
}

export async function trainCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, TRAIN_OPTIONS);
  let run: TrainingRun;
  try {
    run = await runTraining(values);
  } catch (err) {
    if (err instanceof SecondaryRankDone) return 0;
    throw err;
  }
  if (values.json) {
    console.log(JSON.stringify({ model: run.modelPath, report: run.reportPath, evaluation: run.evaluation, facts: run.facts }, null, 2));
  } else {
    console.log(formatEvaluation(run.evaluation, run.model.memberNames()));
    console.log(`\nmodel:  ${run.modelPath}\nreport: ${run.reportPath}`);
  }
  run.model.dispose();
  return 0;
}
