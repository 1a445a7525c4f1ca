// The official CIFAR python releases: one pickled dict per file, {data: uint8 array N×3072 (CHW per row),
// labels | fine_labels + coarse_labels: list of ints, filenames, batch_label}, read with the safe reader in
// pickle.ts.
import { join } from 'node:path';
import type { InMemoryImageDataset } from './dataset.js';
import { CIFAR_DISPLAY_NAME, CIFAR_IMAGE, type CifarName, type CifarReadOptions, readCifarRelease, readDataFile } from './cifar-common.js';
import { NumpyArray, type PickleDict, type PickleValue, describe, loadPickle, pickleText } from './pickle.js';

/** One data file of a python release. */
export interface CifarPythonBatch {
  /** N×3×32×32 uint8. */
  images: Uint8Array;
  /** N labels (CIFAR-10's `labels`, CIFAR-100's `fine_labels`). */
  labels: number[];
  /** CIFAR-100 only. */
  coarseLabels?: number[];
  /** The original file name of each image. */
  filenames: string[];
}

function field(dict: PickleDict, key: string, file: string): PickleValue {
  if (!dict.has(key)) throw new Error(`${file}: no '${key}' entry (has ${[...dict.keys()].join(', ')})`);
  return dict.get(key)!;
}

function asDict(value: PickleValue, file: string): PickleDict {
  if (!(value instanceof Map)) throw new Error(`${file}: expected a pickled dict, got ${describe(value)}`);
  return value;
}

function labelList(value: PickleValue, key: string, file: string, classes: number, displayName: string): number[] {
  const labels = value instanceof NumpyArray ? value.toNumbers() : value;
  if (!Array.isArray(labels)) throw new Error(`${file}: '${key}' is ${describe(value)}, expected a list of integers`);
  return labels.map((l, i) => {
    if (typeof l !== 'number' || !Number.isInteger(l)) throw new Error(`${file}: ${key}[${i}] is ${describe(l)}, expected an integer`);
    if (l < 0 || l >= classes) throw new Error(`${file}: label ${l} out of range for ${displayName} (${key}[${i}]; corrupt file?)`);
    return l;
  });
}

/** Parses one data file (data_batch_1, test_batch, train, test) of a CIFAR python release. */
export function parseCifarPythonBatch(bytes: Uint8Array, file: string, name: CifarName): CifarPythonBatch {
  const dict = asDict(loadPickle(bytes, file), file);
  const data = field(dict, 'data', file);
  if (!(data instanceof NumpyArray)) throw new Error(`${file}: 'data' is ${describe(data)}, expected a numpy array`);
  if (data.dtype !== 'u1' || data.shape.length !== 2 || data.shape[1] !== CIFAR_IMAGE.bytes || data.fortranOrder) {
    throw new Error(`${file}: 'data' is ${describe(data)}${data.fortranOrder ? ' (Fortran order)' : ''}, expected uint8 [N, ${CIFAR_IMAGE.bytes}] in C order`);
  }
  const count = data.shape[0]!;
  const displayName = CIFAR_DISPLAY_NAME[name];
  const labelKey = name === 'cifar10' ? 'labels' : 'fine_labels';
  const labels = labelList(field(dict, labelKey, file), labelKey, file, name === 'cifar10' ? 10 : 100, displayName);
  const coarseLabels = name === 'cifar100' ? labelList(field(dict, 'coarse_labels', file), 'coarse_labels', file, 20, displayName) : undefined;
  for (const [key, list] of [[labelKey, labels], ['coarse_labels', coarseLabels]] as const) {
    if (list && list.length !== count) throw new Error(`${file}: ${list.length} ${key} for ${count} images`);
  }
  const names = dict.get('filenames');
  const filenames = Array.isArray(names) ? names.map((n) => pickleText(n)) : [];
  return { images: data.data, labels, coarseLabels, filenames };
}

function readNames(dir: string, file: string, key: string, expected: number): string[] {
  const path = join(dir, file);
  const dict = asDict(loadPickle(readDataFile(path, 'class names'), path), path);
  const list = field(dict, key, path);
  if (!Array.isArray(list)) throw new Error(`${path}: '${key}' is ${describe(list)}, expected a list of names`);
  const names = list.map((n) => pickleText(n));
  if (names.length !== expected) throw new Error(`${path}: ${names.length} ${key}, expected ${expected}`);
  return names;
}

/**
 * Reads a split of the official CIFAR-10 or CIFAR-100 python release from `dir` (e.g. 'cifar-10-batches-py',
 * 'cifar-100-python').
 */
export function readCifarPython(dir: string, options: CifarReadOptions & { name: CifarName }): InMemoryImageDataset {
  const { name } = options;
  return readCifarRelease(dir, options, 'python', {
    classes: (root, kind) => name === 'cifar10'
      ? readNames(root, 'batches.meta', 'label_names', 10)
      : readNames(root, 'meta', kind === 'fine' ? 'fine_label_names' : 'coarse_label_names', kind === 'fine' ? 100 : 20),
    parse: (bytes, path, kind) => {
      const batch = parseCifarPythonBatch(bytes, path, name);
      return { images: batch.images, labels: kind === 'coarse' && batch.coarseLabels ? batch.coarseLabels : batch.labels };
    },
  });
}
