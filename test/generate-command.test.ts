// `crossmax generate` with judges: several images per class, judged over R passes by the generator and by other
// model files; the same weights judging with the same seed must agree exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCommand } from '../src/cli/generate-command.js';
import { UsageError } from '../src/cli/args.js';
import { captureLog, tinyModelFile } from './helpers/self-ensemble.js';

test('crossmax generate --per-class --judge: grid, report, JSON with each judge\'s agreement', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-generate-'));
  try {
    const path = tinyModelFile(dir);
    const out = join(dir, 'out');
    const { code, printed } = await captureLog(() => generateCommand(['--model', path, '--judge', path, '--class', 'all', '--per-class', '2',
      '--steps', '2', '--copies', '2', '--passes', '3', '--out', out, '--json']));
    assert.equal(code, 0);
    const summary = JSON.parse(readFileSync(join(out, 'generate.json'), 'utf8')) as { classes: string[]; judgements: { judge: string; agreement: number; allPasses: number; perClass: Record<string, number> }[] };
    assert.deepEqual(JSON.parse(printed), summary);
    assert.equal(summary.classes.length, 10);
    assert.deepEqual(summary.judgements.map((j) => j.judge), ['tiny (generator)', 'tiny']);
    const [self, other] = summary.judgements as [typeof summary.judgements[0], typeof summary.judgements[0]];
    // Same weights, same seeded passes: the same verdicts.
    assert.equal(self.agreement, other.agreement);
    assert.deepEqual(self.perClass, other.perClass);
    assert.ok(self.agreement >= 0 && self.agreement <= 1 && self.allPasses <= self.agreement);
    const perClassMean = Object.values(self.perClass).reduce((a, b) => a + b, 0) / 10;
    assert.ok(Math.abs(perClassMean - self.agreement) < 1e-12, 'equal images per class: the mean of the per-class shares');
    assert.ok(existsSync(join(out, 'generate.png')) && existsSync(join(out, 'generate.html')));
    await assert.rejects(generateCommand(['--model', path, '--judge', join(dir, 'none.safetensors'), '--steps', '1', '--class', '0', '--out', out]),
      (e) => e instanceof UsageError && /none\.safetensors/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
