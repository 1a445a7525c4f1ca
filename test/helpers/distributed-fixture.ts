// The model and data of the distributed tests, shared by the rank script and the single-process reference.
import { Linear, ReLU, Sequential } from '../../src/nn/index.js';
import { Generator, randint, randn, type Tensor } from '../../src/tensor/index.js';

/** The small MLP both sides train (weights from the current default generator). */
export function makeModel(): Sequential {
  return new Sequential(new Linear(8, 16), new ReLU(), new Linear(16, 3));
}

/** Global batch `step`: 10 rows (uneven over 3 ranks, even over 2), the same on every rank. */
export function makeBatch(step: number): { x: Tensor; y: Tensor } {
  const generator = new Generator(1000 + step);
  return { x: randn([10, 8], { generator }), y: randint(0, 3, [10], { generator }) };
}
