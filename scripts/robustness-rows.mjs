#!/usr/bin/env node
// README's robustness rows from stored results: each robust.json (eval --robust / attack --report) becomes one
// markdown row of *single evaluation / mean over R / all R* figures, each with its 95% interval and the number of
// images, read from the file's own `intervals` (Wilson over images; percentile bootstrap for mean over R), so README
// prints exactly what the report says. Columns: clean, then the accuracy after each named stage, then the worst case.
//
//   node scripts/robustness-rows.mjs results/cifar10-cpu-budget/A-worst-case/robust.json ...
//   node scripts/robustness-rows.mjs --after aa-rand/apgd-dlr FILE ...    (a column: accuracy after that attack)
//   node scripts/robustness-rows.mjs --label "(a) CrossMax" FILE --label "(b) mean logits" FILE
import { readFileSync } from 'node:fs';

const USAGE = 'usage: node scripts/robustness-rows.mjs [--after ATTACK]... [--label TEXT FILE | FILE]...';
const args = process.argv.slice(2);
const after = [];
const rows = [];
let label = null;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--after' || a === '--label') {
    const value = args[++i];
    if (value === undefined) fail(`${a} needs a value\n${USAGE}`);
    if (a === '--after') after.push(value);
    else label = value;
  } else if (a === '--help' || a === '-h') {
    console.log(USAGE);
    process.exit(0);
  } else {
    rows.push({ file: a, label: label ?? a });
    label = null;
  }
}
if (rows.length === 0) fail(USAGE);

const VIEWS = ['single-evaluation', 'mean-over-R', 'all-R'];
const pct = (x) => `${(100 * x).toFixed(1)}`;

/** "x% [lo, hi]" for each of the three views, joined by " / ". */
function cell(intervals, where) {
  if (!intervals) fail(`${where}: no intervals in this file (written before crossmax kept them)`);
  return VIEWS.map((view) => {
    const e = intervals[view];
    if (!e) fail(`${where}: no ${view} interval`);
    return `${pct(e.value)}% [${pct(e.low)}, ${pct(e.high)}]`;
  }).join(' / ');
}

function fail(message) {
  console.error(`robustness-rows: ${message}`);
  process.exit(2);
}

const lines = [];
lines.push(`| model | images | clean | ${after.map((a) => `after ${a}`).join(' | ')}${after.length ? ' | ' : ''}worst case | time |`);
lines.push(`|---|---:|---|${after.map(() => '---|').join('')}---|---:|`);
for (const { file, label: name } of rows) {
  let result;
  try {
    result = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`${file}: ${err.message}`);
  }
  if (result.format !== 'crossmax-robustness-v1') fail(`${file}: not a crossmax robust.json (format ${result.format})`);
  const iv = result.intervals;
  const columns = [cell(iv?.cleanAccuracy, `${file} clean`)];
  for (const attack of after) {
    const index = result.attacks.findIndex((a) => a.name === attack);
    if (index < 0) fail(`${file}: no attack named ${attack} (it has ${result.attacks.map((a) => a.name).join(', ')})`);
    columns.push(cell(iv.attacks[index]?.robustAccuracyAfter, `${file} ${attack}`));
  }
  columns.push(cell(iv.worstCase, `${file} worst case`));
  const minutes = (result.seconds?.total ?? NaN) / 60;
  lines.push(`| ${name} | ${result.images} | ${columns.join(' | ')} | ${minutes.toFixed(1)} min |`);
}
console.log(lines.join('\n'));
