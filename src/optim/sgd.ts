// Stochastic gradient descent with momentum, following torch/optim/sgd.py (1.13, _single_tensor_sgd) op for op,
// so float64 runs match PyTorch to rounding and float32 runs take the same kernels.
import { Tensor } from '../tensor/tensor.js';
import { keep } from '../tensor/scope.js';
import { Optimizer, checkNonNegative, definedOnly, type ParamGroup, type ParamsInput } from './optimizer.js';

/** Hyper-parameters of {@link SGD} (torch.optim.SGD's, camelCase, same defaults). */
export interface SgdOptions {
  /** Learning rate (required). */
  lr: number;
  /** Momentum factor μ; 0 (default) is plain SGD. */
  momentum: number;
  /** Dampening τ of the momentum: b ← μ·b + (1 − τ)·g. Default 0. Not applied on the first step (b ← g). */
  dampening: number;
  /** L2 penalty λ added to the gradient (g ← g + λ·θ). Default 0. */
  weightDecay: number;
  /** Nesterov momentum (Sutskever et al. 2013): step along g + μ·b. Needs momentum > 0 and dampening 0. Default false. */
  nesterov: boolean;
  /** Ascend the objective instead of descending it. Default false. */
  maximize: boolean;
}

/** Per-parameter state: the momentum buffer, created on the first step when momentum ≠ 0. */
export type SgdState = { momentum_buffer?: Tensor };

/**
 * SGD (torch.optim.SGD). For each parameter θ with gradient g:
 *   g ← −g if maximize;  g ← g + λθ;  b ← g on the first step, else μb + (1 − τ)g;
 *   g ← g + μb if nesterov, else b;  θ ← θ − lr·g.
 */
export class SGD extends Optimizer<SgdOptions, SgdState> {
  constructor(params: ParamsInput<SgdOptions>, options: Partial<SgdOptions> & { lr: number }) {
    super('SGD', params, {
      momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, maximize: false, ...definedOnly(options),
    } as SgdOptions);
  }

  protected override validateOptions(o: SgdOptions): void {
    checkNonNegative('SGD', 'learning rate', o.lr);
    checkNonNegative('SGD', 'momentum', o.momentum);
    checkNonNegative('SGD', 'weightDecay', o.weightDecay);
    if (typeof o.dampening !== 'number' || !Number.isFinite(o.dampening)) {
      throw new RangeError(`SGD: invalid dampening ${o.dampening}`);
    }
    if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0)) {
      throw new RangeError('SGD: Nesterov momentum requires a momentum > 0 and zero dampening');
    }
  }

  protected override updateParameter(param: Tensor, grad: Tensor, group: ParamGroup<SgdOptions>): void {
    let direction = group.maximize ? grad.neg() : grad;
    if (group.weightDecay !== 0) direction = direction.add(param, group.weightDecay);
    if (group.momentum !== 0) {
      const state = this.stateOf(param);
      let buffer = state.momentum_buffer;
      if (buffer === undefined) {
        buffer = keep(direction.clone());
        state.momentum_buffer = buffer;
      } else {
        buffer.mul_(group.momentum).add_(direction, 1 - group.dampening);
      }
      direction = group.nesterov ? direction.add(buffer, group.momentum) : buffer;
    }
    param.add_(direction, -group.lr);
  }

  protected override validateState(state: SgdState, _options: SgdOptions, paramIndex: number): void {
    for (const [key, value] of Object.entries(state)) {
      if (key !== 'momentum_buffer' || !(value instanceof Tensor)) {
        throw new Error(`SGD: unexpected state '${key}' for parameter ${paramIndex} (only the tensor momentum_buffer)`);
      }
    }
  }
}
