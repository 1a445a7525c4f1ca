// CIFAR by name: one entry point over the binary and python releases, and the default CIFAR-10 copy of this
// project's machines.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readCifarBinary } from './cifar-binary.js';
import { CIFAR10_CLASSES, type CifarFormat, type CifarName, type CifarReadOptions, type Split } from './cifar-common.js';
import { readCifarPython } from './cifar-python.js';
import type { InMemoryImageDataset } from './dataset.js';
import { type EnsureOptions, ensureCifar } from './download.js';
import { loadImageFolder } from './image-folder.js';
import { projectRoot } from './paths.js';

/** What {@link loadCifar} reads and where it finds or fetches the release. */
export interface LoadCifarOptions extends CifarReadOptions, EnsureOptions {
  /** Which dataset. */
  name: CifarName;
  /** Default 'binary'. */
  format?: CifarFormat;
  /** The release folder itself (e.g. '.../cifar-10-batches-bin'); default: found or fetched by `ensureCifar`. */
  dir?: string;
}

/** Reads a split of an official CIFAR release, finding or downloading it unless `dir` is given. */
export async function loadCifar(options: LoadCifarOptions): Promise<InMemoryImageDataset> {
  const format = options.format ?? 'binary';
  const dir = options.dir ?? (await ensureCifar({ ...options, format })).dir;
  return format === 'binary' ? readCifarBinary(dir, options) : readCifarPython(dir, options);
}

/** Where the default CIFAR-10 copy is looked for. */
export interface DefaultCifar10Options {
  /** Default 'train'. */
  split?: Split;
  /** The project root that `../shared/datasets` is relative to. Default: this package's root. */
  projectRoot?: string;
  /** Decoded-image cache for the JPEG copy (see loadImageFolder). */
  cacheDir?: string | null;
  /** Passed to ensureCifar when neither shared copy exists. */
  ensure?: EnsureOptions;
}

/**
 * CIFAR-10 for this project's machines, from the first copy that exists: the official binary release at
 * ../shared/datasets/cifar-10-batches-bin (lossless), the JPEG folder ../shared/datasets/cifar10-jpeg
 * (lossy re-encoding), or the official binary archive, downloaded. `source` on the result says which;
 * quote it next to any figure computed on the data.
 */
export async function loadDefaultCifar10(options: DefaultCifar10Options = {}): Promise<InMemoryImageDataset> {
  const split = options.split ?? 'train';
  const shared = resolve(options.projectRoot ?? projectRoot(), '..', 'shared', 'datasets');
  const binary = join(shared, 'cifar-10-batches-bin');
  if (existsSync(binary)) return readCifarBinary(binary, { name: 'cifar10', split });
  const jpeg = join(shared, 'cifar10-jpeg', split);
  if (existsSync(jpeg)) {
    return loadImageFolder(jpeg, { classes: CIFAR10_CLASSES, name: `cifar10-jpeg/${split}`, cacheDir: options.cacheDir });
  }
  const { dir } = await ensureCifar({ ...options.ensure, name: 'cifar10', format: 'binary' });
  return readCifarBinary(dir, { name: 'cifar10', split });
}
