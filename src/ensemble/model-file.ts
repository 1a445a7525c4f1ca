// A self-ensemble on disk: one safetensors file holding the state dict (backbone weights under 'backbone.' with
// torchvision's names, so `{k[9:]: v for k, v in load_file(path).items() if k.startswith('backbone.')}` is a
// torchvision state dict, and the heads under 'heads.<i>.bn.*' / 'heads.<i>.linear.*'), with the resolved JSON
// configuration in the metadata, so that the file alone rebuilds the model:
//   crossmax.kind            'self-ensemble'
//   crossmax.format_version  '1'
//   crossmax.config          the ResolvedSelfEnsembleConfig as JSON
import type { Device, DType } from '../tensor/index.js';
import { disposeAll, isFloatingPoint } from '../tensor/index.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors, type SafetensorsHeader } from '../serialize/safetensors.js';
import { resolveSelfEnsembleConfig, type ResolvedSelfEnsembleConfig, type SelfEnsembleConfig } from './config.js';
import { buildSelfEnsemble, type SelfEnsemble } from './self-ensemble.js';

/** The extension of a model file (safetensors). */
export const MODEL_FILE_EXTENSION = '.safetensors';
/** The version this code writes; it reads only this one. Bump it when a stored field changes meaning. */
export const MODEL_FORMAT_VERSION = 1;
/** The value of {@link METADATA_KIND} in a self-ensemble model file. */
export const MODEL_KIND = 'self-ensemble';
/** Metadata key: what the file holds. */
export const METADATA_KIND = 'crossmax.kind';
/** Metadata key: {@link MODEL_FORMAT_VERSION} of the writer. */
export const METADATA_FORMAT_VERSION = 'crossmax.format_version';
/** Metadata key: the resolved configuration as JSON. */
export const METADATA_CONFIG = 'crossmax.config';
const RESERVED_METADATA = [METADATA_KIND, METADATA_FORMAT_VERSION, METADATA_CONFIG];

/** A model file that cannot be used: not found, unreadable, not a crossmax model, or not the expected model. */
export class ModelFileError extends Error {
  /** The error's name, 'ModelFileError'. */
  override readonly name = 'ModelFileError';
}

/** The file a model path names: the path itself if it ends in '.safetensors', else the path plus it. */
export function modelFilePath(path: string): string {
  return path.endsWith(MODEL_FILE_EXTENSION) ? path : `${path}${MODEL_FILE_EXTENSION}`;
}

/** Settings of {@link saveModel}. */
export interface SaveModelOptions {
  /** More metadata strings to store (training run, dataset, accuracy, ...); the 'crossmax.*' keys above are reserved. */
  extraMetadata?: Record<string, string>;
}

/**
 * Writes the model and its configuration to `<path>.safetensors` atomically (an old file there stays intact if the
 * write fails). Returns the file written. The model must come from buildSelfEnsemble or loadModel (it records its
 * configuration).
 */
export function saveModel(model: SelfEnsemble, path: string, options: SaveModelOptions = {}): string {
  if (!model.config) {
    throw new ModelFileError('saveModel needs a model built by buildSelfEnsemble or loadModel: this one has no configuration to store');
  }
  const extra = options.extraMetadata ?? {};
  for (const key of Object.keys(extra)) {
    if (RESERVED_METADATA.includes(key)) throw new ModelFileError(`extraMetadata cannot set '${key}': crossmax writes it`);
  }
  const file = modelFilePath(path);
  const state = model.stateDict();
  try {
    saveSafetensors(file, state, {
      ...extra,
      [METADATA_KIND]: MODEL_KIND,
      [METADATA_FORMAT_VERSION]: String(MODEL_FORMAT_VERSION),
      [METADATA_CONFIG]: JSON.stringify(model.config),
    });
  } finally {
    disposeAll(state);
  }
  return file;
}

/** What {@link readModelInfo} reads from a model file's header. */
export interface ModelFileInfo {
  /** The file read. */
  path: string;
  /** The model's configuration, every default written out. */
  config: ResolvedSelfEnsembleConfig;
  /** Every metadata string, crossmax's and extraMetadata. */
  metadata: Record<string, string>;
  /** The safetensors header: every tensor's dtype and shape. */
  header: SafetensorsHeader;
}

/** Reads and checks a model file's header and configuration without loading any weight. */
export function readModelInfo(path: string): ModelFileInfo {
  const file = modelFilePath(path);
  let header: SafetensorsHeader;
  try {
    header = readSafetensorsHeader(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ModelFileError(`model file '${file}' does not exist`);
    throw new ModelFileError(`'${file}' is not a readable crossmax model file: ${(err as Error).message}`);
  }
  const { metadata } = header;
  if (metadata[METADATA_KIND] === undefined && metadata[METADATA_CONFIG] === undefined) {
    throw new ModelFileError(`'${file}' is a safetensors file but not a crossmax model file (its metadata has no '${METADATA_KIND}'`
      + ` or '${METADATA_CONFIG}'); a plain state dict loads with loadSafetensors`);
  }
  if (metadata[METADATA_KIND] !== MODEL_KIND) {
    throw new ModelFileError(`'${file}' holds a crossmax '${metadata[METADATA_KIND]}', not a '${MODEL_KIND}'`);
  }
  const version = metadata[METADATA_FORMAT_VERSION];
  if (version !== String(MODEL_FORMAT_VERSION)) {
    throw new ModelFileError(`'${file}' has model format version ${JSON.stringify(version ?? null)}; this crossmax reads version ${MODEL_FORMAT_VERSION}`
      + (Number(version) > MODEL_FORMAT_VERSION ? ' (the file was written by a newer crossmax)' : ''));
  }
  const text = metadata[METADATA_CONFIG];
  if (text === undefined) throw new ModelFileError(`'${file}' has no '${METADATA_CONFIG}' metadata`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ModelFileError(`'${file}': the stored configuration is not valid JSON (${(err as Error).message})`);
  }
  let config: ResolvedSelfEnsembleConfig;
  try {
    config = resolveSelfEnsembleConfig(parsed as SelfEnsembleConfig);
  } catch (err) {
    throw new ModelFileError(`'${file}': the stored configuration is invalid: ${(err as Error).message}`);
  }
  return { path: file, config, metadata, header };
}

/** Settings of {@link loadModel}. */
export interface LoadModelOptions {
  /** Refuse the file unless its configuration equals this one (after defaults); the error lists every difference. */
  expectConfig?: SelfEnsembleConfig;
  /** Where the model lives. Default 'cpu'. */
  device?: Device;
}

/**
 * Rebuilds the model a file describes and loads its weights strictly. Checks, in order, before reading any weight:
 * that the file is a crossmax self-ensemble of a known format version, that its configuration is the expected
 * one (if given), and that the configuration builds exactly the stored tensors (names and shapes). The model comes
 * back in eval mode, ready to measure or attack (training sets train mode itself).
 */
export function loadModel(path: string, options: LoadModelOptions = {}): SelfEnsemble {
  const info = readModelInfo(path);
  if (options.expectConfig) {
    const differences = diffConfigs(info.config, resolveSelfEnsembleConfig(options.expectConfig));
    if (differences.length > 0) {
      throw new ModelFileError(`'${info.path}' is not the expected model:\n  ${differences.join('\n  ')}`);
    }
  }
  const model = buildSelfEnsemble(info.config);
  try {
    const dtype = storedFloatDType(info.header);
    if (dtype && dtype !== 'float32') model.to(dtype);
    checkArchitecture(model, info);
    const { tensors } = loadSafetensors(info.path);
    try {
      model.loadStateDict(tensors);
    } finally {
      disposeAll(tensors);
    }
    if (options.device && options.device !== 'cpu') model.to(options.device);
    return model.eval();
  } catch (err) {
    model.dispose();
    throw err instanceof ModelFileError ? err : new ModelFileError(`'${info.path}': ${(err as Error).message}`);
  }
}

/** The dtype of the stored floating-point tensors (null if there are none). */
function storedFloatDType(header: SafetensorsHeader): DType | null {
  for (const info of header.tensors.values()) if (isFloatingPoint(info.dtype)) return info.dtype;
  return null;
}

function checkArchitecture(model: SelfEnsemble, info: ModelFileInfo): void {
  const state = model.stateDict();
  const problems: string[] = [];
  try {
    for (const [name, t] of state) {
      const stored = info.header.tensors.get(name);
      if (!stored) {
        problems.push(`missing '${name}' (the config gives [${t.shape.join(', ')}])`);
      } else if (stored.shape.join() !== t.shape.join() || stored.dtype !== t.dtype) {
        problems.push(`'${name}': the config gives ${t.dtype} [${t.shape.join(', ')}], the file has ${stored.dtype} [${stored.shape.join(', ')}]`);
      }
    }
    for (const name of info.header.tensors.keys()) if (!state.has(name)) problems.push(`unexpected '${name}'`);
  } finally {
    disposeAll(state);
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 12);
    throw new ModelFileError(`'${info.path}': its configuration builds a different architecture than its tensors:\n  ${shown.join('\n  ')}`
      + (problems.length > shown.length ? `\n  ... and ${problems.length - shown.length} more` : ''));
  }
}

/**
 * Every field where two resolved configurations differ, as 'path: checkpoint has X, expected Y' (lists compare
 * whole; 'absent' where a side lacks the field).
 */
export function diffConfigs(checkpoint: ResolvedSelfEnsembleConfig, expected: ResolvedSelfEnsembleConfig): string[] {
  const out: string[] = [];
  const show = (v: unknown) => (v === undefined ? 'absent' : JSON.stringify(v));
  const visit = (a: unknown, b: unknown, path: string) => {
    if (isPlainObject(a) && isPlainObject(b)) {
      for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) visit(a[key], b[key], path ? `${path}.${key}` : key);
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      out.push(`${path}: checkpoint has ${show(a)}, expected ${show(b)}`);
    }
  };
  visit(checkpoint, expected, '');
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
