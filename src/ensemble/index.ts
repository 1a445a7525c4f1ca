/**
 * Self-ensembles and their aggregation: heads on intermediate layers, CrossMax (Algorithm 1 of Fort &
 * Lakshminarayanan 2024) and the other aggregators, the model configuration, presets, and model files.
 *
 * @module crossmax/ensemble
 */
export * from './aggregators.js';
export * from './crossmax.js';
export * from './aggregator-spec.js';
export * from './heads.js';
export * from './input-adapter.js';
export * from './config.js';
export * from './self-ensemble.js';
export * from './presets.js';
export * from './model-file.js';
