export * from './multi-resolution-prior.js';
export { rollPerImage } from './roll.js';
export { bicubicResize, bicubicResizeWeights } from './bicubic.js';
