// A small real self-ensemble for the end-to-end attack and evaluation tests.
import { manualSeed } from '../../src/tensor/index.js';
import { buildSelfEnsemble } from '../../src/ensemble/index.js';

/**
 * manualSeed(3), then a tiny stochastic self-ensemble in eval mode: WRN-10-1 on 16×16 inputs, 10 classes, the
 * paper's prior, pooled heads on block1.layer.0 and avgpool, CrossMax with k 2.
 */
export function tinySelfEnsemble(): ReturnType<typeof buildSelfEnsemble> {
  manualSeed(3);
  const model = buildSelfEnsemble({
    backbone: { arch: 'wide-resnet', depth: 10, widenFactor: 1 },
    numClasses: 10,
    inputSize: 16,
    prior: { preset: 'paper' },
    heads: { features: ['block1.layer.0', 'avgpool'], kind: 'pooled' },
    aggregator: { name: 'crossmax', k: 2 },
  });
  model.eval();
  return model;
}
