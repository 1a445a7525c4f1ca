// Training checkpoints: everything a killed run needs to continue exactly where it stopped, in one safetensors
// file written atomically (a crash mid-write leaves the previous checkpoint intact).
//
//   tensors   model.<name>          the model's state dict (parameters and persistent buffers)
//             optimizer.<name>      the optimiser's state tensors (state.<paramIndex>.<exp_avg|...>)
//             rng.default           libtorch's default CPU generator state (uint8): the prior's noise, dropout,
//                                   PGD's random starts
//             rng.<module path>     the state of each Generator a module holds (e.g. a seeded prior)
//   metadata  format                'crossmax-training-checkpoint'
//             version               '1'
//             options               JSON: the run's options that decide its course (resuming with others is refused)
//             state                 JSON: position, optimiser JSON state, schedule state, loader seed, metrics,
//                                   running sums, elapsed time
//
// The data order needs no state: the loader's batch b of epoch e is a pure function of (seed, e, b).
import { existsSync } from 'node:fs';
import type { JsonValue, OptimizerStateDict, OptimizerStateJson } from '../optim/optimizer.js';
import type { ScheduleStateDict } from '../optim/schedules.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../serialize/safetensors.js';
import { disposeAll, type Tensor } from '../tensor/index.js';

/** The format name a training checkpoint's metadata carries, by which one is recognised. */
export const CHECKPOINT_FORMAT = 'crossmax-training-checkpoint';
/** The checkpoint layout this code writes and reads. */
export const CHECKPOINT_VERSION = 1;

const MODEL_PREFIX = 'model.';
const OPTIMIZER_PREFIX = 'optimizer.';
const RNG_PREFIX = 'rng.';
/** The name of libtorch's default CPU generator among the checkpoint's generator states. */
export const DEFAULT_GENERATOR = 'default';

/** A JSON object (the options and records a checkpoint stores). */
export type JsonObject = { [key: string]: JsonValue };

/** Where a run stands: the next batch to train. batch = batches per epoch means the epoch's end-of-epoch work is due. */
export interface TrainingPosition {
  /** Training phase (mode 'heads' with one head at a time has one phase per head; other modes one). */
  phase: number;
  /** Epoch within the phase, 0-based. */
  epoch: number;
  /** Next batch within the epoch, 0-based. */
  batch: number;
  /** Optimiser steps taken so far, over all phases. */
  globalStep: number;
  /** Every phase done: resuming only writes the final outputs. */
  completed: boolean;
}

/** Everything besides tensors that a resumed run needs to continue bit for bit. */
export interface TrainingCheckpointState {
  /** The next batch to train. */
  position: TrainingPosition;
  /** The current phase's optimiser state (tensors are stored separately). */
  optimizer: OptimizerStateJson;
  /** The current phase's schedule state; null for a constant rate. */
  schedule: ScheduleStateDict | null;
  /** The data loader's `seed` (its order and augmentation follow from it and the position). */
  loader: { seed: number };
  /** Metric records written so far, in order (the metrics file is rewritten from these on resume). */
  metrics: JsonObject[];
  /** The trainer's running sums (epoch and logging-window loss and accuracy), opaque here. */
  accumulators: JsonObject;
  /** Training time before this checkpoint, in seconds. */
  elapsedSeconds: number;
  /** When the checkpoint was written (ISO 8601). */
  writtenAt: string;
}

/** What a training checkpoint holds besides tensors. */
export interface TrainingCheckpointContents {
  /** The run's options as JSON; a resumed run must be given the same. */
  options: JsonObject;
  /** Where the run stands. */
  state: TrainingCheckpointState;
}

/** A checkpoint as read back: its JSON parts and its tensors. */
export interface LoadedTrainingCheckpoint extends TrainingCheckpointContents {
  /** The model's state dict. The caller disposes these tensors (and the others below). */
  model: Map<string, Tensor>;
  /** The optimiser's state, ready for Optimizer.loadStateDict. */
  optimizer: OptimizerStateDict;
  /** Generator states by name (DEFAULT_GENERATOR for libtorch's default CPU generator). */
  generators: Map<string, Tensor>;
}

/**
 * A training checkpoint that cannot be used (missing, corrupt, another format or version); the message names the file
 * and the problem.
 */
export class CheckpointError extends Error {
  /**
   * @param path - The checkpoint file.
   * @param problem - What is wrong with it.
   */
  constructor(readonly path: string, problem: string) {
    super(`training checkpoint '${path}': ${problem}`);
    this.name = 'CheckpointError';
  }
}

/** What {@link writeTrainingCheckpoint} stores. */
export interface WriteCheckpointInput extends TrainingCheckpointContents {
  /** The model's state dict (e.g. model.stateDict()); not disposed here. */
  model: Map<string, Tensor>;
  /** optimizer.stateDict(); not disposed here. */
  optimizer: OptimizerStateDict;
  /** Generator states by name; not disposed here. */
  generators: Map<string, Tensor>;
}

/** Writes a training checkpoint atomically (temporary file, fsync, rename). */
export function writeTrainingCheckpoint(path: string, input: WriteCheckpointInput): void {
  const tensors = new Map<string, Tensor>();
  for (const [name, t] of input.model) tensors.set(MODEL_PREFIX + name, t);
  for (const [name, t] of input.optimizer.tensors) tensors.set(OPTIMIZER_PREFIX + name, t);
  for (const [name, t] of input.generators) tensors.set(RNG_PREFIX + name, t);
  const state: TrainingCheckpointState = { ...input.state, optimizer: input.optimizer.json };
  saveSafetensors(path, tensors, {
    format: CHECKPOINT_FORMAT,
    version: String(CHECKPOINT_VERSION),
    options: JSON.stringify(input.options),
    state: JSON.stringify(state),
  });
}

/** The options and state of a checkpoint, read and checked without loading any tensor. */
export function readTrainingCheckpointHeader(path: string): TrainingCheckpointContents {
  if (!existsSync(path)) throw new CheckpointError(path, 'no such file');
  let metadata: Record<string, string>;
  try {
    metadata = readSafetensorsHeader(path).metadata;
  } catch (err) {
    throw new CheckpointError(path, `unreadable or corrupt (${(err as Error).message})`);
  }
  return parseMetadata(path, metadata);
}

/** Loads a whole checkpoint; every check of readTrainingCheckpointHeader, then the tensors. */
export function loadTrainingCheckpoint(path: string): LoadedTrainingCheckpoint {
  const contents = readTrainingCheckpointHeader(path);
  let tensors: Map<string, Tensor>;
  try {
    tensors = loadSafetensors(path).tensors;
  } catch (err) {
    throw new CheckpointError(path, `unreadable or corrupt (${(err as Error).message})`);
  }
  const model = new Map<string, Tensor>();
  const optimizerTensors = new Map<string, Tensor>();
  const generators = new Map<string, Tensor>();
  for (const [name, t] of tensors) {
    if (name.startsWith(MODEL_PREFIX)) model.set(name.slice(MODEL_PREFIX.length), t);
    else if (name.startsWith(OPTIMIZER_PREFIX)) optimizerTensors.set(name.slice(OPTIMIZER_PREFIX.length), t);
    else if (name.startsWith(RNG_PREFIX)) generators.set(name.slice(RNG_PREFIX.length), t);
    else {
      disposeAll(tensors);
      throw new CheckpointError(path, `unexpected tensor '${name}' (expected model.*, optimizer.* or rng.*)`);
    }
  }
  if (!generators.has(DEFAULT_GENERATOR)) {
    disposeAll(tensors);
    throw new CheckpointError(path, `missing the default generator state (tensor '${RNG_PREFIX}${DEFAULT_GENERATOR}')`);
  }
  return {
    ...contents,
    model,
    optimizer: { tensors: optimizerTensors, json: contents.state.optimizer },
    generators,
  };
}

function parseMetadata(path: string, metadata: Record<string, string>): TrainingCheckpointContents {
  if (metadata.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(path, metadata.format === undefined
      ? 'not a crossmax training checkpoint (no "format" in its metadata; a model file, perhaps?)'
      : `not a crossmax training checkpoint (format '${metadata.format}')`);
  }
  if (metadata.version !== String(CHECKPOINT_VERSION)) {
    throw new CheckpointError(path, `version ${metadata.version} is not supported (this crossmax reads version ${CHECKPOINT_VERSION})`);
  }
  const options = parseJsonObject(path, metadata, 'options');
  const state = parseJsonObject(path, metadata, 'state') as unknown as TrainingCheckpointState;
  const p = state.position as Partial<TrainingPosition> | undefined;
  const positionOk = p !== undefined && [p.phase, p.epoch, p.batch, p.globalStep].every((v) => Number.isInteger(v) && v! >= 0)
    && typeof p.completed === 'boolean';
  if (!positionOk) throw new CheckpointError(path, `corrupt state: bad position ${JSON.stringify(state.position)}`);
  if (state.optimizer === null || typeof state.optimizer !== 'object' || !Array.isArray(state.optimizer.paramGroups)) {
    throw new CheckpointError(path, 'corrupt state: no optimiser state');
  }
  if (!Array.isArray(state.metrics)) throw new CheckpointError(path, 'corrupt state: no metrics list');
  if (!Number.isSafeInteger(state.loader?.seed)) throw new CheckpointError(path, 'corrupt state: no loader seed');
  return { options, state };
}

function parseJsonObject(path: string, metadata: Record<string, string>, key: string): JsonObject {
  const text = metadata[key];
  if (text === undefined) throw new CheckpointError(path, `corrupt: no "${key}" in its metadata`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(path, `corrupt: "${key}" is not valid JSON (${(err as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new CheckpointError(path, `corrupt: "${key}" is not a JSON object`);
  return value as JsonObject;
}

/**
 * The differences between two option records as 'path: checkpoint X, now Y' lines (empty when equal). Nested
 * objects and arrays are compared leaf by leaf, so the lines name exactly what changed.
 */
export function optionDifferences(saved: JsonObject, current: JsonObject): string[] {
  const a = flatten(saved);
  const b = flatten(current);
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  const out: string[] = [];
  for (const key of keys) {
    const before = a.get(key);
    const now = b.get(key);
    if (before !== now) out.push(`${key}: checkpoint ${before ?? '(not set)'}, now ${now ?? '(not set)'}`);
  }
  return out;
}

function flatten(value: JsonValue, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (value !== null && typeof value === 'object') {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
    if (entries.length === 0) out.set(prefix, JSON.stringify(value));
    for (const [k, v] of entries) flatten(v, prefix === '' ? k : `${prefix}.${k}`, out);
  } else {
    out.set(prefix, JSON.stringify(value));
  }
  return out;
}
