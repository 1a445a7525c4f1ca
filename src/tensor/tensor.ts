// The typed Tensor API. Each operation is one call into libtorch's dispatcher (native/src/dispatch.cc)
// through an operator resolved once by its ATen name; argument order follows ATen's schemas.
import { native, type NativeTensorHandle } from './native.js';
import { type DType, type AnyTypedArray, dtypeCode, dtypeFromCode, dtypeOfTypedArray, typedArrayOf } from './dtype.js';
import { trackInScope } from './scope.js';

/** Where a tensor lives: the CPU, the current CUDA device, or CUDA device N ('cuda:1'), as in PyTorch. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
/** Sizes of a tensor's dimensions, outermost first ([B, C, H, W] for a batch of images). */
export type Shape = readonly number[];
/**
 * A tensor or a plain number; a number operand acts as a scalar (PyTorch's Scalar overloads, type-promoted the same
 * way).
 */
export type TensorLike = Tensor | number;

/** Options shared by every creation function. Defaults: float32 on the CPU, no gradient. */
export interface CreationOptions {
  /** Element type. Default 'float32'. */
  dtype?: DType;
  /** Where the tensor is created. Default 'cpu'. */
  device?: Device;
  /** Make the new tensor a leaf that records gradients. Default false. */
  requiresGrad?: boolean;
}

// ---- operator plumbing --------------------------------------------------------------------------------------

type RawResult = NativeTensorHandle | null | number | boolean | RawResult[];

/** A libtorch operator by ATen name and overload, resolved on first use and cached. */
export function aten(name: string, overload = ''): (...args: unknown[]) => RawResult {
  let id = -1;
  return (...args: unknown[]) => {
    if (id < 0) id = native.resolveOp(name, overload);
    return native.callOp(id, args.map(unwrapArg)) as RawResult;
  };
}

/** An in-place operator: runs it and returns nothing (the caller returns `this`). */
function atenInPlace(name: string, overload = ''): (...args: unknown[]) => void {
  let id = -1;
  return (...args: unknown[]) => {
    if (id < 0) id = native.resolveOp(name, overload);
    native.callOp(id, args.map(unwrapArg), true);
  };
}

function unwrapArg(a: unknown): unknown {
  if (a instanceof Tensor) return a.handle;
  // Lists of tensors may hold nulls anywhere (x[:, idx] is index([null, idx])).
  if (Array.isArray(a) && a.some((e) => e instanceof Tensor)) return a.map((t: Tensor | null) => t?.handle ?? null);
  return a;
}

function wrap(raw: RawResult): Tensor {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('operator did not return a tensor');
  return new Tensor(raw);
}

function wrapList(raw: RawResult): Tensor[] {
  if (!Array.isArray(raw)) throw new Error('operator did not return a list of tensors');
  return raw.map((r) => wrap(r));
}

function wrapPair(raw: RawResult): [Tensor, Tensor] {
  const [a, b] = wrapList(raw);
  return [a!, b!];
}

function dims(dim: number | readonly number[] | undefined): number[] | null {
  if (dim === undefined) return null;
  return typeof dim === 'number' ? [dim] : [...dim];
}

const op = {
  add: aten('add', 'Tensor'), addScalar: aten('add', 'Scalar'),
  sub: aten('sub', 'Tensor'), subScalar: aten('sub', 'Scalar'), rsub: aten('rsub', 'Scalar'),
  mul: aten('mul', 'Tensor'), mulScalar: aten('mul', 'Scalar'),
  div: aten('div', 'Tensor'), divScalar: aten('div', 'Scalar'),
  remainder: aten('remainder', 'Scalar'),
  pow: aten('pow', 'Tensor_Tensor'), powScalar: aten('pow', 'Tensor_Scalar'),
  neg: aten('neg'), abs: aten('abs'), sign: aten('sign'), exp: aten('exp'), log: aten('log'), log1p: aten('log1p'),
  sqrt: aten('sqrt'), rsqrt: aten('rsqrt'), square: aten('square'), reciprocal: aten('reciprocal'),
  floor: aten('floor'), ceil: aten('ceil'), round: aten('round'), sin: aten('sin'), cos: aten('cos'),
  relu: aten('relu'), gelu: aten('gelu'), sigmoid: aten('sigmoid'), tanh: aten('tanh'), silu: aten('silu'),
  softmax: aten('softmax', 'int'), logSoftmax: aten('log_softmax', 'int'),
  clamp: aten('clamp'), clampTensor: aten('clamp', 'Tensor'),
  maximum: aten('maximum'), minimum: aten('minimum'),
  eq: aten('eq', 'Tensor'), eqScalar: aten('eq', 'Scalar'), ne: aten('ne', 'Tensor'), neScalar: aten('ne', 'Scalar'),
  lt: aten('lt', 'Tensor'), ltScalar: aten('lt', 'Scalar'), le: aten('le', 'Tensor'), leScalar: aten('le', 'Scalar'),
  gt: aten('gt', 'Tensor'), gtScalar: aten('gt', 'Scalar'), ge: aten('ge', 'Tensor'), geScalar: aten('ge', 'Scalar'),
  logicalNot: aten('logical_not'), logicalAnd: aten('logical_and'), logicalOr: aten('logical_or'),
  isnan: aten('isnan'), isfinite: aten('isfinite'), any: aten('any'), all: aten('all'),
  where: aten('where', 'self'), whereScalarOther: aten('where', 'ScalarOther'), whereScalarSelf: aten('where', 'ScalarSelf'),
  sumAll: aten('sum'), sumDim: aten('sum', 'dim_IntList'), meanAll: aten('mean'), meanDim: aten('mean', 'dim'),
  maxAll: aten('max'), maxDim: aten('max', 'dim'), minAll: aten('min'), minDim: aten('min', 'dim'),
  amax: aten('amax'), amin: aten('amin'), argmax: aten('argmax'), argmin: aten('argmin'),
  std: aten('std', 'correction'), var: aten('var', 'correction'), norm: aten('norm', 'ScalarOpt_dim'), normAll: aten('norm', 'Scalar'),
  prod: aten('prod'), logsumexp: aten('logsumexp'), cumsum: aten('cumsum'),
  sort: aten('sort'), argsort: aten('argsort'), topk: aten('topk'), kthvalue: aten('kthvalue'),
  medianAll: aten('median'), medianDim: aten('median', 'dim'),
  gather: aten('gather'), scatter: aten('scatter', 'src'), scatterValue: aten('scatter', 'value'), scatterAdd: aten('scatter_add'),
  indexSelect: aten('index_select'), index: aten('index', 'Tensor'), maskedFill: aten('masked_fill', 'Scalar'),
  maskedFillTensor: aten('masked_fill', 'Tensor'), maskedSelect: aten('masked_select'), nonzero: aten('nonzero'),
  oneHot: aten('one_hot'),
  reshape: aten('reshape'), view: aten('view'), permute: aten('permute'), transpose: aten('transpose', 'int'),
  flatten: aten('flatten', 'using_ints'), unflatten: aten('unflatten', 'int'), squeeze: aten('squeeze'), squeezeDim: aten('squeeze', 'dim'),
  unsqueeze: aten('unsqueeze'), expand: aten('expand'), expandAs: aten('expand_as'), repeat: aten('repeat'),
  repeatInterleave: aten('repeat_interleave', 'self_int'),
  slice: aten('slice', 'Tensor'), narrow: aten('narrow'), select: aten('select', 'int'),
  cat: aten('cat'), stack: aten('stack'), chunk: aten('chunk'), split: aten('split', 'Tensor'), splitSizes: aten('split_with_sizes'),
  flip: aten('flip'), roll: aten('roll'), contiguous: aten('contiguous'), tril: aten('tril'), triu: aten('triu'),
  matmul: aten('matmul'), mm: aten('mm'), bmm: aten('bmm'), outer: aten('outer'),
  toDtype: aten('to', 'dtype'), toDevice: aten('to', 'device'), clone: aten('clone'), detach: aten('detach'),
  zeros: aten('zeros'), ones: aten('ones'), full: aten('full'), empty: aten('empty', 'memory_format'),
  zerosLike: aten('zeros_like'), onesLike: aten('ones_like'), fullLike: aten('full_like'), emptyLike: aten('empty_like'),
  randLike: aten('rand_like'), randnLike: aten('randn_like'),
  rand: aten('rand', 'generator'), randn: aten('randn', 'generator'), randint: aten('randint', 'low_generator'),
  randperm: aten('randperm', 'generator'),
  arange: aten('arange', 'start_step'), linspace: aten('linspace'), eye: aten('eye'),
  allclose: aten('allclose'), equal: aten('equal'),
  // in place
  add_: atenInPlace('add_', 'Tensor'), addScalar_: atenInPlace('add_', 'Scalar'),
  sub_: atenInPlace('sub_', 'Tensor'), subScalar_: atenInPlace('sub_', 'Scalar'),
  mul_: atenInPlace('mul_', 'Tensor'), mulScalar_: atenInPlace('mul_', 'Scalar'),
  div_: atenInPlace('div_', 'Tensor'), divScalar_: atenInPlace('div_', 'Scalar'),
  addcmul_: atenInPlace('addcmul_'), addcdiv_: atenInPlace('addcdiv_'), lerp_: atenInPlace('lerp_', 'Scalar'),
  clamp_: atenInPlace('clamp_'), clampTensor_: atenInPlace('clamp_', 'Tensor'), sqrt_: atenInPlace('sqrt_'),
  copy_: atenInPlace('copy_'), zero_: atenInPlace('zero_'), fill_: atenInPlace('fill_', 'Scalar'),
  uniform_: atenInPlace('uniform_'), normal_: atenInPlace('normal_'), relu_: atenInPlace('relu_'),
  maskedFill_: atenInPlace('masked_fill_', 'Scalar'),
};

/** A seedable stream of random numbers (torch.Generator). */
export class Generator {
  /** The native generator handle, for the addon's random ops. */
  readonly raw;
  constructor(seed: number, device: Device = 'cpu') {
    this.raw = native.newGenerator(checkSeed(seed), device);
  }
  /** The seed the generator was last seeded with (initial_seed()). */
  get seed(): number { return native.generatorSeed(this.raw); }
  /** Reseeds the generator (a non-negative safe integer), restarting its stream; returns this. */
  manualSeed(seed: number): this { native.generatorSeed(this.raw, checkSeed(seed)); return this; }
  /** The full state, to save in a checkpoint. */
  getState(): Tensor { return new Tensor(native.generatorState(this.raw)); }
  /** Restores a state {@link getState} returned, so the same numbers follow again. */
  setState(state: Tensor): void { native.setGeneratorState(this.raw, state.handle); }
}

/** Seeds libtorch's default generators (CPU and, where present, CUDA), like torch.manual_seed. */
export function manualSeed(seed: number): void {
  native.manualSeed(checkSeed(seed));
}

/** The state of libtorch's default CPU generator (torch.get_rng_state()), to save in a checkpoint. */
export function defaultGeneratorState(): Tensor {
  return new Tensor(native.defaultGeneratorState()!);
}

/** Restores libtorch's default CPU generator from a state defaultGeneratorState returned (torch.set_rng_state). */
export function setDefaultGeneratorState(state: Tensor): void {
  native.defaultGeneratorState(state.handle);
}

function checkSeed(seed: unknown): number {
  if (typeof seed !== 'number') throw new TypeError(`seed must be a number, got ${typeof seed}`);
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`seed must be a non-negative integer, got ${String(seed)}`);
  }
  return seed;
}

// ---- the Tensor -----------------------------------------------------------------------------------------------

/**
 * A libtorch tensor (at::Tensor) with PyTorch's semantics: every op returns a new tensor (broadcasting and type
 * promotion as in PyTorch) except the in-place ones ending in `_`, which return `this`. Native memory is freed by
 * dispose(), `using`, or an enclosing {@link tidy} scope; the garbage collector's finalizer is only a fallback.
 */
export class Tensor implements Disposable {
  /** Always true: lets code recognise a tensor without instanceof. */
  readonly isTensor = true;
  /** The native handle (one libtorch at::Tensor). */
  readonly handle: NativeTensorHandle;

  constructor(handle: NativeTensorHandle) {
    this.handle = handle;
    trackInScope(this);
  }

  /** Sizes of each dimension (a fresh array). */
  get shape(): number[] { return this.handle.shape; }
  /** Element strides of each dimension (row-major [W·H·C, W·H, W, 1] for a contiguous [B, C, H, W]). */
  get strides(): number[] { return this.handle.strides; }
  /** Number of dimensions (0 for a scalar tensor). */
  get ndim(): number { return this.handle.dim; }
  /** Number of elements (the product of the shape; 1 for a scalar tensor). */
  get numel(): number { return this.handle.numel; }
  /** Element type. */
  get dtype(): DType { return dtypeFromCode(this.handle.dtype); }
  /** The device, as libtorch names it ('cpu', 'cuda:0'). */
  get device(): string { return this.handle.device; }
  /** True once the native memory has been freed. */
  get disposed(): boolean { return this.handle.disposed; }
  /** Whether autograd records operations on this tensor. */
  get requiresGrad(): boolean { return this.handle.requiresGrad; }
  /** True for a tensor not produced by a recorded operation (a parameter or input); only leaves accumulate `grad`. */
  get isLeaf(): boolean { return this.handle.isLeaf; }
  /** Version counter, bumped by every in-place change (as in PyTorch). */
  get version(): number { return this.handle.version; }
  /** Whether the elements are laid out row-major without gaps (needed for view() and dataView()). */
  isContiguous(): boolean { return this.handle.isContiguous(); }
  /** Size of dimension `dim` (negative counts from the end); throws when out of range. */
  size(dim: number): number {
    const s = this.shape;
    const d = dim < 0 ? dim + s.length : dim;
    if (!Number.isInteger(dim) || d < 0 || d >= s.length) throw new RangeError(`dimension ${dim} out of range for a ${s.length}-d tensor`);
    return s[d]!;
  }

  /** Frees the native memory now (idempotent). */
  dispose(): void { this.handle.dispose(); }
  /** Same as dispose(), for `using t = ...`. */
  [Symbol.dispose](): void { this.handle.dispose(); }

  /** Starts (or stops) recording gradients for this leaf; returns this. */
  setRequiresGrad(value = true): this { this.handle.setRequiresGrad(value); return this; }
  /** The accumulated gradient, a new handle sharing its memory (null before any backward). */
  get grad(): Tensor | null {
    const g = this.handle.grad();
    return g ? new Tensor(g) : null;
  }
  /** Replaces the accumulated gradient (same shape and dtype as the tensor), or clears it with null. */
  set grad(value: Tensor | null) {
    if (value && (value.shape.join() !== this.shape.join() || value.dtype !== this.dtype)) {
      throw new RangeError(`assigned grad has shape [${value.shape}] (${value.dtype}), the tensor is [${this.shape}] (${this.dtype})`);
    }
    this.handle.setGrad(value ? value.handle : null);
  }
  /** Keeps `grad` for this non-leaf tensor after backward (PyTorch's retain_grad); returns this. */
  retainGrad(): this { this.handle.retainGrad(); return this; }
  /** Back-propagates from this tensor (a scalar unless `gradient` is given), accumulating into leaves' grad. */
  backward(gradient?: Tensor, options: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    native.backward([this.handle], [gradient?.handle ?? null], options.retainGraph ?? false, options.createGraph ?? false);
  }

  // -- data out
  /** The value of a one-element tensor as a number (bool as 0/1; int64 beyond 2^53 loses precision). */
  item(): number {
    const v = this.handle.item();
    return typeof v === 'boolean' ? Number(v) : v;
  }
  /** A copy of the elements as a TypedArray of this dtype (row-major; moved to the CPU if needed). */
  toTypedArray(): AnyTypedArray { return typedArrayOf(this.dtype, this.handle.copyToArrayBuffer()); }
  /** The elements as plain numbers (int64 converted to Number). */
  toArray(): number[] {
    if (this.dtype === 'float16' || this.dtype === 'bfloat16') {
      const wide = this.to('float32');
      try { return wide.toArray(); } finally { wide.dispose(); }
    }
    const a = this.toTypedArray();
    return a instanceof BigInt64Array ? Array.from(a, Number) : Array.from(a as ArrayLike<number>);
  }
  /** A zero-copy view of a contiguous CPU tensor's memory; it keeps the memory alive and sees in-place changes. */
  dataView(): AnyTypedArray { return typedArrayOf(this.dtype, this.handle.viewAsArrayBuffer()); }
  toString(): string { return `Tensor(shape=[${this.shape}], dtype=${this.dtype}, device=${this.device})`; }

  // -- conversion
  /**
   * This tensor on another device and/or as another dtype; the same tensor's data (a new handle) when nothing
   * changes, unless `copy` is true.
   */
  to(target: Device | DType | { device?: Device; dtype?: DType }, options: { copy?: boolean } = {}): Tensor {
    const spec = typeof target === 'string'
      ? (isDeviceName(target) ? { device: target as Device } : { dtype: target as DType })
      : target;
    const dtype = spec.dtype ?? this.dtype;
    if (spec.device !== undefined) return wrap(op.toDevice(this, spec.device, dtypeCode(dtype), false, options.copy ?? false));
    return wrap(op.toDtype(this, dtypeCode(dtype), false, options.copy ?? false));
  }
  /** As float32. */
  float(): Tensor { return this.to('float32'); }
  /** As float64. */
  double(): Tensor { return this.to('float64'); }
  /** As int64 (truncating toward zero). */
  long(): Tensor { return this.to('int64'); }
  /** As int32 (truncating toward zero). */
  int(): Tensor { return this.to('int32'); }
  /** As bool (non-zero is true). */
  bool(): Tensor { return this.to('bool'); }
  /** A copy with its own memory, still connected to the autograd graph. */
  clone(): Tensor { return wrap(op.clone(this)); }
  /** Shares memory, cut from the autograd graph. */
  detach(): Tensor { return wrap(op.detach(this)); }
  /** This tensor laid out row-major (itself, as a new handle, when it already is). */
  contiguous(): Tensor { return wrap(op.contiguous(this)); }

  // -- arithmetic (broadcasting)
  /** this + alpha · other (broadcasting). */
  add(other: TensorLike, alpha = 1): Tensor {
    return wrap(typeof other === 'number' ? op.addScalar(this, other, alpha) : op.add(this, other, alpha));
  }
  /** this − alpha · other (broadcasting). */
  sub(other: TensorLike, alpha = 1): Tensor {
    return wrap(typeof other === 'number' ? op.subScalar(this, other, alpha) : op.sub(this, other, alpha));
  }
  /** other - this */
  rsub(other: number): Tensor { return wrap(op.rsub(this, other)); }
  /** Elementwise product (broadcasting). */
  mul(other: TensorLike): Tensor { return wrap(typeof other === 'number' ? op.mulScalar(this, other) : op.mul(this, other)); }
  /** Elementwise true division (broadcasting; integer tensors give float results, as torch.div). */
  div(other: TensorLike): Tensor { return wrap(typeof other === 'number' ? op.divScalar(this, other) : op.div(this, other)); }
  /** Python-style remainder: the result takes the sign of the divisor (torch.remainder). */
  remainder(other: number): Tensor { return wrap(op.remainder(this, other)); }
  /** Elementwise power: this ^ exponent (a number or a broadcasting tensor). */
  pow(exponent: TensorLike): Tensor {
    return wrap(typeof exponent === 'number' ? op.powScalar(this, exponent) : op.pow(this, exponent));
  }
  /** −this. */
  neg(): Tensor { return wrap(op.neg(this)); }
  /** Elementwise |x|. */
  abs(): Tensor { return wrap(op.abs(this)); }
  /** Elementwise sign: −1, 0 or 1. */
  sign(): Tensor { return wrap(op.sign(this)); }
  /** Elementwise e^x. */
  exp(): Tensor { return wrap(op.exp(this)); }
  /** Elementwise natural logarithm. */
  log(): Tensor { return wrap(op.log(this)); }
  /** Elementwise log(1 + x), accurate for small x. */
  log1p(): Tensor { return wrap(op.log1p(this)); }
  /** Elementwise square root. */
  sqrt(): Tensor { return wrap(op.sqrt(this)); }
  /** Elementwise 1 / √x. */
  rsqrt(): Tensor { return wrap(op.rsqrt(this)); }
  /** Elementwise x². */
  square(): Tensor { return wrap(op.square(this)); }
  /** Elementwise 1 / x. */
  reciprocal(): Tensor { return wrap(op.reciprocal(this)); }
  /** Elementwise round down. */
  floor(): Tensor { return wrap(op.floor(this)); }
  /** Elementwise round up. */
  ceil(): Tensor { return wrap(op.ceil(this)); }
  /** Elementwise round to nearest, ties to even (as torch.round). */
  round(): Tensor { return wrap(op.round(this)); }
  /** Elementwise sine (radians). */
  sin(): Tensor { return wrap(op.sin(this)); }
  /** Elementwise cosine (radians). */
  cos(): Tensor { return wrap(op.cos(this)); }
  /** Elementwise max(x, 0). */
  relu(): Tensor { return wrap(op.relu(this)); }
  /** GELU; `approximate: 'tanh'` is the tanh approximation. */
  gelu(options: { approximate?: 'none' | 'tanh' } = {}): Tensor { return wrap(op.gelu(this, options.approximate ?? 'none')); }
  /** Elementwise logistic function 1 / (1 + e^−x). */
  sigmoid(): Tensor { return wrap(op.sigmoid(this)); }
  /** Elementwise hyperbolic tangent. */
  tanh(): Tensor { return wrap(op.tanh(this)); }
  /** Elementwise SiLU (swish): x · sigmoid(x). */
  silu(): Tensor { return wrap(op.silu(this)); }
  /** Softmax along `dim` (each slice sums to 1). */
  softmax(dim: number): Tensor { return wrap(op.softmax(this, dim)); }
  /** Log-softmax along `dim`, computed stably (log of {@link softmax} without overflow). */
  logSoftmax(dim: number): Tensor { return wrap(op.logSoftmax(this, dim)); }
  /** Clamp to [min, max]; bounds are numbers or tensors (broadcast), either may be omitted. */
  clamp(min?: TensorLike | null, max?: TensorLike | null): Tensor {
    if (min instanceof Tensor || max instanceof Tensor) {
      return withTensorBounds(min, max, (lo, hi) => wrap(op.clampTensor(this, lo, hi)));
    }
    return wrap(op.clamp(this, min ?? null, max ?? null));
  }
  /** Elementwise maximum of two tensors (broadcasting; NaN propagates). */
  maximum(other: Tensor): Tensor { return wrap(op.maximum(this, other)); }
  /** Elementwise minimum of two tensors (broadcasting; NaN propagates). */
  minimum(other: Tensor): Tensor { return wrap(op.minimum(this, other)); }
  /** Matrix product with torch.matmul's rules (vectors, matrices, batched broadcasting). */
  matmul(other: Tensor): Tensor { return wrap(op.matmul(this, other)); }
  /** Product of two 2-d matrices [n, m] · [m, p]. */
  mm(other: Tensor): Tensor { return wrap(op.mm(this, other)); }
  /** Batched matrix product [B, n, m] · [B, m, p]. */
  bmm(other: Tensor): Tensor { return wrap(op.bmm(this, other)); }
  /** Outer product of two vectors: [n] and [m] give [n, m]. */
  outer(other: Tensor): Tensor { return wrap(op.outer(this, other)); }

  // -- comparison and logic
  /** Elementwise ==, a bool tensor. */
  eq(other: TensorLike): Tensor { return wrap(typeof other === 'number' ? op.eqScalar(this, other) : op.eq(this, other)); }
  /** Elementwise !=, a bool tensor. */
  ne(other: TensorLike): Tensor { return wrap(typeof other === 'number' ? op.neScalar(this, other) : op.ne(this, other)); }
  /** Elementwise <, a bool tensor. */
  lt(other: TensorLike): Tensor { return wrap(typeof other === 'number' ? op.ltScalar(this, other) : op.lt(this, other)); }
  /** Elementwise <=, a bool tensor. */
  le(other: TensorLike): Tensor { return wrap(typeof other === 'number' ? op.leScalar(this, other) : op.le(this, other)); }
  /** Elementwise >, a bool tensor. */
  gt(other: TensorLike): Tensor { return wrap(typeof other === 'number' ? op.gtScalar(this, other) : op.gt(this, other)); }
  /** Elementwise >=, a bool tensor. */
  ge(other: TensorLike): Tensor { return wrap(typeof other === 'number' ? op.geScalar(this, other) : op.ge(this, other)); }
  /** Elementwise logical not, a bool tensor. */
  logicalNot(): Tensor { return wrap(op.logicalNot(this)); }
  /** Elementwise logical and, a bool tensor. */
  logicalAnd(other: Tensor): Tensor { return wrap(op.logicalAnd(this, other)); }
  /** Elementwise logical or, a bool tensor. */
  logicalOr(other: Tensor): Tensor { return wrap(op.logicalOr(this, other)); }
  /** Elementwise: true where NaN. */
  isnan(): Tensor { return wrap(op.isnan(this)); }
  /** Elementwise: true where neither NaN nor ±Infinity. */
  isfinite(): Tensor { return wrap(op.isfinite(this)); }
  /** A 0-d bool tensor: true when any element is non-zero. */
  any(): Tensor { return wrap(op.any(this)); }
  /** A 0-d bool tensor: true when every element is non-zero. */
  all(): Tensor { return wrap(op.all(this)); }
  /** True when every element of both is within atol + rtol·|other|. */
  allclose(other: Tensor, options: { rtol?: number; atol?: number } = {}): boolean {
    return op.allclose(this, other, options.rtol ?? 1e-5, options.atol ?? 1e-8, false) as boolean;
  }
  /** True when both have the same shape and the same elements (torch.equal). */
  equal(other: Tensor): boolean { return op.equal(this, other) as boolean; }

  // -- reductions
  /** Sum over everything (a 0-d tensor) or over `dim`. */
  sum(options: ReduceOptions = {}): Tensor {
    return wrap(options.dim === undefined ? op.sumAll(this) : op.sumDim(this, dims(options.dim), options.keepdim ?? false));
  }
  /** Mean over everything (a 0-d tensor) or over `dim`. */
  mean(options: ReduceOptions = {}): Tensor {
    return wrap(options.dim === undefined ? op.meanAll(this) : op.meanDim(this, dims(options.dim), options.keepdim ?? false));
  }
  /** Maximum over everything (a scalar tensor) or, with a dim, values and indices. */
  max(): Tensor;
  max(options: { dim: number; keepdim?: boolean }): { values: Tensor; indices: Tensor };
  max(options?: { dim: number; keepdim?: boolean }): Tensor | { values: Tensor; indices: Tensor } {
    if (options === undefined) return wrap(op.maxAll(this));
    const [values, indices] = wrapPair(op.maxDim(this, options.dim, options.keepdim ?? false));
    return { values, indices };
  }
  /** Minimum over everything (a scalar tensor) or, with a dim, values and indices. */
  min(): Tensor;
  min(options: { dim: number; keepdim?: boolean }): { values: Tensor; indices: Tensor };
  min(options?: { dim: number; keepdim?: boolean }): Tensor | { values: Tensor; indices: Tensor } {
    if (options === undefined) return wrap(op.minAll(this));
    const [values, indices] = wrapPair(op.minDim(this, options.dim, options.keepdim ?? false));
    return { values, indices };
  }
  /** Maximum values only (no indices), over everything or over one or more dims (torch.amax). */
  amax(options: ReduceOptions = {}): Tensor { return wrap(op.amax(this, dims(options.dim) ?? [], options.keepdim ?? false)); }
  /** Minimum values only, over everything or over one or more dims (as torch.amin). */
  amin(options: ReduceOptions = {}): Tensor { return wrap(op.amin(this, dims(options.dim) ?? [], options.keepdim ?? false)); }
  /** Index of the largest element (int64), of the flattened tensor or along `dim`. */
  argmax(options: { dim?: number; keepdim?: boolean } = {}): Tensor { return wrap(op.argmax(this, options.dim ?? null, options.keepdim ?? false)); }
  /** Index of the smallest element (int64), of the flattened tensor or along `dim`. */
  argmin(options: { dim?: number; keepdim?: boolean } = {}): Tensor { return wrap(op.argmin(this, options.dim ?? null, options.keepdim ?? false)); }
  /** Standard deviation; `correction` 1 (default) is the unbiased estimator, 0 the population one. */
  std(options: ReduceOptions & { correction?: number } = {}): Tensor {
    return wrap(op.std(this, dims(options.dim), options.correction ?? 1, options.keepdim ?? false));
  }
  /** Variance; `correction` 1 (default) is the unbiased estimator, 0 the population one. */
  var(options: ReduceOptions & { correction?: number } = {}): Tensor {
    return wrap(op.var(this, dims(options.dim), options.correction ?? 1, options.keepdim ?? false));
  }
  /** p-norm (default 2) over all elements or over `dim`. */
  norm(options: ReduceOptions & { p?: number } = {}): Tensor {
    if (options.dim === undefined) return wrap(op.normAll(this, options.p ?? 2));
    return wrap(op.norm(this, options.p ?? 2, dims(options.dim), options.keepdim ?? false));
  }
  /** Product of all elements, a 0-d tensor. */
  prod(): Tensor { return wrap(op.prod(this)); }
  /** log(Σ exp(x)) over `dim`, computed stably. */
  logsumexp(options: { dim: number | number[]; keepdim?: boolean }): Tensor {
    return wrap(op.logsumexp(this, dims(options.dim), options.keepdim ?? false));
  }
  /** Running sum along `dim`. */
  cumsum(dim: number): Tensor { return wrap(op.cumsum(this, dim)); }
  /** Values sorted along `dim` (default the last, ascending) and the indices they came from. */
  sort(options: { dim?: number; descending?: boolean } = {}): { values: Tensor; indices: Tensor } {
    const [values, indices] = wrapPair(op.sort(this, options.dim ?? -1, options.descending ?? false));
    return { values, indices };
  }
  /** Indices that sort along `dim` (default the last, ascending). */
  argsort(options: { dim?: number; descending?: boolean } = {}): Tensor {
    return wrap(op.argsort(this, options.dim ?? -1, options.descending ?? false));
  }
  /**
   * The k largest (default) or smallest values along `dim` (default the last) and their indices, sorted unless
   * `sorted` is false.
   */
  topk(k: number, options: { dim?: number; largest?: boolean; sorted?: boolean } = {}): { values: Tensor; indices: Tensor } {
    const [values, indices] = wrapPair(op.topk(this, k, options.dim ?? -1, options.largest ?? true, options.sorted ?? true));
    return { values, indices };
  }
  /** The k-th smallest value (1-based, as torch.kthvalue) along `dim`. */
  kthvalue(k: number, options: { dim?: number; keepdim?: boolean } = {}): { values: Tensor; indices: Tensor } {
    const [values, indices] = wrapPair(op.kthvalue(this, k, options.dim ?? -1, options.keepdim ?? false));
    return { values, indices };
  }
  /** Median; with a dim, the lower of the two middle values (as torch.median). */
  median(): Tensor;
  median(options: { dim: number; keepdim?: boolean }): { values: Tensor; indices: Tensor };
  median(options?: { dim: number; keepdim?: boolean }): Tensor | { values: Tensor; indices: Tensor } {
    if (options === undefined) return wrap(op.medianAll(this));
    const [values, indices] = wrapPair(op.medianDim(this, options.dim, options.keepdim ?? false));
    return { values, indices };
  }

  // -- indexing
  /**
   * Picks values along `dim` at `index` (same rank as this): out[i][j] = this[index[i][j]][j] for dim 0, as
   * torch.gather.
   */
  gather(dim: number, index: Tensor): Tensor { return wrap(op.gather(this, dim, index)); }
  /** A copy with `src` (or a number) written at `index` along `dim`, the inverse of {@link gather}. */
  scatter(dim: number, index: Tensor, src: TensorLike): Tensor {
    return wrap(typeof src === 'number' ? op.scatterValue(this, dim, index, src) : op.scatter(this, dim, index, src));
  }
  /** A copy with `src` added at `index` along `dim` (repeated indices accumulate). */
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor { return wrap(op.scatterAdd(this, dim, index, src)); }
  /** The entries at `index` (a 1-d int64 tensor) along `dim`. */
  indexSelect(dim: number, index: Tensor): Tensor { return wrap(op.indexSelect(this, dim, index)); }
  /** Advanced indexing, x[i0, i1, ...] with index tensors (null keeps a dimension whole). */
  index(indices: (Tensor | null)[]): Tensor { return wrap(op.index(this, indices)); }
  /** A copy with `value` where the bool `mask` (broadcasting) is true. */
  maskedFill(mask: Tensor, value: TensorLike): Tensor {
    return wrap(typeof value === 'number' ? op.maskedFill(this, mask, value) : op.maskedFillTensor(this, mask, value));
  }
  /** The elements where `mask` is true, as a 1-d tensor. */
  maskedSelect(mask: Tensor): Tensor { return wrap(op.maskedSelect(this, mask)); }
  /** Indices of the non-zero elements, [count, ndim] int64. */
  nonzero(): Tensor { return wrap(op.nonzero(this)); }
  /**
   * One-hot encoding of an int64 tensor of class indices: a new last dimension of size `numClasses` (−1: max + 1),
   * int64.
   */
  oneHot(numClasses = -1): Tensor { return wrap(op.oneHot(this, numClasses)); }

  // -- shape
  /** The same elements in a new shape (a view when possible, a copy otherwise); one size may be −1. */
  reshape(shape: Shape): Tensor { return wrap(op.reshape(this, [...shape])); }
  /** A view with a new shape sharing memory; the tensor must be contiguous enough (else use reshape). */
  view(shape: Shape): Tensor { return wrap(op.view(this, [...shape])); }
  /** The dimensions reordered: output dimension i is input dimension order[i] (a view). */
  permute(order: Shape): Tensor { return wrap(op.permute(this, [...order])); }
  /** Swaps two dimensions (a view). */
  transpose(dim0: number, dim1: number): Tensor { return wrap(op.transpose(this, dim0, dim1)); }
  /** Merges dimensions startDim..endDim (inclusive) into one. */
  flatten(startDim = 0, endDim = -1): Tensor { return wrap(op.flatten(this, startDim, endDim)); }
  /** Splits dimension `dim` into `sizes` (inverse of flatten). */
  unflatten(dim: number, sizes: Shape): Tensor { return wrap(op.unflatten(this, dim, [...sizes])); }
  /** Removes size-1 dimensions: all of them, or only `dim`. */
  squeeze(dim?: number): Tensor { return wrap(dim === undefined ? op.squeeze(this) : op.squeezeDim(this, dim)); }
  /** Inserts a size-1 dimension at `dim`. */
  unsqueeze(dim: number): Tensor { return wrap(op.unsqueeze(this, dim)); }
  /** A broadcast view to `shape` (−1 keeps a size); no copy. */
  expand(shape: Shape): Tensor { return wrap(op.expand(this, [...shape])); }
  /** A broadcast view to `other`'s shape. */
  expandAs(other: Tensor): Tensor { return wrap(op.expandAs(this, other)); }
  /** Tiles the tensor `repeats[i]` times along dimension i (torch.Tensor.repeat; copies). */
  repeat(repeats: Shape): Tensor { return wrap(op.repeat(this, [...repeats])); }
  /** Repeats each element `repeats` times along `dim` (of the flattened tensor when omitted). */
  repeatInterleave(repeats: number, dim?: number): Tensor { return wrap(op.repeatInterleave(this, repeats, dim ?? null)); }
  /** Elements start..end (exclusive, negatives count from the end) with a step, along `dim`. */
  slice(dim: number, start?: number | null, end?: number | null, step = 1): Tensor {
    return wrap(op.slice(this, dim, start ?? null, end ?? null, step));
  }
  /** `length` entries from `start` along `dim` (a view). */
  narrow(dim: number, start: number, length: number): Tensor { return wrap(op.narrow(this, dim, start, length)); }
  /** Entry `index` along `dim`, that dimension removed (a view). */
  select(dim: number, index: number): Tensor { return wrap(op.select(this, dim, index)); }
  /** Splits into `chunks` nearly equal views along `dim` (the last may be smaller). */
  chunk(chunks: number, dim = 0): Tensor[] { return wrapList(op.chunk(this, chunks, dim)); }
  /** Splits along `dim` into views of `size` each (the last may be smaller) or of the given sizes. */
  split(sizeOrSizes: number | number[], dim = 0): Tensor[] {
    return wrapList(typeof sizeOrSizes === 'number' ? op.split(this, sizeOrSizes, dim) : op.splitSizes(this, sizeOrSizes, dim));
  }
  /** Reverses the order along each of the given dimensions (copies). */
  flip(dimsToFlip: number[]): Tensor { return wrap(op.flip(this, dimsToFlip)); }
  /**
   * Shifts elements cyclically by `shifts` along the given dimensions (elements leaving one end enter at the other).
   */
  roll(shifts: number | number[], dimsToRoll: number | number[]): Tensor {
    return wrap(op.roll(this, typeof shifts === 'number' ? [shifts] : shifts, typeof dimsToRoll === 'number' ? [dimsToRoll] : dimsToRoll));
  }
  /** Lower triangle of the last two dimensions (above `diagonal` zeroed). */
  tril(diagonal = 0): Tensor { return wrap(op.tril(this, diagonal)); }
  /** Upper triangle of the last two dimensions (below `diagonal` zeroed). */
  triu(diagonal = 0): Tensor { return wrap(op.triu(this, diagonal)); }

  // -- in place (return this). Under noGrad() these update parameters without recording.
  /** In place: this += alpha · other; returns this. */
  add_(other: TensorLike, alpha = 1): this {
    if (typeof other === 'number') op.addScalar_(this, other, alpha); else op.add_(this, other, alpha);
    return this;
  }
  /** In place: this −= alpha · other; returns this. */
  sub_(other: TensorLike, alpha = 1): this {
    if (typeof other === 'number') op.subScalar_(this, other, alpha); else op.sub_(this, other, alpha);
    return this;
  }
  /** In place: this ·= other; returns this. */
  mul_(other: TensorLike): this {
    if (typeof other === 'number') op.mulScalar_(this, other); else op.mul_(this, other);
    return this;
  }
  /** In place: this /= other; returns this. */
  div_(other: TensorLike): this {
    if (typeof other === 'number') op.divScalar_(this, other); else op.div_(this, other);
    return this;
  }
  /** this += value · t1 · t2 */
  addcmul_(t1: Tensor, t2: Tensor, value = 1): this { op.addcmul_(this, t1, t2, value); return this; }
  /** this += value · t1 / t2 */
  addcdiv_(t1: Tensor, t2: Tensor, value = 1): this { op.addcdiv_(this, t1, t2, value); return this; }
  /** In place: this += weight · (end − this); returns this. */
  lerp_(end: Tensor, weight: number): this { op.lerp_(this, end, weight); return this; }
  /** In place: clamps to [min, max] (either may be null; numbers or broadcasting tensors); returns this. */
  clamp_(min?: TensorLike | null, max?: TensorLike | null): this {
    if (min instanceof Tensor || max instanceof Tensor) withTensorBounds(min, max, (lo, hi) => op.clampTensor_(this, lo, hi));
    else op.clamp_(this, min ?? null, max ?? null);
    return this;
  }
  /** In place: elementwise square root; returns this. */
  sqrt_(): this { op.sqrt_(this); return this; }
  /** In place: max(x, 0); returns this. */
  relu_(): this { op.relu_(this); return this; }
  /** In place: copies `src` (broadcasting, converting dtype and device) into this; returns this. */
  copy_(src: Tensor): this { op.copy_(this, src, false); return this; }
  /** In place: sets every element to 0; returns this. */
  zero_(): this { op.zero_(this); return this; }
  /** In place: sets every element to `value`; returns this. */
  fill_(value: number): this { op.fill_(this, value); return this; }
  /** In place: writes `value` where the bool `mask` is true; returns this. */
  maskedFill_(mask: Tensor, value: number): this { op.maskedFill_(this, mask, value); return this; }
  /** In place: fills with uniform numbers on [from, to), from `generator` or the default one; returns this. */
  uniform_(from = 0, to = 1, generator?: Generator): this { op.uniform_(this, from, to, generator?.raw ?? null); return this; }
  /** In place: fills with normal numbers N(mean, std²), from `generator` or the default one; returns this. */
  normal_(mean = 0, std = 1, generator?: Generator): this { op.normal_(this, mean, std, generator?.raw ?? null); return this; }
}

/** Where a reduction runs. */
export interface ReduceOptions {
  /** Dimension(s) to reduce; default all of them. */
  dim?: number | readonly number[];
  /** Keep reduced dimensions with size 1 (so the result broadcasts against the input). Default false. */
  keepdim?: boolean;
}

/**
 * Runs `fn` with both clamp bounds as tensors (or null). A number bound becomes a 0-d tensor, which takes part in
 * type promotion like a Python scalar does (0.5 with an int tensor gives a float result), and is freed afterwards.
 */
function withTensorBounds<T>(min: TensorLike | null | undefined, max: TensorLike | null | undefined,
  fn: (lo: Tensor | null, hi: Tensor | null) => T): T {
  const temporaries: Tensor[] = [];
  const asTensor = (v: TensorLike | null | undefined, like: Tensor): Tensor | null => {
    if (v === null || v === undefined) return null;
    if (v instanceof Tensor) return v;
    const t = full([], v, { dtype: Number.isInteger(v) ? 'int64' : 'float64', device: like.device as Device });
    temporaries.push(t);
    return t;
  };
  const like = (min instanceof Tensor ? min : max) as Tensor;
  try {
    return fn(asTensor(min, like), asTensor(max, like));
  } finally {
    for (const t of temporaries) t.dispose();
  }
}

function isDeviceName(s: string): boolean {
  return s === 'cpu' || s === 'cuda' || s.startsWith('cuda:');
}

// ---- creation --------------------------------------------------------------------------------------------------

function created(raw: RawResult, options: CreationOptions): Tensor {
  const t = wrap(raw);
  if (options.requiresGrad) t.setRequiresGrad(true);
  return t;
}

function checkShape(shape: Shape): number[] {
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new RangeError(`invalid shape [${shape.join(', ')}]: sizes must be non-negative integers`);
  }
  return [...shape];
}

function checkCount(what: string, n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${what} needs a non-negative integer, got ${n}`);
}

const dt = (o: CreationOptions) => dtypeCode(o.dtype ?? 'float32');
const dev = (o: CreationOptions) => o.device ?? null;

/** A tensor of zeros (float32 on the CPU unless options say otherwise). */
export function zeros(shape: Shape, options: CreationOptions = {}): Tensor {
  return created(op.zeros(checkShape(shape), dt(options), null, dev(options)), options);
}
/** A tensor of ones (float32 on the CPU unless options say otherwise). */
export function ones(shape: Shape, options: CreationOptions = {}): Tensor {
  return created(op.ones(checkShape(shape), dt(options), null, dev(options)), options);
}
/** A tensor filled with `value` (float32 on the CPU unless options say otherwise). */
export function full(shape: Shape, value: number, options: CreationOptions = {}): Tensor {
  return created(op.full(checkShape(shape), value, dt(options), null, dev(options)), options);
}
/** Uninitialised memory (fastest; fill it before reading). */
export function empty(shape: Shape, options: CreationOptions = {}): Tensor {
  return created(op.empty(checkShape(shape), dt(options), null, dev(options)), options);
}
/** Zeros with `t`'s shape, dtype and device. */
export function zerosLike(t: Tensor): Tensor { return wrap(op.zerosLike(t)); }
/** Ones with `t`'s shape, dtype and device. */
export function onesLike(t: Tensor): Tensor { return wrap(op.onesLike(t)); }
/** `value` everywhere, with `t`'s shape, dtype and device. */
export function fullLike(t: Tensor, value: number): Tensor { return wrap(op.fullLike(t, value)); }
/** Uninitialised memory with `t`'s shape, dtype and device (write every element before reading). */
export function emptyLike(t: Tensor): Tensor { return wrap(op.emptyLike(t)); }
/** Uniform on [0, 1) with `t`'s shape, dtype and device, from the default generator. */
export function randLike(t: Tensor): Tensor { return wrap(op.randLike(t)); }
/** Standard normal with `t`'s shape, dtype and device, from the default generator. */
export function randnLike(t: Tensor): Tensor { return wrap(op.randnLike(t)); }

export interface RandomOptions extends CreationOptions {
  /** Where the random numbers come from. Default: libtorch's default generator (seeded by {@link manualSeed}). */
  generator?: Generator;
}
/** Uniform on [0, 1). */
export function rand(shape: Shape, options: RandomOptions = {}): Tensor {
  return created(op.rand(checkShape(shape), options.generator?.raw ?? null, dt(options), null, dev(options)), options);
}
/** Standard normal. */
export function randn(shape: Shape, options: RandomOptions = {}): Tensor {
  return created(op.randn(checkShape(shape), options.generator?.raw ?? null, dt(options), null, dev(options)), options);
}
/** Integers uniform on [low, high); int64 unless a dtype is given. */
export function randint(low: number, high: number, shape: Shape, options: RandomOptions = {}): Tensor {
  return created(op.randint(low, high, checkShape(shape), options.generator?.raw ?? null, dtypeCode(options.dtype ?? 'int64'), null, dev(options)), options);
}
/** A random permutation of 0..n-1 (int64). */
export function randperm(n: number, options: RandomOptions = {}): Tensor {
  checkCount('randperm', n);
  return created(op.randperm(n, options.generator?.raw ?? null, dtypeCode(options.dtype ?? 'int64'), null, dev(options)), options);
}
/** start, start+step, ... < end. float32 unless a dtype is given. */
export function arange(start: number, end?: number, step = 1, options: CreationOptions = {}): Tensor {
  const [s, e] = end === undefined ? [0, start] : [start, end];
  return created(op.arange(s, e, step, dt(options), null, dev(options)), options);
}
/** `steps` evenly spaced values from start to end, both included. */
export function linspace(start: number, end: number, steps: number, options: CreationOptions = {}): Tensor {
  checkCount('linspace steps', steps);
  return created(op.linspace(start, end, steps, dt(options), null, dev(options)), options);
}
/** The n × n identity matrix. */
export function eye(n: number, options: CreationOptions = {}): Tensor {
  checkCount('eye', n);
  return created(op.eye(n, dt(options), null, dev(options)), options);
}

/**
 * A tensor from a TypedArray (copied; its dtype follows the array unless given) or from nested number arrays
 * (float32 unless given). The shape defaults to the nested arrays' shape, or 1-d for a TypedArray.
 */
export function tensor(data: AnyTypedArray | number | NestedNumbers, options: CreationOptions & { shape?: Shape } = {}): Tensor {
  let flat: AnyTypedArray;
  let shape: number[];
  let dtype: DType;
  if (ArrayBuffer.isView(data)) {
    dtype = options.dtype ?? dtypeOfTypedArray(data);
    shape = options.shape ? [...options.shape] : [data.length];
    // libtorch's bool is one byte that must be 0 or 1.
    flat = dtype === 'bool' && data instanceof Uint8Array && data.some((b) => b > 1) ? data.map((b) => (b ? 1 : 0)) : data;
    if (!holdsRawElementsOf(data, dtype)) {
      // Convert element type via a float64 round trip in libtorch (exact for every int32 and float).
      const src = tensor(data, { shape, device: 'cpu' });
      try {
        const converted = src.to({ dtype, device: options.device ?? 'cpu' });
        if (options.requiresGrad) converted.setRequiresGrad(true);
        return converted;
      } finally {
        src.dispose();
      }
    }
  } else if (typeof data === 'number' || Array.isArray(data)) {
    dtype = options.dtype ?? 'float32';
    const nested = nestedShape(data);
    shape = options.shape ? [...options.shape] : nested;
    const values = typeof data === 'number' ? [data] : (data as unknown[]).flat(Infinity as 1) as number[];
    const bad = values.find((v) => typeof v !== 'number' && typeof v !== 'boolean');
    if (bad !== undefined) throw new TypeError(`tensor(): data elements must be numbers, found ${typeof bad} ${JSON.stringify(bad)}`);
    flat = fillTyped(dtype, values);
  } else {
    throw new TypeError(`tensor(): data must be a TypedArray, a number or nested arrays of numbers, not ${typeof data}`);
  }
  const t = new Tensor(native.fromBuffer(flat, checkShape(shape), dtypeCode(dtype), options.device ?? 'cpu'));
  if (options.requiresGrad) t.setRequiresGrad(true);
  return t;
}

/** True when the array's bytes already are elements of `dtype` (no conversion needed). */
function holdsRawElementsOf(data: AnyTypedArray, dtype: DType): boolean {
  if (data instanceof Uint16Array) {
    if (dtype === 'float16' || dtype === 'bfloat16') return true;
    throw new TypeError(`a Uint16Array holds float16 or bfloat16 bits, not ${dtype}`);
  }
  return dtypeOfTypedArray(data) === dtype || (dtype === 'bool' && data instanceof Uint8Array);
}

/** Numbers nested in arrays, one level per dimension (rectangular), as {@link tensor} takes them. */
export type NestedNumbers = number[] | NestedNumbers[];

/** The shape of nested arrays, which must be rectangular (every sibling of the same length and depth). */
function nestedShape(data: number | NestedNumbers): number[] {
  const shape: number[] = [];
  let cur: unknown = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  const check = (node: unknown, depth: number): void => {
    if (depth === shape.length) {
      if (Array.isArray(node)) throw new RangeError(`tensor(): ragged nested arrays (deeper than the first element at depth ${depth})`);
      return;
    }
    if (!Array.isArray(node) || node.length !== shape[depth]) {
      throw new RangeError(`tensor(): ragged nested arrays: expected ${shape[depth]} elements at depth ${depth}, got ${Array.isArray(node) ? node.length : 'a number'}`);
    }
    for (const child of node) check(child, depth + 1);
  };
  check(data, 0);
  return shape;
}

function fillTyped(dtype: DType, values: number[]): AnyTypedArray {
  switch (dtype) {
    case 'float32': return Float32Array.from(values);
    case 'float64': return Float64Array.from(values);
    case 'int32': return Int32Array.from(values);
    case 'int64': return BigInt64Array.from(values, (v) => BigInt(Math.trunc(v)));
    case 'int16': return Int16Array.from(values);
    case 'int8': return Int8Array.from(values);
    case 'uint8': return Uint8Array.from(values);
    case 'bool': return Uint8Array.from(values, (v) => (v ? 1 : 0));
    default: throw new TypeError(`nested number arrays cannot be converted to ${dtype}; build a float32 tensor and call .to('${dtype}')`);
  }
}

// ---- functions over several tensors --------------------------------------------------------------------------

/** Joins tensors along an existing dimension `dim` (all other sizes equal). */
export function cat(tensors: Tensor[], dim = 0): Tensor { return wrap(op.cat(tensors, dim)); }
/** Joins same-shaped tensors along a new dimension `dim`. */
export function stack(tensors: Tensor[], dim = 0): Tensor { return wrap(op.stack(tensors, dim)); }
/** Elementwise condition ? a : b (broadcasting; a or b may be numbers). */
export function where(condition: Tensor, a: TensorLike, b: TensorLike): Tensor {
  if (typeof a === 'number' && typeof b === 'number') {
    throw new TypeError('where() needs at least one tensor branch');
  }
  if (typeof b === 'number') return wrap(op.whereScalarOther(condition, a, b));
  if (typeof a === 'number') return wrap(op.whereScalarSelf(condition, a, b));
  return wrap(op.where(condition, a, b));
}
