// Gradient-mode scopes and functional gradients. libtorch's autograd engine does all differentiation.
import { native } from './native.js';
import { Tensor } from './tensor.js';

/** Runs `fn` with gradient recording off (torch.no_grad): for evaluation and in-place parameter updates. */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs `fn` with gradient recording on, inside a noGrad scope (torch.enable_grad). */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const previous = native.setGradEnabled(enabled);
  try {
    const result = fn();
    if (result instanceof Promise) throw new TypeError('gradient-mode scopes take synchronous functions');
    return result;
  } finally {
    native.setGradEnabled(previous);
  }
}

/**
 * Whether operations record autograd history here (false inside noGrad and inference mode), like
 * torch.is_grad_enabled.
 */
export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/**
 * Runs `fn` in inference mode (torch.inference_mode): faster than noGrad, but tensors made inside can never
 * take part in autograd later. Use it for pure evaluation.
 */
export function inferenceMode<T>(fn: () => T): T {
  native.enterInferenceMode();
  try {
    const result = fn();
    if (result instanceof Promise) throw new TypeError('inferenceMode takes a synchronous function');
    return result;
  } finally {
    native.exitInferenceMode();
  }
}

/** Settings of {@link grad}: seeds for the outputs and what happens to the graph. */
export interface GradOptions {
  /** d(output)/d(output) seeds; omitted entries mean ones (outputs must then be scalars). */
  gradOutputs?: (Tensor | null)[];
  /** Keep the graph for another backward pass. Default false. */
  retainGraph?: boolean;
  /** Record the gradient computation itself (for higher-order gradients). Default false. */
  createGraph?: boolean;
  /** Return null for inputs the outputs do not depend on, instead of throwing. Default false. */
  allowUnused?: boolean;
}

/**
 * Gradients of `outputs` with respect to `inputs` (torch.autograd.grad), returned rather than accumulated
 * into the inputs' .grad: the core of every gradient-based attack.
 */
export function grad(outputs: Tensor | Tensor[], inputs: Tensor[], options: GradOptions = {}): (Tensor | null)[] {
  const outs = Array.isArray(outputs) ? outputs : [outputs];
  const seeds = outs.map((_, i) => options.gradOutputs?.[i]?.handle ?? null);
  const raw = native.grad(outs.map((t) => t.handle), inputs.map((t) => t.handle), seeds,
    options.retainGraph ?? false, options.createGraph ?? false, options.allowUnused ?? false);
  return raw.map((h) => (h ? new Tensor(h) : null));
}

/** Back-propagates from several outputs at once, accumulating into leaves' .grad (torch.autograd.backward). */
export function backward(outputs: Tensor[], options: GradOptions & { inputs?: Tensor[] } = {}): void {
  const seeds = outputs.map((_, i) => options.gradOutputs?.[i]?.handle ?? null);
  native.backward(outputs.map((t) => t.handle), seeds, options.retainGraph ?? false, options.createGraph ?? false,
    options.inputs?.map((t) => t.handle));
}

/** How zeroGrad clears gradients (Module.zeroGrad and Optimizer.zeroGrad). */
export interface ZeroGradOptions {
  /**
   * Drop the gradients (PyTorch 2.x's default) rather than fill them with zeros (PyTorch 1.13's default).
   * Default true: it frees memory, the next backward writes instead of adds, and a parameter that then
   * gets no gradient is skipped by an optimiser's step() rather than updated with a zero gradient (which still
   * moves it under momentum or weight decay).
   */
  setToNone?: boolean;
}
