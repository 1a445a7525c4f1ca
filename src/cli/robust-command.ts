// `crossmax eval --robust` and `crossmax attack`: robustness of a saved model on the first N test points
// (RobustBench's protocol), with the worst case over attacks as the headline, the stochastic-model definitions
// spelled out, gradient-masking checks, and report/robust.html with the adversarial images.
import { initProcessGroup } from '../distributed/index.js';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ATTACK_PRESETS, ATTACK_PRESET_NAMES, resizeAttackBudget, withEot, type AttackEntry } from '../attacks/index.js';
import {
  ADAPTIVE_BUDGETS, BUDGET_NAMES, EvaluationCheckpoint, autoAttackSuite, adaptiveSuite, evaluateRobustness, resolveMaskingPlan, runMaskingChecks, withMaskingSeconds,
  type BudgetName, type MaskingOptions, type RobustnessEvaluation, type RobustnessOptions,
} from '../robustness/index.js';
import { describeAttack } from '../attacks/index.js';
import {
  SHARD_FORMAT, dataFingerprint, parseShardSpec, portableDataName, shardRange, writeShardFolder, type EvaluationWorld, type ImageRange, type ShardRecord, type ShardSpec,
} from '../robustness/shard.js';
import { mergeShardRecords } from '../robustness/merge.js';
import { AGGREGATOR_NAMES, loadModel, type SelfEnsemble } from '../ensemble/index.js';
import { formatRobustnessText, saveImageGrid, writeRobustReport } from '../report/index.js';
import { saveSafetensors } from '../serialize/safetensors.js';
import { ProgressBar } from '../util/progress.js';
import { cat, tensor, tidy, type Device, type Tensor } from '../tensor/index.js';
import { DATA_HELP, loadData } from './datasets.js';
import { applyAggregatorFlag } from './model-files.js';
import { UsageError, choiceFlag, deviceFlag, numberFlag, stringFlag, threadsFlag, type ParsedArgs } from './args.js';

export const SUITES = ['worst-case', 'adaptive', 'autoattack-rand', 'autoattack-standard', 'pgd'] as const;
export type SuiteName = (typeof SUITES)[number];

export const SINGLE_ATTACKS = ATTACK_PRESET_NAMES;

export const ROBUST_OPTIONS = {
  model: { type: 'string' }, data: { type: 'string' }, n: { type: 'string' }, eps: { type: 'string' },
  suite: { type: 'string' }, attack: { type: 'string' }, budget: { type: 'string' }, steps: { type: 'string' }, queries: { type: 'string' },
  eot: { type: 'string' }, 're-evaluations': { type: 'string' }, 'batch-size': { type: 'string' },
  'no-masking': { type: 'boolean' }, report: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' },
  device: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' }, config: { type: 'string' },
  aggregator: { type: 'string' }, resume: { type: 'boolean' }, overwrite: { type: 'boolean' }, shard: { type: 'string' },
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
                        ablation of CrossMax): ${AGGREGATOR_NAMES.join(' | ')}; options after a colon,
                        e.g. crossmax:k=1, crossmax:k=median, single:memberIndex=0
  --steps N, --eot N    set the gradient attacks' iterations and EOT samples (--eot also raises AutoAttack
                        'rand''s 20)
  --queries N           set Square's queries (--attack square, and Square in the suites)
  --re-evaluations R    a point of a stochastic model counts as robust (all-R) only if all R re-evaluations of
                        every adversarial image, and every attack's own final pass, are correct (default 10)
  --batch-size N        default 100
  --no-masking          skip the gradient-masking checks (eps sweep, black-box vs white-box, budget doubling)
  --report DIR          where robust.html and robust.json go (default report); while the evaluation runs,
                        DIR/robust-checkpoint holds every finished attack batch (deleted at the end)
  --resume              continue an evaluation that was killed, from DIR/robust-checkpoint: the finished
                        batches are taken as they are, bit for bit, and only the rest is attacked
  --overwrite           discard an unfinished evaluation's DIR/robust-checkpoint and start afresh
  --shard I/N           evaluate shard I (0 to N-1) of N: a contiguous run of whole batches of the first N
                        images, attacked with exactly the seeds the whole evaluation gives them; writes
                        DIR/robust-shard.json and robust-shard.safetensors instead of the report (crossmax merge
                        combines the shards' folders). The shard holding image 0 runs the masking checks.
                        Launched by torchrun / srun (RANK, WORLD_SIZE set), the ranks split the images the same way
                        and rank 0 writes the one report.
  --seed N              default 0
  --device DEV          cpu (default) | cuda | cuda:N
  --threads N           intra-op threads (default all cores)
  --json                print the results as JSON`;

// The threat model (eps, Linf) is not in the entries: evaluateRobustness gives it to every attack.
function suiteFor(model: SelfEnsemble, name: SuiteName, settings: { budget: BudgetName; steps?: number; eot?: number; queries?: number }): AttackEntry[] {
  const adaptive = () => adaptiveSuite(model, { budget: settings.budget, steps: settings.steps, eot: settings.eot, squareQueries: settings.queries });
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
 * AutoAttack's entries at the reference's counts, the cpu and quick budgets capping EOT at theirs (and quick taking
 * 10 iterations, 100 queries); explicit --steps, --eot and --queries set them, above the reference's too.
 */
function atBudget(entry: AttackEntry, settings: { budget: BudgetName; steps?: number; eot?: number; queries?: number }): AttackEntry {
  const quick = settings.budget === 'quick';
  const budgetCap = settings.budget === 'published' ? undefined : ADAPTIVE_BUDGETS[settings.budget].eot;
  const eot = (entry.options as { eot?: number } | undefined)?.eot;
  return resizeAttackBudget(entry, {
    steps: settings.steps ?? (quick ? 10 : undefined),
    eot: settings.eot ?? (eot === undefined || budgetCap === undefined ? undefined : Math.min(eot, budgetCap)),
    queries: settings.queries ?? (quick ? 100 : undefined),
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

/** What `runRobustness` may be given besides the flags. */
export interface RobustDefaults {
  suite?: SuiteName;
  n?: number;
  budget?: BudgetName;
  reportDir?: string;
  model?: SelfEnsemble;
  masking?: boolean;
  attack?: string;
}

/** Everything an evaluation (whole or a part) is made from, from the flags. */
interface RobustSetup {
  model: SelfEnsemble;
  modelPath: string | undefined;
  testSet: Awaited<ReturnType<typeof loadData>>;
  n: number;
  batchSize: number;
  reportDir: string;
  device: Device;
  masking: MaskingOptions | false;
  /** The options of evaluateRobustness but the checkpoint and the progress. */
  options: RobustnessOptions;
  identity: Record<string, string> | null;
  /** Every setting that changes a number (what shards must agree on). */
  settings: Record<string, unknown>;
  openCheckpoint(options: { resume: boolean; overwrite: boolean }): EvaluationCheckpoint | undefined;
}

async function setUp(values: ParsedArgs['values'], defaults: RobustDefaults): Promise<RobustSetup> {
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
  const queries = numberFlag(values, 'queries', { integer: true, min: 1 });
  const attackName = choiceFlag(values, 'attack', SINGLE_ATTACKS) ?? (defaults.attack as (typeof SINGLE_ATTACKS)[number] | undefined);
  const suiteName = choiceFlag(values, 'suite', SUITES) ?? defaults.suite ?? 'worst-case';
  const aggregator = applyAggregatorFlag(model, values);
  // Square has queries, not iterations: --steps would silently mean something else for it.
  if (attackName === 'square' && steps !== undefined) throw new UsageError('--attack square takes --queries N (Square has queries, not iterations), not --steps');
  if (attackName && attackName !== 'square' && queries !== undefined) throw new UsageError(`--queries sets Square's queries; --attack ${attackName} takes --steps N`);
  // A quirk kept as it was: --eot does not reach a single FGSM (withEot and the suites do set FGSM's EOT).
  const single = attackName && resizeAttackBudget(ATTACK_PRESETS[attackName], { steps, eot: attackName === 'fgsm' ? undefined : eot, queries });
  const suite = single ? [single] : suiteFor(model, suiteName, { budget, steps, eot, queries });
  // Without the prior the model is deterministic in eval mode: EOT over k draws averages k equal gradients.
  const deterministic = model.prior === null;
  const attacks = deterministic ? suite.map((e) => withEot(e, 1)) : suite;
  if (deterministic) process.stderr.write('deterministic model (no prior): every EOT set to 1, which gives the same gradients as any larger EOT\n');
  const reEvaluations = numberFlag(values, 're-evaluations', { integer: true, min: 1 }) ?? 10;
  const batchSize = numberFlag(values, 'batch-size', { integer: true, min: 1 }) ?? 100;
  // The quick budget keeps the checks cheap too: a smaller sweep subset and a short black-box attack.
  const masking: MaskingOptions | false = values['no-masking'] || defaults.masking === false ? false
    : budget === 'quick' ? { images: Math.min(n, 32), blackBoxAttack: { name: 'square', attack: 'square', options: { queries: 100 } } }
      : budget === 'cpu' ? { images: Math.min(n, 50) } : {};
  const reportDir = resolve(stringFlag(values, 'report') ?? defaults.reportDir ?? 'report');
  // A model given in memory (the demo's) has no file to identify it by, and its evaluation is minutes long.
  const identity = modelPath && !defaults.model ? {
    model: createHash('sha256').update(readFileSync(modelPath)).digest('hex'),
    aggregator: aggregator ?? 'the model\'s own',
    data: portableDataName(testSet.source),
    dataSha256: dataFingerprint(testSet, n),
    device,
  } : null;
  return {
    model, modelPath, testSet, n, batchSize, reportDir, device, masking, identity,
    options: {
      attacks, eps, seed, reEvaluations, batchSize, masking,
      modelName: (modelPath ?? 'demo model') + (aggregator ? ` (aggregator ${aggregator})` : ''),
      dataSource: `${testSet.source}, first ${n} test images`,
    },
    settings: {
      images: n, suite: single ? null : suiteName, attack: attackName ?? null, budget, steps: steps ?? null, eot: eot ?? null, eps, seed, reEvaluations, batchSize,
      masking: masking === false ? false : JSON.parse(JSON.stringify(masking)) as unknown,
      attacks: attacks.map((e) => describeAttack(e, { norm: 'Linf', eps, seed })),
    },
    openCheckpoint: (flags) => (identity
      ? EvaluationCheckpoint.open(join(reportDir, 'robust-checkpoint'), identity, flags)
      : undefined),
  };
}

/** The first images `range` of the test set, on the evaluation's device. */
function loadRange(setup: RobustSetup, range: ImageRange): { images: Tensor; labels: Tensor } {
  return tidy(() => {
    const batch = setup.testSet.batch(Array.from({ length: range.end - range.start }, (_, i) => range.start + i), { device: setup.device });
    return { images: batch.images, labels: batch.labels };
  });
}

/** Runs `evaluate` with a progress bar on stderr and reports what a resumed checkpoint gave back. */
function withProgress<T>(checkpoint: EvaluationCheckpoint | undefined, evaluate: (progress: Pick<RobustnessOptions, 'onProgress' | 'log'>) => T): T {
  const bar = new ProgressBar({ label: 'robustness', unit: 'update', total: 0 });
  const result = evaluate({
    onProgress: (e) => bar.tick(1, { phase: e.phase, attack: e.attack ?? '-', step: `${e.step}/${e.total}`, robust: `${e.robust}/${e.images}` }),
    log: (line) => bar.log(line),
  });
  bar.finish();
  if (checkpoint) {
    // Only batches an earlier run left count as resumed; those the masking checks share with this run do not.
    const { reused, computed, earlierSeconds, untimed } = checkpoint.stats;
    if (reused > 0) {
      process.stderr.write(`resumed: ${reused} attack batches taken from ${checkpoint.dir} (an earlier run; their ${(earlierSeconds / 60).toFixed(1)} min are counted in the results' times), ${computed} computed\n`);
    }
    if (untimed > 0) process.stderr.write(`note: ${untimed} of those batches were stored without their time (an older crossmax): the results' times leave them out\n`);
  }
  return result;
}

/** Shared by `eval --robust`, `attack` and the demo: loads model and data, runs the attacks, writes the report. */
export async function runRobustness(values: ParsedArgs['values'], defaults: RobustDefaults = {}): Promise<RobustRun> {
  const setup = await setUp(values, defaults);
  const { images, labels } = loadRange(setup, { start: 0, end: setup.n });
  const checkpoint = setup.openCheckpoint({ resume: values.resume === true, overwrite: values.overwrite === true });
  const evaluation = withProgress(checkpoint, (progress) => evaluateRobustness(setup.model, images, labels, { ...setup.options, checkpoint, ...progress }));
  const files = writeRobustReport(evaluation, images, { dir: setup.reportDir, classNames: setup.testSet.classes });
  checkpoint?.remove();
  return { evaluation, reportHtml: files.html, reportJson: files.json, model: setup.model, images, labels };
}

/**
 * One part of the evaluation (images `range`, whole batches): evaluated with the seeds the whole evaluation
 * gives them, and the masking checks when the part holds image 0. Returns the part's record and tensors.
 */
function evaluatePart(setup: RobustSetup, range: ImageRange, part: string, checkpoint: EvaluationCheckpoint | undefined, options: { masking: boolean }): { record: ShardRecord; images: Tensor; labels: Tensor; adversarial: Tensor } {
  if (!setup.identity) throw new UsageError('a sharded or distributed evaluation needs a model file (--model FILE): shards are matched by its SHA-256');
  const { images, labels } = loadRange(setup, range);
  const evaluation = withProgress(checkpoint, (progress) => evaluateRobustness(setup.model, images, labels, {
    ...setup.options, masking: false, imageOffset: range.start, checkpoint, ...progress,
  }));
  for (const t of evaluation.adversarial.values()) t.dispose();
  const results = evaluation.results;
  if (options.masking && range.start === 0) results.masking = maskingChecks(setup, checkpoint);
  results.seconds = withMaskingSeconds(results.seconds, results.masking);
  const record: ShardRecord = {
    format: SHARD_FORMAT, identity: setup.identity, settings: setup.settings,
    range: { ...range, images: setup.n, part }, classNames: [...(setup.testSet.classes ?? [])], results,
  };
  return { record, images, labels, adversarial: evaluation.worstAdversarial };
}

/** The gradient-masking checks as the whole evaluation runs them (on its first images, with its settings). */
function maskingChecks(setup: RobustSetup, checkpoint: EvaluationCheckpoint | undefined): RobustnessEvaluation['results']['masking'] {
  if (setup.masking === false) return null;
  const o = setup.options;
  const count = Math.min(resolveMaskingPlan(setup.masking, { eps: o.eps!, suite: o.attacks }).images, setup.n);
  const { images, labels } = loadRange(setup, { start: 0, end: count });
  try {
    return withProgress(checkpoint, ({ onProgress }) => runMaskingChecks(setup.model, images, labels, {
      ...setup.masking as MaskingOptions, suite: o.attacks, eps: o.eps, seed: o.seed, reEvaluations: o.reEvaluations, batchSize: o.batchSize, checkpoint, onProgress,
    }));
  } finally {
    images.dispose();
    labels.dispose();
  }
}

/** `--shard I/N`: evaluates that shard and writes it into the report folder; returns the shard's JSON path. */
export async function runRobustnessShard(values: ParsedArgs['values'], spec: ShardSpec, defaults: RobustDefaults = {}): Promise<{ json: string; record: ShardRecord; model: SelfEnsemble }> {
  const setup = await setUp(values, defaults);
  const range = shardRange(setup.n, setup.batchSize, spec);
  const checkpoint = setup.openCheckpoint({ resume: values.resume === true, overwrite: values.overwrite === true });
  const part = evaluatePart(setup, range, `shard ${spec.index}/${spec.count}`, checkpoint, { masking: true });
  try {
    const files = writeShardFolder(setup.reportDir, part.record, { clean: part.images, adversarial: part.adversarial, labels: part.labels });
    checkpoint?.remove();
    return { json: files.json, record: part.record, model: setup.model };
  } finally {
    for (const t of [part.images, part.labels, part.adversarial]) t.dispose();
  }
}

/** The file by which rank 0 marks REPORT/robust-checkpoint as its own (see runRobustnessDistributed). */
const RANK_0_MARK = 'rank-0-mark';

/** What a rank sends rank 0: its part's record and its worst adversarial images (float32, base64). */
interface RankPayload {
  record: ShardRecord;
  adversarial: { shape: number[]; base64: string };
}

/**
 * The evaluation split over the ranks of `world` (whole batches per rank, the seeds of the whole evaluation):
 * every rank evaluates its part, the parts are gathered, and rank 0 runs the masking checks and writes the one
 * report. Rank 0 gets the run; the other ranks null. Every rank uses REPORT/robust-checkpoint (rank 0 opens it
 * first, so that one folder on a shared file system serves them all; a resumed run of another world size finds
 * every finished batch, since batches are keyed by their images).
 */
export async function runRobustnessDistributed(values: ParsedArgs['values'], world: EvaluationWorld, defaults: RobustDefaults = {}): Promise<RobustRun | null> {
  const setup = await setUp(values, defaults);
  const range = shardRange(setup.n, setup.batchSize, { index: world.rank, count: world.worldSize });
  const flags = { resume: values.resume === true, overwrite: values.overwrite === true };
  let checkpoint = world.rank === 0 ? setup.openCheckpoint(flags) : undefined;
  // Rank 0 marks its folder, so that a rank can tell a shared folder (rank 0 removes it at the end, after the
  // masking checks that still use it) from one of its own on another machine (removed by the rank itself).
  const mark = world.rank === 0 && checkpoint ? randomUUID() : null;
  if (mark) writeFileSync(join(checkpoint!.dir, RANK_0_MARK), mark);
  const [rank0Mark] = await world.allGatherObject(mark);
  if (world.rank !== 0) checkpoint = setup.openCheckpoint({ resume: true, overwrite: false });
  const ownFolder = world.rank !== 0 && checkpoint !== undefined && !(existsSync(join(checkpoint.dir, RANK_0_MARK)) && readFileSync(join(checkpoint.dir, RANK_0_MARK), 'utf8') === rank0Mark);
  const part = evaluatePart(setup, range, `rank ${world.rank} of ${world.worldSize}`, checkpoint, { masking: false });
  let payloads: RankPayload[];
  try {
    const bytes = part.adversarial.to('cpu').float().toTypedArray() as Float32Array;
    payloads = await world.allGatherObject<RankPayload>({
      record: part.record,
      adversarial: { shape: part.adversarial.shape.slice(), base64: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') },
    });
  } finally {
    for (const t of [part.images, part.labels, part.adversarial]) t.dispose();
  }
  if (world.rank !== 0) {
    if (ownFolder) checkpoint!.remove();
    if (!defaults.model) setup.model.dispose();
    return null;
  }
  const { results, order } = mergeShardRecords(payloads.map((p) => p.record), payloads.map((_, r) => `rank ${r}`), { maskingFromParts: false });
  results.masking = maskingChecks(setup, checkpoint);
  results.seconds = withMaskingSeconds(results.seconds, results.masking);
  const { images, labels } = loadRange(setup, { start: 0, end: setup.n });
  const worstAdversarial = tidy(() => cat(order.map((r) => {
    const { shape, base64 } = payloads[r]!.adversarial;
    const buffer = Buffer.from(base64, 'base64');
    const data = new Float32Array(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength));
    return tensor(data, { shape, device: setup.device }).to(images.dtype);
  }), 0));
  const evaluation: RobustnessEvaluation = { results, adversarial: new Map(), worstAdversarial };
  const files = writeRobustReport(evaluation, images, { dir: setup.reportDir, classNames: setup.testSet.classes });
  checkpoint?.remove();
  return { evaluation, reportHtml: files.html, reportJson: files.json, model: setup.model, images, labels };
}

/** The results as text for the terminal, each accuracy with its 95% interval (formatRobustnessText). */
export function formatRobustness(r: RobustnessEvaluation['results']): string {
  return formatRobustnessText(r);
}

/** How `eval --robust` and `attack` reach a process group when launched by torchrun / srun (src/distributed). */
export interface RobustCommandOptions {
  /**
   * Opens the process group of this launch; called only when the launcher's variables say there is more than one
   * rank (WORLD_SIZE, or SLURM_NTASKS). Default: src/distributed's initProcessGroup on the --device's backend.
   */
  openWorld?: () => Promise<EvaluationWorld & { destroy?(): void }>;
}

/** The number of ranks the launcher's variables announce (torchrun's WORLD_SIZE, else Slurm's SLURM_NTASKS); 1 when none. */
export function launchedWorldSize(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.WORLD_SIZE ?? (env.RANK === undefined ? env.SLURM_NTASKS : undefined);
  if (text === undefined) return 1;
  const size = Number(text);
  if (!Number.isInteger(size) || size < 1) throw new UsageError(`WORLD_SIZE / SLURM_NTASKS is '${text}', not a positive integer`);
  return size;
}

type Outcome = { kind: 'whole' | 'rank-0'; run: RobustRun } | { kind: 'shard'; json: string; record: ShardRecord; model: SelfEnsemble } | { kind: 'other-rank'; model: SelfEnsemble | null };

/** Runs the evaluation whole, as a shard (--shard), or split over a launch's ranks. */
async function runAnyPart(values: ParsedArgs['values'], defaults: RobustDefaults, options: RobustCommandOptions): Promise<Outcome> {
  const shard = stringFlag(values, 'shard');
  const ranks = launchedWorldSize();
  if (shard !== undefined) {
    if (ranks > 1) throw new UsageError('--shard is for runs that never talk; a launch of several ranks splits the images by itself');
    let spec: ShardSpec;
    try {
      spec = parseShardSpec(shard);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    return { kind: 'shard', ...await runRobustnessShard(values, spec, defaults) };
  }
  if (ranks > 1) {
    // The process group of this launch (c10d: Gloo on CPU, NCCL on a GPU), unless the caller brings its own (tests).
    const openWorld = options.openWorld ?? (() => initProcessGroup({ device: stringFlag(values, 'device') ?? 'cpu' }));
    const world = await openWorld();
    try {
      const run = await runRobustnessDistributed(values, world, defaults);
      return run ? { kind: 'rank-0', run } : { kind: 'other-rank', model: null };
    } finally {
      world.destroy?.();
    }
  }
  return { kind: 'whole', run: await runRobustness(values, defaults) };
}

/** `crossmax eval --robust`. */
export async function robustEvalCommand(values: ParsedArgs['values'], options: RobustCommandOptions = {}): Promise<number> {
  const outcome = await runAnyPart(values, {}, options);
  if (outcome.kind === 'other-rank') return 0;
  if (outcome.kind === 'shard') {
    outcome.model.dispose();
    console.log(values.json ? JSON.stringify(outcome.record.results, null, 2) : `${outcome.record.range.part}: images ${outcome.record.range.start}–${outcome.record.range.end - 1} of ${outcome.record.range.images}\nshard: ${outcome.json} (crossmax merge DIR... combines the shards)`);
    return 0;
  }
  const run = outcome.run;
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

/** `crossmax attack`: with --shard, the shard goes to the report folder and `crossmax merge` writes the adversarial images. */
export async function attackCommand(args: string[], parse: (args: string[]) => ParsedArgs, options: RobustCommandOptions = {}): Promise<number> {
  const { values } = parse(args);
  if (!values.attack && !values.suite) throw new UsageError('give --attack NAME or --suite NAME');
  if (values.attack && values.suite) throw new UsageError('give --attack or --suite, not both');
  const outcome = await runAnyPart(values, { masking: false }, options);
  if (outcome.kind === 'other-rank') return 0;
  if (outcome.kind === 'shard') {
    outcome.model.dispose();
    console.log(values.json ? JSON.stringify(outcome.record.results, null, 2) : `${outcome.record.range.part}: shard ${outcome.json} (crossmax merge DIR... writes the adversarial images)`);
    return 0;
  }
  const run = outcome.run;
  try {
    const out = resolve(stringFlag(values, 'out') ?? join('runs', 'attack'));
    const files = saveAdversarialImages(out, run.evaluation, run.images, run.labels);
    if (values.json) console.log(JSON.stringify(run.evaluation.results, null, 2));
    else console.log(`${formatRobustness(run.evaluation.results)}\n\nadversarial images: ${files.join(', ')}\nreport: ${run.reportHtml}`);
  } finally {
    run.model.dispose();
  }
  return 0;
}

/** OUT/adversarial.safetensors (worst adversarial, clean, labels) and OUT/adversarial.png (the first 64). */
export function saveAdversarialImages(out: string, evaluation: RobustnessEvaluation, images: Tensor, labels: Tensor): string[] {
  mkdirSync(out, { recursive: true });
  const adversarial = evaluation.worstAdversarial;
  saveSafetensors(join(out, 'adversarial.safetensors'), { adversarial, clean: images, labels },
    { eps: String(evaluation.results.eps), attacks: evaluation.results.attacks.map((a) => a.name).join(',') });
  saveImageGrid(join(out, 'adversarial.png'), adversarial.narrow(0, 0, Math.min(64, adversarial.shape[0]!)), { columns: 8, scale: 2 });
  return [join(out, 'adversarial.safetensors'), join(out, 'adversarial.png')];
}
