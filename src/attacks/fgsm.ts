// Fast Gradient Sign Method: I. Goodfellow, J. Shlens, C. Szegedy, "Explaining and harnessing adversarial
// examples", ICLR 2015, https://arxiv.org/abs/1412.6572. One step of size eps from the clean image along the
// sign of the loss gradient (Linf), or along the normalised gradient (L2, the fast gradient method).
import { Tensor } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { GradientAttack, type AttackRun, type GradientAttackOptions, type SingleRunInput, type SingleRunResult } from './attack.js';
import { normalizePerImage } from './threat-model.js';

/** Settings of {@link FGSM}: those of every gradient attack (the step is eps). */
export type FgsmOptions = GradientAttackOptions;

export class FGSM extends GradientAttack {
  readonly name = 'fgsm';

  constructor(model: Classifier, options: FgsmOptions = {}) {
    super(model, options);
  }

  protected perturb(x: Tensor, y: Tensor, run: AttackRun): Tensor {
    return this.attackWithRestarts(x, y, run, 1, 1, (input) => this.singleRun(input));
  }

  private singleRun({ x, y, targets, run }: SingleRunInput): SingleRunResult {
    const lossOf = this.objective(y, targets);
    const { gradient, loss } = this.eotGradient(x, lossOf);
    const direction = this.norm === 'Linf' ? gradient.sign() : normalizePerImage(gradient, 'L2');
    const adversarial = this.projector(x)(x.add(direction.mul(this.eps)));
    run.tick(loss, null);
    const logits = this.model.forward(adversarial);
    return { fooled: logits.argmax({ dim: 1 }).ne(y), adversarial, best: adversarial, bestLoss: lossOf(logits) };
  }
}
