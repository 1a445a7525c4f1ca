export * from './tensor.js';
export * from './dtype.js';
export * from './scope.js';
export * from './autograd.js';
export * from './runtime.js';
