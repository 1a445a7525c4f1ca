// The model and data of the distributed tests, shared by the rank script and the single-process reference.
import { BatchNorm1d, Linear, ReLU, Sequential } from '../../src/nn/index.js';
import { Generator, randint, randn, type Tensor } from '../../src/tensor/index.js';

/** Which model the distributed tests train: a plain MLP, or one with two BatchNorms (their statistics chain). */
export type FixtureModel = 'mlp' | 'bn';

/** The small model both sides train (weights from the current default generator). */
export function makeModel(kind: FixtureModel = 'mlp'): Sequential {
  if (kind === 'bn') {
    return new Sequential(new Linear(8, 16), new BatchNorm1d(16), new ReLU(), new Linear(16, 16), new BatchNorm1d(16), new ReLU(),
      new Linear(16, 3));
  }
  return new Sequential(new Linear(8, 16), new ReLU(), new Linear(16, 3));
}

/** Global batch `step`: 10 rows (uneven over 3 ranks, even over 2), the same on every rank. */
export function makeBatch(step: number): { x: Tensor; y: Tensor } {
  const generator = new Generator(1000 + step);
  return { x: randn([10, 8], { generator }), y: randint(0, 3, [10], { generator }) };
}

/** The model's parameters and floating-point buffers (BatchNorm's running statistics) by name, as numbers. */
export function floatState(model: Sequential): Record<string, number[]> {
  return Object.fromEntries([...model.namedParameters(), ...model.namedBuffers()]
    .filter(([, t]) => t.dtype === 'float32' || t.dtype === 'float64')
    .map(([n, t]) => [n, t.toArray()]));
}
