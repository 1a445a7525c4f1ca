// Small classifiers whose behaviour under attack is easy to reason about: a linear model on 3×4×4 images with
// four classes, and the same model with Gaussian noise on its logits (a stochastic defence in miniature).
import { Generator, randn, stack, tidy, type Tensor } from '../../src/tensor/index.js';
import type { Classifier } from '../../src/nn/classifier.js';
import type { Aggregator } from '../../src/ensemble/index.js';
import type { MemberEnsemble } from '../../src/attacks/index.js';

export const LINEAR_INPUTS = 48;
export const LINEAR_CLASSES = 4;

export class Linear implements Classifier {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(seed: number) {
    const generator = new Generator(seed);
    this.weight = randn([LINEAR_CLASSES, LINEAR_INPUTS], { generator }).mul(0.5);
    this.bias = randn([LINEAR_CLASSES], { generator }).mul(0.1);
  }
  forward(x: Tensor): Tensor {
    return x.flatten(1).matmul(this.weight.transpose(0, 1)).add(this.bias);
  }
}

/** The linear model plus Gaussian noise on its logits from libtorch's generator: predictions near the boundary flip. */
export class NoisyLinear extends Linear {
  constructor(seed: number, readonly sigma: number) {
    super(seed);
  }
  override forward(x: Tensor): Tensor {
    return tidy(() => {
      const logits = super.forward(x);
      return logits.add(randn(logits.shape).mul(this.sigma));
    });
  }
}

/** Heads as the members of an ensemble with the given aggregator (a self-ensemble in miniature). */
export class LinearEnsemble implements MemberEnsemble {
  constructor(readonly heads: Classifier[], readonly aggregator: Aggregator) {}
  memberLogits(x: Tensor): Tensor {
    return stack(this.heads.map((h) => h.forward(x)), 1);
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.aggregator.aggregate(this.memberLogits(x)));
  }
}
