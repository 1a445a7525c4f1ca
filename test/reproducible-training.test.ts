// `crossmax train` is reproducible (issue 15, section 2): the same --seed and --threads on the same machine give
// byte-identical model files, and a run killed with SIGKILL and resumed with --resume ends with those bytes too.
// Through the command in child processes: libtorch seeds its default generator from the OS when a process
// starts, so only fresh processes show whether anything (the initial weights, the prior, the data order) draws
// before --seed is applied.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CHECKPOINT_FILE, METRICS_FILE, MODEL_FILE, TIMING_FIELDS, readTrainingCheckpointHeader } from '../src/train/index.js';
import { tinyImageFolder } from './helpers/image-folder.js';

const command = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'crossmax.js');
let dir = '';
let data = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'crossmax-reproducible-'));
  // Two classes, four 16×16 training images each: two batches of 4 per epoch.
  data = tinyImageFolder(join(dir, 'data'), { classes: 2, perClass: 4, size: 16, splits: ['train', 'test'] });
});

after(() => rmSync(dir, { recursive: true, force: true }));

// Epochs of about 50 ms here: the kill after the first one must land while the rest still run.
const EPOCHS = 20;

function trainArgs(out: string, seed: number): string[] {
  return [command, 'train', '--data', data, '--out', out, '--preset', 'cifar-small', '--epochs', String(EPOCHS),
    '--batch-size', '4', '--eval-limit', '4', '--threads', '1', '--seed', String(seed), '--json'];
}

const childEnv = () => ({ ...process.env, CROSSMAX_NUM_THREADS: '1', CROSSMAX_CACHE_DIR: join(dir, 'cache') });

/** `crossmax train` to the end in a child process; returns the run folder. */
function trainRun(name: string, seed: number, extra: string[] = []): string {
  const out = join(dir, name);
  const child = spawnSync(process.execPath, [...trainArgs(out, seed), ...extra], { env: childEnv(), encoding: 'utf8', timeout: 120_000 });
  assert.equal(child.status, 0, `crossmax train (${name}) exited with ${child.status ?? child.signal}, stderr:\n${child.stderr}`);
  return out;
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** metrics.jsonl without the fields that depend on timing. */
function metricsWithoutTiming(out: string): unknown[] {
  return readFileSync(join(out, METRICS_FILE), 'utf8').trim().split('\n').map((line) =>
    Object.fromEntries(Object.entries(JSON.parse(line) as Record<string, unknown>).filter(([k]) => !TIMING_FIELDS.includes(k))));
}

/** The uninterrupted run with seed 7, shared by both tests. */
let reference: string | null = null;
const referenceRun = () => (reference ??= trainRun('seed-7', 7));

test('two fresh runs with the same --seed and --threads 1 write the same model bytes; another seed does not', () => {
  const [first, second, other] = [referenceRun(), trainRun('seed-7-again', 7), trainRun('seed-8', 8)];
  assert.equal(sha256(join(second, MODEL_FILE)), sha256(join(first, MODEL_FILE)), 'same seed, different model files');
  const metrics = metricsWithoutTiming(first);
  assert.equal(metrics.length, EPOCHS);
  assert.deepEqual(metricsWithoutTiming(second), metrics, 'same seed, different metrics');
  assert.notEqual(sha256(join(other, MODEL_FILE)), sha256(join(first, MODEL_FILE)), 'seeds 7 and 8 gave the same model file');
  assert.notDeepEqual(metricsWithoutTiming(other), metrics);
});

test('a run killed with SIGKILL after its first checkpoint and resumed with --resume ends with the same model bytes', async () => {
  const out = join(dir, 'seed-7-killed');
  const checkpoint = join(out, CHECKPOINT_FILE);
  const child = spawn(process.execPath, trainArgs(out, 7), { env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  // The checkpoint appears (atomically, by rename) after the first epoch; kill at once, with no chance to clean up.
  const poll = setInterval(() => { if (existsSync(checkpoint)) child.kill('SIGKILL'); }, 5);
  const { code, signal } = await exited;
  clearInterval(poll);
  assert.equal(signal, 'SIGKILL', `the run was to be killed after its first checkpoint, but exited with ${code}, stderr:\n${stderr}`);
  const { position } = readTrainingCheckpointHeader(checkpoint).state;
  assert.equal(position.completed, false);
  assert.ok(position.epoch >= 1 && position.epoch < EPOCHS, `killed at epoch ${position.epoch} of ${EPOCHS}`);
  assert.equal(existsSync(join(out, MODEL_FILE)), false);

  trainRun('seed-7-killed', 7, ['--resume']);
  const uninterrupted = referenceRun();
  assert.equal(sha256(join(out, MODEL_FILE)), sha256(join(uninterrupted, MODEL_FILE)), 'the resumed run wrote other model bytes');
  assert.deepEqual(metricsWithoutTiming(out), metricsWithoutTiming(uninterrupted), 'the resumed run wrote other metrics');
});
