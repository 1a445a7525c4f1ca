#!/usr/bin/env node
// Wilson 95% intervals for accuracies printed as percentages, where only the percentage and the number of images
// are left (README figures whose per-image results were not kept). Uses the compiled statistics module (run
// `npx tsc -p tsconfig.json` first), so the numbers are the ones crossmax's reports print.
//
//   node scripts/readme-intervals.mjs 77.0/100 15.0%/100 47.3/10000
//   node scripts/readme-intervals.mjs --n 200 78.6 50.5 6.5
//   printf '78.6 200\n50.5 1000\n' | node scripts/readme-intervals.mjs -
//   node scripts/readme-intervals.mjs --paired 200 12 3     (n images, only-A right, only-B right → McNemar's p)
//
// Each figure is PCT/N (or PCT with --n N); the count behind it is round(PCT · N / 100), and a percentage that no
// count of N gives at the printed precision is refused. Where several counts round to the same percentage (N above
// 1000 with one decimal) the interval is that of the nearest count and the line says which counts were possible.
// Mean-over-R figures are means of per-image fractions, not proportions: they need the per-image counts (give the
// results JSON to `crossmax compare` or read its `intervals`), so do not pass them here.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'src', 'util', 'statistics.js');
if (!existsSync(compiled)) {
  console.error(`readme-intervals: ${compiled} is missing; build first: npx tsc -p tsconfig.json`);
  process.exit(2);
}
const { formatEstimate, formatP, mcnemarExactP, proportionEstimate } = await import(pathToFileURL(compiled).href);

const USAGE = 'usage: node scripts/readme-intervals.mjs [--n N] PCT[/N] ... | - (lines "PCT N" on stdin) | --paired N ONLY_A ONLY_B';

function fail(message) {
  console.error(`readme-intervals: ${message}\n${USAGE}`);
  process.exit(2);
}

function positiveInteger(text, what) {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) fail(`${what} must be a positive integer, got '${text}'`);
  return n;
}

/** The line for one figure: "78.6% of 200 → 78.6% [72.4, 83.7] (n = 200)". */
function figure(text, defaultN) {
  const match = /^\s*(-?[0-9]*\.?[0-9]+)\s*%?\s*(?:[/ ]\s*([0-9]+))?\s*$/.exec(text);
  if (!match) fail(`cannot read '${text}' as PCT/N`);
  const pct = Number(match[1]);
  const n = match[2] !== undefined ? positiveInteger(match[2], 'N') : defaultN;
  if (n === undefined) fail(`'${text}' has no number of images: write PCT/N or give --n N`);
  if (!(pct >= 0 && pct <= 100)) fail(`'${text}': a percentage must be in [0, 100]`);
  const decimals = (match[1].split('.')[1] ?? '').length;
  const half = 0.5 * 10 ** -decimals;
  // Every count whose percentage prints as the given figure at its precision.
  const possible = [];
  for (let k = Math.max(0, Math.floor(((pct - half) * n) / 100)); k <= Math.min(n, Math.ceil(((pct + half) * n) / 100)); k++) {
    if (Math.abs((100 * k) / n - pct) <= half + 1e-9) possible.push(k);
  }
  if (possible.length === 0) throw new RangeError(`'${text}': no count of ${n} images gives ${match[1]}% (a mean over R? that needs the per-image counts; else check N)`);
  const k = possible.reduce((best, c) => (Math.abs((100 * c) / n - pct) < Math.abs((100 * best) / n - pct) ? c : best));
  const note = possible.length > 1 ? `  (counts ${possible[0]}–${possible.at(-1)} all print as ${match[1]}%; interval of ${k})` : '';
  return `${match[1]}% of ${n} → ${formatEstimate(proportionEstimate(k, n))}${note}`;
}

const args = process.argv.slice(2);
if (args.length === 0 || args.includes('--help') || args.includes('-h')) {
  console.log(USAGE);
  process.exit(args.length === 0 ? 2 : 0);
}
if (args[0] === '--paired') {
  if (args.length !== 4) fail('--paired takes N ONLY_A ONLY_B');
  const n = positiveInteger(args[1], 'N');
  const onlyA = Number(args[2]);
  const onlyB = Number(args[3]);
  if (![onlyA, onlyB].every((v) => Number.isInteger(v) && v >= 0) || onlyA + onlyB > n) fail('ONLY_A and ONLY_B must be counts that add up to at most N');
  // Newcombe's interval needs the whole 2×2 table (how the concordant images split between both right and both
  // wrong); the discordant counts give the difference and McNemar's test only.
  const difference = (100 * (onlyA - onlyB)) / n;
  console.log(`A − B = ${difference >= 0 ? '+' : ''}${difference.toFixed(1)} points of ${n} images, McNemar's exact p = ${formatP(mcnemarExactP(onlyA, onlyB))} (${onlyA} images only A gets right, ${onlyB} only B)`);
  console.log('(no interval from discordant counts alone: crossmax compare A.json B.json gives Newcombe\'s interval from the per-image results)');
  process.exit(0);
}
let defaultN;
const figures = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--n') {
    defaultN = positiveInteger(args[++i], '--n');
  } else if (args[i] === '-') {
    figures.push(...readFileSync(0, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')));
  } else if (args[i].startsWith('--')) {
    fail(`unknown option ${args[i]}`);
  } else {
    figures.push(args[i]);
  }
}
let refused = 0;
for (const text of figures) {
  try {
    console.log(figure(text, defaultN));
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    console.log(`${text.trim()} → refused: ${err.message}`);
    refused++;
  }
}
process.exit(refused > 0 ? 1 : 0);
