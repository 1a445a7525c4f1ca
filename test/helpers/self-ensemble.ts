// A small real self-ensemble for the end-to-end attack and evaluation tests.
import { manualSeed } from '../../src/tensor/index.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildSelfEnsemble, saveModel } from '../../src/ensemble/index.js';

/**
 * manualSeed(3), then a tiny stochastic self-ensemble in eval mode: WRN-10-1 on 16×16 inputs, 10 classes unless
 * `numClasses` says otherwise, the paper's prior, pooled heads on block1.layer.0 and avgpool, CrossMax with k 2.
 */
export function tinySelfEnsemble(numClasses = 10): ReturnType<typeof buildSelfEnsemble> {
  manualSeed(3);
  const model = buildSelfEnsemble({
    backbone: { arch: 'wide-resnet', depth: 10, widenFactor: 1 },
    numClasses,
    inputSize: 16,
    prior: { preset: 'paper' },
    heads: { features: ['block1.layer.0', 'avgpool'], kind: 'pooled' },
    aggregator: { name: 'crossmax', k: 2 },
  });
  model.eval();
  return model;
}

/**
 * tinySelfEnsemble(numClasses) saved as <dir>/tiny/model.safetensors (label 'tiny' in command tables), or
 * <dir>/tiny-<numClasses>/model.safetensors for other than 10 classes; returns the path.
 */
export function tinyModelFile(dir: string, numClasses = 10): string {
  const model = tinySelfEnsemble(numClasses);
  const name = numClasses === 10 ? 'tiny' : `tiny-${numClasses}`;
  mkdirSync(join(dir, name), { recursive: true });
  const path = join(dir, name, 'model.safetensors');
  try {
    saveModel(model, path);
  } finally {
    model.dispose();
  }
  return path;
}

/** Runs a command with console.log captured; returns its exit code and what it printed. */
export async function captureLog(run: () => Promise<number>): Promise<{ code: number; printed: string }> {
  const log = console.log;
  let printed = '';
  console.log = (s: string) => { printed += s; };
  try {
    return { code: await run(), printed };
  } finally {
    console.log = log;
  }
}
