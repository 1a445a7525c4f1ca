// The training loop: (self-ensemble) classifiers from scratch, fine-tuned, or heads only on a frozen backbone,
// with optional light adversarial training, evaluation every epoch, metrics as JSON lines, and checkpoints from
// which a killed run resumes bit for bit.
//
//   const result = await train({
//     model, trainSet, testSet, outDir: 'runs/cifar100',
//     epochs: 6, batchSize: 128, optimizer: { kind: 'adam', lr: 3.3e-5 }, schedule: { kind: 'constant' },
//   });
//
// Modes (Fort & Lakshminarayanan 2024, §3 and the official notebook):
//   'from-scratch', 'fine-tune'  every trainable parameter (they differ only in what the caller starts from);
//   'heads'                      the backbone frozen, only the heads trained. The notebook trains each head alone
//                                for one epoch (Adam, lr 3.3e-5, batch 64), from the last layer's head to the
//                                first, with a fresh optimiser each, and the whole network in train mode, so the
//                                backbone's BatchNorm running statistics keep drifting although its weights are
//                                frozen: headsSchedule 'one-at-a-time' with backboneMode 'train' (the defaults)
//                                reproduce that; backboneMode 'eval' is the corrected version (the backbone's
//                                statistics stay as trained), headsSchedule 'together' trains every head in one
//                                pass (each head's gradient is the same as alone, up to the 1/M of the mean).
//
// Determinism: a fresh run seeds libtorch's default generators with `seed` (torch.manual_seed), the data order
// and augmentation are pure functions of (seed, epoch, batch), and evaluation runs with the default generator
// set aside (a fixed eval seed, then the training stream restored), so evaluating does not change training. A
// checkpoint holds everything else that moves (see checkpoint.ts); resuming from one gives the same final weights
// and metrics as an uninterrupted run, bit for bit, on the CPU. On CUDA the prior's noise comes from the CUDA
// generator, whose state crossmax cannot save yet, and CUDA kernels are not bit-deterministic anyway. The model
// comes from the caller: seed before building it (manualSeed(seed), as `crossmax train` does), since libtorch
// seeds its default generator from the OS in every process and initial weights drawn before differ run to run.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { CropFlipOptions } from '../data/augment.js';
import type { ImageClassificationDataset } from '../data/dataset.js';
import { saveModel } from '../ensemble/model-file.js';
import { SelfEnsemble } from '../ensemble/self-ensemble.js';
import { DataLoader } from '../data/loader.js';
import type { Module } from '../nn/module.js';
import { makeOptimizer, makeSchedule, type AnyOptimizer, type OptimizerSpec, type ScheduleSpec } from '../optim/factory.js';
import type { JsonValue } from '../optim/optimizer.js';
import type { LRSchedule } from '../optim/schedules.js';
import { saveSafetensors } from '../serialize/safetensors.js';
import { defaultGeneratorState, disposeAll, Generator, manualSeed, setDefaultGeneratorState, tensor, type Tensor, tidy, zeros } from '../tensor/index.js';
import { checkNonNegativeInteger, checkPositiveInteger } from '../util/checks.js';
import { DistributedDataParallel, shardOfBatch, SyncBatchNorm, type ProcessGroup } from '../distributed/index.js';
import { JsonLinesWriter, writeJsonAtomic } from '../util/json.js';
import { ProgressBar, formatRate, type ProgressOptions } from '../util/progress.js';
import {
  adversarialBatch, resolveAdversarialOptions, type AdversarialTrainingOptions, type ResolvedAdversarialOptions,
} from './adversarial.js';
import {
  CheckpointError, DEFAULT_GENERATOR, loadTrainingCheckpoint, optionDifferences, readTrainingCheckpointHeader,
  writeTrainingCheckpoint, type JsonObject, type LoadedTrainingCheckpoint, type TrainingPosition,
} from './checkpoint.js';
import { evaluate, modelDevice, type EvaluationResult, type TrainableModel } from './evaluate.js';
import { classificationLoss, memberWeightTensor, selfEnsembleLoss } from './losses.js';

/** The specs TrainOptions takes, defined beside their factories in optim/factory.ts. */
export type { OptimizerSpec, ScheduleSpec } from '../optim/factory.js';

/**
 * What is trained: 'from-scratch' and 'fine-tune' train every trainable parameter (they differ only in the weights
 * the caller starts from); 'heads' freezes the backbone and trains only the heads (the paper's setting for a
 * pretrained backbone).
 */
export type TrainingMode = 'from-scratch' | 'fine-tune' | 'heads';

/** Where training is, passed to a per-step callback. */
export interface TrainStepInfo {
  /** Training phase, 0-based (one per head when heads train one at a time). */
  phase: number;
  /** 0-based epoch within the phase. */
  epoch: number;
  /** 0-based batch within the epoch, just trained. */
  batch: number;
  /** Optimiser steps taken so far, this one included. */
  globalStep: number;
  /** This step's training loss (mean per image). */
  loss: number;
}

/** A line of metrics.jsonl. Epochs and batches are counted from 1 here; timing fields vary run to run. */
export interface MetricRecord {
  /** 'step': a logging window; 'epoch': the end of an epoch. */
  type: 'step' | 'epoch';
  /** Only when training has several phases (one head at a time). */
  phase?: number;
  /** The member trained in this phase (one head at a time). */
  member?: number;
  /** Epoch, counted from 1. */
  epoch: number;
  /** Step records: the batch within the epoch. */
  batch?: number;
  /** Optimiser steps so far. */
  step: number;
  /** Mean training loss per image, since the previous step record (step) or over the epoch (epoch). */
  loss: number;
  /**
   * Training accuracy on the images trained on (adversarial ones included), over the same span. For a
   * self-ensemble trained on member losses, the members' accuracies averaged with the loss weights.
   */
  accuracy: number;
  /** Learning rate of the last step (first parameter group). */
  lr: number;
  /** Training throughput over the span. */
  imagesPerSecond: number;
  /** Training time so far, in seconds. */
  elapsedSeconds: number;
  /** Epoch records, when evaluated: clean test accuracy of the output and of each member. */
  test?: { accuracy: number; memberAccuracies: number[]; count: number };
}

/** Fields of a MetricRecord that depend on timing, not on the computation. */
export const TIMING_FIELDS: readonly string[] = ['imagesPerSecond', 'elapsedSeconds'];

/**
 * Settings of {@link train}: the model, data, recipe and where results go. The model file, metrics and checkpoint are
 * written into `outDir`.
 */
export interface TrainOptions {
  /** The model to train (a {@link SelfEnsemble} or any classifier module). */
  model: TrainableModel;
  /** Training images. */
  trainSet: ImageClassificationDataset;
  /** Evaluated after every `evalEvery` epochs; none when left out. */
  testSet?: ImageClassificationDataset;
  /** Where metrics.jsonl, summary.json, the model and checkpoint.safetensors go (created if missing). */
  outDir: string;
  /** Epochs (per head, with headsSchedule 'one-at-a-time'). */
  epochs: number;
  /** Default 128. */
  batchSize?: number;
  /** The optimiser and its hyper-parameters. */
  optimizer: OptimizerSpec;
  /** Default { kind: 'constant' }. */
  schedule?: ScheduleSpec;
  /** Random crop (zero padding 4) and horizontal flip, or their options. Default false (the notebook uses none). */
  augment?: boolean | CropFlipOptions;
  /** Seeds the data order, the augmentation and libtorch's default generators. Default 0. */
  seed?: number;
  /** Default 'from-scratch'. */
  mode?: TrainingMode;
  /** Mode 'heads': the backbone's BatchNorm in train mode (the notebook: statistics drift) or eval mode. Default 'train'. */
  backboneMode?: 'train' | 'eval';
  /** Mode 'heads': each head alone, last to first (the notebook), or all together. Default 'one-at-a-time'. */
  headsSchedule?: 'one-at-a-time' | 'together';
  /** The frozen part for mode 'heads'. Default model.backbone. */
  backbone?: Module;
  /**
   * The heads, for headsSchedule 'one-at-a-time': head i produces member i (members after the last head, such as
   * a SelfEnsemble's backbone classifier, are left as they are). Default model.heads.
   */
  heads?: readonly Module[];
  /**
   * 'members': the weighted mean of the members' cross-entropies (needs memberLogits; see losses.ts).
   * 'output': cross-entropy of forward(). Default 'members' when the model has memberLogits, else 'output'.
   */
  loss?: 'members' | 'output';
  /** Weights of the members' losses ('members' loss). Default equal. */
  memberWeights?: readonly number[];
  /** Default 0. */
  labelSmoothing?: number;
  /** Light adversarial training; none when left out. */
  adversarial?: AdversarialTrainingOptions;
  /** Evaluate every this many epochs (and after the last). 0: never. Default 1. */
  evalEvery?: number;
  /** Evaluate on the first `evalLimit` test images. Default all. */
  evalLimit?: number;
  /** Default 256. */
  evalBatchSize?: number;
  /** Seed of the default generator during evaluation (the same noise every epoch). Default `seed`. */
  evalSeed?: number;
  /** A step record every this many optimiser steps; 0 for epoch records only. Default 50. */
  logEvery?: number;
  /** A checkpoint every this many optimiser steps, besides the one after each epoch; 0 for epochs only. Default 0. */
  checkpointEvery?: number;
  /**
   * Continue from outDir/checkpoint.safetensors: true requires it, 'if-present' starts afresh without one.
   * The options that decide the run's course must equal the checkpoint's. Default false.
   */
  resume?: boolean | 'if-present';
  /** Start afresh even though outDir holds a checkpoint (it is replaced). Default false: refused. */
  overwrite?: boolean;
  /**
   * On SIGINT/SIGTERM: finish the step, write a checkpoint, then exit the process with 130/143 (true) or throw
   * TrainingInterrupted (false). Default true.
   */
  exitOnSignal?: boolean;
  /**
   * Data-parallel training over this process group (src/distributed): every rank loads the same global batch of
   * `batchSize` and trains on its contiguous slice, gradients are averaged (so W ranks take the single-process step
   * on the whole batch), rank 0's weights and buffers are broadcast at the start and its buffers before every step
   * (as PyTorch's DDP does), ranks whose options or data differ are refused naming the difference, and only
   * rank 0 writes checkpoints, metrics, the model and the summary and shows progress (global img/s).
   * Default: none (one process).
   */
  distributed?: ProcessGroup;
  /**
   * Synchronised BatchNorm (torch.nn.SyncBatchNorm) when `distributed`: training-mode BatchNorms normalise with
   * the mean and variance of the global batch over all ranks, with exact gradients, so a step on W ranks equals the
   * single-process step on the whole batch for models with BatchNorm too (src/distributed/sync-batchnorm.ts; it
   * costs up to one partial forward pass per BatchNorm call). Not with `adversarial` (the attack's forward passes
   * would still use per-rank statistics). Default false: each rank normalises its own slice, as PyTorch's DDP.
   */
  syncBatchNorm?: boolean;
  /** A progress bar on stderr (true, or its options), plain lines when stderr is not a terminal. Default true. */
  progress?: boolean | ProgressOptions;
  /**
   * Writes the final model into outDir and returns its path. Default: a SelfEnsemble with a recorded
   * configuration goes through saveModel (src/ensemble/model-file.ts) as model.safetensors; any other model's
   * state dict is written there (load it with Module.loadStateDict).
   */
  saveModel?: (model: TrainableModel, outDir: string) => string;
  /** Called after every optimiser step. */
  onStep?: (info: TrainStepInfo) => void;
  /** Called after each epoch's record is written. */
  onEpochEnd?: (record: MetricRecord) => void;
}

/** summary.json: what a finished run did, in one object. */
export interface TrainSummary {
  /** Identifies the file. */
  format: 'crossmax-training-summary';
  /** The training mode. */
  mode: TrainingMode;
  /** Training phases run. */
  phases: number;
  /** Epochs per phase. */
  epochs: number;
  /** Optimiser steps in all. */
  steps: number;
  /** The last evaluation of each epoch record that has one. */
  finalTest: MetricRecord['test'] | null;
  /** Mean training loss of the last epoch (null when none ran). */
  finalTrainLoss: number | null;
  /** Training accuracy of the last epoch (null when none ran). */
  finalTrainAccuracy: number | null;
  /** Training time in seconds, over all resumed parts. */
  elapsedSeconds: number;
  /** Global steps at which this run was resumed from a checkpoint. */
  resumedAtSteps: number[];
  /** The model file written ({@link MODEL_FILE}). */
  modelFile: string;
  /** The checkpoint file ({@link CHECKPOINT_FILE}). */
  checkpointFile: string;
  /** The metrics log ({@link METRICS_FILE}). */
  metricsFile: string;
  /** The run's options as JSON. */
  options: JsonObject;
}

/** What {@link train} returns. */
export interface TrainResult {
  /** Every metric record, in order. */
  metrics: MetricRecord[];
  /** The summary also written to summary.json. */
  summary: TrainSummary;
  /** The trained model's file. */
  modelPath: string;
  /** The final checkpoint's file. */
  checkpointPath: string;
}

/** Thrown (with exitOnSignal false) when a signal stopped training after its checkpoint was written. */
export class TrainingInterrupted extends Error {
  /**
   * @param signal - The signal that stopped training (SIGINT or SIGTERM).
   * @param checkpointPath - The checkpoint written before stopping; `--resume` continues from it.
   * @param position - Where training stood.
   */
  constructor(readonly signal: NodeJS.Signals, readonly checkpointPath: string, readonly position: TrainingPosition) {
    super(`training stopped by ${signal}; checkpoint written to ${checkpointPath}`);
    this.name = 'TrainingInterrupted';
  }
}

/** Name of the resumable checkpoint in the output folder. */
export const CHECKPOINT_FILE = 'checkpoint.safetensors';
/** Name of the metrics log (JSON Lines, one {@link MetricRecord} a line) in the output folder. */
export const METRICS_FILE = 'metrics.jsonl';
/** Name of the run's {@link TrainSummary} in the output folder. */
export const SUMMARY_FILE = 'summary.json';
/** Name of the trained model file in the output folder. */
export const MODEL_FILE = 'model.safetensors';

const SIGNAL_EXIT_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/** One stretch of training with its own parameters, optimiser and schedule. */
interface Phase {
  parameters: Tensor[];
  /** The one member trained (one head at a time), else null. */
  member: number | null;
}

/** Running sums over a span of steps. */
interface Sums { loss: number; correct: number; images: number }
const emptySums = (): Sums => ({ loss: 0, correct: 0, images: 0 });

/**
 * Trains a classifier (usually a self-ensemble) with the recipe in `options`, writing metrics, checkpoints (a killed
 * run resumes bit for bit) and the model file into `options.outDir`.
 */
export async function train(options: TrainOptions): Promise<TrainResult> {
  const run = new TrainingRun(options);
  return run.execute();
}

class TrainingRun {
  private readonly o: TrainOptions;
  private readonly model: TrainableModel;
  private readonly mode: TrainingMode;
  private readonly loader: DataLoader;
  private readonly lossKind: 'members' | 'output';
  private readonly adversarial: ResolvedAdversarialOptions | null;
  private readonly phases: Phase[];
  private readonly fingerprint: JsonObject;
  private readonly checkpointPath: string;
  private readonly metricsPath: string;
  private readonly generators: Map<string, Generator>;
  private readonly progressOptions: ProgressOptions | null;
  private readonly evalEvery: number;
  private readonly logEvery: number;
  private readonly checkpointEvery: number;

  private metrics: MetricRecord[] = [];
  /** metrics.jsonl, opened by start(). */
  private metricsLog: JsonLinesWriter | null = null;
  /** Data-parallel wrapper when options.distributed is given. */
  private ddp: DistributedDataParallel | null = null;
  /** Synchronised BatchNorm when options.syncBatchNorm (and distributed). */
  private syncBn: SyncBatchNorm | null = null;
  /** Whether this process writes files and shows progress: rank 0, or the only process. */
  private readonly writes: boolean;
  private epochSums = emptySums();
  private windowSums = emptySums();
  private resumedAtSteps: number[] = [];
  private elapsedBefore = 0;
  private startedAt = performance.now();
  private windowStartedAt = performance.now();
  private epochStartedAt = performance.now();
  private stopSignal: NodeJS.Signals | null = null;
  /** A checkpoint read by start(), applied once the phase's optimiser exists. */
  private pendingResume: LoadedTrainingCheckpoint | null = null;

  constructor(options: TrainOptions) {
    this.o = options;
    this.model = options.model;
    this.mode = options.mode ?? 'from-scratch';
    if (!['from-scratch', 'fine-tune', 'heads'].includes(this.mode)) throw new RangeError(`unknown training mode '${this.mode}'`);
    checkPositiveInteger('epochs', options.epochs);
    const batchSize = options.batchSize ?? 128;
    checkPositiveInteger('batchSize', batchSize);
    this.evalEvery = checkNonNegativeInteger('evalEvery', options.evalEvery ?? 1);
    this.logEvery = checkNonNegativeInteger('logEvery', options.logEvery ?? 50);
    this.checkpointEvery = checkNonNegativeInteger('checkpointEvery', options.checkpointEvery ?? 0);
    const hasMembers = typeof this.model.memberLogits === 'function';
    this.lossKind = options.loss ?? (hasMembers ? 'members' : 'output');
    if (this.lossKind !== 'members' && this.lossKind !== 'output') throw new RangeError(`loss must be 'members' or 'output', got '${String(this.lossKind)}'`);
    if (this.lossKind === 'members' && !hasMembers) throw new Error("loss 'members' needs a model with memberLogits(); use loss: 'output'");
    this.adversarial = options.adversarial ? resolveAdversarialOptions(options.adversarial) : null;
    if (options.syncBatchNorm && !options.distributed) throw new Error('syncBatchNorm needs distributed training (a process group)');
    if (options.syncBatchNorm && this.adversarial) {
      throw new Error("syncBatchNorm with adversarial training is not supported: the attack's forward passes would normalise with per-rank statistics");
    }
    this.loader = new DataLoader(options.trainSet, {
      batchSize, shuffle: true, seed: options.seed ?? 0, augment: options.augment ?? false, device: modelDevice(this.model),
    });
    this.phases = this.planPhases();
    this.generators = moduleGenerators(this.model);
    this.fingerprint = this.makeFingerprint();
    this.checkpointPath = join(options.outDir, CHECKPOINT_FILE);
    this.metricsPath = join(options.outDir, METRICS_FILE);
    this.writes = (options.distributed?.rank ?? 0) === 0;
    const progress = this.writes ? options.progress ?? true : false;
    this.progressOptions = progress === false ? null : progress === true ? {} : progress;
    // Builds the optimiser and schedule once on a stand-in parameter, so that a bad spec fails before any work.
    const probe = zeros([1], { requiresGrad: true });
    try {
      makeSchedule(makeOptimizer([probe], options.optimizer), options.schedule, options.epochs * this.loader.length, this.loader.length);
    } finally {
      probe.dispose();
    }
  }

  // ---- planning ------------------------------------------------------------------------------------------

  private planPhases(): Phase[] {
    const trainable = this.model.parameters().filter((p) => p.requiresGrad);
    if (this.mode !== 'heads') {
      if (trainable.length === 0) throw new Error('the model has no trainable parameters');
      return [{ parameters: trainable, member: null }];
    }
    const backbone = this.o.backbone ?? this.model.backbone;
    if (!backbone) throw new Error("mode 'heads' needs the backbone to freeze: give the model a `backbone` field or pass options.backbone");
    const frozen = new Set(backbone.parameters());
    const headParameters = trainable.filter((p) => !frozen.has(p));
    if (headParameters.length === 0) throw new Error("mode 'heads': every trainable parameter belongs to the backbone; there are no heads to train");
    if ((this.o.headsSchedule ?? 'one-at-a-time') === 'together') return [{ parameters: headParameters, member: null }];
    const heads = headList(this.o.heads ?? this.model.heads);
    if (!heads) throw new Error("headsSchedule 'one-at-a-time' needs the heads in member order: give the model a `heads` field or pass options.heads");
    if (this.lossKind !== 'members') throw new Error("headsSchedule 'one-at-a-time' trains each head on its member's loss: use loss 'members'");
    // The notebook's order: reversed(layers_to_use), the deepest layer's head first.
    return heads.map((_, i) => heads.length - 1 - i).map((member) => {
      const parameters = heads[member]!.parameters().filter((p) => p.requiresGrad && !frozen.has(p));
      if (parameters.length === 0) throw new Error(`head ${member} has no trainable parameters`);
      return { parameters, member };
    });
  }

  /** The options that decide the run's course, as JSON: resuming with different ones is refused. */
  private makeFingerprint(): JsonObject {
    const o = this.o;
    const heads = this.mode === 'heads';
    const record = {
      mode: this.mode,
      epochs: o.epochs,
      batchSize: this.loader.batchSize,
      seed: this.loader.seed,
      augment: this.loader.augment ? { padding: this.loader.augment.padding ?? 4, flipProbability: this.loader.augment.flipProbability ?? 0.5 } : false,
      optimizer: o.optimizer,
      schedule: o.schedule ?? { kind: 'constant' },
      backboneMode: heads ? (o.backboneMode ?? 'train') : null,
      headsSchedule: heads ? (o.headsSchedule ?? 'one-at-a-time') : null,
      phases: this.phases.length,
      loss: this.lossKind,
      memberWeights: o.memberWeights ?? null,
      labelSmoothing: o.labelSmoothing ?? 0,
      adversarial: this.adversarial,
      // Only when on, so that earlier checkpoints' fingerprints stay valid.
      syncBatchNorm: o.syncBatchNorm ? true : undefined,
      eval: { every: this.evalEvery, limit: o.evalLimit ?? null, batchSize: o.evalBatchSize ?? 256, seed: o.evalSeed ?? this.loader.seed },
      logEvery: this.logEvery,
      trainSet: datasetIdentity(o.trainSet),
      testSet: o.testSet ? datasetIdentity(o.testSet) : null,
      model: modelIdentity(this.model),
    };
    // Through JSON so that undefined fields vanish the same way on both sides of a comparison.
    return JSON.parse(JSON.stringify(record)) as JsonObject;
  }

  // ---- the run ------------------------------------------------------------------------------------------------

  async execute(): Promise<TrainResult> {
    mkdirSync(this.o.outDir, { recursive: true });
    const savedModes = this.model.modules().map((m) => [m, m.training] as const);
    const savedRequiresGrad = this.model.parameters().map((p) => [p, p.requiresGrad] as const);
    const onSignal = (signal: NodeJS.Signals) => this.handleSignal(signal);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      if (this.o.distributed) {
        this.ddp = new DistributedDataParallel(this.model as unknown as Module, this.o.distributed);
        // Before start(): a resumed run then loads the same checkpoint on every rank over rank 0's weights.
        await this.ddp.synchronize({ options: this.fingerprint, trainImages: this.o.trainSet.length });
        if (this.o.syncBatchNorm) this.syncBn = new SyncBatchNorm(this.model as unknown as Module, this.o.distributed);
      }
      let position = this.start();
      for (; position.phase < this.phases.length && !position.completed; position = { ...position, phase: position.phase + 1, epoch: 0, batch: 0 }) {
        position = await this.runPhase(position);
      }
      return this.finish(position);
    } finally {
      if (this.pendingResume) {
        // A completed run resumed: nothing was trained, so the optimiser state was never needed.
        disposeAll([this.pendingResume.model, this.pendingResume.optimizer.tensors, this.pendingResume.generators]);
        this.pendingResume = null;
      }
      this.metricsLog?.close();
      this.metricsLog = null;
      this.ddp?.destroy();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      for (const [p, requiresGrad] of savedRequiresGrad) {
        p.grad = null;
        if (p.requiresGrad !== requiresGrad) p.setRequiresGrad(requiresGrad);
      }
      for (const [m, training] of savedModes) m.training = training;
    }
  }

  /** A fresh start, or the state of the checkpoint; returns where to begin. Optimiser state is loaded by runPhase. */
  private start(): TrainingPosition {
    const resume = this.o.resume ?? false;
    const exists = existsSync(this.checkpointPath);
    if (resume === true && !exists) throw new CheckpointError(this.checkpointPath, 'no such file: nothing to resume (use resume: \'if-present\' to start afresh when missing)');
    if (resume !== false && exists) return this.readResumeHeader();
    if (exists && !this.o.overwrite) {
      throw new Error(`${this.o.outDir} already holds a training checkpoint; pass resume: true to continue it or overwrite: true to start afresh`);
    }
    // Removed rather than left to be replaced: a fresh run killed before its first checkpoint must not leave
    // the old run's checkpoint next to the new run's metrics.
    if (exists && this.writes) unlinkSync(this.checkpointPath);
    manualSeed(this.loader.seed);
    if (this.writes) this.metricsLog = new JsonLinesWriter(this.metricsPath, { replace: [] });
    return { phase: 0, epoch: 0, batch: 0, globalStep: 0, completed: false };
  }

  private readResumeHeader(): TrainingPosition {
    const header = readTrainingCheckpointHeader(this.checkpointPath);
    const differences = optionDifferences(header.options, this.fingerprint);
    if (differences.length > 0) {
      throw new Error(`cannot resume from ${this.checkpointPath}: the run's options differ from the checkpoint's:\n  ` +
        `${differences.join('\n  ')}\nUse the checkpoint's options, or start afresh in another outDir (or with overwrite: true).`);
    }
    const loaded = loadTrainingCheckpoint(this.checkpointPath);
    try {
      this.model.loadStateDict(loaded.model);
    } catch (err) {
      disposeAll([loaded.model, loaded.optimizer.tensors, loaded.generators]);
      throw new CheckpointError(this.checkpointPath, `does not fit the model: ${(err as Error).message}`);
    }
    const { state } = loaded;
    this.metrics = state.metrics as unknown as MetricRecord[];
    const sums = state.accumulators as unknown as { epoch: Sums; window: Sums; resumedAtSteps: number[] };
    this.epochSums = { ...sums.epoch };
    this.windowSums = { ...sums.window };
    this.resumedAtSteps = [...sums.resumedAtSteps, state.position.globalStep];
    this.elapsedBefore = state.elapsedSeconds;
    if (this.writes) this.metricsLog = new JsonLinesWriter(this.metricsPath, { replace: this.metrics });
    this.pendingResume = loaded;
    return { ...state.position };
  }

  /** Restores the optimiser, schedule and generators of a pending resume (after the phase's optimiser exists). */
  private applyResume(optimizer: AnyOptimizer, schedule: LRSchedule | null): void {
    const loaded = this.pendingResume;
    if (!loaded) return;
    this.pendingResume = null;
    try {
      optimizer.loadStateDict(loaded.optimizer);
      const savedSchedule = loaded.state.schedule;
      if ((savedSchedule === null) !== (schedule === null)) throw new Error('the checkpoint\'s schedule does not match this run\'s');
      if (schedule && savedSchedule) schedule.loadStateDict(savedSchedule);
      setDefaultGeneratorState(loaded.generators.get(DEFAULT_GENERATOR)!);
      for (const [name, generator] of this.generators) {
        const state = loaded.generators.get(name);
        if (!state) throw new Error(`no state for the generator of '${name}'`);
        generator.setState(state);
      }
    } catch (err) {
      throw new CheckpointError(this.checkpointPath, `cannot be restored: ${(err as Error).message}`);
    } finally {
      disposeAll([loaded.model, loaded.optimizer.tensors, loaded.generators]);
    }
  }

  private async runPhase(start: TrainingPosition): Promise<TrainingPosition> {
    const phase = this.phases[start.phase]!;
    const inPhase = new Set(phase.parameters);
    // Only the phase's parameters record gradients: frozen ones (the backbone, the other heads) get none.
    for (const p of this.model.parameters()) if (p.requiresGrad !== inPhase.has(p)) p.setRequiresGrad(inPhase.has(p));
    const batches = this.loader.length;
    const optimizer = makeOptimizer(phase.parameters, this.o.optimizer);
    const schedule = makeSchedule(optimizer, this.o.schedule, this.o.epochs * batches, batches);
    try {
      this.applyResume(optimizer, schedule);
      let position = start;
      while (position.epoch < this.o.epochs) {
        position = await this.runEpoch(position, phase, optimizer, schedule);
      }
      return position;
    } finally {
      optimizer.dispose();
    }
  }

  private setTrainModes(): void {
    this.model.train();
    // Set both ways: a model may keep a frozen backbone in eval mode by itself (SelfEnsemble.freezeBackbone).
    if (this.mode === 'heads') (this.o.backbone ?? this.model.backbone)!.train((this.o.backboneMode ?? 'train') === 'train');
  }

  private async runEpoch(start: TrainingPosition, phase: Phase, optimizer: AnyOptimizer, schedule: LRSchedule | null): Promise<TrainingPosition> {
    const batches = this.loader.length;
    const dataEpoch = start.phase * this.o.epochs + start.epoch;
    const bar = this.makeBar(start);
    let position = { ...start };
    this.epochStartedAt = performance.now();
    this.windowStartedAt = performance.now();
    const imagesBefore = this.epochSums.images;
    // Evaluation and the attack put the model in eval mode and give every module its mode back afterwards.
    this.setTrainModes();
    for (let b = start.batch; b < batches; b++) {
      const lr = optimizer.paramGroups[0]!.lr;
      const { loss, correct, images } = await this.step(dataEpoch, b, phase, optimizer);
      schedule?.step();
      for (const sums of [this.epochSums, this.windowSums]) {
        sums.loss += loss * images;
        sums.correct += correct;
        sums.images += images;
      }
      position = { ...position, batch: b + 1, globalStep: position.globalStep + 1 };
      bar.tick(images, { loss: this.epochSums.loss / this.epochSums.images, acc: this.epochSums.correct / this.epochSums.images, lr });
      if (this.logEvery > 0 && position.globalStep % this.logEvery === 0) this.logStep(position, phase, lr);
      if (this.checkpointEvery > 0 && position.globalStep % this.checkpointEvery === 0) this.writeCheckpoint(position, optimizer, schedule);
      this.o.onStep?.({ phase: position.phase, epoch: position.epoch, batch: b, globalStep: position.globalStep, loss });
      // Signals are delivered by the event loop: give it a turn after every step.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.stopSignal) this.stop(position, optimizer, schedule, bar);
    }
    bar.finish();

    const isLast = position.epoch + 1 === this.o.epochs;
    const evaluateNow = this.o.testSet && this.evalEvery > 0 && ((position.epoch + 1) % this.evalEvery === 0 || isLast);
    const test = evaluateNow ? this.evaluateIsolated() : undefined;
    const seconds = (performance.now() - this.epochStartedAt) / 1000;
    const record: MetricRecord = {
      type: 'epoch',
      ...this.phaseFields(position, phase),
      epoch: position.epoch + 1,
      step: position.globalStep,
      loss: this.epochSums.loss / this.epochSums.images,
      accuracy: this.epochSums.correct / this.epochSums.images,
      lr: optimizer.paramGroups[0]!.lr,
      imagesPerSecond: seconds > 0 ? (this.epochSums.images - imagesBefore) / seconds : 0,
      elapsedSeconds: this.elapsedSeconds(),
      ...(test ? { test } : {}),
    };
    this.record(record);
    this.printEpoch(record);
    this.epochSums = emptySums();
    position = {
      ...position, epoch: position.epoch + 1, batch: 0,
      completed: isLast && position.phase === this.phases.length - 1,
    };
    this.writeCheckpoint(position, optimizer, schedule);
    this.o.onEpochEnd?.(record);
    if (this.stopSignal) this.stop(position, optimizer, schedule, null);
    return position;
  }

  /**
   * One optimiser step on batch `b` of data epoch `dataEpoch`; distributed, on this rank's slice of it, with the
   * gradients averaged and the loss/accuracy/image count summed over ranks (so they describe the global batch).
   */
  private async step(dataEpoch: number, b: number, phase: Phase, optimizer: AnyOptimizer): Promise<{ loss: number; correct: number; images: number }> {
    const batch = this.loader.batch(dataEpoch, b);
    const group = this.o.distributed;
    try {
      if (this.ddp && this.model.buffers().length > 0) await this.ddp.broadcastBuffers();
      const total = batch.images.shape[0]!;
      const rows = group ? shardOfBatch([...Array(total).keys()], group.rank, group.worldSize) : null;
      const local = this.syncBn && rows ? await this.syncBnStep(batch, rows, total, phase, optimizer) : tidy(() => {
        const n = rows ? rows.length : total;
        let images = rows ? batch.images.narrow(0, rows[0] ?? 0, n) : batch.images;
        const labels = rows ? batch.labels.narrow(0, rows[0] ?? 0, n) : batch.labels;
        if (this.adversarial) {
          const objective = this.adversarial.objective === 'output'
            ? (x: Tensor, y: Tensor) => classificationLoss(this.model.forward(x), y)
            : (x: Tensor, y: Tensor) => this.lossAndCorrect(x, y, phase).loss;
          images = adversarialBatch(this.model, images, labels, objective, this.adversarial);
        }
        optimizer.zeroGrad();
        const { loss, correct } = this.lossAndCorrect(images, labels, phase);
        // Distributed: the gradients' all-reduce starts inside this backward pass, bucket by bucket.
        this.ddp?.prepareForBackward(n / total);
        loss.backward();
        if (!group) optimizer.step();
        return { loss: loss.item(), correct: correct.item(), images: n };
      });
      if (!group || !this.ddp) return local;
      await this.ddp.allReduceGradients({ share: local.images / total });
      optimizer.step();
      const sums = tensor(new Float64Array([local.loss * local.images, local.correct, local.images]));
      try {
        await group.allReduce(sums, { op: 'sum' });
        const [loss, correct, images] = sums.toArray() as [number, number, number];
        return { loss: loss / images, correct, images };
      } finally {
        sums.dispose();
      }
    } finally {
      batch.dispose();
    }
  }

  /**
   * The forward and backward of {@link step} with synchronised BatchNorm (no adversarial examples: refused at
   * construction): statistics-only passes and the gradient corrections talk to the other ranks between them.
   */
  private async syncBnStep(batch: { images: Tensor; labels: Tensor }, rows: number[], total: number, phase: Phase,
    optimizer: AnyOptimizer): Promise<{ loss: number; correct: number; images: number }> {
    const n = rows.length;
    const images = batch.images.narrow(0, rows[0] ?? 0, n);
    const labels = batch.labels.narrow(0, rows[0] ?? 0, n);
    try {
      optimizer.zeroGrad();
      const { result } = await this.syncBn!.forwardBackward(() => this.lossAndCorrect(images, labels, phase),
        { share: n / total, generators: [...this.generators.values()] });
      const values = { loss: result.loss.item(), correct: result.correct.item(), images: n };
      result.loss.dispose();
      result.correct.dispose();
      return values;
    } finally {
      images.dispose();
      labels.dispose();
    }
  }

  /** The training loss (a scalar) and the number of correct predictions (a scalar, fractional for member averages). */
  private lossAndCorrect(images: Tensor, labels: Tensor, phase: Phase): { loss: Tensor; correct: Tensor } {
    const smoothing = { labelSmoothing: this.o.labelSmoothing ?? 0 };
    if (this.lossKind === 'output') {
      const logits = this.model.forward(images);
      return { loss: classificationLoss(logits, labels, smoothing), correct: logits.argmax({ dim: 1 }).eq(labels).sum() };
    }
    const memberLogits = this.model.memberLogits!(images);
    const m = memberLogits.shape[1]!;
    if (phase.member !== null) {
      // Head i is member i; members after the heads (a SelfEnsemble's backbone classifier) are not trained here.
      const heads = this.phases.length;
      if (m < heads) throw new Error(`the model has ${m} members but ${heads} heads were given for one-at-a-time training`);
      const logits = memberLogits.select(1, phase.member);
      return { loss: classificationLoss(logits, labels, smoothing), correct: logits.argmax({ dim: 1 }).eq(labels).sum() };
    }
    const loss = selfEnsembleLoss(memberLogits, labels, { ...smoothing, memberWeights: this.o.memberWeights });
    // Σ_m w_m · (correct predictions of member m), with the loss's weights.
    const w = memberWeightTensor(this.o.memberWeights, memberLogits);
    const correct = memberLogits.argmax({ dim: 2 }).eq(labels.unsqueeze(1)).to(memberLogits.dtype).sum({ dim: 0 }).mul(w).sum();
    return { loss, correct };
  }

  /** Evaluation with the training random streams set aside, so that it changes nothing about training. */
  private evaluateIsolated(): MetricRecord['test'] {
    const saved = this.generatorStates();
    const fresh = new Generator(this.o.evalSeed ?? this.loader.seed).getState();
    setDefaultGeneratorState(fresh);
    fresh.dispose();
    try {
      const result: EvaluationResult = evaluate(this.model, this.o.testSet!, {
        batchSize: this.o.evalBatchSize ?? 256, limit: this.o.evalLimit, samples: 0,
        progress: this.progressOptions ? { ...this.progressOptions, label: 'eval' } : false,
      });
      return { accuracy: result.accuracy, memberAccuracies: result.memberAccuracies, count: result.count };
    } finally {
      setDefaultGeneratorState(saved.get(DEFAULT_GENERATOR)!);
      for (const [name, generator] of this.generators) generator.setState(saved.get(name)!);
      disposeAll(saved);
    }
  }

  // ---- records, checkpoints, signals ---------------------------------------------------------------------

  private phaseFields(position: TrainingPosition, phase: Phase): Pick<MetricRecord, 'phase' | 'member'> {
    return this.phases.length > 1 ? { phase: position.phase, member: phase.member ?? undefined } : {};
  }

  private logStep(position: TrainingPosition, phase: Phase, lr: number): void {
    const s = this.windowSums;
    const seconds = (performance.now() - this.windowStartedAt) / 1000;
    this.record({
      type: 'step',
      ...this.phaseFields(position, phase),
      epoch: position.epoch + 1,
      batch: position.batch,
      step: position.globalStep,
      loss: s.loss / s.images,
      accuracy: s.correct / s.images,
      lr,
      imagesPerSecond: seconds > 0 ? s.images / seconds : 0,
      elapsedSeconds: this.elapsedSeconds(),
    });
    this.windowSums = emptySums();
    this.windowStartedAt = performance.now();
  }

  private record(record: MetricRecord): void {
    const clean = JSON.parse(JSON.stringify(record)) as MetricRecord;
    this.metrics.push(clean);
    // Only rank 0 has a log (every rank keeps the records: they go into its checkpoint state, written by rank 0).
    this.metricsLog?.write(clean);
  }

  private elapsedSeconds(): number {
    return this.elapsedBefore + (performance.now() - this.startedAt) / 1000;
  }

  private generatorStates(): Map<string, Tensor> {
    const states = new Map<string, Tensor>([[DEFAULT_GENERATOR, defaultGeneratorState()]]);
    for (const [name, generator] of this.generators) states.set(name, generator.getState());
    return states;
  }

  private writeCheckpoint(position: TrainingPosition, optimizer: AnyOptimizer, schedule: LRSchedule | null): void {
    if (!this.writes) return;
    const model = this.model.stateDict();
    const optimizerState = optimizer.stateDict();
    const generators = this.generatorStates();
    try {
      writeTrainingCheckpoint(this.checkpointPath, {
        options: this.fingerprint,
        state: {
          position,
          optimizer: optimizerState.json,
          schedule: schedule ? schedule.stateDict() : null,
          loader: { seed: this.loader.seed },
          metrics: this.metrics as unknown as JsonObject[],
          accumulators: { epoch: { ...this.epochSums }, window: { ...this.windowSums }, resumedAtSteps: this.resumedAtSteps } as unknown as JsonObject,
          elapsedSeconds: this.elapsedSeconds(),
          writtenAt: new Date().toISOString(),
        },
        model,
        optimizer: optimizerState,
        generators,
      });
    } finally {
      disposeAll([model, optimizerState.tensors, generators]);
    }
  }

  private handleSignal(signal: NodeJS.Signals): void {
    if (this.stopSignal) {
      process.stderr.write(`\ncrossmax: second ${signal}: exiting now without a checkpoint\n`);
      process.exit(SIGNAL_EXIT_CODES[signal] ?? 1);
    }
    this.stopSignal = signal;
    process.stderr.write(`\ncrossmax: received ${signal}: finishing the current step, then writing a checkpoint\n`);
  }

  /** Writes the checkpoint at `position` and stops: exits the process or throws TrainingInterrupted. */
  private stop(position: TrainingPosition, optimizer: AnyOptimizer, schedule: LRSchedule | null, bar: ProgressBar | null): never {
    const signal = this.stopSignal!;
    bar?.finish();
    this.writeCheckpoint(position, optimizer, schedule);
    const code = SIGNAL_EXIT_CODES[signal] ?? 1;
    const phase = this.phases.length > 1 ? `phase ${position.phase + 1}/${this.phases.length}, ` : '';
    const where = `${phase}epoch ${position.epoch + 1}/${this.o.epochs} after ${position.batch} of ${this.loader.length} batches (step ${position.globalStep})`;
    if (this.o.exitOnSignal ?? true) {
      process.stderr.write(`crossmax: checkpoint written to ${this.checkpointPath} at ${where}; resume with resume: true (--resume). ` +
        `Exiting with code ${code} (${signal}).\n`);
      process.exit(code);
    }
    process.stderr.write(`crossmax: checkpoint written to ${this.checkpointPath} at ${where}.\n`);
    throw new TrainingInterrupted(signal, this.checkpointPath, position);
  }

  // ---- display and final outputs --------------------------------------------------------------------------

  private makeBar(position: TrainingPosition): ProgressBar {
    const phase = this.phases.length > 1 ? `head ${this.phases[position.phase]!.member} ` : '';
    const images = this.o.trainSet.length;
    return new ProgressBar({
      ...(this.progressOptions ?? {}),
      label: `${phase}epoch ${position.epoch + 1}/${this.o.epochs}`,
      unit: 'img',
      total: images,
      initial: Math.min(images, position.batch * this.loader.batchSize),
      silent: this.progressOptions === null || this.progressOptions.silent === true,
    });
  }

  private printEpoch(r: MetricRecord): void {
    if (!this.progressOptions) return;
    const stream = this.progressOptions.stream ?? process.stderr;
    const head = r.member !== undefined ? `head ${r.member} ` : '';
    const test = r.test
      ? `, test acc ${pct(r.test.accuracy)}${r.test.memberAccuracies.length ? ` (members ${r.test.memberAccuracies.map(pct).join(' ')})` : ''}`
      : '';
    stream.write(`${head}epoch ${r.epoch}/${this.o.epochs}: loss ${r.loss.toFixed(4)}, train acc ${pct(r.accuracy)}${test}, ` +
      `lr ${r.lr.toPrecision(3)}, ${formatRate(r.imagesPerSecond)} img/s\n`);
  }

  private finish(position: TrainingPosition): TrainResult {
    const modelPath = this.writes ? (this.o.saveModel ?? saveTrainedModel)(this.model, this.o.outDir) : join(this.o.outDir, MODEL_FILE);
    const epochs = this.metrics.filter((r) => r.type === 'epoch');
    const lastTested = [...epochs].reverse().find((r) => r.test);
    const last = epochs[epochs.length - 1];
    const summary: TrainSummary = {
      format: 'crossmax-training-summary',
      mode: this.mode,
      phases: this.phases.length,
      epochs: this.o.epochs,
      steps: position.globalStep,
      finalTest: lastTested?.test ?? null,
      finalTrainLoss: last?.loss ?? null,
      finalTrainAccuracy: last?.accuracy ?? null,
      elapsedSeconds: this.elapsedSeconds(),
      resumedAtSteps: this.resumedAtSteps,
      modelFile: modelPath,
      checkpointFile: this.checkpointPath,
      metricsFile: this.metricsPath,
      options: this.fingerprint,
    };
    if (this.writes) writeJsonAtomic(join(this.o.outDir, SUMMARY_FILE), summary);
    return { metrics: this.metrics, summary, modelPath, checkpointPath: this.checkpointPath };
  }
}

/** The default model writer: see TrainOptions.saveModel. */
export function saveTrainedModel(model: TrainableModel, outDir: string): string {
  const path = join(outDir, MODEL_FILE);
  if (model instanceof SelfEnsemble && model.config) return saveModel(model, path);
  const state = model.stateDict();
  try {
    saveSafetensors(path, state, { format: 'crossmax-state-dict', model: model.constructor.name });
  } finally {
    disposeAll(state);
  }
  return path;
}

/** Every Generator a module of the model holds in a field, by '<module path>.<field>' (e.g. a seeded prior's). */
function moduleGenerators(model: Module): Map<string, Generator> {
  const out = new Map<string, Generator>();
  for (const [path, module] of model.namedModules()) {
    for (const [key, value] of Object.entries(module)) {
      if (value instanceof Generator) out.set(path === '' ? key : `${path}.${key}`, value);
    }
  }
  return out;
}

function headList(heads: readonly Module[] | Module | undefined): readonly Module[] | null {
  if (heads === undefined) return null;
  return Array.isArray(heads) ? heads : (heads as Module).children();
}

function datasetIdentity(d: ImageClassificationDataset): JsonValue {
  // The labels' digest tells two datasets of the same name and size apart (another split, another subset).
  const labels = createHash('sha256').update(new Uint8Array(d.labels.buffer, d.labels.byteOffset, d.labels.byteLength)).digest('hex');
  return { name: d.name, length: d.length, classes: d.classes.length, height: d.height, width: d.width, labelsSha256: labels.slice(0, 16) };
}

function modelIdentity(model: Module): JsonValue {
  const state = model.namedParameters();
  return {
    type: model.constructor.name,
    parameters: state.length,
    elements: state.reduce((n, [, t]) => n + t.numel, 0),
  };
}

function pct(x: number): string {
  return `${(100 * x).toFixed(2)}%`;
}
