export * from './aggregators.js';
