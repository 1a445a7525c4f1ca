// The committed models (models/README.md): every file is listed there with its SHA-256, matches it, stays under the
// 5 MB the repository allows, and loads as the crossmax model the table says it is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../src/ensemble/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const modelsDir = join(root, 'models');

/** file name -> SHA-256, from the table rows of models/README.md (a file in backticks, a 64-hex hash in backticks). */
function listed(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync(join(modelsDir, 'README.md'), 'utf8').split('\n')) {
    const file = /^\| `([^`]+\.safetensors)` \|/.exec(line)?.[1];
    const hash = /`([0-9a-f]{64})`/.exec(line)?.[1];
    if (file && hash) out.set(file, hash);
  }
  return out;
}

test('models/: every committed model is listed with its SHA-256, matches it, is at most 5 MB and loads', () => {
  const table = listed();
  const files = readdirSync(modelsDir).filter((f) => f.endsWith('.safetensors')).sort();
  assert.ok(files.length > 0, 'models/ holds the models README figures were measured on');
  assert.deepEqual(files, [...table.keys()].sort(), 'the files in models/ and the rows of models/README.md');
  for (const file of files) {
    const path = join(modelsDir, file);
    assert.ok(statSync(path).size <= 5 * 1024 * 1024, `${file} is over 5 MB`);
    const sha = createHash('sha256').update(readFileSync(path)).digest('hex');
    assert.equal(sha, table.get(file), `${file}: SHA-256 differs from models/README.md`);
    const model = loadModel(path);
    assert.deepEqual(model.memberNames().at(-1), 'fc');
    assert.equal(model.config?.numClasses, file.startsWith('cifar100-') ? 100 : 10, `${file}: classes of its data set`);
    model.dispose();
  }
});
