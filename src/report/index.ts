/**
 * How results are shown: PNG images, image grids, SVG/PNG line charts, JSON results and JSON Lines logs, and
 * one-page HTML reports for training, robustness and generation.
 *
 * @module crossmax/report
 */
// How results are shown: PNG images, image grids, line charts (SVG, rasterised to PNG by resvg for places
// without SVG), JSON results, and one-page HTML reports that combine them.
//
// Text goes in HTML, not in pixels: a grid PNG (imageGrid) is a bare picture for quick looks and READMEs,
// while images that need captions (label, prediction, confidence, ε) go into HtmlReport.gallery, which writes
// one PNG per image and sets each caption under its image as HTML (searchable, selectable, any script).
export * from './png.js';
export * from './image-grid.js';
export * from './chart.js';
export * from './html.js';
// Results as JSON other tools read (written atomically) and the JSON Lines log: util/json.ts, below every layer.
export * from '../util/json.js';
export { escapeXml } from './escape.js';
export * from './training-report.js';
export * from './robust-report.js';
export * from './generate-report.js';
export * from './compare.js';
