#!/usr/bin/env node
// Checks the import graph of src/ against the layer order of shared/STYLE.md ("arrows only point down"): a file
// may import from its own folder or from a folder of a lower layer, never from one of the same layer or above,
// and no files import each other in a cycle (type-only imports count: they tie the files together just the same).
// Exits 1 naming each offending edge or cycle. Plain Node over the TypeScript sources, no dependency.
//   node scripts/check-imports.mjs [ROOT]      (ROOT: the folder holding src/; default this repository)
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// Lowest first; folders on one line are one layer and may not import each other.
// serialize sits below nn (a model's surgery loads pretrained weights) and generate below report (the generation
// report renders generation's results), the order the code has; the guide's layers hold them side by side.
const LAYERS = [
  ['util'],
  ['tensor'],
  ['serialize'],
  ['nn', 'optim', 'data'],
  ['distributed'],
  ['prior', 'models'],
  ['ensemble'],
  ['train', 'attacks'],
  ['robustness'],
  ['generate'],
  ['report'],
  // the package's entry point (src/index.ts) re-exports the library's areas; the CLI is beside it
  ['cli', 'index.ts'],
];

// Known violations to be reworked: reported, but not failures. None today.
// Each entry is 'from -> to' (an edge up or sideways) or 'cycle: a, b, …' (files in src/, sorted). Empty this
// list as they go; an entry that no longer occurs is reported so that it gets removed.
const ALLOWED = new Set([]);

const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
const src = join(root, 'src');
const rank = new Map(LAYERS.flatMap((folders, i) => folders.map((f) => [f, i])));

function sources(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Relative imports of a file (static, re-exports, dynamic), as resolved .ts paths. */
function importsOf(file) {
  const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const specs = [
    ...text.matchAll(/\b(?:import|export)\s[^;'"]*?\bfrom\s+['"]([^'"]+)['"]/g),
    ...text.matchAll(/\bimport\s*(?:\(\s*)?['"]([^'"]+)['"]/g),
  ].map((m) => m[1]).filter((s) => s.startsWith('.'));
  return [...new Set(specs)].map((spec) => {
    const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
    if (!existsSync(target)) throw new Error(`${relative(root, file)}: cannot resolve '${spec}'`);
    return target;
  });
}

const folderOf = (file) => relative(src, file).split('/')[0];
const name = (file) => relative(src, file);
const files = sources(src);
const graph = new Map(files.map((f) => [f, importsOf(f)]));
const problems = [];
const seen = new Set();
const report = (key, message) => {
  seen.add(key);
  problems.push({ key, message, allowed: ALLOWED.has(key) });
};

for (const [file, targets] of graph) {
  const from = folderOf(file);
  if (!rank.has(from)) {
    problems.push({ key: from, message: `src/${from} is in no layer: add it to LAYERS in scripts/check-imports.mjs`, allowed: false });
    continue;
  }
  for (const target of targets) {
    const to = folderOf(target);
    if (to === from || !rank.has(to)) continue;
    if (rank.get(to) >= rank.get(from)) {
      const way = rank.get(to) === rank.get(from) ? 'sideways' : 'up a layer';
      report(`${name(file)} -> ${name(target)}`, `import ${way}: src/${name(file)} -> src/${name(target)} (${from} may only import from layers below it)`);
    }
  }
}

// Cycles: the strongly connected components of more than one file (Tarjan), plus files importing themselves.
let counter = 0;
const index = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
function connect(v) {
  index.set(v, counter);
  low.set(v, counter++);
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v)) {
    if (!index.has(w)) {
      connect(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) {
      low.set(v, Math.min(low.get(v), index.get(w)));
    }
  }
  if (low.get(v) !== index.get(v)) return;
  const component = [];
  let w;
  do {
    w = stack.pop();
    onStack.delete(w);
    component.push(w);
  } while (w !== v);
  if (component.length > 1 || graph.get(v).includes(v)) {
    const members = component.map(name).sort();
    report(`cycle: ${members.join(', ')}`, `import cycle: ${members.map((m) => `src/${m}`).join(' <-> ')}`);
  }
}
for (const file of files) if (!index.has(file)) connect(file);

for (const p of problems) console.log(`${p.allowed ? 'allowed (known, to remove)' : 'ERROR'}: ${p.message}`);
for (const key of ALLOWED) if (!seen.has(key)) console.log(`note: the allowed '${key}' no longer occurs: remove it from ALLOWED`);
const errors = problems.filter((p) => !p.allowed).length;
const allowed = problems.length - errors;
console.log(errors > 0 ? `imports: ${errors} problem(s)`
  : `imports: ${files.length} files, layers respected, no cycle${allowed > 0 ? ` beyond the ${allowed} allowed above` : ''}`);
process.exit(errors === 0 ? 0 : 1);
