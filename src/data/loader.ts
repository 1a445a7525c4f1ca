// Epoch-based batches over an in-memory dataset. The order of epoch e is a pure function of (seed, e), and the
// augmentation of batch b of epoch e a pure function of (seed, e, b): a run resumed at any batch sees exactly
// the batches an uninterrupted run would have seen.
import type { Device } from '../tensor/index.js';
import { randomCropFlip, type CropFlipOptions } from './augment.js';
import { type Batch, type ImageClassificationDataset, CHANNELS, gatherBytes, makeBatch } from './dataset.js';
import { RandomStream } from './random.js';

/** Settings of a {@link DataLoader}; defaults give shuffled, unaugmented batches of 128 on the CPU. */
export interface DataLoaderOptions {
  /** Images per batch. Default 128. */
  batchSize?: number;
  /** A new random order each epoch; otherwise dataset order. Default true. */
  shuffle?: boolean;
  /** Leave out the last, smaller batch. Default false. */
  dropLast?: boolean;
  /** Seeds order and augmentation. Default 0. */
  seed?: number;
  /** Random crop (zero padding 4) + horizontal flip (p = 0.5); true for those defaults. Default false. */
  augment?: boolean | CropFlipOptions;
  /** Where batch tensors are created. Default 'cpu'. */
  device?: Device;
}

export interface LoaderBatch extends Batch {
  /** The epoch this batch belongs to (0-based). */
  epoch: number;
  /** Position of this batch in its epoch. */
  index: number;
  /** Dataset indices of its images. */
  indices: Uint32Array;
}

// Stream tags keep the order and augmentation draws independent of each other.
const ORDER_STREAM = 1;
const AUGMENT_STREAM = 2;

/**
 * Batches from a dataset, in a seeded order per epoch (the same seed gives the same batches on any machine), with
 * optional crop-and-flip augmentation on the bytes. Each batch's tensors belong to the caller.
 */
export class DataLoader {
  /** Images per batch. */
  readonly batchSize: number;
  /** Whether each epoch has a new random order. */
  readonly shuffle: boolean;
  /** Whether the last, smaller batch is left out. */
  readonly dropLast: boolean;
  /** Seed of the order and the augmentation. */
  readonly seed: number;
  /** The crop-and-flip settings, or null without augmentation. */
  readonly augment: CropFlipOptions | null;
  /** Where batch tensors are created. */
  readonly device: Device;
  private cachedOrder: { epoch: number; order: Uint32Array } | null = null;

  /**
   * @param dataset - What to batch.
   * @param options - Batch size, shuffling, seed, augmentation and device.
   */
  constructor(readonly dataset: ImageClassificationDataset, options: DataLoaderOptions = {}) {
    this.batchSize = options.batchSize ?? 128;
    this.shuffle = options.shuffle ?? true;
    this.dropLast = options.dropLast ?? false;
    this.seed = options.seed ?? 0;
    this.augment = options.augment === true ? {} : options.augment || null;
    this.device = options.device ?? 'cpu';
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${this.batchSize}`);
    if (!Number.isSafeInteger(this.seed) || this.seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${this.seed}`);
  }

  /** Batches per epoch. */
  get length(): number {
    const n = this.dataset.length / this.batchSize;
    return this.dropLast ? Math.floor(n) : Math.ceil(n);
  }

  /** The dataset indices in the order epoch `epoch` visits them. */
  order(epoch: number): Uint32Array {
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new RangeError(`epoch must be a non-negative integer, got ${epoch}`);
    if (this.cachedOrder?.epoch !== epoch) {
      const order = new Uint32Array(this.dataset.length);
      for (let i = 0; i < order.length; i++) order[i] = i;
      if (this.shuffle) new RandomStream(this.seed, epoch, ORDER_STREAM).shuffle(order);
      this.cachedOrder = { epoch, order };
    }
    return this.cachedOrder.order;
  }

  /** Batch `index` of epoch `epoch` (the caller disposes its tensors). */
  batch(epoch: number, index: number): LoaderBatch {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) throw new RangeError(`batch ${index} out of range [0, ${this.length})`);
    const start = index * this.batchSize;
    const indices = this.order(epoch).slice(start, Math.min(start + this.batchSize, this.dataset.length));
    const gathered = gatherBytes(this.dataset, indices);
    const { height, width } = this.dataset;
    let images = gathered.images;
    if (this.augment) {
      const random = new RandomStream(this.seed, epoch, AUGMENT_STREAM, index);
      images = randomCropFlip(images, { count: indices.length, channels: CHANNELS, height, width }, random, this.augment);
    }
    const batch = makeBatch(images, gathered.labels, [indices.length, CHANNELS, height, width], this.device);
    return Object.assign(batch, { epoch, index, indices });
  }

  /**
   * The batches of one epoch, from `startBatch` (to resume). Each batch's tensors belong to the caller:
   * `for (using batch of loader.epoch(e))` frees them at the end of each iteration.
   */
  *epoch(epoch: number, options: { startBatch?: number } = {}): Generator<LoaderBatch> {
    for (let b = options.startBatch ?? 0; b < this.length; b++) yield this.batch(epoch, b);
  }
}
