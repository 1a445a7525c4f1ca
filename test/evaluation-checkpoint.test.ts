// Resuming a robustness evaluation: a run killed part-way and resumed from its checkpoint gives exactly the
// results and adversarial images of a run never interrupted, attacking only the batches that had not finished;
// a checkpoint folder of another evaluation, or one of this evaluation without resume, is refused by name; a
// tampered batch file is caught by the threat-model check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generator, noGrad, rand, tidy, type Tensor } from '../src/tensor/index.js';
import { NoisyLinear } from './helpers/linear.js';
import type { Classifier } from '../src/nn/classifier.js';
import { type AttackEntry } from '../src/attacks/index.js';
import { EvaluationCheckpoint, evaluateRobustness, type RobustnessEvaluation } from '../src/robustness/index.js';
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

/** Results without the wall-clock times. */
function comparable(evaluation: RobustnessEvaluation): unknown {
  const { seconds: _s, attacks: list, masking, ...rest } = evaluation.results;
  return { ...rest, attacks: list.map(({ seconds: _t, ...a }) => a), masking: masking && { ...masking, seconds: 0 } };
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

    // Killed when the second attack starts its second batch: the first attack and one batch of the second are stored.
    let batchesOfB = 0;
    let lastStep = Infinity;
    const kill = (e: { phase: string; attack: string | null; step: number }) => {
      if (e.phase !== 'attack' || e.attack !== 'pgd-b') return;
      if (e.step < lastStep) batchesOfB++;
      lastStep = e.step;
      if (batchesOfB === 2) throw new Error('killed');
    };
    assert.throws(() => evaluate(model, images, labels, { checkpoint: EvaluationCheckpoint.open(store, IDENTITY), onProgress: kill }), /killed/);
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
