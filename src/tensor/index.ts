/**
 * Tensors backed by libtorch: the typed `Tensor` API with every ATen op, dtypes, devices, random generators,
 * autograd, and deterministic release of native memory (`tidy` scopes, `keep`, `using`).
 *
 * @module crossmax/tensor
 */
export * from './tensor.js';
export * from './dtype.js';
export * from './scope.js';
export * from './autograd.js';
export * from './runtime.js';
