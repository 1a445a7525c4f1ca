// scripts/gpu-check's dry run (`--device cpu --tiny`): every stage of the GPU readiness check runs here on a tiny
// setting, so the script that a GPU machine's short lease depends on cannot rot between the sessions that have one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { distributedBackends } from '../src/distributed/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shared = join(root, '..', 'shared', 'datasets');
const haveData = existsSync(join(shared, 'cifar10-jpeg')) && existsSync(join(shared, 'cifar-10-batches-bin', 'test_batch.bin'));

interface StageRecord { name: string; status: string; seconds: number; limit: number; result: Record<string, unknown> | null; error: string | null }

test('gpu-check --device cpu --tiny: every stage runs and the table and JSON are written', {
  skip: haveData ? false : 'needs ../shared/datasets (cifar10-jpeg and the binary release)',
}, () => {
  const out = mkdtempSync(join(tmpdir(), 'crossmax-gpu-check-'));
  try {
    const run = spawnSync('bash', [join(root, 'scripts', 'gpu-check'), '--device', 'cpu', '--tiny', '--out', out], {
      encoding: 'utf8', timeout: 600_000, env: { ...process.env, CROSSMAX_GPU_WORK: join(out, 'work') },
    });
    const report = JSON.parse(readFileSync(join(out, 'gpu-check.json'), 'utf8')) as { stages: StageRecord[]; totalSeconds: number };
    const failed = report.stages.filter((s) => s.status !== 'ok').map((s) => `${s.name}: ${s.status} (${s.error})`);
    assert.deepEqual(failed, [], `every stage ok\n${run.stdout}\n${run.stderr.slice(-3000)}`);
    assert.equal(run.status, 0);
    assert.deepEqual(report.stages.map((s) => s.name), ['environment', 'build', 'distributed', 'tests', 'parity', 'train', 'eval', 'autoattack']);
    for (const s of report.stages) assert.ok(s.seconds <= s.limit + 5, `${s.name} kept to its limit: ${s.seconds} s of ${s.limit}`);
    const byName = new Map(report.stages.map((s) => [s.name, s.result!]));
    assert.equal(byName.get('distributed')!.backend, 'gloo');
    assert.ok((byName.get('tests')!.pass as number) >= 9, 'the device variants ran (on cpu)');
    assert.ok(byName.get('parity')!['resnet18'] && byName.get('parity')!['cifar-fast'], 'both parity models');
    assert.equal(byName.get('eval')!.images, 40, 'the tiny test folder: 4 images of each class');
    assert.equal(byName.get('autoattack')!.images, 4);
    const table = readFileSync(join(out, 'gpu-check.md'), 'utf8');
    assert.match(table, /\| autoattack \| ok \|/);
    assert.match(run.stdout, /\| stage \| status \|/, 'the table is printed');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('gpu-check\'s distributed stage: a world of one over Gloo on cpu; a backend the addon lacks is reported by name', {
  skip: distributedBackends().includes('gloo') ? false : 'addon built without Gloo (install libgloo-dev)',
}, () => {
  const out = mkdtempSync(join(tmpdir(), 'crossmax-gpu-check-'));
  try {
    const run = spawnSync('node', [join(root, 'scripts', 'gpu-check.mjs'), '--device', 'cpu', '--tiny', '--out', out, '--stages', 'distributed'],
      { encoding: 'utf8', timeout: 60_000, env: { ...process.env, CROSSMAX_NUM_THREADS: '1' } });
    const report = JSON.parse(readFileSync(join(out, 'gpu-check.json'), 'utf8')) as { stages: StageRecord[] };
    const stage = report.stages[0]!;
    assert.equal(stage.status, 'ok', `${stage.error}\n${run.stdout}`);
    assert.equal(run.status, 0);
    assert.equal(stage.result!.backend, 'gloo');
    assert.equal(stage.result!.worldSize, 1);
    assert.ok((stage.result!.syncBatchNormRelativeDifference as number) <= 1e-4);
    assert.match(readFileSync(join(out, 'gpu-check.md'), 'utf8'), /\| distributed \| ok \| .*gloo on cpu, world size 1/);
    if (!distributedBackends().includes('nccl')) {
      // This addon has no NCCL: the cuda check says so instead of crashing.
      spawnSync('node', [join(root, 'scripts', 'gpu-check.mjs'), '--device', 'cuda', '--tiny', '--out', out, '--stages', 'distributed'],
        { encoding: 'utf8', timeout: 60_000 });
      const cuda = (JSON.parse(readFileSync(join(out, 'gpu-check.json'), 'utf8')) as { stages: StageRecord[] }).stages[0]!;
      assert.equal(cuda.status, 'failed');
      assert.match(cuda.error!, /the addon was built without nccl \(it has: gloo\)/);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('gpu-check kills a stage that hangs (its child processes too) at its limit, and skips a stage left no time', () => {
  const out = mkdtempSync(join(tmpdir(), 'crossmax-gpu-check-'));
  try {
    // A 'python' that never answers, through a grandchild: the stage's process group is killed at the limit.
    const hanging = join(out, 'hanging-python');
    writeFileSync(hanging, '#!/bin/sh\nsleep 97.25\n', { mode: 0o755 });
    const started = Date.now();
    const run = spawnSync('node', [join(root, 'scripts', 'gpu-check.mjs'), '--device', 'cpu', '--tiny', '--out', out,
      '--budget', '6', '--stages', 'environment', '--python', hanging], { encoding: 'utf8', timeout: 60_000 });
    const seconds = (Date.now() - started) / 1000;
    assert.equal(run.status, 1, run.stderr);
    const report = JSON.parse(readFileSync(join(out, 'gpu-check.json'), 'utf8')) as { stages: StageRecord[] };
    assert.equal(report.stages[0]!.status, 'timeout');
    assert.match(report.stages[0]!.error!, /did not answer within/);
    assert.ok(seconds < 15, `ended at the budget: ${seconds} s`);
    const left = spawnSync('pgrep', ['-f', 'sleep 97.25'], { encoding: 'utf8' });
    assert.equal(left.stdout.trim(), '', 'no process of the stage outlives it');
    // With 12 s for environment and build, the build's reserve (30 s) leaves the environment stage no time.
    const skipped = spawnSync('node', [join(root, 'scripts', 'gpu-check.mjs'), '--device', 'cpu', '--tiny', '--out', out,
      '--budget', '12', '--stages', 'environment,build', '--python', hanging], { encoding: 'utf8', timeout: 60_000 });
    const second = JSON.parse(readFileSync(join(out, 'gpu-check.json'), 'utf8')) as { stages: StageRecord[] };
    assert.equal(second.stages[0]!.status, 'skipped', skipped.stdout);
    assert.match(second.stages[0]!.error!, /no time left/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('gpu-check refuses bad options by name', () => {
  for (const [args, message] of [
    [['--device', 'tpu'], /--device tpu: cpu, cuda or cuda:N/],
    [['--stages', 'environment,bogus'], /unknown stage bogus/],
    [['--budget', 'soon'], /--budget soon/],
  ] as const) {
    const run = spawnSync('node', [join(root, 'scripts', 'gpu-check.mjs'), ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(run.status, 2);
    assert.match(run.stderr, message);
  }
});
