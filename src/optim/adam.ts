// Adam and AdamW, following torch/optim/adam.py and adamw.py (1.13, _single_tensor_adam/_single_tensor_adamw)
// op for op, so float64 runs match PyTorch to rounding and float32 runs take the same kernels.
import { Tensor, zerosLike } from '../tensor/tensor.js';
import { native } from '../tensor/native.js';
import { keep } from '../tensor/scope.js';
import { Optimizer, checkNonNegative, definedOnly, type ParamGroup, type ParamsInput } from './optimizer.js';

/**
 * Hyper-parameters of {@link Adam} and {@link AdamW} (torch.optim's names in camelCase and defaults; AdamW's
 * weightDecay default differs).
 */
export interface AdamOptions {
  /** Learning rate. Default 1e-3. */
  lr: number;
  /** Decay rates (β1, β2) of the running averages of the gradient and its square, each in [0, 1). Default [0.9, 0.999]. */
  betas: [number, number];
  /** Added to the denominator for numerical stability. Default 1e-8. */
  eps: number;
  /**
   * Weight decay λ. Adam: an L2 penalty added to the gradient (g ← g + λθ), default 0. AdamW: decoupled
   * decay θ ← θ(1 − lr·λ) before the update (Loshchilov & Hutter 2019), default 1e-2.
   */
  weightDecay: number;
  /** AMSGrad (Reddi et al. 2018): normalise by the running maximum of the second moment. Default false. */
  amsgrad: boolean;
  /** Ascend the objective instead of descending it. Default false. */
  maximize: boolean;
}

/** Per-parameter state, created on the parameter's first step. */
export type AdamState = {
  /** Steps taken (PyTorch keeps a float32 tensor; a number here, exact to 2^53). */
  step?: number;
  /** Running average of the gradient (first moment), the parameter's shape. */
  exp_avg?: Tensor;
  /** Running average of the squared gradient (second moment), the parameter's shape. */
  exp_avg_sq?: Tensor;
  /** Only with amsgrad. */
  max_exp_avg_sq?: Tensor;
};

/**
 * Adam (Kingma & Ba 2015; torch.optim.Adam). For each parameter θ with gradient g, at step t:
 *   g ← −g if maximize;  g ← g + λθ;  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;
 *   θ ← θ − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + eps)   (v replaced by max(v_max, v) with amsgrad).
 */
export class Adam extends Optimizer<AdamOptions, AdamState> {
  constructor(params: ParamsInput<AdamOptions>, options: Partial<AdamOptions> = {}) {
    super('Adam', params, { ...adamDefaults(), weightDecay: 0, ...definedOnly(options) });
  }
  protected override validateOptions(o: AdamOptions): void { validateAdamOptions('Adam', o); }
  protected override validateState(s: AdamState, _o: AdamOptions, i: number): void { validateAdamState('Adam', s, i); }
  protected override updateParameter(param: Tensor, grad: Tensor, group: ParamGroup<AdamOptions>): void {
    adamUpdate(param, grad, group, this.stateOf(param), false);
  }
}

/**
 * AdamW (Loshchilov & Hutter 2019; torch.optim.AdamW): Adam whose weight decay shrinks the parameters
 * directly, θ ← θ(1 − lr·λ), instead of entering the moment estimates. weightDecay defaults to 1e-2.
 */
export class AdamW extends Optimizer<AdamOptions, AdamState> {
  constructor(params: ParamsInput<AdamOptions>, options: Partial<AdamOptions> = {}) {
    super('AdamW', params, { ...adamDefaults(), weightDecay: 1e-2, ...definedOnly(options) });
  }
  protected override validateOptions(o: AdamOptions): void { validateAdamOptions('AdamW', o); }
  protected override validateState(s: AdamState, _o: AdamOptions, i: number): void { validateAdamState('AdamW', s, i); }
  protected override updateParameter(param: Tensor, grad: Tensor, group: ParamGroup<AdamOptions>): void {
    adamUpdate(param, grad, group, this.stateOf(param), true);
  }
}

const adamDefaults = () => ({ lr: 1e-3, betas: [0.9, 0.999] as [number, number], eps: 1e-8, amsgrad: false, maximize: false });

function adamUpdate(param: Tensor, grad: Tensor, group: AdamOptions, state: AdamState, decoupled: boolean): void {
  const [beta1, beta2] = group.betas;
  if (state.step === undefined) {
    state.step = 0;
    state.exp_avg = keep(zerosLike(param));
    state.exp_avg_sq = keep(zerosLike(param));
  }
  // Created on demand rather than only at the first step, so amsgrad may be switched on later.
  if (group.amsgrad && state.max_exp_avg_sq === undefined) state.max_exp_avg_sq = keep(zerosLike(param));
  const expAvg = state.exp_avg!;
  const expAvgSq = state.exp_avg_sq!;

  let g = group.maximize ? grad.neg() : grad;
  const step = ++state.step;
  if (decoupled) {
    // Multiplying by exactly 1 changes nothing, so PyTorch's unconditional mul_ is skipped when λ = 0.
    if (group.weightDecay !== 0) param.mul_(1 - group.lr * group.weightDecay);
  } else if (group.weightDecay !== 0) {
    g = g.add(param, group.weightDecay);
  }
  expAvg.mul_(beta1).add_(g, 1 - beta1);
  expAvgSq.mul_(beta2).addcmul_(g, g, 1 - beta2);

  const biasCorrection1 = 1 - powInteger(beta1, step);
  const biasCorrection2 = 1 - powInteger(beta2, step);
  const stepSize = group.lr / biasCorrection1;
  const biasCorrection2Sqrt = Math.sqrt(biasCorrection2);
  let secondMoment = expAvgSq;
  if (group.amsgrad) {
    maximumOut(state.max_exp_avg_sq!, expAvgSq, state.max_exp_avg_sq!);
    secondMoment = state.max_exp_avg_sq!;
  }
  // PyTorch: (v.sqrt() / c).add_(eps). Dividing in place gives the same values (the same div kernel)
  // with one allocation less.
  const denom = secondMoment.sqrt().div_(biasCorrection2Sqrt).add_(group.eps);
  param.addcdiv_(expAvg, denom, -stepSize);
}

/**
 * base^n for an integer n ≥ 0, correctly rounded in all but rare cases. PyTorch computes beta ** step with
 * C's pow(); V8's Math.pow differs from glibc's in the last bit for about 7% of (beta, step) pairs (0.9^4
 * among them), glibc's is within a hair of correct rounding, so squaring in double-double arithmetic
 * (Dekker's exact products) reproduces it far more often: everywhere 1 − beta^step is not 1, except about
 * 4 in 100,000 pairs where glibc itself is not correctly rounded.
 */
function powInteger(base: number, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > Number.MAX_SAFE_INTEGER) return base ** n;
  let resultHi = 1, resultLo = 0, powerHi = base, powerLo = 0;
  while (n > 0) {
    if (n % 2 === 1) [resultHi, resultLo] = multiplyDoubleDouble(resultHi, resultLo, powerHi, powerLo);
    n = Math.floor(n / 2);
    if (n > 0) [powerHi, powerLo] = multiplyDoubleDouble(powerHi, powerLo, powerHi, powerLo);
  }
  return resultHi + resultLo;
}

function multiplyDoubleDouble(ah: number, al: number, bh: number, bl: number): [number, number] {
  const product = ah * bh;
  const [a1, a2] = splitVeltkamp(ah);
  const [b1, b2] = splitVeltkamp(bh);
  const error = ((a1 * b1 - product) + a1 * b2 + a2 * b1) + a2 * b2 + (ah * bl + al * bh);
  const hi = product + error;
  return [hi, error - (hi - product)];
}

/** Splits a double into two halves of 26 significant bits whose products are exact. */
function splitVeltkamp(a: number): [number, number] {
  const c = 134217729 * a; // 2^27 + 1
  const hi = c - (c - a);
  return [hi, a - hi];
}

// torch.maximum(a, b, out=a), as PyTorch's amsgrad does: Tensor has no out= variants, so the operator is
// called directly (no result handle is made).
let maximumOutId = -1;
function maximumOut(self: Tensor, other: Tensor, out: Tensor): void {
  if (maximumOutId < 0) maximumOutId = native.resolveOp('maximum', 'out');
  native.callOp(maximumOutId, [self.handle, other.handle, out.handle], true);
}

function validateAdamOptions(name: string, o: AdamOptions): void {
  checkNonNegative(name, 'learning rate', o.lr);
  checkNonNegative(name, 'eps', o.eps);
  checkNonNegative(name, 'weightDecay', o.weightDecay);
  if (!Array.isArray(o.betas) || o.betas.length !== 2) throw new RangeError(`${name}: betas must be a pair [beta1, beta2]`);
  o.betas.forEach((beta, i) => {
    if (typeof beta !== 'number' || !(beta >= 0 && beta < 1)) {
      throw new RangeError(`${name}: invalid beta parameter at index ${i}: ${beta} (must be in [0, 1))`);
    }
  });
}

function validateAdamState(name: string, s: AdamState, paramIndex: number): void {
  const ok = typeof s.step === 'number' && Number.isInteger(s.step) && s.step >= 0 &&
    s.exp_avg instanceof Tensor && s.exp_avg_sq instanceof Tensor &&
    (s.max_exp_avg_sq === undefined || s.max_exp_avg_sq instanceof Tensor);
  if (!ok) throw new Error(`${name}: the state of parameter ${paramIndex} needs step, exp_avg and exp_avg_sq`);
  for (const key of Object.keys(s)) {
    if (!['step', 'exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'].includes(key)) {
      throw new Error(`${name}: unexpected state '${key}' for parameter ${paramIndex}`);
    }
  }
}
