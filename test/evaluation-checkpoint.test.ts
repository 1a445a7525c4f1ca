// Resuming a robustness evaluation: a run killed part-way and resumed from its checkpoint gives exactly the
// results and adversarial images of a run never interrupted, attacking only the batches that had not finished;
// a checkpoint folder of another evaluation, or one of this evaluation without resume, is refused by name; a
// tampered batch file is caught by the threat-model check. A resumed evaluation's times are those of the whole
// evaluation: the batches it took count at the seconds they cost in the run that computed them, each once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generator, noGrad, rand, tidy, type Tensor } from '../src/tensor/index.js';
import { NoisyLinear } from './helpers/linear.js';
import type { Classifier } from '../src/nn/classifier.js';
import { type AttackEntry } from '../src/attacks/index.js';
import { EvaluationCheckpoint, evaluateRobustness, withMaskingSeconds, type MaskingResults, type RobustnessEvaluation } from '../src/robustness/index.js';
import { loadSafetensors, saveSafetensors } from '../src/serialize/safetensors.js';

const EPS = 0.03;

const attacks: AttackEntry[] = [
  { name: 'pgd-a', attack: 'pgd', options: { steps: 4, seed: 1 } },
  { name: 'pgd-b', attack: 'pgd', options: { steps: 6, seed: 2, eot: 2 } },
];
const IDENTITY = { model: 'noisy-linear seed 3', data: 'random images seed 4' };

function setUp(): { model: NoisyLinear; images: Tensor; labels: Tensor } {
  const model = new NoisyLinear(3, 0.4);
  const images = rand([64, 3, 4, 4], { generator: new Generator(4) });
  const labels = noGrad(() => tidy(() => images.flatten(1).matmul(model.weight.transpose(0, 1)).add(model.bias).argmax({ dim: 1 })));
  return { model, images, labels };
}

function evaluate(model: Classifier, images: Tensor, labels: Tensor, extra: { checkpoint?: EvaluationCheckpoint; onProgress?: (e: { phase: string; attack: string | null; step: number }) => void } = {}): RobustnessEvaluation {
  return evaluateRobustness(model, images, labels, {
    attacks, eps: EPS, reEvaluations: 4, batchSize: 16, seed: 5, masking: { images: 32, epsSweep: [EPS, 0.2] }, ...extra,
  });
}

/** Throws when the second attack starts its second batch: the first attack and one batch of the second are stored. */
function killAtSecondBatchOfB(): (e: { phase: string; attack: string | null; step: number }) => void {
  let batchesOfB = 0;
  let lastStep = Infinity;
  return (e) => {
    if (e.phase !== 'attack' || e.attack !== 'pgd-b') return;
    if (e.step < lastStep) batchesOfB++;
    lastStep = e.step;
    if (batchesOfB === 2) throw new Error('killed');
  };
}

/** Results without the wall-clock times. */
function comparable(evaluation: RobustnessEvaluation): unknown {
  const { seconds: _s, attacks: list, masking, ...rest } = evaluation.results;
  return { ...rest, attacks: list.map(({ seconds: _t, ...a }) => a), masking: masking && { ...masking, seconds: 0, earlierRuns: 0, untimedBatches: 0 } };
}

function maxDifference(a: Tensor, b: Tensor): number {
  return tidy(() => a.sub(b).abs().max().item());
}

test('a killed evaluation resumed from its checkpoint equals an uninterrupted one, bit for bit, and redoes only unfinished batches', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-checkpoint-'));
  const store = join(dir, 'checkpoint');
  tidy(() => {
    const { model, images, labels } = setUp();
    // The uninterrupted run keeps its own store: its masking checks repeat calls of the suite and take them from
    // it, which is sharing within the run, not resuming (nothing was there before).
    const own = EvaluationCheckpoint.open(join(dir, 'uninterrupted'), IDENTITY);
    const reference = evaluate(model, images, labels, { checkpoint: own });
    assert.equal(own.stats.reused, 0, 'a fresh run resumes nothing');
    assert.ok(own.stats.shared > 0, `the masking checks took the suite's own calls (${own.stats.shared})`);
    assert.ok(reference.results.worstCase['all-R'] < reference.results.cleanAccuracy['all-R'], 'the attacks break something (not vacuous)');

    assert.throws(() => evaluate(model, images, labels, { checkpoint: EvaluationCheckpoint.open(store, IDENTITY), onProgress: killAtSecondBatchOfB() }), /killed/);
    const stored = readdirSync(store).filter((f) => f.endsWith('.safetensors')).length;
    assert.ok(stored >= 5, `the first attack's batches and one of the second's were stored (${stored})`);

    assert.throws(() => EvaluationCheckpoint.open(store, IDENTITY), /unfinished evaluation of this model \(\d+ attack batches done\): --resume/);
    assert.throws(() => EvaluationCheckpoint.open(store, { ...IDENTITY, model: 'another' }, { resume: true }), /another evaluation \(model: 'noisy-linear seed 3' there, 'another' here\)/);

    const resumedCheckpoint = EvaluationCheckpoint.open(store, IDENTITY, { resume: true });
    const resumed = evaluate(model, images, labels, { checkpoint: resumedCheckpoint });
    // At least every stored batch is taken (the masking checks repeat some of the suite's calls exactly, and those
    // are taken too).
    assert.ok(resumedCheckpoint.stats.reused >= stored, `every stored batch was taken (${resumedCheckpoint.stats.reused} of ${stored})`);
    assert.ok(resumedCheckpoint.stats.computed > 0, 'the unfinished batches were attacked');
    assert.deepEqual(comparable(resumed), comparable(reference));
    for (const [name, adversarial] of reference.adversarial) assert.equal(maxDifference(resumed.adversarial.get(name)!, adversarial), 0, name);
    assert.equal(maxDifference(resumed.worstAdversarial, reference.worstAdversarial), 0);

    // Everything is stored now (masking checks included): a third run attacks nothing.
    const complete = EvaluationCheckpoint.open(store, IDENTITY, { resume: true });
    assert.deepEqual(comparable(evaluate(model, images, labels, { checkpoint: complete })), comparable(reference));
    assert.equal(complete.stats.computed, 0);
    complete.remove();
    assert.ok(!existsSync(store));
  });
  rmSync(dir, { recursive: true, force: true });
});

test('a tampered or foreign checkpoint is refused with the reason, never used', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-checkpoint-'));
  const store = join(dir, 'checkpoint');
  tidy(() => {
    const { model, images, labels } = setUp();
    const first = EvaluationCheckpoint.open(store, IDENTITY);
    evaluate(model, images, labels, { checkpoint: first });
    // A batch file whose images were pushed outside the eps-ball fails the threat-model check on resume.
    const victim = join(store, readdirSync(store).find((f) => f.endsWith('.safetensors'))!);
    const file = loadSafetensors(victim);
    saveSafetensors(victim, { adversarial: file.tensors.get('adversarial')!.add(0.5).clamp(0, 1) }, file.metadata);
    assert.throws(() => evaluate(model, images, labels, { checkpoint: EvaluationCheckpoint.open(store, IDENTITY, { resume: true }) }), /eps|ball|Linf|threat/i);
    // A truncated batch file (a disk that filled, say) is named, with what to do.
    writeFileSync(victim, 'garbage');
    assert.throws(() => evaluate(model, images, labels, { checkpoint: EvaluationCheckpoint.open(store, IDENTITY, { resume: true }) }),
      /evaluation checkpoint batch is unreadable \(safetensors file '.*\.safetensors': truncated.*--overwrite/);
    // A manifest that is not JSON, and a folder that is not a checkpoint.
    writeFileSync(join(store, 'manifest.json'), '{not json');
    assert.throws(() => EvaluationCheckpoint.open(store, IDENTITY, { resume: true }), /not valid JSON.*--overwrite/);
    const fresh = EvaluationCheckpoint.open(store, IDENTITY, { overwrite: true });
    assert.deepEqual(readdirSync(store), ['manifest.json']);
    // Nothing finished yet: opening again without resume is allowed (there is nothing to lose).
    assert.equal(EvaluationCheckpoint.open(store, IDENTITY).dir, fresh.dir);
    writeFileSync(join(dir, 'keep.txt'), 'x');
    assert.throws(() => EvaluationCheckpoint.open(dir, IDENTITY), /is not an evaluation checkpoint/);
  });
  rmSync(dir, { recursive: true, force: true });
});

test('a batch file stored under another batch\'s name is refused by its key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-checkpoint-'));
  const store = join(dir, 'checkpoint');
  tidy(() => {
    const { model, images, labels } = setUp();
    evaluate(model, images, labels, { checkpoint: EvaluationCheckpoint.open(store, IDENTITY) });
    const names = readdirSync(store).filter((f) => f.endsWith('.safetensors')).sort();
    const first = readFileSync(join(store, names[0]!));
    writeFileSync(join(store, names[0]!), readFileSync(join(store, names[1]!)));
    writeFileSync(join(store, names[1]!), first);
    assert.throws(() => evaluate(model, images, labels, { checkpoint: EvaluationCheckpoint.open(store, IDENTITY, { resume: true }) }), /does not hold the batch it is named for/);
  });
  rmSync(dir, { recursive: true, force: true });
});

/** A killed run's checkpoint in a temporary folder: the set-up, the store and its batch files, for `body`. */
function afterKilledRun(body: (run: ReturnType<typeof setUp> & { store: string; files: string[] }) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-checkpoint-'));
  const store = join(dir, 'checkpoint');
  try {
    tidy(() => {
      const run = setUp();
      assert.throws(() => evaluate(run.model, run.images, run.labels, { checkpoint: EvaluationCheckpoint.open(store, IDENTITY), onProgress: killAtSecondBatchOfB() }), /killed/);
      const files = readdirSync(store).filter((f) => f.endsWith('.safetensors')).map((f) => join(store, f));
      body({ ...run, store, files });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Rewrites a batch file with its recorded time replaced (undefined: removed, as an older crossmax wrote it). */
function setStoredTime(path: string, seconds: string | undefined): void {
  const file = loadSafetensors(path);
  const { seconds: _old, ...metadata } = file.metadata;
  saveSafetensors(path, { adversarial: file.tensors.get('adversarial')! }, seconds === undefined ? metadata : { ...metadata, seconds });
}

test('a resumed evaluation counts the seconds its taken batches cost in the killed run, each batch once', () => {
  afterKilledRun(({ model, images, labels, store, files }) => {
    // Each batch file records its time; set known ones (a toy batch takes about a millisecond) so sums are exact.
    const stored = files.map((path, k) => {
      const recorded = Number(loadSafetensors(path).metadata.seconds);
      assert.ok(Number.isFinite(recorded) && recorded >= 0, `${path} records its time (${recorded})`);
      setStoredTime(path, String(100 * (k + 1)));
      return 100 * (k + 1);
    });
    const all = stored.reduce((a, b) => a + b, 0);
    const checkpoint = EvaluationCheckpoint.open(store, IDENTITY, { resume: true });
    const { results } = evaluate(model, images, labels, { checkpoint });
    // The masking checks repeat calls of the suite and take the same files again: counted once, not twice.
    assert.equal(checkpoint.stats.earlierSeconds, all);
    assert.equal(results.seconds.earlierRuns, all);
    assert.equal(results.seconds.untimedBatches, undefined);
    const [first, second] = results.attacks;
    assert.ok(first!.seconds >= Math.min(...stored), `the first attack, resumed whole, shows its earlier time (${first!.seconds} s)`);
    assert.ok(first!.seconds + second!.seconds >= all, `the attacks together hold the ${all} s of their stored batches`);
    assert.ok(results.seconds.attacks >= all && results.seconds.total >= results.seconds.attacks + results.masking!.seconds - 1e-9);
    assert.equal(results.masking!.earlierRuns, undefined, 'the checks took only what this run had already taken');
  });
});

test('batch files without a time (an older crossmax) are resumed and counted as untimed; a time that is no number is refused', () => {
  afterKilledRun(({ model, images, labels, store, files }) => {
    for (const path of files) setStoredTime(path, undefined);
    const { results } = evaluate(model, images, labels, { checkpoint: EvaluationCheckpoint.open(store, IDENTITY, { resume: true }) });
    assert.equal(results.seconds.untimedBatches, files.length);
    assert.equal(results.seconds.earlierRuns, 0);
    setStoredTime(files[0]!, 'soon');
    assert.throws(() => evaluate(model, images, labels, { checkpoint: EvaluationCheckpoint.open(store, IDENTITY, { resume: true }) }), /records a time that is not a number of seconds \('soon'\): --overwrite/);
  });
});

test('masking checks run after an evaluation add their time and their earlier runs\' share', () => {
  const masking = { images: 2, definition: 'all-R', checks: [], epsCurve: [], seconds: 5, earlierRuns: 2 } as MaskingResults;
  assert.deepEqual(withMaskingSeconds({ total: 10, attacks: 9, masking: 0, earlierRuns: 4 }, masking), { total: 15, attacks: 9, masking: 5, earlierRuns: 6 });
  assert.deepEqual(withMaskingSeconds({ total: 10, attacks: 9, masking: 0 }, { ...masking, earlierRuns: undefined, untimedBatches: 3 }), { total: 15, attacks: 9, masking: 5, untimedBatches: 3 });
  assert.deepEqual(withMaskingSeconds({ total: 10, attacks: 9, masking: 0 }, null), { total: 10, attacks: 9, masking: 0 });
});
