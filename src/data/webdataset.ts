// WebDataset shards (the layout of https://github.com/webdataset/webdataset, in which many PyTorch users keep large
// image sets): plain tar files (optionally gzipped) in which a sample is the run of consecutive files sharing a key,
// `KEY.jpg` + `KEY.cls`, the key being the path up to the first dot of the file name and the rest its field. We
// read the image (`.jpg`, `.jpeg` or `.png`) and the label (`.cls`: the class index as decimal text, WebDataset's
// convention; else `.json`: an index or {"label": index or name}; else `.txt`: the class name), decode every image
// once and keep the result in the same decoded cache as image folders (decoded-cache.ts). Tar parsing is npm's
// `tar`; what we add is WebDataset's grouping and errors that name the shard and the sample.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, posix, resolve } from 'node:path';
import { Parser } from 'tar';
import { InMemoryImageDataset, type InMemoryImageDatasetInit, labelArray } from './dataset.js';
import { type CacheInfo, type DecodedImages, PlanarImageWriter, withDecodedCache } from './decoded-cache.js';
import { decodeImage } from './image-folder.js';
import { defaultCacheDir, naturalCompare } from './paths.js';

/** The fields read as the sample's image (the first present; a sample with two is an error). */
export const WEBDATASET_IMAGE_FIELDS: readonly string[] = Object.freeze(['jpg', 'jpeg', 'png']);

/** Where a sample's label can come from. */
export type WebDatasetLabelField = 'cls' | 'json' | 'txt';

/** The label fields in the order 'auto' tries them. */
export const WEBDATASET_LABEL_FIELDS: readonly WebDatasetLabelField[] = Object.freeze(['cls', 'json', 'txt'] as WebDatasetLabelField[]);

/** A label as a shard stores it: a class index (.cls, .json) or a class name (.txt, .json). */
export type RawLabel = number | string;

/** One sample: the files of a shard that share a key, by field (lower-case extension). */
export interface WebDatasetSample {
  /** The shard's path. */
  shard: string;
  /** WebDataset's `__key__`: the entry's path up to the first dot of its file name. */
  key: string;
  /**
   * The sample's files: field (the file name after the key, lower-cased: 'jpg', 'cls', 'seg.png') to the file's bytes.
   */
  fields: Map<string, Uint8Array>;
}

/** Names a sample in messages: 'shards/train-00.tar: sample 00042'. */
export function describeSample(sample: Pick<WebDatasetSample, 'shard' | 'key'>): string {
  return `${sample.shard}: sample '${sample.key}'`;
}

const SHARD_FILE = /\.(tar|tar\.gz|tgz)$/i;

/** Whether a file name is a shard crossmax reads (.tar, .tar.gz, .tgz). */
export function isShardName(name: string): boolean {
  return SHARD_FILE.test(name) && !name.startsWith('.');
}

/**
 * The shard files `spec` names: a .tar (.tar.gz, .tgz) file itself, or every shard in a directory in natural order
 * (train-2.tar before train-10.tar), which for shards written in order is the samples' order.
 */
export function listShards(spec: string): string[] {
  const path = resolve(spec);
  if (!existsSync(path)) throw new Error(`${path}: no such shard or directory of shards`);
  if (!statSync(path).isDirectory()) {
    if (!isShardName(basename(path))) throw new Error(`${path}: not a WebDataset shard (expected a .tar, .tar.gz or .tgz file)`);
    return [path];
  }
  const shards = readdirSync(path).filter(isShardName).sort(naturalCompare).map((n) => join(path, n));
  if (shards.length === 0) throw new Error(`${path}: no .tar shards in this directory`);
  return shards;
}

/** Splits a tar entry's name into WebDataset's key and field: 'a/b/00042.seg.png' -> key 'a/b/00042', field 'seg.png'. */
export function splitSampleName(name: string): {
  /** WebDataset's `__key__`: the directory part plus the file name up to its first dot ('a/b/00042'). */
  key: string;
  /** The rest of the file name after that dot, lower-cased ('seg.png'): which of the sample's files this is. */
  field: string;
} | null {
  const normalized = posix.normalize(name.replace(/\\/g, '/')).replace(/^\.\//, '');
  const slash = normalized.lastIndexOf('/');
  const file = normalized.slice(slash + 1);
  const dot = file.indexOf('.');
  if (dot <= 0 || dot === file.length - 1) return null;
  return { key: normalized.slice(0, slash + 1) + file.slice(0, dot), field: file.slice(dot + 1).toLowerCase() };
}

interface TarFile {
  name: string;
  data: Uint8Array;
}

/** The regular files of a tar (or gzipped tar) file, in order; any damage is an error naming the shard. */
function readTarFiles(path: string): TarFile[] {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new Error(`${path}: cannot read shard: ${(err as Error).message}`);
  }
  const gzipped = bytes[0] === 0x1f && bytes[1] === 0x8b;
  // tar's parser reads a header cut short at the end as the end of the archive: a length that is not a whole
  // number of 512-byte blocks is the sign of a copy cut short.
  if (!gzipped && bytes.length % 512 !== 0) {
    throw new Error(`${path}: ${bytes.length} bytes is not a whole number of 512-byte tar blocks (truncated shard?)`);
  }
  const files: TarFile[] = [];
  let failure: Error | null = null;
  let ended = false;
  const parser = new Parser({ strict: true });
  parser.on('entry', (entry) => {
    const chunks: Buffer[] = [];
    const isFile = entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'ContiguousFile';
    entry.on('data', (chunk: Buffer) => {
      if (isFile) chunks.push(chunk);
    });
    entry.on('end', () => {
      if (!isFile) return;
      const data = Buffer.concat(chunks);
      if (entry.size !== undefined && data.length !== entry.size) {
        failure ??= new Error(`${path}: entry '${entry.path}' holds ${data.length} of its ${entry.size} bytes (truncated shard?)`);
      }
      files.push({ name: entry.path, data });
    });
  });
  parser.on('error', (err: Error) => (failure ??= err));
  parser.on('end', () => (ended = true));
  try {
    parser.end(bytes);
  } catch (err) {
    failure ??= err as Error;
  }
  if (failure) {
    const e = failure as NodeJS.ErrnoException;
    if (e.message.startsWith(path)) throw e;
    const what = e.code === 'TAR_ENTRY_INVALID' ? 'bad tar header checksum' : e.message;
    throw new Error(`${path}: not a valid tar shard (${what}; corrupt or truncated?)`);
  }
  // npm tar parses a buffer synchronously (gzip included); anything else would be read half-way here.
  if (!ended) throw new Error(`${path}: the tar parser did not finish reading the shard`);
  // A tar ends with zero blocks (POSIX: two); a copy cut between two entries lacks them.
  if (!gzipped && bytes.length > 0 && !bytes.subarray(bytes.length - 512).every((b) => b === 0)) {
    throw new Error(`${path}: no end-of-archive block (truncated shard?)`);
  }
  return files;
}

/**
 * Reads one shard's samples in order, calling `visit` for each. Files of one sample must be consecutive (as
 * WebDataset writes and reads them); a key that comes back after another, a field given twice or a file name
 * without a field are errors naming the shard and the entry. Returns the number of samples.
 */
export function readShard(path: string, visit: (sample: WebDatasetSample) => void): number {
  // The whole shard is grouped before any sample is visited, so that a broken layout is reported as such rather
  // than as a sample missing the files that come later.
  const samples: WebDatasetSample[] = [];
  const seen = new Set<string>();
  let current: WebDatasetSample | null = null;
  for (const file of readTarFiles(path)) {
    const parts = splitSampleName(file.name);
    if (!parts) {
      if (basename(file.name).startsWith('.')) continue; // hidden files (macOS's ._ companions) are not samples
      throw new Error(`${path}: entry '${file.name}' has no field (WebDataset names a sample's files KEY.FIELD, e.g. 00042.jpg)`);
    }
    if (current && current.key === parts.key) {
      if (current.fields.has(parts.field)) throw new Error(`${describeSample(current)} has two '.${parts.field}' files`);
      current.fields.set(parts.field, file.data);
      continue;
    }
    if (seen.has(parts.key)) {
      throw new Error(`${path}: sample '${parts.key}' appears twice, apart (a sample's files must be consecutive in the shard)`);
    }
    seen.add(parts.key);
    current = { shard: path, key: parts.key, fields: new Map([[parts.field, file.data]]) };
    samples.push(current);
  }
  for (const sample of samples) visit(sample);
  return samples.length;
}

/** Which label fields a sample has, for messages: '.jpg, .cls'. */
function fieldList(sample: WebDatasetSample): string {
  return [...sample.fields.keys()].map((f) => `.${f}`).join(', ');
}

/** The sample's label as stored: from `field`, or with 'auto' the first of .cls, .json, .txt it has. */
export function sampleLabel(sample: WebDatasetSample, field: 'auto' | WebDatasetLabelField = 'auto'): RawLabel {
  const candidates = field === 'auto' ? WEBDATASET_LABEL_FIELDS : [field];
  const found = candidates.find((f) => sample.fields.has(f));
  if (!found) {
    const wanted = candidates.map((f) => `.${f}`).join(', ').replace(/, ([^,]*)$/, ' or $1');
    throw new Error(`${describeSample(sample)} has no label (a ${wanted} file; it has ${fieldList(sample)})`);
  }
  const text = Buffer.from(sample.fields.get(found)!).toString('utf8').trim();
  const bad = (what: string) => new Error(`${describeSample(sample)}: .${found} ${what}, got '${text.slice(0, 40)}'`);
  if (found === 'cls') {
    if (!/^\d+$/.test(text)) throw bad('must hold a class index (a non-negative integer)');
    return Number(text);
  }
  if (found === 'txt') {
    if (text.length === 0) throw bad('must hold a class name');
    return text;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw bad('is not JSON');
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    value = (value as Record<string, unknown>).label ?? (value as Record<string, unknown>).cls;
  }
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value === 'string' && value.length > 0) return value;
  throw bad('must be a class index, a class name, or an object with "label" (or "cls") holding one');
}

/** The sample's image field, or an error naming the sample when it has none or several. */
export function sampleImageField(sample: WebDatasetSample): string {
  const images = WEBDATASET_IMAGE_FIELDS.filter((f) => sample.fields.has(f));
  if (images.length === 0) throw new Error(`${describeSample(sample)} has no image (a .jpg, .jpeg or .png file; it has ${fieldList(sample)})`);
  if (images.length > 1) throw new Error(`${describeSample(sample)} has ${images.length} images (${images.map((f) => `.${f}`).join(', ')}); crossmax reads one per sample`);
  return images[0]!;
}

/**
 * Every sample's stored label, in order, without decoding images: used to size the class list from every split when
 * the shards come without class names.
 */
export function scanWebDatasetLabels(shards: readonly string[], field: 'auto' | WebDatasetLabelField = 'auto'): RawLabel[] {
  const labels: RawLabel[] = [];
  for (const shard of shards) readShard(shard, (sample) => labels.push(sampleLabel(sample, field)));
  return labels;
}

/**
 * How {@link loadWebDataset} reads shards: where classes and labels come from, the dataset's name, and the decoded-
 * image cache.
 */
export interface WebDatasetOptions {
  /** Class names in label order. Default: names from the labels (below). */
  classes?: readonly string[];
  /**
   * Without `classes`: the number of classes for index labels (names '0', '1', ...). Default: the largest index
   * in the labels (and `otherLabels`) plus one. Name labels without `classes` give the sorted set of names.
   */
  numClasses?: number;
  /**
   * Labels of the other splits of the same data (scanWebDatasetLabels), so that a split missing the last class
   * still gets every class when the classes come from the labels. Default none.
   */
  otherLabels?: readonly RawLabel[];
  /** Which file holds the label. Default 'auto': .cls, else .json, else .txt. */
  labelField?: 'auto' | WebDatasetLabelField;
  /**
   * Maps each stored index label to the label used (stored label i becomes labelMap[i]), e.g. CIFAR-100's fine
   * labels to its 20 coarse ones. Default: none.
   */
  labelMap?: readonly number[];
  /** Dataset name. Default: the shards' folder's name. */
  name?: string;
  /** What `source` says the data are. Default '<folder> (WebDataset shards: n files)'. */
  source?: string;
  /**
   * Directory for the decoded cache file, or null for no cache. Default: `defaultCacheDir()`/webdataset
   * (~/.cache/crossmax/webdataset).
   */
  cacheDir?: string | null;
}

/** A dataset decoded from WebDataset shards, with where its decoded cache is. */
export class WebDatasetDataset extends InMemoryImageDataset {
  /**
   * @param init - The decoded images, labels and names.
   * @param cache - Whether the decoded cache was used, and the cache file's path (null when caching is off).
   * @param shards - The shard files the images came from (resolved paths), in the order read.
   */
  constructor(init: InMemoryImageDatasetInit, readonly cache: CacheInfo, readonly shards: readonly string[]) {
    super(init);
  }
}

/** Part of the fingerprint: bump when reading or label rules change, so old caches are rebuilt. */
const READER_VERSION = 1;

/** The options that change labels or classes, as text: part of the cache's key and fingerprint. */
function optionsKey(options: WebDatasetOptions): string {
  const others = options.otherLabels ? [...new Set(options.otherLabels.map((l) => `${typeof l}:${l}`))].sort() : null;
  return JSON.stringify({
    classes: options.classes ?? null, numClasses: options.numClasses ?? null, labelField: options.labelField ?? 'auto',
    labelMap: options.labelMap ?? null, others,
  });
}

/** Changes whenever a shard (its size or mtime), the reader or the label options change. */
function fingerprint(shards: readonly string[], optionsText: string): string {
  const hash = createHash('sha256');
  hash.update(`crossmax webdataset v${READER_VERSION}\n`);
  for (const shard of shards) {
    const stat = statSync(shard);
    hash.update(`${shard}\t${stat.size}\t${stat.mtimeMs}\n`);
  }
  return hash.update(optionsText).digest('hex');
}

/** Turns stored labels into indices and class names (see WebDatasetOptions). `where(i)` names sample i. */
function resolveLabels(raw: readonly RawLabel[], where: (i: number) => string, options: WebDatasetOptions): { classes: string[]; labels: Uint8Array | Uint16Array } {
  const all = [...raw, ...(options.otherLabels ?? [])];
  const firstName = all.findIndex((l) => typeof l === 'string');
  const firstIndex = all.findIndex((l) => typeof l === 'number');
  if (firstName >= 0 && firstIndex >= 0) {
    const [a, b] = [firstName, firstIndex].map((i) => (i < raw.length ? where(i) : 'a sample of another split'));
    throw new Error(`the shards mix class names (${a}: '${all[firstName]}') and class indices (${b}: ${all[firstIndex]}); use one kind`);
  }
  const { labelMap } = options;
  if (firstName >= 0 && labelMap) throw new Error('labelMap maps class indices, but the shards hold class names');
  let classes: string[];
  let toIndex: (label: RawLabel, i: number) => number;
  if (firstName >= 0) {
    classes = options.classes ? [...options.classes] : [...new Set(all as string[])].sort(naturalCompare);
    const index = new Map(classes.map((c, i) => [c, i]));
    toIndex = (label, i) => {
      const found = index.get(label as string);
      if (found === undefined) throw new Error(`${where(i)}: class '${label}' is not one of the ${classes.length} classes (${classes.slice(0, 5).join(', ')}${classes.length > 5 ? ', ...' : ''})`);
      return found;
    };
  } else {
    const mapped = (label: number, i: number): number => {
      if (!labelMap) return label;
      const to = labelMap[label];
      if (to === undefined) throw new Error(`${i < raw.length ? where(i) : 'a sample of another split'}: label ${label} outside the label map's ${labelMap.length} entries`);
      return to;
    };
    const largest = all.reduce<number>((m, l, i) => Math.max(m, mapped(l as number, i)), -1);
    const count = options.classes?.length ?? options.numClasses ?? largest + 1;
    classes = options.classes ? [...options.classes] : Array.from({ length: count }, (_, i) => String(i));
    toIndex = (label, i) => {
      const index = mapped(label as number, i);
      if (index >= count) throw new Error(`${where(i)}: label ${index} out of range for ${count} classes`);
      return index;
    };
  }
  if (classes.length === 0) throw new Error('the shards hold no samples, so no classes');
  const labels = labelArray(classes.length, raw.length);
  raw.forEach((label, i) => (labels[i] = toIndex(label, i)));
  return { classes, labels };
}

function decodeShards(shards: readonly string[], options: WebDatasetOptions): DecodedImages {
  const writer = new PlanarImageWriter();
  const raw: RawLabel[] = [];
  const names: { shard: string; key: string }[] = [];
  const firstShard = new Map<string, string>();
  for (const shard of shards) {
    readShard(shard, (sample) => {
      const earlier = firstShard.get(sample.key);
      if (earlier !== undefined) throw new Error(`${describeSample(sample)}: the key is also a sample of ${earlier} (the same shard given twice?)`);
      firstShard.set(sample.key, shard);
      raw.push(sampleLabel(sample, options.labelField));
      const field = sampleImageField(sample);
      const name = `${describeSample(sample)} (${sample.key}.${field})`;
      writer.push(decodeImage(name, sample.fields.get(field)!), name);
      names.push({ shard, key: sample.key });
    });
  }
  if (writer.count === 0) throw new Error(`${shards.join(', ')}: no samples`);
  const { classes, labels } = resolveLabels(raw, (i) => describeSample(names[i]!), options);
  return { classes, labels, images: writer.finish(), height: writer.height, width: writer.width };
}

/**
 * Loads WebDataset shards into memory: `shards` is a shard file, a directory of shards (every .tar, .tar.gz, .tgz
 * in it, in natural order) or a list of shard files. Samples keep the shards' order. All images must have the same
 * size. The decoded images are cached (keyed by the shard paths and options, checked against the shards' sizes and
 * mtimes), so only the first load decodes.
 */
export function loadWebDataset(shards: string | readonly string[], options: WebDatasetOptions = {}): WebDatasetDataset {
  const files = typeof shards === 'string' ? listShards(shards) : shards.map((s) => resolve(s));
  if (files.length === 0) throw new Error('loadWebDataset: no shards given');
  for (const file of files) if (!existsSync(file)) throw new Error(`${file}: no such shard`);
  const folder = dirname(files[0]!);
  const cacheDir = options.cacheDir === undefined ? join(defaultCacheDir(), 'webdataset') : options.cacheDir;
  const optionsText = optionsKey(options);
  const print = fingerprint(files, optionsText);
  // Keyed by what is read and how (not by the shards' mtimes), so a changed shard replaces its cache file.
  const key = createHash('sha256').update(JSON.stringify(files)).update(optionsText).digest('hex').slice(0, 20);
  const path = cacheDir === null ? null : join(resolve(cacheDir), `${basename(folder).replace(/[^A-Za-z0-9_.-]/g, '_')}-${key}.bin`);
  const { data, cache } = withDecodedCache(path, { root: folder, fingerprint: print, classes: [] }, () => decodeShards(files, options));
  const source = options.source ?? `${folder} (WebDataset shards: ${files.length === 1 ? basename(files[0]!) : `${files.length} files`})`;
  return new WebDatasetDataset({
    name: options.name ?? basename(folder), classes: data.classes, labels: data.labels, images: data.images,
    height: data.height, width: data.width, source,
  }, cache, files);
}
