// Tiny WebDataset shards for tests: plain tar files written by npm's `tar` from files laid out in a scratch folder,
// in exactly the order given (WebDataset reads a sample as the run of consecutive files sharing a key).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { create } from 'tar';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';

/** A deterministic RGB image, interleaved (H·W·3 bytes). */
export function rgbPixels(height: number, width: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: height * width * 3 }, (_, i) => (i * 13 + seed * 37 + (i % 3) * 50) & 0xff);
}

/** The same image planar (3·H·W), as a dataset holds it. */
export function planar(rgb: Uint8Array, height: number, width: number): Uint8Array {
  const plane = height * width;
  const out = new Uint8Array(3 * plane);
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) out[c * plane + p] = rgb[3 * p + c]!;
  return out;
}

/** PNG bytes of an RGB image (lossless). */
export function pngBytes(rgb: Uint8Array, height: number, width: number): Buffer {
  const png = new PNG({ width, height });
  for (let p = 0; p < height * width; p++) png.data.set([rgb[3 * p]!, rgb[3 * p + 1]!, rgb[3 * p + 2]!, 255], 4 * p);
  return PNG.sync.write(png);
}

/** JPEG bytes of an RGB image at quality 95 (lossy). */
export function jpegBytes(rgb: Uint8Array, height: number, width: number): Buffer {
  const rgba = Buffer.alloc(height * width * 4);
  for (let p = 0; p < height * width; p++) rgba.set([rgb[3 * p]!, rgb[3 * p + 1]!, rgb[3 * p + 2]!, 255], 4 * p);
  return Buffer.from(jpeg.encode({ data: rgba, width, height }, 95).data);
}

/** Writes a tar shard at `path` holding `entries` (name → bytes or text), in order. */
export function writeShard(path: string, entries: readonly [name: string, data: Uint8Array | string][]): string {
  mkdirSync(dirname(path), { recursive: true });
  const scratch = mkdtempSync(join(dirname(path), '.shard-'));
  try {
    for (const [name, data] of entries) {
      mkdirSync(dirname(join(scratch, name)), { recursive: true });
      writeFileSync(join(scratch, name), data);
    }
    create({ file: path, cwd: scratch, sync: true, portable: true }, entries.map(([name]) => name));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return path;
}

/** Entries of samples KEY.png (or .jpg) + KEY.cls for (key, label, seed) triples of size×size images. */
export function sampleEntries(samples: readonly [key: string, label: number, seed: number][], options: { size?: number; format?: 'png' | 'jpg' } = {}): [string, Uint8Array | string][] {
  const { size = 8, format = 'png' } = options;
  return samples.flatMap(([key, label, seed]): [string, Uint8Array | string][] => {
    const rgb = rgbPixels(size, size, seed);
    return [[`${key}.${format}`, format === 'png' ? pngBytes(rgb, size, size) : jpegBytes(rgb, size, size)], [`${key}.cls`, String(label)]];
  });
}
