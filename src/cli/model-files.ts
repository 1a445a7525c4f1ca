// Model files as commands take them: short labels for tables, and loading with errors that name the file.
import { basename, dirname, resolve } from 'node:path';
import { loadModel, parseAggregatorSpec, type SelfEnsemble } from '../ensemble/index.js';
import type { Device } from '../tensor/index.js';
import { UsageError, stringFlag, type ParsedArgs } from './args.js';

/**
 * A short name for a model file in tables: runs/<name>/model.safetensors → <name>, else the file's name without
 * .safetensors. One file always gets one name (a model both source and target of a transfer); two different files
 * that would share a name are numbered in order of first appearance in `all`.
 */
export function modelLabel(path: string, all: readonly string[]): string {
  const label = (p: string) => (basename(p) === 'model.safetensors' ? basename(dirname(resolve(p))) : basename(p).replace(/\.safetensors$/, ''));
  const own = label(path);
  const files = [...new Set(all.map((p) => resolve(p)))];
  const namesakes = files.filter((p) => label(p) === own);
  return namesakes.length > 1 ? `${own} (${namesakes.indexOf(resolve(path)) + 1})` : own;
}

/**
 * A crossmax model file in eval mode, checked against `numClasses` (the data's unless `classesOf` names what else
 * they are); any problem is a UsageError naming the file.
 */
export function loadModelFile(path: string, options: { device?: Device; numClasses?: number; classesOf?: string } = {}): SelfEnsemble {
  let model: SelfEnsemble;
  try {
    model = loadModel(path, { device: options.device ?? 'cpu' });
  } catch (err) {
    throw new UsageError(`${path}: ${(err as Error).message}`);
  }
  if (options.numClasses !== undefined && model.config && model.config.numClasses !== options.numClasses) {
    model.dispose();
    throw new UsageError(`${path} has ${model.config.numClasses} classes, ${options.classesOf ?? 'the data'} ${options.numClasses}`);
  }
  model.eval();
  return model;
}

/**
 * --aggregator NAME[:key=value,...]: the model aggregates its members another way (e.g. mean-logits, crossmax:k=2);
 * a bad spec is a UsageError naming the flag. Returns the flag's text, undefined when absent (the model unchanged).
 */
export function applyAggregatorFlag(model: SelfEnsemble, values: ParsedArgs['values']): string | undefined {
  const aggregator = stringFlag(values, 'aggregator');
  if (aggregator !== undefined) {
    try {
      model.setAggregator(parseAggregatorSpec(aggregator));
    } catch (err) {
      throw new UsageError(`--aggregator ${aggregator}: ${(err as Error).message}`);
    }
  }
  return aggregator;
}
