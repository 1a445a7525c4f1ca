// The official CIFAR releases (https://www.cs.toronto.edu/~kriz/cifar.html): archives, their published MD5
// sums, the folder each unpacks to, and the files and record counts inside.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { InMemoryImageDataset, labelArray } from './dataset.js';

/** The two CIFAR datasets (Krizhevsky 2009): 10 classes, or 100 fine / 20 coarse classes. */
export type CifarName = 'cifar10' | 'cifar100';
/** The official release formats: the binary files ('binary') or the Python pickles ('python'). */
export type CifarFormat = 'binary' | 'python';
/** The training split (50,000 images) or the test split (10,000). */
export type Split = 'train' | 'test';

/** One official CIFAR release: the archive, where to get it, its checksum and the files it holds. */
export interface CifarRelease {
  /** Which dataset. */
  name: CifarName;
  /** Which format. */
  format: CifarFormat;
  /** The archive's file name, e.g. 'cifar-10-binary.tar.gz'. */
  archive: string;
  /** Where the archive is downloaded from (the dataset's page at the University of Toronto). */
  url: string;
  /** The published MD5 of the archive (hex), checked after every download. */
  md5: string;
  /** The single top-level folder inside the archive. */
  folder: string;
  /** Data files per split, with the number of images each must hold. */
  splits: Record<Split, { file: string; count: number }[]>;
  /** Files holding class names. */
  meta: string[];
}

const BASE_URL = 'https://www.cs.toronto.edu/~kriz/';

function batches(ext: string): { file: string; count: number }[] {
  return [1, 2, 3, 4, 5].map((i) => ({ file: `data_batch_${i}${ext}`, count: 10000 }));
}

/** The four official releases, keyed 'cifar10-binary', 'cifar10-python', 'cifar100-binary', 'cifar100-python'. */
export const CIFAR_RELEASES: Record<`${CifarName}-${CifarFormat}`, CifarRelease> = {
  'cifar10-binary': {
    name: 'cifar10', format: 'binary', archive: 'cifar-10-binary.tar.gz', url: `${BASE_URL}cifar-10-binary.tar.gz`,
    md5: 'c32a1d4ab5d03f1284b67883e8d87530', folder: 'cifar-10-batches-bin',
    splits: { train: batches('.bin'), test: [{ file: 'test_batch.bin', count: 10000 }] },
    meta: ['batches.meta.txt'],
  },
  'cifar10-python': {
    name: 'cifar10', format: 'python', archive: 'cifar-10-python.tar.gz', url: `${BASE_URL}cifar-10-python.tar.gz`,
    md5: 'c58f30108f718f92721af3b95e74349a', folder: 'cifar-10-batches-py',
    splits: { train: batches(''), test: [{ file: 'test_batch', count: 10000 }] },
    meta: ['batches.meta'],
  },
  'cifar100-binary': {
    name: 'cifar100', format: 'binary', archive: 'cifar-100-binary.tar.gz', url: `${BASE_URL}cifar-100-binary.tar.gz`,
    md5: '03b5dce01913d631647c71ecec9e9cb8', folder: 'cifar-100-binary',
    splits: { train: [{ file: 'train.bin', count: 50000 }], test: [{ file: 'test.bin', count: 10000 }] },
    meta: ['fine_label_names.txt', 'coarse_label_names.txt'],
  },
  'cifar100-python': {
    name: 'cifar100', format: 'python', archive: 'cifar-100-python.tar.gz', url: `${BASE_URL}cifar-100-python.tar.gz`,
    md5: 'eb9058c3a382ffc7106e4002c42a8d85', folder: 'cifar-100-python',
    splits: { train: [{ file: 'train', count: 50000 }], test: [{ file: 'test', count: 10000 }] },
    meta: ['meta'],
  },
};

/** The release of a dataset in a format; throws for a combination that does not exist. */
export function cifarRelease(name: CifarName, format: CifarFormat): CifarRelease {
  const release = CIFAR_RELEASES[`${name}-${format}`];
  if (!release) throw new TypeError(`unknown CIFAR release '${name}' / '${format}' (names: cifar10, cifar100; formats: binary, python)`);
  return release;
}

/** Every file a complete release folder holds. */
export function releaseFiles(release: CifarRelease): string[] {
  return [...release.meta, ...release.splits.train.map((s) => s.file), ...release.splits.test.map((s) => s.file)];
}

/** CIFAR-10's class names in label order. */
export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'] as const;

/** A CIFAR image: `height` × `width` = 32 × 32 pixels, `bytes` = 3072 (3 channels, CHW). */
export const CIFAR_IMAGE = { height: 32, width: 32, bytes: 3 * 32 * 32 } as const;

/** CIFAR-100 labels either as its 100 fine classes (the usual benchmark) or its 20 coarse superclasses. */
export type Cifar100LabelKind = 'fine' | 'coarse';

/** Number of classes: 10 for CIFAR-10; 100 (fine) or 20 (coarse) for CIFAR-100. */
export function numClasses(name: CifarName, labelKind: Cifar100LabelKind = 'fine'): number {
  if (name === 'cifar10') return 10;
  return labelKind === 'fine' ? 100 : 20;
}

/** Which part of a CIFAR release to read, and how strictly. */
export interface CifarReadOptions {
  /** Which split. Default 'train'. */
  split?: Split;
  /** CIFAR-100 only: fine (100 classes) or coarse (20) labels. Default 'fine'. */
  labelKind?: Cifar100LabelKind;
  /**
   * Require each file to hold exactly the official number of images (10,000 per CIFAR-10 batch), so a copy
   * cut short is an error rather than a smaller dataset. Default true.
   */
  checkCounts?: boolean;
}

/** Throws naming `file` when it holds `got` images instead of the official `expected` (when `checkCounts`). */
export function checkCount(file: string, got: number, expected: number, checkCounts: boolean): void {
  if (checkCounts && got !== expected) {
    throw new Error(`${file}: ${got} images, expected ${expected.toLocaleString('en-US')} (truncated or not the official file?)`);
  }
}

/** The datasets' names as written in papers and messages. */
export const CIFAR_DISPLAY_NAME: Record<CifarName, string> = { cifar10: 'CIFAR-10', cifar100: 'CIFAR-100' };

/** 'cifar10/test', 'cifar100/train', 'cifar100-coarse/train'. */
export function cifarDatasetName(name: CifarName, split: Split, labelKind: Cifar100LabelKind): string {
  return `${name}${name === 'cifar100' && labelKind === 'coarse' ? '-coarse' : ''}/${split}`;
}

/** A release's data file; throws naming the file and the release it belongs to when missing. */
export function readDataFile(path: string, releaseDescription: string): Uint8Array {
  if (!existsSync(path)) throw new Error(`${path}: missing (expected the ${releaseDescription} in ${resolve(path, '..')})`);
  return readFileSync(path);
}

/** Concatenates per-file parts into one image and one label array. */
export function concatParts(parts: { images: Uint8Array; labels: ArrayLike<number> }[], classes: number): { images: Uint8Array; labels: Uint8Array | Uint16Array } {
  const total = parts.reduce((n, p) => n + p.labels.length, 0);
  if (parts.length === 1 && classes <= 256 && parts[0]!.labels instanceof Uint8Array) return parts[0]! as { images: Uint8Array; labels: Uint8Array };
  const images = new Uint8Array(total * CIFAR_IMAGE.bytes);
  const labels = labelArray(classes, total);
  let offset = 0;
  for (const part of parts) {
    images.set(part.images, offset * CIFAR_IMAGE.bytes);
    labels.set(part.labels, offset);
    offset += part.labels.length;
  }
  return { images, labels };
}


/** What differs between the binary and python releases: where class names live and how a file parses. */
export interface CifarFileReader {
  /** Class names in label order, read from the release folder `root`. */
  classes(root: string, labelKind: Cifar100LabelKind): string[];
  /** One data file's images (N×3072 bytes) and labels; `path` is for messages. */
  parse(bytes: Uint8Array, path: string, labelKind: Cifar100LabelKind): { images: Uint8Array; labels: ArrayLike<number> };
}

/** Reads the files of one split of a release folder into a dataset, checking each file's image count. */
export function readCifarRelease(dir: string, options: CifarReadOptions & { name: CifarName }, format: CifarFormat, reader: CifarFileReader): InMemoryImageDataset {
  const { name, split = 'train', labelKind = 'fine', checkCounts = true } = options;
  const release = cifarRelease(name, format);
  const root = resolve(dir);
  const description = `official ${CIFAR_DISPLAY_NAME[name]} ${format} release`;
  const classes = reader.classes(root, labelKind);
  const parts = release.splits[split].map(({ file, count }) => {
    const path = resolve(root, file);
    const part = reader.parse(readDataFile(path, description), path, labelKind);
    checkCount(path, part.labels.length, count, checkCounts);
    return part;
  });
  const { images, labels } = concatParts(parts, numClasses(name, labelKind));
  return new InMemoryImageDataset({
    name: cifarDatasetName(name, split, labelKind),
    classes,
    images,
    labels,
    height: CIFAR_IMAGE.height,
    width: CIFAR_IMAGE.width,
    source: `${root} (${description})`,
  });
}
