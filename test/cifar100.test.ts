// CIFAR-100: the copy laid out as ../shared/datasets/cifar-100 (test.bin + WebDataset training shards), fine and
// coarse labels, the fallbacks (an official release on disk; the download, here refused offline with a message that
// says where to put the archive), and 100 classes through `crossmax train`, `crossmax eval` and the report. Every
// data set is made here, tiny; the check of the fine-to-coarse table against the real test.bin runs where
// ../shared is beside the project.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  CIFAR100_FINE_TO_COARSE, cifar100SuperclassRepresentatives, isCifar100Copy, loadDataSpec, loadDefaultCifar100,
  parseDataSpec, projectRoot, readCifar100Copy,
} from '../src/data/index.js';
import { trainCommand } from '../src/cli/train-command.js';
import { evalCommand } from '../src/cli/eval-command.js';
import { generateCommand } from '../src/cli/generate-command.js';
import { readModelInfo } from '../src/ensemble/index.js';
import { captureLog } from './helpers/self-ensemble.js';
import { planar, pngBytes, rgbPixels, writeShard } from './helpers/shards.js';

const work = mkdtempSync(join(tmpdir(), 'crossmax-cifar100-test-'));
const savedCache = process.env.CROSSMAX_CACHE_DIR;
before(() => (process.env.CROSSMAX_CACHE_DIR = join(work, 'cache')));
after(() => {
  if (savedCache === undefined) delete process.env.CROSSMAX_CACHE_DIR;
  else process.env.CROSSMAX_CACHE_DIR = savedCache;
  rmSync(work, { recursive: true, force: true });
});

const FINE = Array.from({ length: 100 }, (_, i) => `fine${i}`);
const COARSE = Array.from({ length: 20 }, (_, i) => `coarse${i}`);

/** test.bin records (coarse, fine, 3,072 pixel bytes) for the given fine labels. */
function testRecords(fine: readonly number[]): Buffer {
  return Buffer.concat(fine.map((f, r) => Buffer.concat([Buffer.from([CIFAR100_FINE_TO_COARSE[f]!, f]), Buffer.from(planar(rgbPixels(32, 32, 100 + r), 32, 32))])));
}

/** A copy laid out as ../shared/datasets/cifar-100: test.bin, names, train-wds/train-0N.tar of PNG + .cls samples. */
function tinyCopy(dir: string, trainFine: readonly number[], testFine: readonly number[]): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'test.bin'), testRecords(testFine));
  writeFileSync(join(dir, 'fine_label_names.txt'), FINE.join('\n') + '\n');
  writeFileSync(join(dir, 'coarse_label_names.txt'), COARSE.join('\n') + '\n');
  const half = Math.ceil(trainFine.length / 2);
  [trainFine.slice(0, half), trainFine.slice(half)].forEach((part, s) => {
    writeShard(join(dir, 'train-wds', `train-0${s}.tar`), part.flatMap((f, i): [string, Uint8Array | string][] => {
      const index = String(s * half + i).padStart(5, '0');
      return [[`${index}.png`, pngBytes(rgbPixels(32, 32, s * half + i), 32, 32)], [`${index}.cls`, String(f)]];
    }));
  });
  return dir;
}

test('CIFAR100_FINE_TO_COARSE: each superclass holds five fine classes; the representatives are the first of each', () => {
  const counts = new Array<number>(20).fill(0);
  for (const c of CIFAR100_FINE_TO_COARSE) counts[c]!++;
  assert.deepEqual(counts, new Array(20).fill(5));
  const reps = cifar100SuperclassRepresentatives();
  assert.equal(reps.length, 20);
  reps.forEach((f, c) => {
    assert.equal(CIFAR100_FINE_TO_COARSE[f], c);
    assert.ok(CIFAR100_FINE_TO_COARSE.slice(0, f).every((x) => x !== c));
  });
});

test('CIFAR100_FINE_TO_COARSE agrees with every record of the official test.bin (where ../shared is present)', (t) => {
  const path = resolve(projectRoot(), '..', 'shared', 'datasets', 'cifar-100', 'test.bin');
  if (!existsSync(path)) {
    t.skip(`${path} not present`);
    return;
  }
  const bytes = readFileSync(path);
  assert.equal(bytes.length, 10000 * 3074);
  for (let r = 0; r < 10000; r++) assert.equal(CIFAR100_FINE_TO_COARSE[bytes[r * 3074 + 1]!], bytes[r * 3074], `record ${r}`);
});

test('readCifar100Copy: training from the shards, test from test.bin, fine or coarse labels, counts checked', () => {
  const dir = tinyCopy(join(work, 'copy'), [19, 29, 0, 11, 1], [49, 33, 72]);
  assert.ok(isCifar100Copy(dir));
  const options = { checkCounts: false, cacheDir: null };
  const train = readCifar100Copy(dir, { ...options, split: 'train' });
  assert.equal(train.name, 'cifar100/train');
  assert.deepEqual([...train.labels], [19, 29, 0, 11, 1]);
  assert.deepEqual(train.classes, FINE);
  assert.deepEqual([...train.images.subarray(3 * 3072, 4 * 3072)], [...planar(rgbPixels(32, 32, 3), 32, 32)]);
  assert.match(train.source, /train-wds \(CIFAR-100 training images as JPEG in WebDataset shards; lossy\)/);
  const coarseTrain = readCifar100Copy(dir, { ...options, split: 'train', labelKind: 'coarse' });
  assert.equal(coarseTrain.name, 'cifar100-coarse/train');
  assert.deepEqual([...coarseTrain.labels], [11, 15, 4, 14, 1]);
  assert.deepEqual(coarseTrain.classes, COARSE);
  const testSet = readCifar100Copy(dir, { ...options, split: 'test' });
  assert.deepEqual([...testSet.labels], [49, 33, 72]);
  assert.deepEqual([...testSet.images.subarray(3072, 2 * 3072)], [...planar(rgbPixels(32, 32, 101), 32, 32)]);
  assert.match(testSet.source, /test\.bin \(official CIFAR-100 binary test file\)/);
  assert.deepEqual([...readCifar100Copy(dir, { ...options, split: 'test', labelKind: 'coarse' }).labels], [10, 10, 0]);
  // A copy that is not the whole release is an error unless asked for.
  assert.throws(() => readCifar100Copy(dir, { split: 'test' }), /test\.bin: 3 images, expected 10,000/);
  assert.throws(() => readCifar100Copy(dir, { split: 'train', cacheDir: null }), /train-wds: 5 images, expected 50,000/);
  rmSync(join(dir, 'coarse_label_names.txt'));
  assert.ok(!isCifar100Copy(dir));
  assert.throws(() => readCifar100Copy(dir, options), /coarse_label_names\.txt: missing/);
});

test('loadDefaultCifar100: the shared copy, else an official release on disk, else the download (refused offline, saying where to put it)', async () => {
  const project = join(work, 'fresh-clone', 'crossmax');
  mkdirSync(project, { recursive: true });
  const root = join(work, 'datasets-cache');
  const ensure = { root, download: false };
  await assert.rejects(loadDefaultCifar100({ projectRoot: project, ensure, split: 'test' }),
    /official CIFAR-100 binary release not found and downloading is off.*Put cifar-100-binary\.tar\.gz \(md5 03b5dce01913d631647c71ecec9e9cb8\)/s);
  // An official binary release in the cache: train.bin and test.bin, same record layout.
  const release = join(root, 'cifar-100-binary');
  mkdirSync(release, { recursive: true });
  writeFileSync(join(release, 'train.bin'), testRecords([5, 6]));
  writeFileSync(join(release, 'test.bin'), testRecords([7]));
  writeFileSync(join(release, 'fine_label_names.txt'), FINE.join('\n'));
  writeFileSync(join(release, 'coarse_label_names.txt'), COARSE.join('\n'));
  const fromRelease = await loadDefaultCifar100({ projectRoot: project, ensure, split: 'train', labelKind: 'coarse', checkCounts: false });
  assert.deepEqual([...fromRelease.labels], [CIFAR100_FINE_TO_COARSE[5], CIFAR100_FINE_TO_COARSE[6]]);
  assert.match(fromRelease.source, /cifar-100-binary \(official CIFAR-100 binary release\)/);
  // The shared copy beside the project wins.
  tinyCopy(join(work, 'fresh-clone', 'shared', 'datasets', 'cifar-100'), [3, 4], [8, 9]);
  const fromCopy = await loadDefaultCifar100({ projectRoot: project, ensure, split: 'test', checkCounts: false });
  assert.deepEqual([...fromCopy.labels], [8, 9]);
});

test('--data cifar100:DIR and cifar100-coarse:DIR name the copy or release; a bare copy directory is detected', () => {
  const dir = tinyCopy(join(work, 'spec-copy'), [1, 2], [3]);
  assert.equal(parseDataSpec(`cifar100:${dir}`, 'train').source.name, 'cifar100');
  assert.equal(parseDataSpec(`cifar100-coarse:${dir}`, 'train').source.name, 'cifar100-coarse');
  assert.equal(parseDataSpec(dir, 'test').source.name, 'cifar100');
  assert.equal(parseDataSpec('cifar100', 'test').path, undefined);
});

test('100 classes through crossmax train (tiny WebDataset shards) and crossmax eval, with a readable report', async () => {
  const data = join(work, 'wds100');
  const shard = (split: string, n: number, offset: number) => writeShard(join(data, split, `${split}-000.tar`),
    Array.from({ length: n }, (_, i): [string, Uint8Array | string][] => [
      [`${String(i).padStart(5, '0')}.png`, pngBytes(rgbPixels(32, 32, offset + i), 32, 32)],
      [`${String(i).padStart(5, '0')}.cls`, String((37 * i + offset) % 100)],
    ]).flat());
  shard('train', 8, 0);
  shard('test', 4, 5);
  writeFileSync(join(data, 'classes.txt'), FINE.join('\n'));
  const out = join(work, 'run100');
  const trained = await captureLog(() => trainCommand(['--data', `wds:${data}`, '--out', out, '--preset', 'cifar-fast', '--epochs', '1',
    '--batch-size', '4', '--threads', '1', '--json']));
  assert.equal(trained.code, 0);
  const result = JSON.parse(trained.printed) as { model: string; report: string; evaluation: { count: number; confusion: number[][] } };
  assert.equal(result.evaluation.count, 4);
  assert.equal(result.evaluation.confusion.length, 100);
  const { config } = readModelInfo(result.model);
  assert.equal(config.numClasses, 100);
  assert.deepEqual(config.classes, FINE);
  // The report lists confusions and per-class accuracy instead of a 100-column matrix.
  const html = readFileSync(result.report, 'utf8');
  assert.match(html, /most frequent confusions/);
  assert.match(html, /Accuracy per class/);
  assert.doesNotMatch(html, /Confusion matrix \(rows: true class/);

  const evaluated = await captureLog(() => evalCommand(['--model', result.model, '--data', `wds:${data}`, '--threads', '1']));
  assert.equal(evaluated.code, 0);
  assert.match(evaluated.printed, /clean accuracy on 4 images/);
  assert.match(evaluated.printed, /most frequent confusions \(of 100 classes/);
  // The same model on data with other classes is refused, naming both counts.
  const ten = join(work, 'wds10');
  writeShard(join(ten, 'test', 'a.tar'), [['k.png', pngBytes(rgbPixels(32, 32, 1), 32, 32)], ['k.cls', '9']]);
  writeFileSync(join(ten, 'classes.txt'), Array.from({ length: 10 }, (_, i) => `c${i}`).join('\n'));
  await assert.rejects(evalCommand(['--model', result.model, '--data', `wds:${ten}`, '--threads', '1']), /the model has 100 classes, .* has 10/);
  // Generation for a 100-class model: one fine class per superclass (20 images), or a list of classes.
  const generated = join(work, 'generated');
  const gen = await captureLog(() => generateCommand(['--model', result.model, '--class', 'superclasses', '--steps', '1', '--copies', '1',
    '--out', generated, '--threads', '1', '--json']));
  assert.equal(gen.code, 0);
  const summary = JSON.parse(readFileSync(join(generated, 'generate.json'), 'utf8')) as { classes: unknown[] };
  assert.deepEqual(summary.classes.map((c) => (typeof c === 'string' ? c : (c as { name: string }).name)), cifar100SuperclassRepresentatives().map((f) => FINE[f]));
  await assert.rejects(generateCommand(['--model', result.model, '--class', 'fine3,nope', '--steps', '1', '--out', generated]), /--class nope: a class name/);
  // And the CLI's data errors are usage errors.
  await assert.rejects(loadDataSpec(`cifar100:${ten}`, 'test'), /not a CIFAR-100 copy/);
});
