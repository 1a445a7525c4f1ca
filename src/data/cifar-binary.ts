// The official CIFAR binary releases. CIFAR-10: records of 1 label byte + 3,072 pixel bytes (1,024 red, green,
// blue, each 32×32 row-major); CIFAR-100: 2 label bytes (coarse, fine) + 3,072 pixel bytes. The pixel layout is
// already CHW, so images are copied out unchanged.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InMemoryImageDataset } from './dataset.js';
import { CIFAR_DISPLAY_NAME, CIFAR_IMAGE, type CifarName, type CifarReadOptions, readCifarRelease } from './cifar-common.js';

/** The record layout of a binary CIFAR file: label byte(s), then 3072 image bytes. */
export interface CifarRecordFormat {
  /** 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine). */
  labelBytes: number;
  /** Which label byte becomes the label. */
  labelIndex: number;
  /** Classes per label byte, to range-check each one. */
  classesPerLabelByte: number[];
  /** For messages: 'CIFAR-10'. */
  displayName: string;
}

/** Splits one binary file's bytes into packed CHW images and labels, checking its structure. */
export function parseCifarRecords(bytes: Uint8Array, file: string, format: CifarRecordFormat): { images: Uint8Array; labels: Uint8Array } {
  const recordSize = format.labelBytes + CIFAR_IMAGE.bytes;
  if (bytes.length === 0) throw new Error(`${file}: empty file`);
  if (bytes.length % recordSize !== 0) {
    throw new Error(`${file}: ${bytes.length} bytes is not a multiple of ${recordSize} (truncated?)`);
  }
  const count = bytes.length / recordSize;
  const images = new Uint8Array(count * CIFAR_IMAGE.bytes);
  const labels = new Uint8Array(count);
  for (let r = 0; r < count; r++) {
    const start = r * recordSize;
    for (let k = 0; k < format.labelBytes; k++) {
      const label = bytes[start + k]!;
      if (label >= format.classesPerLabelByte[k]!) {
        const which = format.labelBytes > 1 ? (k === 0 ? 'coarse label' : 'fine label') : 'label';
        throw new Error(`${file}: ${which} ${label} out of range for ${format.displayName} (record ${r}; corrupt file?)`);
      }
    }
    labels[r] = bytes[start + format.labelIndex]!;
    images.set(bytes.subarray(start + format.labelBytes, start + recordSize), r * CIFAR_IMAGE.bytes);
  }
  return { images, labels };
}

/** The names in a class-name file: one per line, surrounding blanks and blank lines ignored. */
export function readNameLines(path: string): string[] {
  if (!existsSync(path)) throw new Error(`${path}: missing (it holds the class names)`);
  return readFileSync(path, 'utf8').split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
}

/** Reads a class-name file: one name per line, blank lines ignored; exactly `expected` names. */
export function readClassNames(path: string, expected: number): string[] {
  const names = readNameLines(path);
  if (names.length !== expected) throw new Error(`${path}: ${names.length} class names, expected ${expected}`);
  return names;
}

/**
 * Reads a split of the official CIFAR-10 or CIFAR-100 binary release from `dir` (the folder holding
 * data_batch_1.bin … or train.bin …, e.g. 'cifar-10-batches-bin').
 */
export function readCifarBinary(dir: string, options: CifarReadOptions & { name: CifarName }): InMemoryImageDataset {
  const displayName = CIFAR_DISPLAY_NAME[options.name];
  if (options.name === 'cifar10') {
    const format: CifarRecordFormat = { labelBytes: 1, labelIndex: 0, classesPerLabelByte: [10], displayName };
    return readCifarRelease(dir, options, 'binary', {
      classes: (root) => readClassNames(join(root, 'batches.meta.txt'), 10),
      parse: (bytes, path) => parseCifarRecords(bytes, path, format),
    });
  }
  return readCifarRelease(dir, options, 'binary', {
    classes: (root, kind) => kind === 'fine'
      ? readClassNames(join(root, 'fine_label_names.txt'), 100)
      : readClassNames(join(root, 'coarse_label_names.txt'), 20),
    parse: (bytes, path, kind) => parseCifarRecords(bytes, path, { labelBytes: 2, labelIndex: kind === 'fine' ? 1 : 0, classesPerLabelByte: [20, 100], displayName }),
  });
}
