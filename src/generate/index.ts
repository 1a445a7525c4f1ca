/**
 * Classifiers and CLIP as image generators (Direct Ascent Synthesis): the multi-resolution parametrisation,
 * augmentations, objectives, the generation loop and recipe, judging, and class galleries.
 *
 * @module crossmax/generate
 */
// Classifiers and CLIP as image generators: multi-resolution parametrisation, augmentations, objectives, the loop.
export * from './parametrisation.js';
export * from './augment.js';
export * from './objectives.js';
export * from './generate.js';
export * from './gallery.js';
export * from './recipe.js';
export * from './judge.js';
