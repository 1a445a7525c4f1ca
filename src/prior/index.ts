/**
 * The multi-resolution input prior of Fort & Lakshminarayanan 2024 (section 3): each image is shown to the
 * backbone as a stack of down- and up-sampled copies with noise, jitter and contrast changes.
 *
 * @module crossmax/prior
 */
export * from './multi-resolution-prior.js';
export { rollPerImage } from './roll.js';
export { bicubicResize, bicubicResizeWeights } from './bicubic.js';
