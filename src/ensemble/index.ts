export * from './aggregators.js';
export * from './heads.js';
export * from './self-ensemble.js';
export * from './presets.js';
export * from './model-file.js';
