// The one interface shared by attacks, the robustness evaluation and generation: images in, logits out.
import type { Tensor } from '../tensor/index.js';

/**
 * Anything that maps images [N, C, H, W] with values in [0, 1] to logits [N, classes]. It may be stochastic
 * (different logits at each call); attacks then average gradients over `eot` calls.
 */
export interface Classifier {
  /** Logits [N, classes] of images [N, C, H, W] in [0, 1]. */
  forward(x: Tensor): Tensor;
}
