// Line charts (training curves, accuracy against ε per attack), drawn once as standalone SVG from a layout
// computed here in CSS pixels; where a PNG is needed (a terminal image viewer, some READMEs), resvg rasterises
// that same SVG.
import { Resvg } from '@resvg/resvg-js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { escapeXml } from './escape.js';

/** How an axis maps values: linearly or logarithmically (base 10). */
export type AxisScale = 'linear' | 'log';

/** One line of a chart. */
export interface ChartSeries {
  /** Shown in the legend and as the path's data-series attribute. */
  name: string;
  /** x values of the points, in drawing order. */
  x: readonly number[];
  /** Same length as x; null or NaN leaves a gap in the line. */
  y: readonly (number | null)[];
  /** '#rgb' or '#rrggbb'. Default: the next colour of matplotlib's tab10 palette. */
  color?: string;
  /** Draw a dot at every point. Default: the chart's `markers`. */
  markers?: boolean;
}

/** A line chart: series, labels, axes and size (see {@link lineChartSvg} and {@link lineChartPng}). */
export interface LineChartSpec {
  /** The lines, drawn in order. */
  series: readonly ChartSeries[];
  /** Title above the plot. Default none. */
  title?: string;
  /** x-axis label. Default none. */
  xLabel?: string;
  /** y-axis label. Default none. */
  yLabel?: string;
  /** Default 'linear'. A log axis needs every value on it to be positive. */
  xScale?: AxisScale;
  /** Default 'linear'. A log axis needs every value on it to be positive. */
  yScale?: AxisScale;
  /** Axis limits. Default: the data's extent, widened to round tick values (linear) or by 4% (log). */
  xRange?: readonly [number, number];
  /** y-axis limits. Default: the data's extent, widened as for x. */
  yRange?: readonly [number, number];
  /** Dots at data points. Default: on for series of at most 30 points. */
  markers?: boolean;
  /** 'auto' (default): none for a single series, else right of the plot, or below it when names are long. */
  legend?: 'auto' | 'right' | 'bottom' | 'none';
  /** Size in CSS pixels. Default 640 × 400. */
  width?: number;
  /** Height in CSS pixels. Default 400. */
  height?: number;
  /** Tick label text. Default: round numbers with the decimals the tick step needs. */
  xTickFormat?: (value: number) => string;
  /** y tick label text. Default: round numbers with the decimals the tick step needs. */
  yTickFormat?: (value: number) => string;
}

/** matplotlib's tab10, the colours readers of ML papers know. */
export const CHART_PALETTE = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
] as const;

const FONT_FAMILY = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
const SIZE = { title: 16, label: 13, tick: 11, legend: 12 } as const;
const COLOR = { background: '#ffffff', text: '#222222', tick: '#555555', grid: '#e6e6e6', frame: '#888888' } as const;
const LINE_WIDTH = 2;
const MARKER_RADIUS = 3.25;
const TICK_LENGTH = 5;

// ---- layout ------------------------------------------------------------------------------------------------

interface Rect { x: number; y: number; width: number; height: number }
interface TextItem {
  text: string;
  x: number;
  /** Baseline. */
  y: number;
  size: number;
  anchor: 'start' | 'middle' | 'end';
  color: string;
  className: string;
  bold?: boolean;
  /** Rotated -90° about (x, y): reads bottom to top. */
  vertical?: boolean;
}
interface Segment { x1: number; y1: number; x2: number; y2: number; color: string; width: number; className: string }
interface SeriesGeometry { name: string; color: string; polylines: [number, number][][]; markers: [number, number][] }
interface LegendEntry { name: string; color: string; markers: boolean; x: number; y: number }

interface ChartLayout {
  width: number;
  height: number;
  title: string | undefined;
  plot: Rect;
  /** Series are clipped to the plot, widened so dots on its edge stay whole. */
  clip: Rect;
  texts: TextItem[];
  gridLines: Segment[];
  tickMarks: Segment[];
  series: SeriesGeometry[];
  legend: LegendEntry[];
}

interface Axis {
  scale: AxisScale;
  domain: [number, number];
  ticks: number[];
  labels: string[];
}

/** Approximate advance of sans-serif text; generous, so margins computed from it hold the real text. */
function textWidth(text: string, size: number): number {
  return [...text].length * size * 0.6;
}

function layoutChart(spec: LineChartSpec): ChartLayout {
  const width = spec.width ?? 640;
  const height = spec.height ?? 400;
  if (!(width >= 160 && height >= 120)) throw new RangeError(`chart size ${width}×${height} is too small (at least 160×120)`);
  const series = spec.series.map((s, i) => checkSeries(s, i, spec));
  const xScale = spec.xScale ?? 'linear';
  const yScale = spec.yScale ?? 'linear';
  const xValues = series.flatMap((s) => s.points.map((p) => p[0]));
  const yValues = series.flatMap((s) => s.points.filter((p) => p[1] !== null).map((p) => p[1] as number));

  const top = 10 + (spec.title ? SIZE.title + 12 : 6);
  const tickLabelBaseline = TICK_LENGTH + 4 + SIZE.tick;
  let bottom = tickLabelBaseline + 4 + (spec.xLabel ? 8 + SIZE.label + 3 : 0) + 10;

  const legendMode = legendPlacement(spec, series);
  const legendSwatch = 22;
  const legendWidth = 12 + legendSwatch + 6 + Math.max(0, ...series.map((s) => textWidth(s.name, SIZE.legend)));
  const right = 16 + (legendMode === 'right' ? legendWidth : 0);

  const yAxis = buildAxis('y', yValues, yScale, spec.yRange, Math.max(2, Math.round((height - top - bottom) / 60)), spec.yTickFormat);
  const left = 10 + (spec.yLabel ? SIZE.label + 8 : 0) + Math.max(0, ...yAxis.labels.map((l) => textWidth(l, SIZE.tick))) + TICK_LENGTH + 4;
  const plotWidth = width - left - right;

  // Bottom legend: entries flow left to right and wrap at the plot's width.
  const legend: LegendEntry[] = [];
  if (legendMode === 'bottom') {
    const rowHeight = 18;
    let x = left;
    let row = 0;
    const positions: [number, number][] = [];
    for (const s of series) {
      const entryWidth = legendSwatch + 6 + textWidth(s.name, SIZE.legend) + 18;
      if (x > left && x + entryWidth > left + plotWidth) { x = left; row++; }
      positions.push([x, row]);
      x += entryWidth;
    }
    bottom += 6 + (row + 1) * rowHeight;
    const firstRowY = height - 10 - (row + 1) * rowHeight + rowHeight / 2;
    series.forEach((s, i) => legend.push({ name: s.name, color: s.color, markers: s.markers, x: positions[i]![0], y: firstRowY + positions[i]![1] * rowHeight }));
  }

  const plot: Rect = { x: Math.round(left), y: Math.round(top), width: Math.round(plotWidth), height: Math.round(height - top - bottom) };
  if (plot.width < 40 || plot.height < 40) throw new RangeError('chart too small for its labels and legend: make it larger or the names shorter');
  if (legendMode === 'right') {
    series.forEach((s, i) => legend.push({ name: s.name, color: s.color, markers: s.markers, x: plot.x + plot.width + 14, y: plot.y + 8 + i * 18 }));
  }

  // X ticks: as many as fit without their labels touching.
  let xAxis = buildAxis('x', xValues, xScale, spec.xRange, Math.max(2, Math.floor(plot.width / 90)), spec.xTickFormat);
  for (let target = Math.floor(plot.width / 90); target > 2; target--) {
    xAxis = buildAxis('x', xValues, xScale, spec.xRange, target, spec.xTickFormat);
    if (xLabelsFit(xAxis, plot)) break;
  }

  const px = (v: number) => plot.x + fraction(xAxis, v) * plot.width;
  const py = (v: number) => plot.y + plot.height - fraction(yAxis, v) * plot.height;
  const crisp = (v: number) => Math.round(v) + 0.5;
  const texts: TextItem[] = [];
  const gridLines: Segment[] = [];
  const tickMarks: Segment[] = [];
  const plotBottom = plot.y + plot.height;

  xAxis.ticks.forEach((tick, i) => {
    const x = crisp(px(tick));
    gridLines.push({ x1: x, y1: plot.y, x2: x, y2: plotBottom, color: COLOR.grid, width: 1, className: 'grid' });
    tickMarks.push({ x1: x, y1: plotBottom, x2: x, y2: plotBottom + TICK_LENGTH, color: COLOR.frame, width: 1, className: 'tick-mark' });
    texts.push({ text: xAxis.labels[i]!, x, y: plotBottom + tickLabelBaseline, size: SIZE.tick, anchor: 'middle', color: COLOR.tick, className: 'tick x-tick' });
  });
  yAxis.ticks.forEach((tick, i) => {
    const y = crisp(py(tick));
    gridLines.push({ x1: plot.x, y1: y, x2: plot.x + plot.width, y2: y, color: COLOR.grid, width: 1, className: 'grid' });
    tickMarks.push({ x1: plot.x - TICK_LENGTH, y1: y, x2: plot.x, y2: y, color: COLOR.frame, width: 1, className: 'tick-mark' });
    texts.push({ text: yAxis.labels[i]!, x: plot.x - TICK_LENGTH - 4, y: y + SIZE.tick * 0.35, size: SIZE.tick, anchor: 'end', color: COLOR.tick, className: 'tick y-tick' });
  });
  if (spec.title) {
    texts.push({ text: spec.title, x: width / 2, y: 10 + SIZE.title, size: SIZE.title, anchor: 'middle', color: COLOR.text, className: 'title', bold: true });
  }
  if (spec.xLabel) {
    texts.push({ text: spec.xLabel, x: plot.x + plot.width / 2, y: plotBottom + tickLabelBaseline + 8 + SIZE.label, size: SIZE.label, anchor: 'middle', color: COLOR.text, className: 'axis-label x-label' });
  }
  if (spec.yLabel) {
    texts.push({ text: spec.yLabel, x: 10 + SIZE.label, y: plot.y + plot.height / 2, size: SIZE.label, anchor: 'middle', color: COLOR.text, className: 'axis-label y-label', vertical: true });
  }
  for (const entry of legend) {
    texts.push({ text: entry.name, x: entry.x + legendSwatch + 6, y: entry.y + SIZE.legend * 0.35, size: SIZE.legend, anchor: 'start', color: COLOR.text, className: 'legend-label' });
  }

  const geometry = series.map((s): SeriesGeometry => {
    const polylines: [number, number][][] = [];
    let current: [number, number][] = [];
    for (const [x, y] of s.points) {
      if (y === null) {
        if (current.length > 0) polylines.push(current);
        current = [];
      } else {
        current.push([round2(px(x)), round2(py(y))]);
      }
    }
    if (current.length > 0) polylines.push(current);
    // A point between two gaps has no line to show it, so it always gets a dot.
    const markers = s.markers ? polylines.flat() : polylines.filter((line) => line.length === 1).flat();
    return { name: s.name, color: s.color, polylines, markers };
  });

  const margin = MARKER_RADIUS + 1;
  return {
    width, height, title: spec.title, plot,
    clip: { x: plot.x - margin, y: plot.y - margin, width: plot.width + 2 * margin, height: plot.height + 2 * margin },
    texts, gridLines, tickMarks, series: geometry, legend,
  };
}

interface CheckedSeries { name: string; color: string; markers: boolean; points: [number, number | null][] }

function checkSeries(s: ChartSeries, index: number, spec: LineChartSpec): CheckedSeries {
  const label = `series ${index} ('${s.name}')`;
  if (typeof s.name !== 'string') throw new TypeError(`series ${index} needs a name`);
  if (s.x.length !== s.y.length) throw new RangeError(`${label}: x has ${s.x.length} values, y has ${s.y.length}`);
  const color = s.color ?? CHART_PALETTE[index % CHART_PALETTE.length]!;
  parseHexColor(color, label);
  const points: [number, number | null][] = [];
  for (let i = 0; i < s.x.length; i++) {
    const x = s.x[i]!;
    const yRaw = s.y[i];
    const y = yRaw === null || yRaw === undefined || Number.isNaN(yRaw) ? null : yRaw;
    if (!Number.isFinite(x)) throw new RangeError(`${label}: x[${i}] is ${x}; x values must be finite`);
    if (y !== null && !Number.isFinite(y)) throw new RangeError(`${label}: y[${i}] is ${y}; use null or NaN for a gap`);
    if (spec.xScale === 'log' && x <= 0) {
      throw new RangeError(`${label}: x[${i}] = ${x} cannot be shown on a log-scale x axis (leave it out or use a linear axis)`);
    }
    if (spec.yScale === 'log' && y !== null && y <= 0) {
      throw new RangeError(`${label}: y[${i}] = ${y} cannot be shown on a log-scale y axis`);
    }
    points.push([x, y]);
  }
  return { name: s.name, color, markers: s.markers ?? spec.markers ?? s.x.length <= 30, points };
}

function legendPlacement(spec: LineChartSpec, series: CheckedSeries[]): 'right' | 'bottom' | 'none' {
  const mode = spec.legend ?? 'auto';
  if (mode === 'none' || series.length === 0) return 'none';
  if (mode === 'right' || mode === 'bottom') return mode;
  if (series.length < 2) return 'none';
  const widest = Math.max(...series.map((s) => textWidth(s.name, SIZE.legend)));
  return widest + 40 > (spec.width ?? 640) * 0.3 ? 'bottom' : 'right';
}

function xLabelsFit(axis: Axis, plot: Rect): boolean {
  const pos = axis.ticks.map((t) => fraction(axis, t) * plot.width);
  for (let i = 1; i < pos.length; i++) {
    const needed = (textWidth(axis.labels[i - 1]!, SIZE.tick) + textWidth(axis.labels[i]!, SIZE.tick)) / 2 + 10;
    if (pos[i]! - pos[i - 1]! < needed) return false;
  }
  return true;
}

function fraction(axis: Axis, v: number): number {
  const t = axis.scale === 'log' ? Math.log10 : (u: number) => u;
  const [lo, hi] = axis.domain;
  return (t(v) - t(lo)) / (t(hi) - t(lo));
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

// ---- ticks ---------------------------------------------------------------------------------------------------

function buildAxis(
  name: 'x' | 'y', values: number[], scale: AxisScale, range: readonly [number, number] | undefined, target: number,
  format: ((v: number) => string) | undefined,
): Axis {
  let domain: [number, number];
  let ticks: number[];
  if (range) {
    const [lo, hi] = range;
    if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo < hi)) throw new RangeError(`${name}Range must be [min, max] with min < max, got [${lo}, ${hi}]`);
    if (scale === 'log' && lo <= 0) throw new RangeError(`${name}Range of a log axis must be positive, got [${lo}, ${hi}]`);
    domain = [lo, hi];
    ticks = scale === 'log' ? logTicks(lo, hi, target) : linearTicks(lo, hi, target).ticks;
  } else if (scale === 'log') {
    let lo = values.length ? Math.min(...values) : 1;
    let hi = values.length ? Math.max(...values) : 10;
    if (lo === hi) { lo /= 2; hi *= 2; }
    const pad = 0.04 * Math.log10(hi / lo);
    domain = [lo / 10 ** pad, hi * 10 ** pad];
    ticks = logTicks(domain[0], domain[1], target);
  } else {
    let lo = values.length ? Math.min(...values) : 0;
    let hi = values.length ? Math.max(...values) : 1;
    if (lo === hi) {
      const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
      lo -= pad;
      hi += pad;
    }
    // Whole-number data (epochs, steps) gets whole-number ticks: no "epoch 2.5".
    const minStep = values.length > 0 && values.every(Number.isInteger) ? 1 : 0;
    const nice = linearTicks(lo, hi, target, minStep);
    domain = [Math.min(lo, nice.niceLo), Math.max(hi, nice.niceHi)];
    ticks = linearTicks(domain[0], domain[1], target, minStep).ticks;
  }
  const labels = format ? ticks.map(format) : defaultLabels(ticks, scale);
  return { scale, domain, ticks, labels };
}

/** Step 1, 2 or 5 × 10^k giving about `target` intervals over [lo, hi] (Heckbert's "nice numbers"). */
export function niceStep(lo: number, hi: number, target: number): number {
  const raw = (hi - lo) / Math.max(1, target);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalized = raw / magnitude;
  const factor = normalized < 1.5 ? 1 : normalized < 3 ? 2 : normalized < 7 ? 5 : 10;
  return factor * magnitude;
}

/** Multiples of a nice step within [lo, hi], and the step-aligned bounds that enclose [lo, hi]. */
export function linearTicks(
  lo: number, hi: number, target: number, minStep = 0,
): { ticks: number[]; step: number; niceLo: number; niceHi: number } {
  const step = Math.max(niceStep(lo, hi, target), minStep);
  const clean = (v: number) => Number(v.toPrecision(12));
  const first = Math.ceil(lo / step - 1e-9);
  const last = Math.floor(hi / step + 1e-9);
  const ticks: number[] = [];
  for (let k = first; k <= last; k++) ticks.push(clean(k * step) + 0); // + 0 turns -0 into 0
  return { ticks, step, niceLo: clean(Math.floor(lo / step + 1e-9) * step), niceHi: clean(Math.ceil(hi / step - 1e-9) * step) };
}

/**
 * Ticks for a log axis over [lo, hi]: powers of ten (every k-th one when there are many decades), or 1-2-5 /
 * 1…9 multiples of them when few powers fall inside; linear ticks when even those are too sparse.
 */
export function logTicks(lo: number, hi: number, target: number): number[] {
  const first = Math.floor(Math.log10(lo));
  const last = Math.ceil(Math.log10(hi));
  const inside = (v: number) => v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9);
  const clean = (v: number) => Number(v.toPrecision(12));
  for (const multiples of [[1], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
    const ticks: number[] = [];
    for (let k = first; k <= last; k++) for (const m of multiples) if (inside(clean(m * 10 ** k))) ticks.push(clean(m * 10 ** k));
    if (multiples.length === 1 && ticks.length > target + 1) {
      const every = Math.ceil((ticks.length - 1) / target);
      // Keep the decades divisible by `every` so the labels are regular (1e-6, 1e-3, 1, ...).
      return ticks.filter((t) => Math.round(Math.log10(t)) % every === 0);
    }
    if (ticks.length >= 3 || (multiples.length === 9 && ticks.length >= 2)) return ticks;
  }
  return linearTicks(lo, hi, target).ticks;
}

function defaultLabels(ticks: number[], scale: AxisScale): string[] {
  if (scale === 'log' || ticks.length < 2) return ticks.map(formatCompact);
  const step = Math.abs(ticks[1]! - ticks[0]!);
  const largest = Math.max(...ticks.map(Math.abs));
  if (largest >= 1e6 || step < 1e-4) return ticks.map(formatCompact);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return ticks.map((t) => (t + 0).toFixed(decimals));
}

/** Shortest readable form: 0.001, 250, 1e-7, 2.5e6. */
export function formatCompact(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  const s = a >= 1e-4 && a < 1e6 ? String(Number(v.toPrecision(6))) : Number(v.toPrecision(6)).toExponential();
  return s.replace('e+', 'e');
}

// ---- SVG -----------------------------------------------------------------------------------------------------

/** The chart as a standalone SVG document (no XML declaration, so it can also be inlined in HTML). */
export function lineChartSvg(spec: LineChartSpec): string {
  const layout = layoutChart(spec);
  const { width, height, plot, clip } = layout;
  const body: string[] = [];
  body.push(`<rect width="${width}" height="${height}" fill="${COLOR.background}"/>`);
  body.push(`<g class="grid">${layout.gridLines.map(svgLine).join('')}</g>`);
  body.push(`<rect class="frame" x="${plot.x + 0.5}" y="${plot.y + 0.5}" width="${plot.width}" height="${plot.height}" fill="none" stroke="${COLOR.frame}" stroke-width="1"/>`);
  body.push(`<g class="ticks">${layout.tickMarks.map(svgLine).join('')}</g>`);
  const clipBody = `<rect x="${clip.x}" y="${clip.y}" width="${clip.width}" height="${clip.height}"/>`;
  // Charts are inlined side by side in one HTML page, so the clip path's id must differ between charts.
  const clipId = `clip-${hashString(JSON.stringify(layout.series) + clipBody)}`;
  body.push(`<defs><clipPath id="${clipId}">${clipBody}</clipPath></defs>`);
  body.push(`<g class="plot-area" clip-path="url(#${clipId})">`);
  for (const s of layout.series) {
    const d = s.polylines.map((line) => line.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${x} ${y}`).join('') + (line.length === 1 ? 'h0' : '')).join('');
    body.push(`<path class="series" data-series="${escapeXml(s.name)}" d="${d}" fill="none" stroke="${s.color}" stroke-width="${LINE_WIDTH}" stroke-linejoin="round" stroke-linecap="round"/>`);
    if (s.markers.length > 0) {
      body.push(`<g class="markers" fill="${s.color}">${s.markers.map(([x, y]) => `<circle cx="${x}" cy="${y}" r="${MARKER_RADIUS}"/>`).join('')}</g>`);
    }
  }
  body.push('</g>');
  if (layout.legend.length > 0) {
    body.push('<g class="legend">');
    for (const e of layout.legend) {
      body.push(`<line x1="${e.x}" y1="${e.y}" x2="${e.x + 22}" y2="${e.y}" stroke="${e.color}" stroke-width="${LINE_WIDTH}" stroke-linecap="round"/>`);
      if (e.markers) body.push(`<circle cx="${e.x + 11}" cy="${e.y}" r="${MARKER_RADIUS}" fill="${e.color}"/>`);
    }
    body.push('</g>');
  }
  for (const t of layout.texts) body.push(svgText(t));
  const title = layout.title ? `<title>${escapeXml(layout.title)}</title>` : '';
  const label = layout.title ? ` aria-label="${escapeXml(layout.title)}"` : '';
  return `<svg xmlns="http://www.w3.org/2000/svg" class="crossmax-chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" `
    + `font-family="${escapeXml(FONT_FAMILY)}" role="img"${label}>${title}\n${body.join('\n')}\n</svg>\n`;
}

function svgLine(s: Segment): string {
  return `<line class="${s.className}" x1="${s.x1}" y1="${s.y1}" x2="${s.x2}" y2="${s.y2}" stroke="${s.color}" stroke-width="${s.width}"/>`;
}

function svgText(t: TextItem): string {
  const anchor = t.anchor === 'start' ? '' : ` text-anchor="${t.anchor}"`;
  const weight = t.bold ? ' font-weight="600"' : '';
  const rotate = t.vertical ? ` transform="rotate(-90 ${round2(t.x)} ${round2(t.y)})"` : '';
  return `<text class="${t.className}" x="${round2(t.x)}" y="${round2(t.y)}" font-size="${t.size}" fill="${t.color}"${anchor}${weight}${rotate}>${escapeXml(t.text)}</text>`;
}

/** FNV-1a, 32 bits, as 8 hex digits: a short stable id. */
function hashString(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

// ---- PNG -----------------------------------------------------------------------------------------------------

/** Settings of {@link lineChartPng}. */
export interface ChartPngOptions {
  /** Device pixels per CSS pixel: 2 (default) gives a 1280 × 800 PNG for the default 640 × 400 chart. */
  pixelRatio?: number;
}

/**
 * Font files resvg may set the chart's text in: the system's fonts (DejaVu Sans on Debian, package
 * fonts-dejavu-core), with DejaVu Sans as the fallback for the SVG's font-family list, which names fonts a
 * browser has. On a system without any font the PNG has no text (the SVG always has it).
 */
const PNG_FONTS = { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' } as const;

/**
 * The chart as PNG bytes: lineChartSvg's drawing rasterised by resvg (anti-aliased lines, text in the system's
 * sans-serif font), so the two formats cannot drift apart.
 */
export function lineChartPng(spec: LineChartSpec, options: ChartPngOptions = {}): Uint8Array {
  const ratio = options.pixelRatio ?? 2;
  if (!Number.isInteger(ratio) || ratio < 1 || ratio > 8) throw new RangeError(`pixelRatio must be an integer in 1..8, got ${ratio}`);
  const svg = new Resvg(lineChartSvg(spec), { fitTo: { mode: 'zoom', value: ratio }, font: PNG_FONTS, background: COLOR.background });
  return new Uint8Array(svg.render().asPng());
}

/** Settings of {@link saveChart}. */
export interface SaveChartOptions extends ChartPngOptions {
  /** Default: from the path's extension, '.png' → PNG, anything else → SVG. */
  format?: 'svg' | 'png';
}

/** Writes the chart to `path` atomically, as SVG or PNG (by extension unless `format` is given). */
export function saveChart(path: string, spec: LineChartSpec, options: SaveChartOptions = {}): void {
  const format = options.format ?? (path.toLowerCase().endsWith('.png') ? 'png' : 'svg');
  writeFileAtomic(path, format === 'png' ? lineChartPng(spec, options) : lineChartSvg(spec));
}

/** '#rgb' or '#rrggbb' to bytes; other CSS colours are refused so that a chart reads the same in every viewer. */
export function parseHexColor(color: string, owner: string): readonly [number, number, number] {
  const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color);
  if (!m) throw new RangeError(`${owner}: colour '${color}' must be '#rgb' or '#rrggbb'`);
  const hex = m[1]!.length === 3 ? [...m[1]!].map((c) => c + c).join('') : m[1]!;
  return [parseInt(hex.slice(0, 2), 16), parseInt(hex.slice(2, 4), 16), parseInt(hex.slice(4, 6), 16)];
}
