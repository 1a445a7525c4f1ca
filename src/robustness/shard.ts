// A robust evaluation in parts. The first N images are cut on the grid of batches the evaluation runs on (runner.ts,
// layout 'aligned'), and a part is a contiguous run of whole batches: attacked with the seed streams of its
// batches, its per-image results are the ones the whole evaluation gives those images. A part is written as a
// shard (`--shard I/N`, merged later by merge.ts) or gathered over a process group (ranks of one launch).
// The gradient-masking checks run once, by the part that holds image 0, on the first images (as in one process).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { type Device, type Tensor } from '../tensor/index.js';
import { loadSafetensors, saveSafetensors } from '../serialize/safetensors.js';
import { writeJsonAtomic } from '../util/json.js';
import type { ImageClassificationDataset } from '../data/dataset.js';
import type { RobustnessResults } from './evaluation.js';

/** The format tag of a shard's JSON file. */
export const SHARD_FORMAT = 'crossmax-robustness-shard-v1';
/** File names in a shard's folder. */
export const SHARD_JSON = 'robust-shard.json';
/** The shard's clean images, worst adversarial images and labels. */
export const SHARD_TENSORS = 'robust-shard.safetensors';

/** Part `index` (from 0) of `count`. */
export interface ShardSpec {
  /** I: which part this is, from 0 to count − 1. */
  index: number;
  /** N: how many parts the evaluation is cut into (at least 1, at most its number of batches). */
  count: number;
}

/** Images [start, end) of the first `images`. */
export interface ImageRange {
  /** Index of the first image in the range (inclusive, from 0). */
  start: number;
  /** Index one past the last image in the range (exclusive): the range holds end − start images. */
  end: number;
}

/**
 * The three things a process group must offer an evaluation split over ranks (src/distributed's ProcessGroup
 * has them): its rank, the world size, and an all-gather of JSON-able values (every rank receives every rank's
 * value, in rank order).
 */
export interface EvaluationWorld {
  /** This process's rank in the group, from 0 to worldSize − 1: which part of the images it evaluates. */
  rank: number;
  /** Number of processes in the group: the parts the evaluation is split into. */
  worldSize: number;
  /**
   * Sends this rank's JSON-able `value` to every rank and resolves to every rank's value, in rank order (length
   * worldSize).
   */
  allGatherObject<T>(value: T): Promise<T[]>;
}

/** `I/N` as `--shard` takes it: shard I (0 … N−1) of N. */
export function parseShardSpec(text: string): ShardSpec {
  const match = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!match) throw new RangeError(`--shard ${text}: give I/N, shard I (0 to N-1) of N, e.g. 0/4`);
  const index = Number(match[1]);
  const count = Number(match[2]);
  if (count < 1 || index >= count) throw new RangeError(`--shard ${text}: I must be 0 to N-1 (shards are numbered from 0) and N at least 1`);
  return { index, count };
}

/**
 * The images of part `shard.index` of `shard.count` of an evaluation of the first `images` images in batches of
 * `batchSize`: whole batches, as even a share as they allow. More parts than batches are refused (a part with no
 * images has nothing to evaluate).
 */
export function shardRange(images: number, batchSize: number, shard: ShardSpec): ImageRange {
  if (!Number.isInteger(images) || images < 1) throw new RangeError(`an evaluation needs at least one image, got ${images}`);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  const batches = Math.ceil(images / batchSize);
  if (shard.count > batches) {
    throw new RangeError(`${shard.count} parts of ${images} images in ${batches} batches of ${batchSize}: at most ${batches} parts (a part is whole batches); use fewer parts or a smaller --batch-size`);
  }
  const first = Math.floor((shard.index * batches) / shard.count);
  const last = Math.floor(((shard.index + 1) * batches) / shard.count);
  return { start: first * batchSize, end: Math.min(last * batchSize, images) };
}

/**
 * A data source's description without the directory it was read from ('/work/shared/datasets/cifar-10-batches-bin
 * (official CIFAR-10 binary release)' → 'cifar-10-batches-bin (official CIFAR-10 binary release)'): shards run on
 * other machines keep the same data in other places, and must still match.
 */
export function portableDataName(source: string): string {
  const open = source.indexOf(' (');
  const path = open < 0 ? source : source.slice(0, open);
  return basename(path) + (open < 0 ? '' : source.slice(open));
}

/**
 * SHA-256 over the pixels and labels of the first `images` images of `dataset` (its height and width first): what
 * an evaluation of those images depends on, whichever copy of the data they were read from. Two copies that
 * decode to other pixels (a JPEG copy, a resized set) differ here although their names may agree.
 */
export function dataFingerprint(dataset: Pick<ImageClassificationDataset, 'images' | 'labels' | 'length' | 'height' | 'width'>, images: number): string {
  if (!Number.isInteger(images) || images < 1 || images > dataset.length) throw new RangeError(`fingerprint of ${images} images of a data set of ${dataset.length}`);
  const pixels = dataset.images.length / dataset.length;
  const hash = createHash('sha256').update(`${dataset.height}x${dataset.width}\n`);
  hash.update(dataset.images.subarray(0, images * pixels));
  // Labels as 32-bit integers, however the loader stores them (bytes, or 16 bits beyond 256 classes).
  hash.update(new Uint8Array(Uint32Array.from(dataset.labels.subarray(0, images)).buffer));
  return hash.digest('hex');
}

/** One part of an evaluation: what merge.ts needs to combine it with the others and to refuse a mismatch. */
export interface ShardRecord {
  /** Identifies the file's layout: always {@link SHARD_FORMAT}. */
  format: typeof SHARD_FORMAT;
  /**
   * What the numbers depend on besides the settings: the model file's SHA-256, the aggregator, the data (its
   * {@link portableDataName}, and since 2026-12-05 `dataSha256`, its {@link dataFingerprint}), the device.
   */
  identity: Record<string, string>;
  /** Every setting that changes a number: suite or attack, budget, steps, EOT, eps, seed, R, batch size, masking, the attacks as run. */
  settings: Record<string, unknown>;
  /** This part's images among the first `images`, and how it was made ('shard I/N' or 'rank r of w'). */
  range: ImageRange & {
    /** The number of images the whole evaluation covers (the first `images` of the test set). */
    images: number;
    /** How the part was made, for messages: 'shard I/N' or 'rank r of w'. */
    part: string;
  };
  /** Class names by label, for the merged report. */
  classNames: string[];
  /** The evaluation of this part's images (masking: the checks, in the part holding image 0 only). */
  results: RobustnessResults;
}

/** A part's tensors: clean images, the worst adversarial image per image, labels. */
export interface ShardTensors {
  /** The part's clean images, [n, 3, H, W] float32 in [0, 1] (n = range.end − range.start). */
  clean: Tensor;
  /**
   * Per image, the adversarial image of its worst attack (the clean image where none is worse), [n, 3, H, W] float32
   * in [0, 1].
   */
  adversarial: Tensor;
  /** The images' true classes, [n] int64. */
  labels: Tensor;
}

/** Writes a shard into `dir` (JSON and tensors, each atomically). */
export function writeShardFolder(dir: string, record: ShardRecord, tensors: ShardTensors): {
  /** Path of the shard's JSON file (`dir`/{@link SHARD_JSON}), written last. */
  json: string;
  /** Path of the shard's safetensors file (`dir`/{@link SHARD_TENSORS}). */
  tensors: string;
} {
  mkdirSync(dir, { recursive: true });
  const tensorsPath = join(dir, SHARD_TENSORS);
  saveSafetensors(tensorsPath, { clean: tensors.clean.contiguous(), adversarial: tensors.adversarial.contiguous(), labels: tensors.labels.contiguous() }, { format: SHARD_FORMAT });
  // The JSON last: a folder with a JSON file has its tensors.
  const json = join(dir, SHARD_JSON);
  writeJsonAtomic(json, record);
  return { json, tensors: tensorsPath };
}

/** Reads the shard in `dir`; an unreadable, foreign or inconsistent folder is an error naming it. */
export function readShardFolder(dir: string, device: Device = 'cpu'): {
  /** The shard's JSON record: its range, settings, identity and results. */
  record: ShardRecord;
  /** The shard's images and labels, on `device`; owned by the caller, who disposes them. */
  tensors: ShardTensors;
} {
  const jsonPath = join(dir, SHARD_JSON);
  if (!existsSync(jsonPath)) throw new Error(`${dir} holds no shard (no ${SHARD_JSON}): give the --report folders of \`--shard I/N\` runs`);
  let record: ShardRecord;
  try {
    record = JSON.parse(readFileSync(jsonPath, 'utf8')) as ShardRecord;
  } catch (err) {
    throw new Error(`${jsonPath} is not valid JSON (${(err as Error).message})`);
  }
  if (record?.format !== SHARD_FORMAT) throw new Error(`${jsonPath} is not a crossmax shard (format '${String(record?.format)}', expected '${SHARD_FORMAT}')`);
  let file: ReturnType<typeof loadSafetensors>;
  try {
    file = loadSafetensors(join(dir, SHARD_TENSORS), { device });
  } catch (err) {
    throw new Error(`${dir}: the shard's images are unreadable (${(err as Error).message})`);
  }
  const clean = file.tensors.get('clean');
  const adversarial = file.tensors.get('adversarial');
  const labels = file.tensors.get('labels');
  const count = record.range.end - record.range.start;
  if (!clean || !adversarial || !labels || clean.shape[0] !== count || adversarial.shape[0] !== count || labels.shape[0] !== count) {
    for (const t of file.tensors.values()) t.dispose();
    throw new Error(`${dir}: ${SHARD_TENSORS} does not hold the ${count} images of ${SHARD_JSON} (clean, adversarial, labels)`);
  }
  return { record, tensors: { clean, adversarial, labels } };
}
