// A one-page HTML report: sections are added in reading order, and save() writes the page with its own
// stylesheet (the machines it is read on may be offline: nothing is fetched) plus the PNGs of any images given
// as tensors. Every string from the caller is escaped; there is no way to add raw markup.
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Tensor } from '../tensor/index.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { lineChartSvg, type LineChartSpec } from './chart.js';
import { escapeXml } from './escape.js';
import { toJson } from '../util/json.js';
import { encodePng, type RasterImage } from './png.js';
import { formatEstimate, type AccuracyEstimate } from '../util/statistics.js';

/** A report's title, subtitle, footer date and asset folder. */
export interface HtmlReportOptions {
  /** The page's title (heading and <title>). */
  title: string;
  /** A line under the title. Default none. */
  subtitle?: string;
  /** Shown in the footer when given; left out by default so equal reports are equal files. */
  generatedAt?: Date;
  /**
   * Folder, next to the page, for PNGs of images given as tensors. Default 'assets'. Several reports may share
   * it: each PNG is named by its content, so one report never replaces another's images.
   */
  assetDirectory?: string;
}

/**
 * An image: a path relative to the report's folder (`src`), or pixels that the report writes as a PNG into
 * its asset folder on save(): a tensor [3, H, W] / [H, W] in [0, 1] (encoded at once, so it may be disposed
 * after the call), a RasterImage, or PNG bytes.
 */
export type ImageSource = string | Tensor | RasterImage | Uint8Array;

/** How HtmlReport.image shows one image. */
export interface ImageOptions {
  /** Text under the image. Default none. */
  caption?: string;
  /** Alternative text. Default: the caption. */
  alt?: string;
  /** Displayed width in CSS pixels. Default: the image's own width, at most the page's. */
  width?: number;
  /** Nearest-neighbour enlargement by the browser, for small images such as CIFAR's 32×32. Default true. */
  pixelated?: boolean;
  /** Integer up-scaling of tensor images when encoded (see encodePng). Default 1. */
  scale?: number;
}

/** One image of a gallery with its caption and frame. */
export interface GalleryItem {
  /** The image (see {@link ImageSource}). */
  image: ImageSource;
  /** Several lines are kept ("true: cat" / "pred: dog 0.93"). */
  caption?: string;
  /** A green (correct) or red (wrong) frame with ✓ / ✗, e.g. the prediction on that image. */
  highlight?: 'correct' | 'wrong';
}

/** How HtmlReport.gallery lays its images out. */
export interface GalleryOptions {
  /** Text under the gallery. Default none. */
  caption?: string;
  /** Displayed width of each image in CSS pixels. Default 96 (a 32×32 image at 3×). */
  imageWidth?: number;
  /** See ImageOptions.pixelated. Default true. */
  pixelated?: boolean;
  /** See ImageOptions.scale. Default 1. */
  scale?: number;
  /**
   * Images per row, kept on narrow screens too (images shrink instead): e.g. 3 for clean / adversarial /
   * perturbation rows. Default: as many as fit.
   */
  columns?: number;
}

/** One column of HtmlReport.table: which property, its header and how its cells are written. */
export interface TableColumn {
  /** Property of each row shown in this column. */
  key: string;
  /** Header text. Default: the key. */
  label?: string;
  /**
   * Numbers in [0, 1] shown as percentages (0.723 → "72.3%"). Default false. Cells holding an AccuracyEstimate
   * (util/statistics.ts) are always shown as a percentage with its 95% interval ("72.3% [63.1, 80.0]"); the number
   * of images goes in the header or caption once, not in every cell.
   */
  percent?: boolean;
  /** Digits after the decimal point for numbers. Default: 1 for percentages, else 5 significant digits. */
  decimals?: number;
  /** Custom cell text (escaped like all text); overrides percent and decimals. */
  format?: (value: unknown, row: Record<string, unknown>) => string;
  /** Mark the best value of the column (all of them on a tie) in bold: the largest or the smallest. */
  best?: 'max' | 'min';
}

/** A table of records for HtmlReport.table. */
export interface DataTable {
  /** The columns, in order. */
  columns: readonly (TableColumn | string)[];
  /** One object per row, keyed as the columns. */
  rows: readonly Record<string, unknown>[];
  /** Text under the table. Default none. */
  caption?: string;
}

/** A self-contained one-page HTML report, built section by section and written by save(). */
export class HtmlReport {
  /** The page's title. */
  readonly title: string;
  /** The line under the title, if any. */
  readonly subtitle: string | undefined;
  private readonly generatedAt: Date | undefined;
  private readonly assetDirectory: string;
  private readonly sections: string[] = [];
  private readonly assets = new Map<string, Uint8Array>();
  private readonly ids = new Set<string>();

  constructor(options: HtmlReportOptions) {
    this.title = options.title;
    this.subtitle = options.subtitle;
    this.generatedAt = options.generatedAt;
    this.assetDirectory = options.assetDirectory ?? 'assets';
    if (!/^[A-Za-z0-9._-]+$/.test(this.assetDirectory) || this.assetDirectory.startsWith('.')) {
      throw new RangeError(`assetDirectory must be a plain folder name, got '${this.assetDirectory}'`);
    }
  }

  /** A section heading (level 2, or 3 for a sub-heading), with an id for links (#accuracy-vs-eps). */
  heading(text: string, options: { level?: 2 | 3 } = {}): this {
    const level = options.level ?? 2;
    this.sections.push(`<h${level} id="${this.uniqueId(text)}">${escapeXml(text)}</h${level}>`);
    return this;
  }

  /** A paragraph of plain text (escaped); returns this. */
  paragraph(text: string): this {
    this.sections.push(`<p>${escapeXml(text)}</p>`);
    return this;
  }

  /** Settings or summary numbers as a two-column table. */
  keyValues(entries: Record<string, unknown> | readonly (readonly [string, unknown])[], options: { title?: string } = {}): this {
    const pairs = Array.isArray(entries) ? entries as readonly (readonly [string, unknown])[] : Object.entries(entries);
    const rows = pairs.map(([k, v]) => `<tr><th scope="row">${escapeXml(k)}</th><td>${escapeXml(formatValue(v))}</td></tr>`);
    const caption = options.title ? `<caption>${escapeXml(options.title)}</caption>` : '';
    this.sections.push(`<div class="table-wrap"><table class="key-values">${caption}<tbody>${rows.join('')}</tbody></table></div>`);
    return this;
  }

  /** A table of records (one row per model, attack or ε), numbers aligned and optionally the best marked. */
  table(table: DataTable): this {
    const columns = table.columns.map((c): TableColumn => (typeof c === 'string' ? { key: c } : c));
    const numeric = columns.map((c) => table.rows.some((r) => isNumeric(r[c.key])) && table.rows.every((r) => r[c.key] === undefined || r[c.key] === null || isNumeric(r[c.key])));
    const best = columns.map((c) => bestValue(c, table.rows));
    const head = columns.map((c, j) => `<th scope="col"${numeric[j] ? ' class="num"' : ''}>${escapeXml(c.label ?? c.key)}</th>`).join('');
    const body = table.rows.map((row) => {
      const cells = columns.map((c, j) => {
        const value = row[c.key];
        const classes = [numeric[j] ? 'num' : '', best[j] !== undefined && numberOf(value) === best[j] ? 'best' : ''].filter(Boolean).join(' ');
        return `<td${classes ? ` class="${classes}"` : ''}>${escapeXml(formatCell(c, value, row))}</td>`;
      });
      return `<tr>${cells.join('')}</tr>`;
    });
    const caption = table.caption ? `<caption>${escapeXml(table.caption)}</caption>` : '';
    this.sections.push(`<div class="table-wrap"><table class="data">${caption}<thead><tr>${head}</tr></thead><tbody>${body.join('')}</tbody></table></div>`);
    return this;
  }

  /** One image with an optional caption; returns this. */
  image(source: ImageSource, options: ImageOptions = {}): this {
    const src = this.sourceOf(source, options.scale ?? 1);
    const style = options.width !== undefined ? ` style="width:${checkedWidth(options.width)}px"` : '';
    const pixelated = (options.pixelated ?? true) ? ' class="pixelated"' : '';
    const alt = options.alt ?? options.caption ?? '';
    const caption = options.caption ? `<figcaption>${multiline(options.caption)}</figcaption>` : '';
    this.sections.push(`<figure class="image"><img src="${escapeXml(src)}" alt="${escapeXml(alt)}"${pixelated}${style}>${caption}</figure>`);
    return this;
  }

  /** Images in a responsive grid, each with its caption under it and an optional correct/wrong frame. */
  gallery(items: readonly GalleryItem[], options: GalleryOptions = {}): this {
    const width = checkedWidth(options.imageWidth ?? 96);
    const pixelated = (options.pixelated ?? true) ? ' class="pixelated"' : '';
    const cells = items.map((item) => {
      const src = this.sourceOf(item.image, options.scale ?? 1);
      const mark = item.highlight === 'correct' ? '<span class="mark" aria-label="correct">✓</span>'
        : item.highlight === 'wrong' ? '<span class="mark" aria-label="wrong">✗</span>' : '';
      const highlight = item.highlight === 'correct' || item.highlight === 'wrong' ? ` ${item.highlight}` : '';
      const caption = item.caption || mark ? `<figcaption>${mark}${item.caption ? multiline(item.caption) : ''}</figcaption>` : '';
      return `<figure class="cell${highlight}"><img src="${escapeXml(src)}" alt="${escapeXml(item.caption ?? '')}"${pixelated}>${caption}</figure>`;
    });
    const caption = options.caption ? `<p class="caption">${escapeXml(options.caption)}</p>` : '';
    const columns = options.columns;
    if (columns !== undefined && !(Number.isInteger(columns) && columns > 0)) throw new RangeError(`columns must be a positive integer, got ${columns}`);
    const classes = columns === undefined ? 'gallery' : 'gallery fixed';
    const style = columns === undefined ? `--cell:${width}px` : `--cell:${width}px;--columns:${columns}`;
    this.sections.push(`<div class="${classes}" style="${style}">${cells.join('')}</div>${caption}`);
    return this;
  }

  /** A line chart, inlined as SVG (it scales with the page). */
  chart(spec: LineChartSpec, options: { caption?: string } = {}): this {
    const caption = options.caption ? `<figcaption>${multiline(options.caption)}</figcaption>` : '';
    this.sections.push(`<figure class="chart">${lineChartSvg(spec)}${caption}</figure>`);
    return this;
  }

  /** A value as indented JSON (configuration, raw results). */
  json(value: unknown, options: { caption?: string; sortKeys?: boolean } = {}): this {
    const caption = options.caption ? `<p class="caption">${escapeXml(options.caption)}</p>` : '';
    this.sections.push(`<pre class="json">${escapeXml(toJson(value, { sortKeys: options.sortKeys ?? false }))}</pre>${caption}`);
    return this;
  }

  /** A highlighted box of warnings (e.g. signs of gradient masking); nothing is added when the list is empty. */
  warnings(messages: readonly string[], options: { title?: string } = {}): this {
    if (messages.length === 0) return this;
    const items = messages.map((m) => `<li>${escapeXml(m)}</li>`).join('');
    this.sections.push(`<aside class="warnings" role="note"><h3>⚠ ${escapeXml(options.title ?? 'Warnings')}</h3><ul>${items}</ul></aside>`);
    return this;
  }

  /** The whole page. */
  toHtml(): string {
    const subtitle = this.subtitle ? `<p class="subtitle">${escapeXml(this.subtitle)}</p>` : '';
    const generated = this.generatedAt ? ` on ${escapeXml(this.generatedAt.toISOString())}` : '';
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeXml(this.title)}</title>
<style>${STYLESHEET}</style>
</head>
<body>
<header><h1>${escapeXml(this.title)}</h1>${subtitle}</header>
<main>
${this.sections.join('\n')}
</main>
<footer>Generated by crossmax${generated}.</footer>
</body>
</html>
`;
  }

  /**
   * Writes the page to `dir/fileName` (creating `dir`), each file atomically; images first, so the page never
   * points at a missing file. Returns the page's path.
   */
  save(dir: string, fileName = 'index.html'): string {
    mkdirSync(dir, { recursive: true });
    if (this.assets.size > 0) {
      mkdirSync(join(dir, this.assetDirectory), { recursive: true });
      for (const [name, bytes] of this.assets) writeFileAtomic(join(dir, name), bytes);
    }
    const path = join(dir, fileName);
    writeFileAtomic(path, this.toHtml());
    return path;
  }

  private sourceOf(source: ImageSource, scale: number): string {
    if (typeof source === 'string') return source;
    if (source instanceof Uint8Array && !isPng(source)) throw new TypeError('image bytes are not a PNG file');
    const bytes = source instanceof Uint8Array ? source : encodePng(source, { scale });
    // Named by content, not by position: `crossmax demo` writes index.html, robust.html and generate.html into one
    // folder, and numbered names (image-0001.png) made the last report written replace the others' pictures.
    // Equal images share one file, whose bytes are the same whichever report writes it.
    const name = `${this.assetDirectory}/${createHash('sha256').update(bytes).digest('hex').slice(0, 20)}.png`;
    this.assets.set(name, bytes);
    return name;
  }

  private uniqueId(text: string): string {
    const base = text.toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'section';
    let id = base;
    for (let k = 2; this.ids.has(id); k++) id = `${base}-${k}`;
    this.ids.add(id);
    return id;
  }
}

function isPng(bytes: Uint8Array): boolean {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  return bytes.length > signature.length && signature.every((b, i) => bytes[i] === b);
}

function checkedWidth(width: number): number {
  if (!(Number.isFinite(width) && width > 0)) throw new RangeError(`image width must be a positive number of pixels, got ${width}`);
  return Math.round(width);
}

/** Escaped text whose line breaks are kept. */
function multiline(text: string): string {
  return text.split('\n').map(escapeXml).join('<br>');
}

/** Plain values for key-value tables: numbers to 5 significant digits, objects as JSON. */
function formatValue(value: unknown): string {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'number') return formatNumber(value);
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) return value.toISOString();
  return toJson(value, { indent: 0 });
}

function formatNumber(value: number, decimals?: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (decimals !== undefined) return value.toFixed(decimals);
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
  return String(Number(value.toPrecision(5)));
}

/** An accuracy with its interval, as util/statistics.ts makes them. */
export function isAccuracyEstimate(value: unknown): value is AccuracyEstimate {
  const v = value as AccuracyEstimate | null;
  return typeof v === 'object' && v !== null && typeof v.value === 'number' && typeof v.low === 'number' && typeof v.high === 'number' && typeof v.n === 'number';
}

function isNumeric(value: unknown): boolean {
  return typeof value === 'number' || isAccuracyEstimate(value);
}

/** A cell's number: the value itself, or an estimate's point value. */
function numberOf(value: unknown): unknown {
  return isAccuracyEstimate(value) ? value.value : value;
}

function formatCell(column: TableColumn, value: unknown, row: Record<string, unknown>): string {
  if (column.format) return column.format(value, row);
  // A narrow column breaks the cell between the value and its interval, never inside the brackets.
  if (isAccuracyEstimate(value)) return formatEstimate(value, { decimals: column.decimals ?? 1, showN: false }).replace(', ', ',\u00a0');
  if (typeof value !== 'number') return formatValue(value);
  if (column.percent) return Number.isFinite(value) ? `${(value * 100).toFixed(column.decimals ?? 1)}%` : String(value);
  return formatNumber(value, column.decimals);
}

/** The best finite number of a column, or undefined when it has fewer than two to compare. */
function bestValue(column: TableColumn, rows: readonly Record<string, unknown>[]): number | undefined {
  if (!column.best) return undefined;
  const values = rows.map((r) => numberOf(r[column.key])).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  if (values.length < 2) return undefined;
  return column.best === 'max' ? Math.max(...values) : Math.min(...values);
}

// Self-contained: system fonts only, no external resources. Narrow screens get full-width figures and
// horizontally scrolling tables.
const STYLESHEET = `
:root { --fg: #1d2125; --muted: #5f6b76; --line: #d9dee3; --soft: #f5f7f9; --accent: #1f77b4;
  --good: #2ca02c; --bad: #d62728; --warn-bg: #fff6e0; --warn-line: #e0a100; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; line-height: 1.5;
  font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; }
header, main, footer { max-width: 1100px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 28px; padding-bottom: 4px; }
h1 { font-size: 1.7em; margin: 0 0 4px; line-height: 1.25; }
h2 { font-size: 1.3em; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.08em; margin: 22px 0 8px; }
.subtitle { color: var(--muted); margin: 0; }
p { margin: 8px 0 12px; max-width: 75ch; }
.caption, figcaption { color: var(--muted); font-size: 0.88em; }
.table-wrap { overflow-x: auto; margin: 10px 0 18px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0 6px; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #aeb6be; white-space: nowrap; }
table.data tbody tr:nth-child(even) { background: var(--soft); }
table.key-values th { font-weight: 600; color: var(--muted); white-space: nowrap; }
td.num, th.num { text-align: right; }
td.best { font-weight: 700; background: #e3f0fa; }
figure { margin: 12px 0 20px; }
figure.image img { max-width: 100%; height: auto; display: block; }
figure.chart { max-width: 100%; }
figure.chart svg { max-width: 100%; height: auto; display: block; }
img.pixelated { image-rendering: pixelated; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--cell), 1fr)); gap: 12px; margin: 12px 0; }
.gallery.fixed { grid-template-columns: repeat(var(--columns), minmax(0, calc(var(--cell) + 12px))); }
.gallery figure.cell { margin: 0; padding: 4px; border: 2px solid transparent; border-radius: 4px; max-width: calc(var(--cell) + 12px); }
.gallery figure.cell img { width: 100%; max-width: var(--cell); height: auto; display: block; }
.gallery figure.correct { border-color: var(--good); }
.gallery figure.wrong { border-color: var(--bad); }
.gallery figcaption { font-size: 0.8em; line-height: 1.3; margin-top: 4px; overflow-wrap: anywhere; }
.mark { font-weight: 700; margin-right: 4px; }
.correct .mark { color: var(--good); }
.wrong .mark { color: var(--bad); }
pre.json { background: var(--soft); border: 1px solid var(--line); border-radius: 4px; padding: 10px 12px;
  overflow: auto; max-height: 480px; font-size: 0.85em; line-height: 1.4; }
.warnings { background: var(--warn-bg); border-left: 4px solid var(--warn-line); border-radius: 4px; padding: 8px 16px; margin: 14px 0; }
.warnings h3 { margin: 4px 0; font-size: 1em; }
.warnings ul { margin: 4px 0 6px; padding-left: 20px; }
footer { color: var(--muted); font-size: 0.8em; margin-top: 40px; padding-top: 10px; padding-bottom: 24px; border-top: 1px solid var(--line); }
@media (max-width: 600px) { body { font-size: 14px; } header, main, footer { padding: 0 12px; } th, td { padding: 4px 8px; } }
`;
