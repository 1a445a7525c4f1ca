// A tiny image-folder data set (the layout of ../shared/datasets/cifar10-jpeg) for command tests.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Generator, rand, tidy } from '../../src/tensor/index.js';
import { savePng } from '../../src/report/index.js';

/** <dir>/test/c0 … c<classes-1>/, `perClass` random size×size PNGs each; returns `dir` (the --data argument). */
export function tinyImageFolder(dir: string, options: { classes?: number; perClass?: number; size?: number } = {}): string {
  const { classes = 10, perClass = 2, size = 16 } = options;
  for (let c = 0; c < classes; c++) {
    mkdirSync(join(dir, 'test', `c${c}`), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      tidy(() => savePng(join(dir, 'test', `c${c}`, `${i}.png`), rand([3, size, size], { generator: new Generator(1000 * c + i) })));
    }
  }
  return dir;
}
