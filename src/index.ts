/**
 * crossmax: adversarially robust image classification in TypeScript on libtorch, after Fort & Lakshminarayanan 2024,
 * "Ensemble everything everywhere" (multi-resolution prior, self-ensembles of intermediate-layer heads, CrossMax
 * aggregation), with the attacks and the protocol to evaluate that robustness honestly (AutoAttack, adaptive attacks,
 * all-R counting).
 *
 * This entry point re-exports every area's API; each area is also its own entry point (`crossmax/tensor`,
 * `crossmax/nn`, ...), where its names are documented.
 *
 * @module crossmax
 */
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
