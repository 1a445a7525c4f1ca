// The one runner of "attack the points still robust, in batches" (AutoAttack's run_standard_evaluation loop),
// used by the AutoAttack runner (autoattack.ts) and the robustness evaluation (evaluation.ts): one attack entry
// over the rows its caller still counts robust, built through the attack registry under the caller's threat
// model, every batch's result checked (inside the ball, in [0, 1], finite) and, with a checkpoint, stored.
// Within one batch, the attack's own restarts and target classes run on its still-robust images (Attack.attackRobust).
//
// Batches and seeds come in two layouts. 'packed' (AutoAttack's run_standard_evaluation, and its one seed for
// every call): consecutive rows of the pool. 'aligned' (the robustness evaluation's): batch b is the pool's rows
// among images [b·B, (b+1)·B) of the evaluation, and every call draws from its own seed stream, derived from
// (seed, attack, b, attempt). An attack's result on an image depends on the whole batch it is attacked in (the
// prior's noise and the attack's random starts are drawn for the batch tensor) and on the generator's state, so
// only this layout gives any set of whole batches (a shard, a rank's part) exactly the images' single-process
// results. Its cost: an attack's batches shrink with its pool (later attacks run on fewer points per batch).
import { createHash } from 'node:crypto';
import { type Device, type Tensor, keep, manualSeed, tensor, tidy } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { type ProgressEvent, replaceRows } from '../attacks/attack.js';
import { checkAdversarial, type ThreatModel } from '../attacks/threat-model.js';
import { buildAttack, describeAttack, type AttackEntry } from '../attacks/registry.js';
import type { BatchOutcome, EvaluationCheckpoint } from './checkpoint.js';

/** `indices` cut into consecutive batches of at most `size`. */
export function batchesOf(indices: readonly number[], size: number): number[][] {
  return Array.from({ length: Math.ceil(indices.length / size) }, (_, b) => indices.slice(b * size, (b + 1) * size));
}

/**
 * The seed of one stream of random draws: SHA-256 of (seed, ...parts), cut to 32 bits because libtorch's CPU
 * generator (mt19937) keeps only the low 32 bits of the seed it is given: two streams that differed only above
 * them would draw the same numbers.
 */
export function seedStream(seed: number, ...parts: readonly (string | number)[]): number {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${seed}`);
  return createHash('sha256').update(JSON.stringify([seed, ...parts])).digest().readUInt32BE(0);
}

/**
 * Rows `indices` grouped by their batch on the evaluation's grid: row i is image imageOffset + i, and batch b holds
 * images [b·size, (b+1)·size). Groups in order of b, rows in the order given (ascending rows give ascending groups).
 */
export function alignedBatchesOf(indices: readonly number[], size: number, imageOffset = 0): {
  /** b, the batch's index on the evaluation's grid: it holds images [b·size, (b+1)·size). */
  batch: number;
  /** The rows of `indices` whose image falls in that batch, in the order given. */
  rows: number[];
}[] {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`batch size must be a positive integer, got ${size}`);
  checkImageOffset(imageOffset, size);
  const groups = new Map<number, number[]>();
  for (const row of indices) {
    const batch = Math.floor((imageOffset + row) / size);
    const rows = groups.get(batch);
    if (rows) rows.push(row);
    else groups.set(batch, [row]);
  }
  return [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([batch, rows]) => ({ batch, rows }));
}

/** The first image of a part of an evaluation must start a batch, or its batches would straddle two parts. */
export function checkImageOffset(imageOffset: number, batchSize: number): void {
  if (!Number.isInteger(imageOffset) || imageOffset < 0) throw new RangeError(`imageOffset must be a non-negative integer, got ${imageOffset}`);
  if (imageOffset % batchSize !== 0) throw new RangeError(`imageOffset ${imageOffset} is not a multiple of the batch size ${batchSize}: a part of an evaluation starts at a batch boundary`);
}

/** How the runner cuts rows into batches and seeds them (see the file's comment). */
export type BatchLayout = 'packed' | {
  /** Batches on the evaluation's fixed grid of images, each call with its own seed stream. */
  aligned: {
    /** The evaluation's image index of row 0 of the images: a non-negative multiple of the batch size. */
    imageOffset: number;
  };
};

export interface BatchRunSettings extends ThreatModel {
  /**
   * Seeds the attack unless the entry has a seed of its own ('packed'); the base of every batch's seed stream
   * ('aligned', the entry's own seed taking its place where it has one).
   */
  seed: number;
  /** Default 'packed'. The aligned layout's imageOffset: the evaluation's image index of row 0 of `images`. */
  layout?: BatchLayout;
  /** Images per attack call. */
  batchSize: number;
  /**
   * Attacks skip the images their first forward pass misclassifies and return them untouched; for a stochastic
   * model that is the draw's luck, so such images are attacked again with another seed this many times (see
   * RobustnessOptions.retryUntouched). Default 0.
   */
  retries?: number;
  /**
   * Where finished batch calls are stored and taken from (checkpoint.ts), keyed by the attack's description (its
   * seed stream's seed included) and the batch's image indices (offset by imageOffset). Default none.
   */
  checkpoint?: EvaluationCheckpoint;
  /** The attack's progress on the batch `batch` (rows of the images). */
  onProgress?: (event: ProgressEvent, batch: readonly number[]) => void;
  /** After every attack call, with the rows of its batch and whether each was fooled. */
  onBatch?: (batch: readonly number[], success: readonly boolean[]) => void;
}

/** What {@link attackInBatches} returns. */
export interface BatchRunResult {
  /** All N rows: the attack's result where it ran, the clean image elsewhere. Kept: the caller disposes it. */
  adversarial: Tensor;
  /** Per row of `indices`: the attack's own final pass misclassified it (of the last attempt). */
  success: boolean[];
  /** Attack calls repeated on images the attack skipped. */
  retried: number;
}

/** Runs `entry` on the rows `indices` of `images` [N, C, H, W] (labels [N], int64), in batches. */
export function attackInBatches(
  model: Classifier, images: Tensor, labels: Tensor, entry: AttackEntry, indices: readonly number[], settings: BatchRunSettings,
): BatchRunResult {
  const threatModel: ThreatModel = { norm: settings.norm, eps: settings.eps };
  const device = images.device as Device;
  // Made in a scope of its own: a caller outside any scope (the transfer table's) would leak the detached view.
  let adversarial = keep(tidy(() => images.detach().clone()));
  const success = new Map<number, boolean>();
  let todo = [...indices];
  let retried = 0;
  const layout = settings.layout ?? 'packed';
  const imageOffset = layout === 'packed' ? 0 : layout.aligned.imageOffset;
  const cut = (rows: readonly number[]) => (layout === 'packed'
    ? batchesOf(rows, settings.batchSize).map((batch) => ({ rows: batch, grid: null }))
    : alignedBatchesOf(rows, settings.batchSize, imageOffset).map(({ batch, rows: group }) => ({ rows: group, grid: batch })));
  try {
    for (let attempt = 0; attempt <= (settings.retries ?? 0) && todo.length > 0; attempt++) {
      const current = attempt === 0 || layout !== 'packed' ? entry : reseeded(entry, settings.seed, attempt);
      // A hand-made attack cannot be given another seed: it is not retried.
      if (!current || (attempt > 0 && typeof entry.attack !== 'string')) break;
      if (attempt > 0) retried += todo.length;
      const skipped: number[] = [];
      for (const { rows: batch, grid: gridBatch } of cut(todo)) {
        // The aligned layout: this call's own stream, whatever ran before it in this process.
        const streamSeed = gridBatch === null ? null : seedStream(ownSeed(entry) ?? settings.seed, entry.name, gridBatch, attempt);
        const call = streamSeed === null ? current : withSeed(current, streamSeed);
        const description = settings.checkpoint ? describeAttack(call, { ...threatModel, seed: settings.seed }) : null;
        const keyRows = imageOffset === 0 ? batch : batch.map((row) => imageOffset + row);
        const next = tidy(() => {
          const index = tensor(batch, { dtype: 'int64', device });
          const xb = images.indexSelect(0, index);
          const stored = description ? settings.checkpoint!.load(description, keyRows, device) : null;
          if (stored === null && streamSeed !== null) manualSeed(streamSeed);
          const callStarted = Date.now();
          const outcome = stored ?? attackBatch(call, xb, labels.indexSelect(0, index), batch);
          const callSeconds = (Date.now() - callStarted) / 1000;
          // A stored batch passes the same checks as a fresh one: the file could have been edited.
          checkAdversarial(xb, outcome.adversarial, threatModel);
          if (outcome.success.length !== batch.length) throw new Error(`attack '${entry.name}' returned ${outcome.success.length} flags for ${batch.length} images`);
          if (stored === null && description) settings.checkpoint!.save(description, keyRows, outcome, callSeconds);
          return { adversarial: keep(replaceRows(adversarial, index, outcome.adversarial)), success: outcome.success, skipped: outcome.skipped };
        });
        adversarial.dispose();
        adversarial = next.adversarial;
        batch.forEach((image, j) => {
          success.set(image, next.success[j]!);
          if (next.skipped[j]) skipped.push(image);
        });
        settings.onBatch?.(batch, next.success);
      }
      todo = skipped;
    }
  } catch (err) {
    adversarial.dispose();
    throw err;
  }
  return { adversarial, success: indices.map((i) => success.get(i)!), retried };

  function attackBatch(current: AttackEntry, xb: Tensor, yb: Tensor, batch: readonly number[]): BatchOutcome {
    const onProgress = settings.onProgress ? (event: ProgressEvent) => settings.onProgress!(event, batch) : undefined;
    const result = buildAttack(current, model, { ...threatModel, seed: settings.seed, onProgress }).run(xb, yb);
    const skipped = result.attacked?.map((a) => !a)
      ?? result.adversarial.sub(xb).flatten(1).abs().amax({ dim: 1 }).eq(0).toArray().map(Boolean);
    return { adversarial: result.adversarial, success: result.success, skipped };
  }
}

/** The entry with another seed (registered attacks only: a hand-made attack's seed is its own). */
function reseeded(entry: AttackEntry, seed: number, attempt: number): AttackEntry | null {
  if (typeof entry.attack !== 'string') return null;
  return withSeed(entry, (ownSeed(entry) ?? seed) + 7919 * attempt);
}

/** The seed a registered entry names itself, if any. */
function ownSeed(entry: AttackEntry): number | undefined {
  return typeof entry.attack === 'string' ? (entry.options as { seed?: number } | undefined)?.seed : undefined;
}

/**
 * The entry seeded with `seed` (a hand-made attack is returned as it is; the runner seeds libtorch's generator
 * with `seed` before calling it, which is all the seeding it can be given from outside).
 */
function withSeed(entry: AttackEntry, seed: number): AttackEntry {
  if (typeof entry.attack !== 'string') return entry;
  return { ...entry, options: { ...entry.options, seed } } as AttackEntry;
}
