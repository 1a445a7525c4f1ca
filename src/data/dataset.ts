// The one dataset interface of crossmax: an in-memory image classification set, pixels as CHW uint8 bytes
// (the form CIFAR ships in), turned into float tensors only one batch at a time.
import { tensor, type Device, type Tensor } from '../tensor/index.js';

/** Images float32 in [0, 1], shape [B, 3, H, W]; labels int64, shape [B]. Both belong to the caller. */
export interface Batch extends Disposable {
  /** [B, 3, H, W] float32 in [0, 1]. */
  images: Tensor;
  /** [B] int64 class indices. */
  labels: Tensor;
  /** Frees both tensors. */
  dispose(): void;
}

/** Where {@link ImageClassificationDataset.batch} creates its tensors. */
export interface BatchOptions {
  /** Where the tensors are created. Default 'cpu'. */
  device?: Device;
}

/**
 * An image classification dataset held in memory as uint8 CHW bytes, converted to float tensors one batch at a time.
 */
export interface ImageClassificationDataset {
  /** e.g. 'cifar10/test'. */
  readonly name: string;
  /** Class names in label order. */
  readonly classes: readonly string[];
  /** N×3×H×W uint8, row-major (image, channel, row, column). */
  readonly images: Uint8Array;
  /** N labels in [0, classes.length). */
  readonly labels: Uint8Array | Uint16Array;
  /** Number of images N. */
  readonly length: number;
  /** Image height in pixels (every image the same). */
  readonly height: number;
  /** Image width in pixels. */
  readonly width: number;
  /** Which copy (directory or file) the data came from, to be quoted next to any figure computed on it. */
  readonly source: string;
  /** The images at `indices` as a float batch. */
  batch(indices: ArrayLike<number>, options?: BatchOptions): Batch;
}

/** Channels per image: every dataset here is RGB. */
export const CHANNELS = 3;

/** What an {@link InMemoryImageDataset} is made from (see {@link ImageClassificationDataset} for each field). */
export interface InMemoryImageDatasetInit {
  /** e.g. 'cifar10/test'. */
  name: string;
  /** Class names in label order. */
  classes: readonly string[];
  /** N×3×H×W uint8, row-major. */
  images: Uint8Array;
  /** N labels in [0, classes.length) (Uint16Array beyond 256 classes). */
  labels: Uint8Array | Uint16Array;
  /** Image height in pixels. */
  height: number;
  /** Image width in pixels. */
  width: number;
  /** Which copy (directory or file) the data came from. */
  source: string;
}

/**
 * The {@link ImageClassificationDataset} every loader here returns; the constructor checks that the sizes of images
 * and labels agree and that labels are in range.
 */
export class InMemoryImageDataset implements ImageClassificationDataset {
  readonly name: string;
  readonly classes: readonly string[];
  readonly images: Uint8Array;
  readonly labels: Uint8Array | Uint16Array;
  /** Number of images N. */
  readonly length: number;
  /** Image height in pixels. */
  readonly height: number;
  /** Image width in pixels. */
  readonly width: number;
  readonly source: string;

  constructor(init: InMemoryImageDatasetInit) {
    const { images, labels, height, width } = init;
    if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
      throw new RangeError(`${init.name}: image size must be positive integers, got ${height}×${width}`);
    }
    const imageSize = CHANNELS * height * width;
    if (images.length !== labels.length * imageSize) {
      throw new RangeError(`${init.name}: ${images.length} image bytes do not hold ${labels.length} images of 3×${height}×${width}`);
    }
    checkLabels(labels, init.classes.length, init.name);
    this.name = init.name;
    this.classes = Object.freeze([...init.classes]);
    this.images = images;
    this.labels = labels;
    this.length = labels.length;
    this.height = height;
    this.width = width;
    this.source = init.source;
  }

  /** Bytes per image (3·H·W). */
  get imageSize(): number {
    return CHANNELS * this.height * this.width;
  }

  batch(indices: ArrayLike<number>, options: BatchOptions = {}): Batch {
    const { images, labels } = gatherBytes(this, indices);
    return makeBatch(images, labels, [indices.length, CHANNELS, this.height, this.width], options.device);
  }

  /** A dataset of the images at `indices` (copied), e.g. the first N test points of an evaluation protocol. */
  subset(indices: ArrayLike<number>, options: { name?: string } = {}): InMemoryImageDataset {
    const { images, labels } = gatherBytes(this, indices);
    return new InMemoryImageDataset({
      name: options.name ?? `${this.name}[${indices.length}]`,
      classes: this.classes,
      images,
      labels,
      height: this.height,
      width: this.width,
      source: this.source,
    });
  }

  /** Number of images per class, in label order. */
  classCounts(): number[] {
    const counts = new Array<number>(this.classes.length).fill(0);
    for (const l of this.labels) counts[l]!++;
    return counts;
  }
}

/** Copies the images and labels at `indices` into packed arrays. */
export function gatherBytes(dataset: ImageClassificationDataset, indices: ArrayLike<number>): { images: Uint8Array; labels: Uint8Array | Uint16Array } {
  const size = CHANNELS * dataset.height * dataset.width;
  const images = new Uint8Array(indices.length * size);
  const labels = new (dataset.labels.constructor as Uint8ArrayConstructor | Uint16ArrayConstructor)(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i]!;
    if (!Number.isInteger(index) || index < 0 || index >= dataset.length) {
      throw new RangeError(`${dataset.name}: index ${index} out of range [0, ${dataset.length})`);
    }
    images.set(dataset.images.subarray(index * size, (index + 1) * size), i * size);
    labels[i] = dataset.labels[index]!;
  }
  return { images, labels };
}

// x / 255 for every byte value, as float32: the same numbers as torchvision's `img.float().div(255)`
// (a float64 quotient rounded to float32 equals the correctly rounded float32 quotient).
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255);

/**
 * Packed uint8 images and labels as a float batch. The [0, 1] conversion runs in JS through a 256-entry table:
 * measured faster than a uint8 tensor converted and divided by libtorch for CIFAR-sized batches on one thread.
 */
export function makeBatch(images: Uint8Array, labels: ArrayLike<number>, shape: [number, number, number, number], device: Device = 'cpu'): Batch {
  const unit = new Float32Array(images.length);
  for (let i = 0; i < images.length; i++) unit[i] = BYTE_TO_UNIT[images[i]!]!;
  const labels64 = new BigInt64Array(labels.length);
  for (let i = 0; i < labels.length; i++) labels64[i] = BigInt(labels[i]!);
  const imagesTensor = tensor(unit, { shape, device });
  const labelsTensor = tensor(labels64, { shape: [labels.length], device });
  const dispose = (): void => {
    imagesTensor.dispose();
    labelsTensor.dispose();
  };
  return { images: imagesTensor, labels: labelsTensor, dispose, [Symbol.dispose]: dispose };
}

/** A label array of the smallest type that holds `numClasses` classes. */
export function labelArray(numClasses: number, length: number): Uint8Array | Uint16Array {
  if (numClasses > 65536) throw new RangeError(`${numClasses} classes do not fit 16-bit labels`);
  return numClasses <= 256 ? new Uint8Array(length) : new Uint16Array(length);
}

function checkLabels(labels: ArrayLike<number>, numClasses: number, name: string): void {
  for (let i = 0; i < labels.length; i++) {
    if (labels[i]! >= numClasses) throw new RangeError(`${name}: label ${labels[i]} of image ${i} out of range for ${numClasses} classes`);
  }
}
