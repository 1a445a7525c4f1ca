// The API documentation check that scripts/test runs beside check-imports (`node_modules/.bin/typedoc --emit
// none`, settings in typedoc.json): it must cover every entry point of package.json's `exports` map, and with
// typedoc.json's own validation settings it must fail on an exported symbol without a doc comment, naming it, and
// pass once each has one. The check over this repository itself is the scripts/test line (about as long as a
// compile); here it runs on a small project so that the test shows the check can fail.
//
// typedoc.json's intentionallyNotDocumented names members of inline object types only (`{ values, indices }`
// returned by Tensor.max, the fields of an options literal, an object constant's inferred members): their parent's
// comment describes them, and a comment inside a one-line type would have to split code lines. TypeDoc fails on a
// listed name that no longer exists, so the list cannot go stale; the test below keeps whole symbols off it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const typedocBin = join(root, 'node_modules', 'typedoc', 'bin', 'typedoc');
const config = JSON.parse(readFileSync(join(root, 'typedoc.json'), 'utf8')) as Record<string, unknown>;

test('typedoc.json documents exactly the entry points of package.json exports', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, string | { import: string }> };
  const fromExports = Object.values(pkg.exports)
    .filter((target): target is { import: string } => typeof target === 'object')
    .map((target) => target.import.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts'))
    .sort();
  assert.ok(fromExports.length > 1, 'package.json has an exports map with subpaths');
  assert.deepEqual([...(config.entryPoints as string[])].sort(), fromExports);
  // What a user expects documented: every top-level declaration and the members of classes and interfaces.
  for (const kind of ['Class', 'Interface', 'Function', 'Variable', 'TypeAlias', 'Enum', 'Method', 'Accessor', 'Property']) {
    assert.ok((config.requiredToBeDocumented as string[]).includes(kind), kind);
  }
  assert.equal(config.treatValidationWarningsAsErrors, true);
  assert.equal((config.validation as Record<string, boolean>).notDocumented, true);
});

test('typedoc.json exempts only members of inline object types from the check', () => {
  const exempt = (config.intentionallyNotDocumented ?? []) as string[];
  // A type alias written as one object literal: TypeDoc names its members without '__type'.
  const literalAliasMembers = new Set(['crossmax/optim.SgdState.momentum_buffer']);
  const wholeSymbols = exempt.filter((name) => !name.includes('.__type.') && !literalAliasMembers.has(name));
  assert.deepEqual(wholeSymbols, []);
});

/** Runs TypeDoc with this repository's settings over a one-file project holding `source`. */
function checkProject(source: string): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-api-docs-'));
  try {
    mkdirSync(join(dir, 'src'));
    writeFileSync(join(dir, 'src', 'index.ts'), source);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'fixture', version: '0.0.0', type: 'module' }));
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, types: [] },
      include: ['src/**/*.ts'],
    }));
    // The repository's options with only the project swapped (its list of named exceptions belongs to it).
    writeFileSync(join(dir, 'typedoc.json'), JSON.stringify({
      ...config, entryPoints: ['src/index.ts'], tsconfig: 'tsconfig.json', out: 'api', intentionallyNotDocumented: [],
    }));
    const run = spawnSync(process.execPath, [typedocBin, '--options', join(dir, 'typedoc.json'), '--emit', 'none'], {
      cwd: dir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }, timeout: 120_000,
    });
    return { status: run.status, output: (run.stdout + run.stderr).replace(/\x1b\[[0-9;]*m/g, '') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const documented = `/** Scales a number. */
export function scale(x: number): number { return 2 * x; }
/** Settings of {@link Counter}. */
export interface CounterOptions {
  /** Where counting starts. Default 0. */
  start?: number;
}
/** Counts up from a start. */
export class Counter {
  /** The current count. */
  value: number;
  /** @param options - where to start */
  constructor(options: CounterOptions = {}) { this.value = options.start ?? 0; }
  /** Adds one and returns the new count. */
  next(): number { return ++this.value; }
}
/** A name for a count. */
export type Count = number;
/** The largest count worth keeping. */
export const MAX_COUNT = 100;
`;

test('the docs check passes on a project whose exports all have doc comments', () => {
  const { status, output } = checkProject(documented);
  assert.equal(status, 0, output);
  assert.doesNotMatch(output, /does not have any documentation/);
});

test('the docs check fails naming each exported function, class member, interface property, type and constant without a doc comment', () => {
  const undocumented = documented
    .replace('/** Scales a number. */\n', '')
    .replace('  /** Adds one and returns the new count. */\n', '')
    .replace('  /** Where counting starts. Default 0. */\n', '')
    .replace('/** A name for a count. */\n', '')
    .replace('/** The largest count worth keeping. */\n', '');
  const { status, output } = checkProject(undocumented);
  assert.notEqual(status, 0, output);
  for (const name of ['scale', 'Counter.next', 'CounterOptions.start', 'Count', 'MAX_COUNT']) {
    assert.match(output, new RegExp(`\\b${name.replace('.', '\\.')} \\(\\w+\\), defined in .*does not have any documentation`), name);
  }
  assert.doesNotMatch(output, /Counter\.value \(/);
});
