// Weight initialisation with torch.nn.init's semantics (PyTorch 1.13): the same formulas and the same single
// uniform_/normal_ call on the tensor, so with the same seed the same libtorch draws the same weights.
// Every function fills the tensor in place without recording gradients and returns it.
import { noGrad, type Generator, type Shape, Tensor } from '../tensor/index.js';

/** Layers and activations whose recommended gain {@link calculateGain} knows (torch.nn.init.calculate_gain). */
export type Nonlinearity = 'linear' | 'conv1d' | 'conv2d' | 'conv3d' | 'conv_transpose1d' | 'conv_transpose2d'
  | 'conv_transpose3d' | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu' | 'selu';

/** Which fan the Kaiming initialisers scale by. */
export type FanMode = 'fan_in' | 'fan_out';

/** Options every random initialiser takes. */
export interface InitOptions {
  /** Random stream. Default: libtorch's global generator (seeded by manualSeed). */
  generator?: Generator;
}

/**
 * Fan-in and fan-out of a weight of at least 2 dimensions, [out, in, ...kernel]: in·kernel and out·kernel
 * elements (torch.nn.init._calculate_fan_in_and_fan_out).
 */
export function calculateFanInAndFanOut(tensorOrShape: Tensor | Shape): { fanIn: number; fanOut: number } {
  const shape = tensorOrShape instanceof Tensor ? tensorOrShape.shape : tensorOrShape;
  if (shape.length < 2) {
    throw new Error(`fan in and fan out cannot be computed for a tensor with fewer than 2 dimensions (shape [${shape.join(', ')}])`);
  }
  let receptiveFieldSize = 1;
  for (const s of shape.slice(2)) receptiveFieldSize *= s;
  return { fanIn: shape[1]! * receptiveFieldSize, fanOut: shape[0]! * receptiveFieldSize };
}

/**
 * The recommended gain for a nonlinearity (torch.nn.init.calculate_gain); `param` is leaky_relu's negative
 * slope (default 0.01).
 */
export function calculateGain(nonlinearity: Nonlinearity, param?: number): number {
  switch (nonlinearity) {
    case 'linear': case 'conv1d': case 'conv2d': case 'conv3d':
    case 'conv_transpose1d': case 'conv_transpose2d': case 'conv_transpose3d': case 'sigmoid':
      return 1;
    case 'tanh':
      return 5.0 / 3;
    case 'relu':
      return Math.sqrt(2.0);
    case 'leaky_relu': {
      const negativeSlope = param ?? 0.01;
      return Math.sqrt(2.0 / (1 + negativeSlope ** 2));
    }
    case 'selu':
      return 3.0 / 4;
    default:
      throw new Error(`unsupported nonlinearity ${nonlinearity as string}`);
  }
}

/** Settings of {@link kaimingUniform_} and {@link kaimingNormal_} (He et al. 2015). */
export interface KaimingOptions extends InitOptions {
  /** Negative slope of the leaky ReLU that follows (only with nonlinearity 'leaky_relu'). Default 0. */
  a?: number;
  /** 'fan_in' preserves the forward pass's variance, 'fan_out' the backward pass's. Default 'fan_in'. */
  mode?: FanMode;
  /** Default 'leaky_relu' (PyTorch's). */
  nonlinearity?: Nonlinearity;
}

function kaimingStd(tensor: Tensor, options: KaimingOptions): number {
  const { fanIn, fanOut } = calculateFanInAndFanOut(tensor);
  const fan = (options.mode ?? 'fan_in') === 'fan_in' ? fanIn : fanOut;
  const gain = calculateGain(options.nonlinearity ?? 'leaky_relu', options.a ?? 0);
  return gain / Math.sqrt(fan);
}

/** U(-bound, bound) with bound = gain·sqrt(3/fan) (He et al. 2015). */
export function kaimingUniform_(tensor: Tensor, options: KaimingOptions = {}): Tensor {
  if (tensor.numel === 0) return tensor;
  const bound = Math.sqrt(3.0) * kaimingStd(tensor, options);
  return noGrad(() => tensor.uniform_(-bound, bound, options.generator));
}

/** N(0, std²) with std = gain/sqrt(fan) (He et al. 2015). */
export function kaimingNormal_(tensor: Tensor, options: KaimingOptions = {}): Tensor {
  if (tensor.numel === 0) return tensor;
  const std = kaimingStd(tensor, options);
  return noGrad(() => tensor.normal_(0, std, options.generator));
}

/** Settings of {@link xavierUniform_} and {@link xavierNormal_} (Glorot & Bengio 2010). */
export interface XavierOptions extends InitOptions {
  /** Default 1. */
  gain?: number;
}

function xavierStd(tensor: Tensor, options: XavierOptions): number {
  const { fanIn, fanOut } = calculateFanInAndFanOut(tensor);
  return (options.gain ?? 1) * Math.sqrt(2.0 / (fanIn + fanOut));
}

/** U(-a, a) with a = gain·sqrt(6/(fan_in + fan_out)) (Glorot & Bengio 2010). */
export function xavierUniform_(tensor: Tensor, options: XavierOptions = {}): Tensor {
  const a = Math.sqrt(3.0) * xavierStd(tensor, options);
  return noGrad(() => tensor.uniform_(-a, a, options.generator));
}

/** N(0, std²) with std = gain·sqrt(2/(fan_in + fan_out)) (Glorot & Bengio 2010). */
export function xavierNormal_(tensor: Tensor, options: XavierOptions = {}): Tensor {
  const std = xavierStd(tensor, options);
  return noGrad(() => tensor.normal_(0, std, options.generator));
}

/** U(a, b); defaults a = 0, b = 1. */
export function uniform_(tensor: Tensor, options: InitOptions & { a?: number; b?: number } = {}): Tensor {
  return noGrad(() => tensor.uniform_(options.a ?? 0, options.b ?? 1, options.generator));
}

/** N(mean, std²); defaults mean = 0, std = 1. */
export function normal_(tensor: Tensor, options: InitOptions & { mean?: number; std?: number } = {}): Tensor {
  return noGrad(() => tensor.normal_(options.mean ?? 0, options.std ?? 1, options.generator));
}

/** Fills `tensor` with `value` in place (no gradient recorded) and returns it. */
export function constant_(tensor: Tensor, value: number): Tensor {
  return noGrad(() => tensor.fill_(value));
}
/** Fills `tensor` with zeros in place (no gradient recorded) and returns it. */
export function zeros_(tensor: Tensor): Tensor {
  return noGrad(() => tensor.zero_());
}
/** Fills `tensor` with ones in place (no gradient recorded) and returns it. */
export function ones_(tensor: Tensor): Tensor {
  return noGrad(() => tensor.fill_(1));
}

/**
 * PyTorch's default for Linear and Conv layers (reset_parameters in 1.13): kaiming_uniform_ with a = sqrt(5)
 * on the weight, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias.
 */
export function defaultLayerInit_(weight: Tensor, bias: Tensor | null, options: InitOptions = {}): void {
  kaimingUniform_(weight, { a: Math.sqrt(5), generator: options.generator });
  if (bias) {
    const { fanIn } = calculateFanInAndFanOut(weight);
    const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
    uniform_(bias, { a: -bound, b: bound, generator: options.generator });
  }
}
