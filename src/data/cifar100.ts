// CIFAR-100 by name: the paper's own data set (its official notebook trains on it). Three places to find it, in
// order: this project's copy at ../shared/datasets/cifar-100 (the official test.bin byte for byte; the training
// images as JPEG in WebDataset shards), the official binary or python release on disk, or the official binary
// archive, downloaded and checked against its published MD5. Fine labels (100 classes) by default, the 20 coarse
// superclasses on request.
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseCifarRecords, readClassNames, readCifarBinary } from './cifar-binary.js';
import {
  CIFAR_IMAGE, type Cifar100LabelKind, type Split, checkCount, cifarDatasetName, cifarRelease, readDataFile,
} from './cifar-common.js';
import { readCifarPython } from './cifar-python.js';
import { InMemoryImageDataset } from './dataset.js';
import { type EnsureOptions, ensureCifar } from './download.js';
import { projectRoot } from './paths.js';
import { isShardName, loadWebDataset } from './webdataset.js';

/**
 * The coarse superclass of each of CIFAR-100's fine classes, in fine-label order (fine label i belongs to superclass
 * CIFAR100_FINE_TO_COARSE[i]): fixed by the release, and the same in every record of its train and test files.
 */
export const CIFAR100_FINE_TO_COARSE: readonly number[] = Object.freeze([
  4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
  0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
  10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
  18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]);

/** CIFAR-100's 20 coarse superclasses. */
export const CIFAR100_COARSE_CLASSES = 20;

/**
 * One fine class per coarse superclass (the lowest fine label in each), in superclass order: 20 classes that
 * cover CIFAR-100's range, e.g. for a grid of generated images with one row per superclass.
 */
export function cifar100SuperclassRepresentatives(): number[] {
  return Array.from({ length: CIFAR100_COARSE_CLASSES }, (_, c) => CIFAR100_FINE_TO_COARSE.indexOf(c));
}

/** The folder of shards holding this copy's training images. */
const COPY_TRAIN_SHARDS = 'train-wds';
const COPY_FILES = ['test.bin', 'fine_label_names.txt', 'coarse_label_names.txt'];

/** Whether `dir` is laid out as this project's CIFAR-100 copy: test.bin, the class names, train-wds/ of .tar shards. */
export function isCifar100Copy(dir: string): boolean {
  const shards = join(dir, COPY_TRAIN_SHARDS);
  return COPY_FILES.every((f) => existsSync(join(dir, f))) && existsSync(shards) && readdirSync(shards).some(isShardName);
}

/** How {@link readCifar100Copy} reads a CIFAR-100 copy: which split, which labels, and the decoded-image cache. */
export interface Cifar100Options {
  /** Default 'train'. */
  split?: Split;
  /** Fine (100 classes, the benchmark) or coarse (20 superclasses) labels. Default 'fine'. */
  labelKind?: Cifar100LabelKind;
  /** Decoded-image cache for the shards (see loadWebDataset): a directory, or null for none. Default the user cache. */
  cacheDir?: string | null;
  /** Require the official image counts (50,000 training, 10,000 test images). Default true. */
  checkCounts?: boolean;
}

/**
 * Reads a split of a CIFAR-100 copy laid out as ../shared/datasets/cifar-100: test.bin (the official binary test
 * file) and train-wds/*.tar (WebDataset shards, samples KEY.jpg + KEY.cls with the fine label, in official order).
 * Coarse labels of the training images come from CIFAR100_FINE_TO_COARSE.
 */
export function readCifar100Copy(dir: string, options: Cifar100Options = {}): InMemoryImageDataset {
  const { split = 'train', labelKind = 'fine', checkCounts = true } = options;
  const root = resolve(dir);
  for (const file of COPY_FILES) {
    if (!existsSync(join(root, file))) throw new Error(`${join(root, file)}: missing (expected a CIFAR-100 copy laid out as ../shared/datasets/cifar-100)`);
  }
  const classes = labelKind === 'fine'
    ? readClassNames(join(root, 'fine_label_names.txt'), 100)
    : readClassNames(join(root, 'coarse_label_names.txt'), CIFAR100_COARSE_CLASSES);
  const name = cifarDatasetName('cifar100', split, labelKind);
  const expected = cifarRelease('cifar100', 'binary').splits[split][0]!.count;
  if (split === 'test') {
    const path = join(root, 'test.bin');
    const { images, labels } = parseCifarRecords(readDataFile(path, 'official CIFAR-100 test file'), path, {
      labelBytes: 2, labelIndex: labelKind === 'fine' ? 1 : 0, classesPerLabelByte: [CIFAR100_COARSE_CLASSES, 100], displayName: 'CIFAR-100',
    });
    checkCount(path, labels.length, expected, checkCounts);
    return new InMemoryImageDataset({
      name, classes, images, labels, height: CIFAR_IMAGE.height, width: CIFAR_IMAGE.width,
      source: `${path} (official CIFAR-100 binary test file)`,
    });
  }
  const shards = join(root, COPY_TRAIN_SHARDS);
  const dataset = loadWebDataset(shards, {
    classes, labelField: 'cls', labelMap: labelKind === 'coarse' ? CIFAR100_FINE_TO_COARSE : undefined, name,
    source: `${shards} (CIFAR-100 training images as JPEG in WebDataset shards; lossy)`, cacheDir: options.cacheDir,
  });
  if (dataset.height !== CIFAR_IMAGE.height || dataset.width !== CIFAR_IMAGE.width) {
    throw new Error(`${shards}: ${dataset.height}×${dataset.width} images, CIFAR-100's are 32×32`);
  }
  checkCount(shards, dataset.length, expected, checkCounts);
  return dataset;
}

/**
 * Options of {@link loadDefaultCifar100}: those of {@link Cifar100Options}, plus where to find or download the data
 * when the shared copy is absent.
 */
export interface DefaultCifar100Options extends Cifar100Options {
  /** The project root that `../shared/datasets` is relative to. Default: this package's root. */
  projectRoot?: string;
  /** Where to look for (and download) the official releases when the shared copy is absent. */
  ensure?: EnsureOptions;
}

/**
 * CIFAR-100 from the first copy that exists: ../shared/datasets/cifar-100 (training from the JPEG shards, test from
 * the official test.bin, so "the first N test images" are the official ones), else an official binary or python
 * release already on disk (the cache or `ensure.searchPaths`), else the official binary archive, downloaded and
 * MD5-checked. `source` on the result says which; quote it next to any figure computed on the data.
 */
export async function loadDefaultCifar100(options: DefaultCifar100Options = {}): Promise<InMemoryImageDataset> {
  const { split = 'train', labelKind = 'fine', checkCounts } = options;
  const shared = resolve(options.projectRoot ?? projectRoot(), '..', 'shared', 'datasets', 'cifar-100');
  if (isCifar100Copy(shared)) return readCifar100Copy(shared, options);
  const read = { name: 'cifar100' as const, split, labelKind, checkCounts };
  for (const format of ['binary', 'python'] as const) {
    try {
      const { dir } = await ensureCifar({ ...options.ensure, name: 'cifar100', format, download: false });
      return format === 'binary' ? readCifarBinary(dir, read) : readCifarPython(dir, read);
    } catch (err) {
      // Not on disk in this format: try the next, then download. Any other problem is the user's to see.
      if (!/not found and downloading is off/.test((err as Error).message)) throw err;
    }
  }
  // With downloading off, this names where to put the archive.
  const { dir } = await ensureCifar({ ...options.ensure, name: 'cifar100', format: 'binary' });
  return readCifarBinary(dir, read);
}
