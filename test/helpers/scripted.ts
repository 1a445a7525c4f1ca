// A classifier whose verdict depends on the forward pass's number, for pinning what a protocol counts: which pass
// (a clean pass, an attack's own final pass, a re-evaluation) decides what. Each image carries its label in its first
// pixel (label / (classes − 1)), and the logits −10·(3·x₀ − c)² put the label first; a pass the script marks wrong
// rolls the logits by one class, so the prediction is the next class.
import { isGradEnabled, tensor, tidy, type Device, type Tensor } from '../../src/tensor/index.js';
import type { Classifier } from '../../src/nn/classifier.js';

export const SCRIPTED_CLASSES = 4;

/**
 * Passes are counted without gradient (clean passes, skip decisions, final checks, re-evaluations), from 1; passes
 * with gradient (an attack's steps) are always right and not counted, so the script does not depend on how many
 * steps an attack takes.
 */
export class ScriptedClassifier implements Classifier {
  passes = 0;
  constructor(readonly name: string, readonly right: (pass: number) => boolean) {}

  forward(x: Tensor): Tensor {
    const counted = !isGradEnabled();
    if (counted) this.passes++;
    const right = !counted || this.right(this.passes);
    return tidy(() => {
      const position = x.flatten(1).narrow(1, 0, 1).mul(SCRIPTED_CLASSES - 1);
      const classes = tensor(Array.from({ length: SCRIPTED_CLASSES }, (_, c) => c), { device: x.device as Device }).view([1, SCRIPTED_CLASSES]);
      const logits = position.sub(classes).pow(2).mul(-10);
      return right ? logits : logits.roll(1, 1);
    });
  }
}

/** `n` images [n, 3, 4, 4] with labels i mod classes, each label written into its image's first pixel. */
export function scriptedProblem(n: number): { images: Tensor; labels: Tensor } {
  const size = 3 * 4 * 4;
  const values = new Float32Array(n * size);
  const labels = Array.from({ length: n }, (_, i) => i % SCRIPTED_CLASSES);
  for (let i = 0; i < n; i++) {
    for (let k = 1; k < size; k++) values[i * size + k] = ((i * 7 + k * 13) % 17) / 17;
    values[i * size] = labels[i]! / (SCRIPTED_CLASSES - 1);
  }
  return { images: tensor(values, { shape: [n, 3, 4, 4] }), labels: tensor(labels, { dtype: 'int64' }) };
}
