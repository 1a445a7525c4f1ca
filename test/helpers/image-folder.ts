// A tiny image-folder data set (the layout of ../shared/datasets/cifar10-jpeg) for command tests.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Generator, rand, tidy } from '../../src/tensor/index.js';
import { savePng } from '../../src/report/index.js';

/**
 * <dir>/<split>/c0 … c<classes-1>/, `perClass` random size×size PNGs each, for every split (default only 'test');
 * returns `dir` (the --data argument). The images are the same on every call (seeded per split, class and index).
 */
export function tinyImageFolder(
  dir: string, options: { classes?: number; perClass?: number; size?: number; splits?: readonly ('train' | 'test')[] } = {},
): string {
  const { classes = 10, perClass = 2, size = 16, splits = ['test'] } = options;
  for (const split of splits) {
    // The test split keeps the seeds it always had; the training split draws other images.
    const offset = split === 'test' ? 0 : 1_000_000;
    for (let c = 0; c < classes; c++) {
      mkdirSync(join(dir, split, `c${c}`), { recursive: true });
      for (let i = 0; i < perClass; i++) {
        tidy(() => savePng(join(dir, split, `c${c}`, `${i}.png`), rand([3, size, size], { generator: new Generator(offset + 1000 * c + i) })));
      }
    }
  }
  return dir;
}
