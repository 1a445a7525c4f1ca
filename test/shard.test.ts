// A robust evaluation in parts equals the evaluation in one process, bit for bit: two `--shard` runs merged, the
// ranks of a launch (an in-process fake of the process group), and one batch evaluated without the others (the
// seed streams). Merge refuses shards of another model, data or budget, and missing or overlapping shards; the
// same data in another directory is the same data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROBUST_OPTIONS, robustEvalCommand, runRobustnessDistributed } from '../src/cli/robust-command.js';
import { mergeCommand } from '../src/cli/merge-command.js';
import { compareRobustness } from '../src/report/compare.js';
import { parseCommandArgs } from '../src/cli/args.js';
import {
  EvaluationCheckpoint, SHARD_JSON, dataFingerprint, evaluateRobustness, parseShardSpec, portableDataName, shardRange, type EvaluationWorld, type RobustnessResults,
} from '../src/robustness/index.js';
import { Generator, noGrad, rand, tidy } from '../src/tensor/index.js';
import { captureLog, tinyModelFile } from './helpers/self-ensemble.js';
import { tinyImageFolder } from './helpers/image-folder.js';
import { NoisyLinear } from './helpers/linear.js';

const robust = (args: string[]) => captureLog(() => robustEvalCommand(parseCommandArgs(args, ROBUST_OPTIONS).values));
const merge = (args: string[]) => captureLog(() => mergeCommand(args));
const read = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as RobustnessResults;

/** The results without their timings (the one thing a merge may not reproduce). */
function withoutTimings(results: RobustnessResults): unknown {
  return { ...results, seconds: null, attacks: results.attacks.map((a) => ({ ...a, seconds: null })), masking: results.masking && { ...results.masking, seconds: null } };
}

test('--shard I/N and shardRange: whole batches, every image once, bad specs refused', () => {
  assert.deepEqual(parseShardSpec('1/4'), { index: 1, count: 4 });
  assert.throws(() => parseShardSpec('4/4'), /0 to N-1/);
  assert.throws(() => parseShardSpec('a/b'), /give I\/N/);
  const ranges = [0, 1, 2].map((index) => shardRange(10, 3, { index, count: 3 }));
  assert.deepEqual(ranges, [{ start: 0, end: 3 }, { start: 3, end: 6 }, { start: 6, end: 10 }]);
  assert.throws(() => shardRange(4, 2, { index: 0, count: 3 }), /at most 2 parts/);
});

test('shards name their data without its directory and by a fingerprint of the pixels and labels evaluated', () => {
  assert.equal(portableDataName('/work/shared/datasets/cifar-10-batches-bin (official CIFAR-10 binary release)'), 'cifar-10-batches-bin (official CIFAR-10 binary release)');
  assert.equal(portableDataName('/data/my set/test (image folder), first 10 test images'), 'test (image folder), first 10 test images');
  assert.equal(portableDataName('relative-dir'), 'relative-dir');
  const set = { images: new Uint8Array(4 * 3 * 2 * 2).map((_, i) => i), labels: new Uint8Array([0, 1, 2, 3]), length: 4, height: 2, width: 2 };
  const first2 = dataFingerprint(set, 2);
  assert.match(first2, /^[0-9a-f]{64}$/);
  assert.equal(dataFingerprint({ ...set, images: set.images.slice(), labels: set.labels.slice() }, 2), first2, 'a copy of the same data');
  assert.notEqual(dataFingerprint(set, 3), first2, 'more images');
  const onePixel = set.images.slice(); onePixel[5] = 200;
  assert.notEqual(dataFingerprint({ ...set, images: onePixel }, 2), first2, 'one pixel changed');
  assert.notEqual(dataFingerprint({ ...set, labels: new Uint8Array([1, 1, 2, 3]) }, 2), first2, 'one label changed');
  const wide = new Uint16Array([0, 1, 2, 3]);
  assert.equal(dataFingerprint({ ...set, labels: wide }, 2), first2, 'labels stored in 16 bits: the same labels');
  assert.throws(() => dataFingerprint(set, 5), /of 5 images of a data set of 4/);
});

test('a batch evaluated alone gets exactly the results it gets among the others (seed streams by global batch)', () => {
  tidy(() => {
    const model = new NoisyLinear(8, 0.5);
    const images = rand([6, 3, 4, 4], { generator: new Generator(5) });
    const labels = noGrad(() => tidy(() => new NoisyLinear(8, 0).forward(images).argmax({ dim: 1 })));
    const options = {
      attacks: [{ name: 'pgd', attack: 'pgd', options: { steps: 3, eot: 2 } }, { name: 'fgsm', attack: 'fgsm', options: {} }] as const,
      eps: 0.05, reEvaluations: 3, batchSize: 2, masking: false as const, seed: 7,
    };
    const whole = evaluateRobustness(model, images, labels, { ...options, attacks: [...options.attacks] }).results;
    const part = evaluateRobustness(model, images.narrow(0, 2, 2), labels.narrow(0, 2, 2), { ...options, attacks: [...options.attacks], imageOffset: 2 }).results;
    const slice = <T>(values: readonly T[]) => values.slice(2, 4);
    for (const key of Object.keys(whole.perImage) as (keyof RobustnessResults['perImage'])[]) {
      assert.deepEqual(part.perImage[key], slice(whole.perImage[key] as unknown[]), `perImage.${key}`);
    }
    whole.attacks.forEach((a, i) => {
      assert.deepEqual(part.attacks[i]!.correctReEvaluations, slice(a.correctReEvaluations), `${a.name} re-evaluations`);
      assert.deepEqual(part.attacks[i]!.success, slice(a.success), `${a.name} success`);
    });
    // Not vacuous: the noisy model's passes disagree somewhere, so the draws matter.
    assert.ok(whole.perImage.cleanCorrect.some((c) => c > 0 && c < 3) || whole.attacks.some((a) => a.correctReEvaluations.some((c) => c !== null && c > 0 && c < 3)),
      'some image is right in some passes and wrong in others');
    assert.throws(() => evaluateRobustness(model, images, labels, { ...options, attacks: [...options.attacks], imageOffset: 1 }), /not a multiple of the batch size/);

    // The checkpoint keys a batch by its images' indices in the whole evaluation: a part resumes from the batches
    // a whole run stored (and the other way round), taking every one of its attack calls from the store.
    const dir = mkdtempSync(join(tmpdir(), 'crossmax-shard-checkpoint-'));
    try {
      const identity = { model: 'noisy-linear' };
      const store = EvaluationCheckpoint.open(dir, identity);
      evaluateRobustness(model, images, labels, { ...options, attacks: [...options.attacks], checkpoint: store });
      const resumed = EvaluationCheckpoint.open(dir, identity, { resume: true });
      const again = evaluateRobustness(model, images.narrow(0, 2, 2), labels.narrow(0, 2, 2), { ...options, attacks: [...options.attacks], imageOffset: 2, checkpoint: resumed }).results;
      assert.equal(resumed.stats.computed, 0, 'every attack call of the part was in the store');
      assert.ok(resumed.stats.reused >= 2);
      assert.deepEqual(again.perImage, part.perImage);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('two --shard runs merged equal the single-process evaluation bit for bit; merge refuses other models, budgets, missing and overlapping shards', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-shard-'));
  try {
    const model = tinyModelFile(dir);
    const data = tinyImageFolder(join(dir, 'data'), { perClass: 1 });
    const common = ['--model', model, '--data', data, '--suite', 'autoattack-rand', '--budget', 'quick', '--steps', '2', '--n', '6',
      '--batch-size', '2', '--re-evaluations', '3', '--no-masking', '--json'];
    const single = join(dir, 'single');
    assert.equal((await robust([...common, '--report', single])).code, 0);
    const shards = [join(dir, 'shard0'), join(dir, 'shard1')];
    for (const [i, folder] of shards.entries()) assert.equal((await robust([...common, '--shard', `${i}/2`, '--report', folder])).code, 0);
    assert.ok(!existsSync(join(shards[0]!, 'robust.json')) && existsSync(join(shards[0]!, SHARD_JSON)), 'a shard writes its part, not a report');
    const merged = join(dir, 'merged');
    // Given in any order.
    assert.equal((await merge([shards[1]!, shards[0]!, '--report', merged, '--json'])).code, 0);
    const expected = read(join(single, 'robust.json'));
    const got = read(join(merged, 'robust.json'));
    assert.deepEqual(withoutTimings(got), withoutTimings(expected));
    assert.equal(got.images, 6);
    assert.ok(existsSync(join(merged, 'robust.html')) && existsSync(join(merged, 'adversarial.safetensors')));

    // Another model: the shard of 1/2 claims another file's SHA-256; another budget; then missing and overlapping.
    const tampered = (name: string, edit: (record: Record<string, any>) => void) => {
      const folder = join(dir, name);
      cpSync(shards[1]!, folder, { recursive: true });
      const record = JSON.parse(readFileSync(join(folder, SHARD_JSON), 'utf8'));
      edit(record);
      writeFileSync(join(folder, SHARD_JSON), JSON.stringify(record));
      return folder;
    };
    // The merged time is the parts' work (attacks and masking checks); a part resumed after a kill brings the
    // earlier runs' share, which the report states.
    const partSeconds = shards.map((f) => (JSON.parse(readFileSync(join(f, SHARD_JSON), 'utf8')) as { results: RobustnessResults }).results.seconds);
    assert.equal(got.seconds.attacks, partSeconds[0]!.attacks + partSeconds[1]!.attacks);
    assert.equal(got.seconds.total, got.seconds.attacks + got.seconds.masking);
    assert.equal(got.seconds.earlierRuns, undefined);
    const resumedPart = tampered('resumed', (r) => { r.results.seconds = { ...r.results.seconds, earlierRuns: 30, untimedBatches: 2 }; });
    assert.equal((await merge([shards[0]!, resumedPart, '--report', join(dir, 'merged-resumed'), '--json'])).code, 0);
    const resumedSeconds = read(join(dir, 'merged-resumed', 'robust.json')).seconds;
    assert.equal(resumedSeconds.earlierRuns, 30);
    assert.equal(resumedSeconds.untimedBatches, 2);
    assert.match(readFileSync(join(dir, 'merged-resumed', 'robust.html'), 'utf8'), /of which before a resume \(s\)[\s\S]*?30[\s\S]*?resumed batches without a stored time/);
    const otherModel = tampered('other-model', (r) => { r.identity.model = '0'.repeat(64); });
    await assert.rejects(merge([shards[0]!, otherModel]), /not a part of the same evaluation.*identity\.model/);
    // The same data read from another directory (another machine), and a shard written before data fingerprints
    // existed (a path, no dataSha256): merged; other pixels under the same name: refused.
    const moved = tampered('moved-data', (r) => {
      r.identity.data = `/elsewhere/${r.identity.data}`;
      r.results.dataSource = `/elsewhere/${r.results.dataSource}`;
    });
    assert.equal((await merge([shards[0]!, moved, '--report', join(dir, 'merged-moved'), '--json'])).code, 0);
    const legacy = tampered('legacy', (r) => { delete r.identity.dataSha256; r.identity.data = `/old/machine/${r.identity.data}`; });
    assert.equal((await merge([shards[0]!, legacy, '--report', join(dir, 'merged-legacy'), '--json'])).code, 0);
    const otherPixels = tampered('other-pixels', (r) => { r.identity.dataSha256 = 'f'.repeat(64); });
    await assert.rejects(merge([shards[0]!, otherPixels]), /identity\.dataSha256/);
    const otherBudget = tampered('other-budget', (r) => { r.settings.budget = 'cpu'; });
    await assert.rejects(merge([shards[0]!, otherBudget]), /settings\.budget: "quick" vs "cpu"/);
    await assert.rejects(merge([shards[1]!]), /no shard holds images 0–1 of 6: a shard is missing.*--partial merges the parts there are/);
    // --partial: the shards there are, marked as such; their per-image results are the single run's for those images.
    const partial = await merge([shards[1]!, '--partial', '--report', join(dir, 'partial')]);
    assert.equal(partial.code, 0);
    assert.match(partial.printed, /^PARTIAL: 4 of the evaluation's 6 images \(held 2–5; missing 0–1\)/);
    assert.match(partial.printed, /merged 1 shards \(partial: 4 of 6 images\)/);
    const part = read(join(dir, 'partial', 'robust.json'));
    assert.equal(part.images, 4);
    assert.deepEqual(part.partial, { of: 6, held: ['2–5'], missing: ['0–1'] });
    for (const [key, values] of Object.entries(expected.perImage)) assert.deepEqual(part.perImage[key as keyof typeof part.perImage], (values as unknown[]).slice(2), `perImage.${key}`);
    const robustShare = part.perImage.robust.filter(Boolean).length / 4;
    assert.equal(part.worstCase['all-R'], robustShare);
    assert.equal(part.intervals.worstCase['all-R']?.n, 4);
    assert.match(readFileSync(join(dir, 'partial', 'robust.html'), 'utf8'), /PARTIAL: 4 of the evaluation&#39;s 6 images|PARTIAL: 4 of the evaluation's 6 images/);
    // With image 0 held, the report says the masking checks were not run (--no-masking), not that they are elsewhere.
    const withZero = await merge([shards[0]!, '--partial', '--report', join(dir, 'partial-zero')]);
    assert.match(withZero.printed, /^PARTIAL: 2 of the evaluation's 6 images \(held 0–1; missing 2–5\), the shards done so far, not the evaluation's result\n/);
    assert.match(readFileSync(join(dir, 'partial-zero', 'robust.html'), 'utf8'), /No gradient-masking checks were run with this evaluation/);
    assert.doesNotMatch(readFileSync(join(dir, 'partial', 'robust.html'), 'utf8'), /No gradient-masking checks were run/);
    // Complete shards given with --partial merge to the complete report, unmarked.
    assert.equal((await merge([shards[0]!, shards[1]!, '--partial', '--report', join(dir, 'partial-complete'), '--json'])).code, 0);
    assert.deepEqual(withoutTimings(read(join(dir, 'partial-complete', 'robust.json'))), withoutTimings(expected));
    // A paired comparison refuses a partial merge against a complete evaluation of as many images.
    assert.throws(() => compareRobustness(part, { ...part, partial: undefined }), /holds images 2–5 of 6 \(a partial merge\), B all 4 images/);
    // ...and pairs a partial merge holding images 0–1 with the complete evaluation of the first 2 images.
    const zero = read(join(dir, 'partial-zero', 'robust.json'));
    assert.equal(compareRobustness(zero, { ...zero, partial: undefined }).images, 2);
    await assert.rejects(merge([shards[0]!]), /no shard holds images 2–5 of 6/);
    await assert.rejects(merge([shards[0]!, shards[1]!, shards[0]!]), /overlaps/);
    await assert.rejects(merge([join(dir, 'data')]), /holds no shard/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** N ranks in one process: allGatherObject resolves once every rank has given its value. */
function fakeWorlds(size: number): EvaluationWorld[] {
  let round: { values: unknown[]; arrived: number; resolve: (() => void)[] } | null = null;
  return Array.from({ length: size }, (_, rank) => ({
    rank, worldSize: size,
    allGatherObject<T>(value: T): Promise<T[]> {
      round ??= { values: [], arrived: 0, resolve: [] };
      const current = round;
      current.values[rank] = structuredClone(value);
      current.arrived++;
      const done = new Promise<T[]>((resolve) => current.resolve.push(() => resolve(current.values as T[])));
      if (current.arrived === size) {
        round = null;
        for (const r of current.resolve) r();
      }
      return done;
    },
  }));
}

test('an evaluation split over two ranks (fake process group): rank 0 writes the single-process report, bit for bit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-ranks-'));
  try {
    const model = tinyModelFile(dir);
    const data = tinyImageFolder(join(dir, 'data'), { perClass: 1 });
    const common = ['--model', model, '--data', data, '--attack', 'pgd', '--steps', '2', '--n', '4', '--batch-size', '2', '--re-evaluations', '2',
      '--budget', 'quick', '--json'];
    const single = join(dir, 'single');
    // With the masking checks: rank 0 runs them after the gather, on the first images, as one process does.
    assert.equal((await robust([...common, '--report', single])).code, 0);
    const report = join(dir, 'ranks');
    const values = parseCommandArgs([...common, '--report', report], ROBUST_OPTIONS).values;
    const runs = await Promise.all(fakeWorlds(2).map((world) => runRobustnessDistributed(values, world)));
    assert.equal(runs[1], null, 'only rank 0 reports');
    runs[0]!.model.dispose();
    const expected = read(join(single, 'robust.json'));
    assert.ok(expected.masking !== null);
    assert.deepEqual(withoutTimings(read(join(report, 'robust.json'))), withoutTimings(expected));
    assert.ok(!existsSync(join(report, 'robust-checkpoint')), 'the shared checkpoint is removed at the end');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
