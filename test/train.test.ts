// Training loop, losses, light adversarial training, evaluation and checkpoints with bit-for-bit resume, on a
// tiny self-ensemble and a tiny separable dataset (test/fixtures/tiny-training.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crossEntropy } from '../src/nn/functional.js';
import { Linear } from '../src/nn/layers.js';
import { Module } from '../src/nn/module.js';
import { MeanLogits } from '../src/ensemble/aggregators.js';
import { CrossMax } from '../src/ensemble/crossmax.js';
import { disposeAll, getNumThreads, isGradEnabled, keep, liveTensorCount, manualSeed, tensor, tidy, type Tensor } from '../src/tensor/index.js';
import { saveSafetensors } from '../src/serialize/safetensors.js';
import {
  adversarialBatch, CHECKPOINT_FILE, evaluate, memberLosses, readTrainingCheckpointHeader, resolveAdversarialOptions,
  selfEnsembleLoss, TIMING_FIELDS, train, TrainingInterrupted, type MetricRecord, type TrainableModel, type TrainOptions,
} from '../src/train/index.js';
import type { SelfEnsemble } from '../src/ensemble/self-ensemble.js';
import { resumeRunOptions, tinyDataset, TinyEnsemble } from './fixtures/tiny-training.js';

// The trainer is written against TrainableModel; the library's self-ensemble must stay one (a compile-time check).
const selfEnsembleIsTrainable = (model: SelfEnsemble): TrainableModel => model;
void selfEnsembleIsTrainable;

const here = dirname(fileURLToPath(import.meta.url));
const trainSet = tinyDataset('tiny/train', 64, 1);
const testSet = tinyDataset('tiny/test', 32, 2);

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'crossmax-train-'));
}

function freshModel(seed = 123): TinyEnsemble {
  manualSeed(seed);
  return new TinyEnsemble();
}

function baseOptions(model: TinyEnsemble, outDir: string): TrainOptions {
  return {
    model, trainSet, testSet, outDir, epochs: 3, batchSize: 16, optimizer: { kind: 'adam', lr: 0.02 },
    seed: 5, logEvery: 0, progress: false,
  };
}

/** The state dict as bytes per name (a bit-exact comparison). */
function stateBytes(module: Module): Map<string, Buffer> {
  const state = module.stateDict();
  const out = new Map([...state].map(([k, t]) => [k, Buffer.from(t.toTypedArray().buffer)]));
  disposeAll(state);
  return out;
}

/**
 * No more live tensors than before. Not equality: models dropped by earlier tests may be finalised by the
 * garbage collector meanwhile, which lowers the count.
 */
function assertNoLeak(before: number, what: string): void {
  const now = liveTensorCount();
  assert.ok(now <= before, `${what} leaked ${now - before} tensors`);
}

function readMetrics(outDir: string): MetricRecord[] {
  return readFileSync(join(outDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as MetricRecord);
}

function withoutTiming(records: MetricRecord[]): unknown[] {
  return records.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !TIMING_FIELDS.includes(k))));
}

// ---- losses ---------------------------------------------------------------------------------------------------

test('selfEnsembleLoss is the (weighted) mean of the members\' cross-entropies', () => {
  tidy(() => {
    const logits = tensor([[[2, 0, -1], [0.5, 0.2, 0.1]], [[0, 1, 0], [-1, 3, 0.5]], [[1, 1, 1], [0, 0, 4]]]);
    const labels = tensor([0, 1, 2], { dtype: 'int64' });
    const perMember = [0, 1].map((m) => crossEntropy(logits.select(1, m), labels).item());
    assert.deepEqual(memberLosses(logits, labels).toArray().map((v) => v.toFixed(6)), perMember.map((v) => v.toFixed(6)));
    assert.ok(Math.abs(selfEnsembleLoss(logits, labels).item() - (perMember[0]! + perMember[1]!) / 2) < 1e-6);
    const weighted = selfEnsembleLoss(logits, labels, { memberWeights: [3, 1] }).item();
    assert.ok(Math.abs(weighted - (0.75 * perMember[0]! + 0.25 * perMember[1]!)) < 1e-6);
    const smoothed = selfEnsembleLoss(logits, labels, { labelSmoothing: 0.1 }).item();
    const smoothedRef = [0, 1].map((m) => crossEntropy(logits.select(1, m), labels, { labelSmoothing: 0.1 }).item());
    assert.ok(Math.abs(smoothed - (smoothedRef[0]! + smoothedRef[1]!) / 2) < 1e-6);
    assert.throws(() => selfEnsembleLoss(logits, labels, { memberWeights: [1] }), /2 members/);
    assert.throws(() => selfEnsembleLoss(logits, labels, { memberWeights: [0, 0] }), /all 0/);
  });
});

// ---- training ---------------------------------------------------------------------------------------------------

test('from scratch: the loss falls, accuracy rises, outputs are written', async () => {
  const outDir = tempDir();
  const model = freshModel();
  const live = liveTensorCount();
  const result = await train({ ...baseOptions(model, outDir), epochs: 6, logEvery: 2, schedule: { kind: 'cosine', warmupSteps: 2 } });
  const epochs = result.metrics.filter((r) => r.type === 'epoch');
  assert.equal(epochs.length, 6);
  assert.ok(epochs[5]!.loss < 0.7 * epochs[0]!.loss, `loss ${epochs[0]!.loss} -> ${epochs[5]!.loss}`);
  assert.ok(epochs[5]!.accuracy > epochs[0]!.accuracy);
  const finalTest = result.summary.finalTest!;
  assert.ok(finalTest.accuracy >= 0.9, `test accuracy ${finalTest.accuracy}`);
  assert.equal(finalTest.memberAccuracies.length, 3);
  assert.equal(finalTest.count, 32);
  assert.equal(result.metrics.filter((r) => r.type === 'step').length, 12); // 24 steps, one record per 2
  assert.equal(result.summary.steps, 24);
  assert.deepEqual(readMetrics(outDir), result.metrics);
  const summary = JSON.parse(readFileSync(join(outDir, 'summary.json'), 'utf8'));
  assert.equal(summary.steps, 24);
  assert.ok(statSync(result.modelPath).size > 0);
  assertNoLeak(live, 'training');
  // The cosine schedule ends at 0; the last step's rate is the last before the end.
  assert.ok(epochs[5]!.lr < 0.02 * 0.05);
  rmSync(outDir, { recursive: true });
});

test('a plain single-output model trains on its output', async () => {
  class Plain extends Module {
    readonly fc = this.registerModule('fc', new Linear(3 * 8 * 8, 4));
    forward(x: Tensor): Tensor { return this.fc.forward(x.flatten(1)); }
  }
  manualSeed(1);
  const model = new Plain();
  const outDir = tempDir();
  const result = await train({ model, trainSet, testSet, outDir, epochs: 4, batchSize: 16, optimizer: { kind: 'sgd', lr: 0.5, momentum: 0.9 }, progress: false });
  const epochs = result.metrics.filter((r) => r.type === 'epoch');
  assert.ok(epochs[3]!.loss < epochs[0]!.loss);
  assert.deepEqual(epochs[3]!.test!.memberAccuracies, []);
  await assert.rejects(train({ model, trainSet, outDir: tempDir(), epochs: 1, optimizer: { kind: 'sgd', lr: 0.1 }, loss: 'members', progress: false }), /memberLogits/);
  rmSync(outDir, { recursive: true });
});

test("mode 'heads' with backboneMode 'eval' leaves the backbone bit-identical", async () => {
  const model = freshModel();
  const backboneBefore = stateBytes(model.backbone);
  const headsBefore = stateBytes(model.heads[0]!);
  const outDir = tempDir();
  const result = await train({ ...baseOptions(model, outDir), mode: 'heads', backboneMode: 'eval', epochs: 1, optimizer: { kind: 'adam', lr: 0.01 } });
  assert.deepEqual(stateBytes(model.backbone), backboneBefore);
  assert.notDeepEqual(stateBytes(model.heads[0]!), headsBefore);
  // One head at a time, last to first: three phases of one epoch each.
  const epochs = result.metrics.filter((r) => r.type === 'epoch');
  assert.deepEqual(epochs.map((r) => [r.phase, r.member]), [[0, 2], [1, 1], [2, 0]]);
  assert.ok(model.parameters().every((p) => p.requiresGrad && p.grad === null), 'frozen flags and gradients restored');
  rmSync(outDir, { recursive: true });
});

test("mode 'heads' with backboneMode 'train' (the notebook) freezes the weights but lets BatchNorm statistics drift", async () => {
  const model = freshModel();
  const before = stateBytes(model.backbone);
  const outDir = tempDir();
  await train({ ...baseOptions(model, outDir), mode: 'heads', headsSchedule: 'together', epochs: 1 });
  const after = stateBytes(model.backbone);
  for (const [name, bytes] of before) {
    const isStatistic = /running_(mean|var)|num_batches_tracked/.test(name);
    if (isStatistic) assert.notDeepEqual(after.get(name), bytes, `${name} should drift`);
    else assert.deepEqual(after.get(name), bytes, `${name} should stay frozen`);
  }
  await assert.rejects(train({ ...baseOptions(freshModel(), tempDir()), mode: 'heads', model: new Linear(192, 4) }), /needs the backbone/);
  rmSync(outDir, { recursive: true });
});

// ---- adversarial training -------------------------------------------------------------------------------------

test('adversarial inputs stay within eps and [0, 1], raise the loss, and fraction leaves the rest clean', () => {
  const model = freshModel();
  const batch = trainSet.batch(Array.from({ length: 16 }, (_, i) => i));
  const lossOf = (x: Tensor, y: Tensor) => selfEnsembleLoss(model.memberLogits(x), y);
  for (const spec of [{ attack: 'fgsm' as const }, { attack: 'pgd' as const, steps: 3 }, { attack: 'pgd' as const, eps: 0.1, fraction: 0.5 }]) {
    const options = resolveAdversarialOptions(spec);
    tidy(() => {
      manualSeed(9);
      const adversarial = adversarialBatch(model, batch.images, batch.labels, lossOf, options);
      const difference = adversarial.sub(batch.images).abs();
      const k = Math.round(options.fraction * 16);
      assert.ok(difference.max().item() <= options.eps + 1e-6, `${spec.attack}: perturbation beyond eps`);
      assert.ok(difference.narrow(0, 0, k).max().item() > options.eps / 2, `${spec.attack}: no perturbation`);
      assert.ok(adversarial.min().item() >= 0 && adversarial.max().item() <= 1, `${spec.attack}: outside [0, 1]`);
      if (k < 16) assert.equal(difference.narrow(0, k, 16 - k).max().item(), 0, 'the clean part changed');
      // With the model's noise fixed, the attacked images have the higher loss.
      manualSeed(10);
      const clean = lossOf(batch.images.narrow(0, 0, k), batch.labels.narrow(0, 0, k)).item();
      manualSeed(10);
      const attacked = lossOf(adversarial.narrow(0, 0, k), batch.labels.narrow(0, 0, k)).item();
      assert.ok(attacked > clean, `${spec.attack}: loss ${clean} -> ${attacked}`);
    });
  }
  assert.ok(model.training, 'the model\'s mode is restored');
  batch.dispose();
  assert.throws(() => resolveAdversarialOptions({ attack: 'fgsm', steps: 3 }), /exactly one step/);
  assert.throws(() => resolveAdversarialOptions({ attack: 'pgd', fraction: 2 }), /fraction/);
});

test('adversarial training trains on the attacked batch (FGSM on the whole batch, the notebook\'s setting)', async () => {
  // Every input of a training-loss pass (training mode, gradients on, the input itself not differentiated: the
  // attack's passes run in eval mode on inputs that require grad) is recorded, then compared with the training set.
  const trainedOn = async (adversarial: TrainOptions['adversarial']): Promise<{ nearest: number[]; steps: number }> => {
    const model = freshModel();
    const inputs: Tensor[] = [];
    const memberLogits = model.memberLogits.bind(model);
    model.memberLogits = (images: Tensor) => {
      if (model.training && isGradEnabled() && !images.requiresGrad) inputs.push(keep(images.detach().clone()));
      return memberLogits(images);
    };
    const outDir = tempDir();
    try {
      const result = await train({ ...baseOptions(model, outDir), epochs: 1, evalEvery: 0, adversarial });
      assert.ok(result.metrics.every((r) => Number.isFinite(r.loss)));
      // Per image trained on: the L∞ distance to the nearest training image.
      const all = trainSet.batch(Array.from({ length: trainSet.length }, (_, i) => i));
      const nearest = tidy(() => inputs.flatMap((batch) => batch.flatten(1).unsqueeze(1).sub(all.images.flatten(1).unsqueeze(0)).abs().amax({ dim: 2 }).amin({ dim: 1 }).toArray()));
      all.dispose();
      return { nearest, steps: result.summary.steps };
    } finally {
      disposeAll(inputs);
      rmSync(outDir, { recursive: true });
    }
  };
  const clean = await trainedOn(undefined);
  assert.equal(clean.nearest.length, trainSet.length, 'one training pass per image (the spy sees them)');
  assert.ok(clean.nearest.every((d) => d === 0), 'without the attack, the training images themselves');
  const attacked = await trainedOn({ attack: 'fgsm', objective: 'output' });
  assert.equal(attacked.steps, 4);
  assert.equal(attacked.nearest.length, trainSet.length);
  const eps = resolveAdversarialOptions({ attack: 'fgsm' }).eps;
  assert.ok(attacked.nearest.every((d) => d > 0 && d <= eps + 1e-6), `every image trained on moved, within eps: ${attacked.nearest}`);
});

// ---- evaluation -------------------------------------------------------------------------------------------------

test('evaluate: output, members and extra aggregators from one pass; confusion matrix; samples', () => {
  const model = freshModel();
  const result = evaluate(model, testSet, { batchSize: 10, aggregators: [new CrossMax({ k: 2 }), new MeanLogits()], limit: 30, samples: 5 });
  assert.equal(result.count, 30);
  assert.equal(result.outputSource, 'shared-pass');
  // The model's own aggregator on the same member logits must agree exactly, noise and all.
  assert.equal(result.aggregators[0]!.correct, result.correct);
  assert.equal(result.memberAccuracies.length, 3);
  assert.equal(result.confusion.flat().reduce((a, b) => a + b, 0), 30);
  assert.equal(result.confusion.reduce((n, row, c) => n + row[c]!, 0), result.correct);
  assert.ok(result.perClassAccuracy.every((a) => a >= 0 && a <= 1));
  assert.equal(result.samples.length, 5);
  assert.deepEqual(result.samples.map((s) => s.index), [0, 1, 2, 3, 4]);
  assert.deepEqual(result.samples.map((s) => s.label), [0, 1, 2, 3, 0]);
  assert.ok(result.samples.every((s) => s.memberVotes.length === 3));
  assert.ok(model.training, 'evaluate restores the model\'s mode');
});

// ---- checkpoints and resume ------------------------------------------------------------------------------------

test('evaluation does not change training: the same weights with and without it', async () => {
  const [withEval, withoutEval] = [freshModel(), freshModel()];
  const dirs = [tempDir(), tempDir()];
  await train({ ...baseOptions(withEval, dirs[0]!), epochs: 2 });
  await train({ ...baseOptions(withoutEval, dirs[1]!), epochs: 2, testSet: undefined });
  assert.deepEqual(stateBytes(withEval), stateBytes(withoutEval));
  for (const dir of dirs) rmSync(dir, { recursive: true });
});

test('a checkpoint is written atomically after every epoch and every N steps', async () => {
  const outDir = tempDir();
  const seen: string[] = [];
  await train({
    ...baseOptions(freshModel(), outDir),
    checkpointEvery: 3,
    onStep: ({ globalStep }) => {
      if (globalStep % 3 === 0) seen.push(`step ${readTrainingCheckpointHeader(join(outDir, CHECKPOINT_FILE)).state.position.globalStep}`);
    },
    onEpochEnd: (record) => {
      const { state } = readTrainingCheckpointHeader(join(outDir, CHECKPOINT_FILE));
      seen.push(`epoch ${state.position.epoch}/${state.metrics.length}/${state.position.completed}`);
      assert.equal(state.metrics.length, record.epoch, 'the checkpoint holds the records so far');
      assert.deepEqual(readdirSync(outDir).filter((f) => f.includes('.tmp')), [], 'temporary files left behind');
    },
  });
  assert.deepEqual(seen, ['step 3', 'epoch 1/1/false', 'step 6', 'epoch 2/2/false', 'step 9', 'step 12', 'epoch 3/3/true']);
  rmSync(outDir, { recursive: true });
});

test('resume after a kill is bit for bit: a child process stopped by SIGTERM in epoch 2, resumed here', async () => {
  // Run A: uninterrupted.
  const dirA = tempDir();
  const modelA = freshModel();
  await train(resumeRunOptions(modelA, dirA));

  // Run B: a child process that sends itself SIGTERM after step 6 (epoch 2 of 3, 4 batches per epoch).
  const dirB = tempDir();
  const child = spawnSync(process.execPath, [join(here, 'fixtures', 'train-child.js'), dirB, '6'], {
    // The same intra-op thread count as this process: reductions split over another number of threads round
    // differently, and the resumed weights would differ in the last bits for that reason alone.
    env: { ...process.env, CROSSMAX_NUM_THREADS: String(getNumThreads()) }, encoding: 'utf8', timeout: 60_000,
  });
  assert.equal(child.status, 143, `child exit ${child.status}, stderr:\n${child.stderr}`);
  assert.match(child.stderr, /received SIGTERM/);
  assert.match(child.stderr, /checkpoint written to .*checkpoint\.safetensors at epoch 2\/3 after 2 of 4 batches \(step 6\).*code 143/s);
  const header = readTrainingCheckpointHeader(join(dirB, CHECKPOINT_FILE));
  assert.deepEqual(header.state.position, { phase: 0, epoch: 1, batch: 2, globalStep: 6, completed: false });

  // Resumed in this process, from a model with other initial weights.
  const modelB = freshModel(999);
  const live = liveTensorCount();
  const resumed = await train({ ...resumeRunOptions(modelB, dirB), resume: true });
  assertNoLeak(live, 'resuming');
  assert.deepEqual(resumed.summary.resumedAtSteps, [6]);
  assert.deepEqual(stateBytes(modelB), stateBytes(modelA), 'final weights differ');
  assert.deepEqual(withoutTiming(readMetrics(dirB)), withoutTiming(readMetrics(dirA)), 'metrics differ');
  assert.ok(readMetrics(dirA).some((r) => r.test !== undefined));

  // The same run with other options is refused, naming the differences.
  await assert.rejects(
    train({ ...resumeRunOptions(freshModel(), dirB), resume: true, optimizer: { kind: 'adam', lr: 0.05 }, batchSize: 8 }),
    (err: Error) => /options differ/.test(err.message) && /optimizer\.lr: checkpoint 0\.02, now 0\.05/.test(err.message)
      && /batchSize: checkpoint 16, now 8/.test(err.message),
  );
  // A fresh run does not silently replace a checkpoint.
  await assert.rejects(train(resumeRunOptions(freshModel(), dirB)), /already holds a training checkpoint/);
  rmSync(dirA, { recursive: true });
  rmSync(dirB, { recursive: true });
});

test('in-process signal with exitOnSignal false: checkpoint, TrainingInterrupted, handlers removed', async () => {
  const outDir = tempDir();
  const listeners = process.listenerCount('SIGTERM');
  await assert.rejects(
    train({
      ...baseOptions(freshModel(), outDir), exitOnSignal: false,
      onStep: ({ globalStep }) => { if (globalStep === 2) process.kill(process.pid, 'SIGTERM'); },
    }),
    (err: unknown) => err instanceof TrainingInterrupted && err.signal === 'SIGTERM' && err.position.globalStep === 2,
  );
  assert.equal(process.listenerCount('SIGTERM'), listeners);
  assert.equal(readTrainingCheckpointHeader(join(outDir, CHECKPOINT_FILE)).state.position.batch, 2);
  // It resumes and completes.
  const result = await train({ ...baseOptions(freshModel(), outDir), resume: true });
  assert.equal(result.summary.steps, 12);
  rmSync(outDir, { recursive: true });
});

test('a corrupt or foreign checkpoint gives a clear error', async () => {
  const outDir = tempDir();
  await train({ ...baseOptions(freshModel(), outDir), epochs: 1 });
  const path = join(outDir, CHECKPOINT_FILE);
  const copy = join(outDir, 'copy.safetensors');
  copyFileSync(path, copy);
  truncateSync(path, statSync(path).size - 10);
  await assert.rejects(train({ ...baseOptions(freshModel(), outDir), epochs: 1, resume: true }),
    /training checkpoint '.*checkpoint\.safetensors': unreadable or corrupt .*truncated/);
  // A safetensors file that is not a training checkpoint (a model file).
  const model = freshModel();
  const state = model.stateDict();
  saveSafetensors(path, state);
  disposeAll(state);
  await assert.rejects(train({ ...baseOptions(freshModel(), outDir), epochs: 1, resume: true }), /not a crossmax training checkpoint/);
  // Missing when required.
  rmSync(path);
  await assert.rejects(train({ ...baseOptions(freshModel(), outDir), epochs: 1, resume: true }), /nothing to resume/);
  rmSync(outDir, { recursive: true });
});

test('resume of a completed run only rewrites the outputs', async () => {
  const outDir = tempDir();
  const model = freshModel();
  await train({ ...baseOptions(model, outDir), epochs: 1 });
  const other = freshModel(5);
  const again = await train({ ...baseOptions(other, outDir), epochs: 1, resume: true });
  assert.equal(again.summary.steps, 4);
  assert.equal(again.metrics.length, 1);
  assert.deepEqual(stateBytes(other), stateBytes(model), 'the checkpoint\'s weights are loaded');
  rmSync(outDir, { recursive: true });
});
