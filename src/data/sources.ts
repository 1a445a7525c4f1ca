// The data sources by name: one registry for everything `--data` can name. A spec is a source's name ('cifar100'),
// a name and a path ('wds:/data/shards', 'cifar100-coarse:/data/cifar-100-binary'), or a bare directory, whose
// layout says which source reads it (detectDataSource).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readCifarBinary, readNameLines } from './cifar-binary.js';
import { CIFAR10_CLASSES, type Cifar100LabelKind, type Split } from './cifar-common.js';
import { readCifarPython } from './cifar-python.js';
import { loadDefaultCifar10 } from './cifar.js';
import { isCifar100Copy, loadDefaultCifar100, readCifar100Copy } from './cifar100.js';
import type { ImageClassificationDataset } from './dataset.js';
import { loadImageFolder } from './image-folder.js';
import { isShardName, listShards, loadWebDataset, scanWebDatasetLabels } from './webdataset.js';

/** A `--data` spec that names no source, or a path that the named source cannot read: the user's to fix. */
export class DataSpecError extends Error {
  /** The error's name, 'DataSpecError' (shown in place of 'Error' in messages and stack traces). */
  override name = 'DataSpecError';
}

/** What every source's load is given. */
export interface DataSourceLoadOptions {
  /** Which split to read: 'train' or 'test'. */
  split: Split;
  /** The PATH of 'NAME:PATH' (or the bare directory); undefined for a bare name. */
  path?: string;
  /** Decoded-image cache for compressed images (JPEG folders, shards); null for none. Default: the user cache. */
  cacheDir?: string | null;
  /** The project root that ../shared/datasets is relative to. Default: this package's root. */
  projectRoot?: string;
}

/** One kind of data `--data` can name: how to read it, and how to recognise its layout on disk. */
export interface DataSource {
  /** The name in a spec. */
  readonly name: string;
  /** One line for `--help`. */
  readonly help: string;
  /** Whether the spec must give a path ('wds:DIR'), may ('cifar100' or 'cifar100:DIR') or must not. */
  readonly path: 'required' | 'optional' | 'none';
  /** Reads one split. */
  load(options: DataSourceLoadOptions): Promise<ImageClassificationDataset>;
  /** Whether a bare directory given as --data is this source's layout (for `split`). */
  detect?(dir: string, split: Split): boolean;
}

const has = (dir: string, ...names: string[]) => names.every((n) => existsSync(join(dir, n)));

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The shards of one split in a WebDataset directory: the shards in `dir/<split>/`, else the shards in `dir` named
 * after the split ('train-000.tar', 'train_1.tar.gz', 'test.tar'), in natural order. Empty when there are none.
 */
export function webDatasetSplitShards(dir: string, split: Split): string[] {
  const folder = join(dir, split);
  if (isDirectory(folder) && readdirSync(folder).some(isShardName)) return listShards(folder);
  if (!isDirectory(dir)) return [];
  const named = new RegExp(`^${split}([-_.]|$)`, 'i');
  const own = readdirSync(dir).filter((n) => isShardName(n) && named.test(n));
  return own.length === 0 ? [] : listShards(dir).filter((s) => own.some((n) => s.endsWith(`/${n}`) || s.endsWith(`\\${n}`)));
}

/**
 * A split of a directory of WebDataset shards (see webDatasetSplitShards). Class names come from `classes.txt` in
 * the directory (one a line, in label order) when it is there; else from the labels of both splits (indices
 * 0..max named '0', '1', ...; names sorted).
 */
export function loadWebDatasetDirectory(dir: string, split: Split, cacheDir?: string | null): ImageClassificationDataset {
  const root = resolve(dir);
  const shards = webDatasetSplitShards(root, split);
  if (shards.length === 0) {
    throw new DataSpecError(`${root}: no ${split} shards (expected ${join(root, split)}/*.tar or ${join(root, `${split}-*.tar`)})`);
  }
  const classesFile = join(root, 'classes.txt');
  let classes: string[] | undefined;
  if (existsSync(classesFile)) {
    classes = readNameLines(classesFile);
    if (new Set(classes).size !== classes.length) throw new DataSpecError(`${classesFile}: a class is named twice`);
  }
  const other = split === 'train' ? 'test' : 'train';
  const otherShards = classes ? [] : webDatasetSplitShards(root, other);
  return loadWebDataset(shards, {
    classes,
    otherLabels: otherShards.length > 0 ? scanWebDatasetLabels(otherShards) : undefined,
    name: `${root.split(/[\\/]/).pop()}/${split}`,
    cacheDir,
  });
}

function cifar100Source(labelKind: Cifar100LabelKind): DataSource {
  const name = labelKind === 'fine' ? 'cifar100' : 'cifar100-coarse';
  return {
    name,
    help: `${name}: CIFAR-100 with ${labelKind === 'fine' ? 'its 100 fine classes' : 'its 20 coarse superclasses'}` +
      ' (../shared/datasets/cifar-100: training from the JPEG shards, test from the official test.bin; else the' +
      ' official binary or python release on disk; else the checksummed download); ' + `${name}:DIR reads that copy or release in DIR`,
    path: 'optional',
    async load({ split, path, cacheDir, projectRoot }) {
      if (path === undefined) return loadDefaultCifar100({ split, labelKind, cacheDir, projectRoot });
      const dir = resolve(path);
      if (isCifar100Copy(dir)) return readCifar100Copy(dir, { split, labelKind, cacheDir });
      if (has(dir, 'train.bin') || has(dir, 'test.bin')) return readCifarBinary(dir, { name: 'cifar100', split, labelKind });
      if (has(dir, 'meta') && (has(dir, 'train') || has(dir, 'test'))) return readCifarPython(dir, { name: 'cifar100', split, labelKind });
      throw new DataSpecError(`--data ${name}:${path}: not a CIFAR-100 copy (test.bin, class names, train-wds/*.tar), binary release (train.bin, test.bin) or python release (train, test, meta)`);
    },
    detect: labelKind === 'fine' ? (dir) => isCifar100Copy(dir) || has(dir, 'train.bin') || (has(dir, 'meta') && has(dir, 'train')) : undefined,
  };
}

/** Every data source by name, in the order a bare directory is tried against them. */
export const DATA_SOURCES: readonly DataSource[] = Object.freeze([
  {
    name: 'cifar10',
    help: 'cifar10: CIFAR-10 (../shared/datasets binary copy, else the JPEG copy, else download); cifar10:DIR reads an official binary or python release in DIR',
    path: 'optional',
    async load({ split, path, cacheDir, projectRoot }) {
      if (path === undefined) return loadDefaultCifar10({ split, cacheDir, projectRoot });
      const dir = resolve(path);
      if (has(dir, 'data_batch_1.bin') || has(dir, 'test_batch.bin')) return readCifarBinary(dir, { name: 'cifar10', split });
      if (has(dir, 'data_batch_1') || has(dir, 'test_batch')) return readCifarPython(dir, { name: 'cifar10', split });
      throw new DataSpecError(`--data cifar10:${path}: not an official CIFAR-10 binary (data_batch_1.bin ...) or python (data_batch_1 ...) release`);
    },
    detect: (dir) => has(dir, 'data_batch_1.bin') || has(dir, 'data_batch_1'),
  },
  cifar100Source('fine'),
  cifar100Source('coarse'),
  {
    name: 'wds',
    help: 'wds:DIR: WebDataset shards (samples KEY.jpg|png + KEY.cls|json|txt) in DIR/train/ and DIR/test/, or named' +
      ' DIR/train-*.tar and DIR/test-*.tar; class names from DIR/classes.txt if present',
    path: 'required',
    async load({ split, path, cacheDir }) {
      return loadWebDatasetDirectory(path!, split, cacheDir);
    },
    detect: (dir, split) => webDatasetSplitShards(dir, split).length > 0,
  },
  {
    name: 'folder',
    help: 'folder:DIR: an image folder, DIR/train/<class>/*.png|jpg and DIR/test/<class>/*',
    path: 'required',
    async load({ split, path, cacheDir }) {
      const folder = join(resolve(path!), split);
      if (!isDirectory(folder)) throw new DataSpecError(`--data folder:${path}: no ${split}/ folder of class folders`);
      const classes = CIFAR10_CLASSES.every((c) => existsSync(join(folder, c))) ? [...CIFAR10_CLASSES] : undefined;
      return loadImageFolder(folder, { classes, name: `${path}/${split}`, cacheDir });
    },
    detect: (dir, split) => isDirectory(join(dir, split)),
  },
]);

/** The source names, for messages. */
export const DATA_SOURCE_NAMES: readonly string[] = Object.freeze(DATA_SOURCES.map((s) => s.name));

/** The source named `name`, or undefined. */
export function dataSource(name: string): DataSource | undefined {
  return DATA_SOURCES.find((s) => s.name === name);
}

/** The source that reads a bare directory given as --data, by its layout; undefined when none does. */
export function detectDataSource(dir: string, split: Split): DataSource | undefined {
  return DATA_SOURCES.find((s) => s.detect?.(dir, split));
}

/** Splits a spec into its source and path: 'cifar100', 'wds:/data/shards', or a bare directory. */
export function parseDataSpec(spec: string, split: Split): {
  /** The source that reads the data: the one named, or the one whose layout a bare directory matches. */
  source: DataSource;
  /** The PATH of 'NAME:PATH', or the bare directory itself; undefined for a bare name such as 'cifar100'. */
  path?: string;
} {
  const colon = spec.indexOf(':');
  const named = dataSource(colon > 0 ? spec.slice(0, colon) : spec);
  if (named) {
    const path = colon > 0 ? spec.slice(colon + 1) : undefined;
    if (path === undefined && named.path === 'required') throw new DataSpecError(`--data ${spec}: give a path, ${named.name}:DIR`);
    if (path !== undefined && named.path === 'none') throw new DataSpecError(`--data ${spec}: ${named.name} takes no path`);
    if (path !== undefined && !existsSync(path)) throw new DataSpecError(`--data ${spec}: ${path} does not exist`);
    return { source: named, path };
  }
  if (!isDirectory(spec)) {
    throw new DataSpecError(`--data ${spec}: neither a data source (${DATA_SOURCE_NAMES.join(', ')}) nor a directory`);
  }
  const detected = detectDataSource(spec, split);
  if (!detected) {
    throw new DataSpecError(`--data ${spec}: not a layout crossmax reads (a CIFAR release or copy, WebDataset shards for ${split}, or ${split}/ class folders); `
      + `name the source to see what it needs, e.g. wds:${spec}`);
  }
  return { source: detected, path: spec };
}

/** Reads one split of the data a `--data` spec names (see parseDataSpec and DATA_SOURCES). */
export async function loadDataSpec(spec: string, split: Split, options: Omit<DataSourceLoadOptions, 'split' | 'path'> = {}): Promise<ImageClassificationDataset> {
  const { source, path } = parseDataSpec(spec, split);
  return source.load({ ...options, split, path });
}
