// crossmax: the everyday API in one import (`import { ... } from 'crossmax'`). Each area is also its own entry
// point (`crossmax/tensor`, `crossmax/nn`, `crossmax/attacks`, ...: the package's `exports` map), for code that wants
// one area's names only.
export * from './tensor/index.js';
export * from './nn/index.js';
export * from './optim/index.js';
export * from './serialize/safetensors.js';
export * from './data/index.js';
export * from './prior/index.js';
export * from './models/index.js';
export * from './ensemble/index.js';
export * from './train/index.js';
export * from './attacks/index.js';
export * from './robustness/index.js';
export * from './generate/index.js';
export * from './report/index.js';
