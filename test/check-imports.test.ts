// scripts/check-imports.mjs, which scripts/test runs first: it must fail on an import up a layer, a sideways
// import and a cycle, naming each, and pass on this repository.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'check-imports.mjs');

function check(root?: string): { status: number | null; output: string } {
  const run = spawnSync(process.execPath, [script, ...(root ? [root] : [])], { encoding: 'utf8' });
  return { status: run.status, output: run.stdout + run.stderr };
}

test('check-imports names an import up a layer, a sideways one and a cycle, and fails', () => {
  const root = mkdtempSync(join(tmpdir(), 'crossmax-imports-'));
  try {
    const file = (path: string, text: string) => {
      mkdirSync(dirname(join(root, 'src', path)), { recursive: true });
      writeFileSync(join(root, 'src', path), text);
    };
    file('report/json.ts', 'export const x = 1;\n');
    file('attacks/checkpoint.ts', "import { x } from '../report/json.js';\nexport const y = x;\n");
    file('train/loop.ts', "export { y } from '../attacks/checkpoint.js';\n");
    file('robustness/evaluation.ts', "import type { Check } from './masking.js';\nexport type Definition = Check;\n");
    file('robustness/masking.ts', "import type { Definition } from './evaluation.js';\nexport type Check = Definition | 1;\n");
    file('tensor/index.ts', '// import { z } from "../cli/main.js" in a comment is no import\nexport const t = 0;\n');
    const { status, output } = check(root);
    assert.equal(status, 1, output);
    assert.match(output, /ERROR: import up a layer: src\/attacks\/checkpoint\.ts -> src\/report\/json\.ts/);
    assert.match(output, /ERROR: import sideways: src\/train\/loop\.ts -> src\/attacks\/checkpoint\.ts/);
    assert.match(output, /ERROR: import cycle: src\/robustness\/evaluation\.ts <-> src\/robustness\/masking\.ts/);
    assert.doesNotMatch(output, /tensor\/index\.ts ->/);
    assert.match(output, /imports: 3 problem\(s\)/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('this repository passes check-imports', () => {
  const { status, output } = check();
  assert.equal(status, 0, output);
});
