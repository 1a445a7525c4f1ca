// Data-parallel training over c10d's Gloo on loopback: two ranks (child processes, one thread each) equal one
// process on the concatenated batch; a dead rank and mismatched ranks fail naming the rank and the difference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { distributedBackends, shardOfBatch, worldFromEnvironment } from '../src/distributed/index.js';
import { crossEntropy } from '../src/nn/index.js';
import { SGD } from '../src/optim/index.js';
import { manualSeed } from '../src/tensor/index.js';
import { floatState, makeBatch, makeModel, type FixtureModel } from './helpers/distributed-fixture.js';

const worker = join(dirname(fileURLToPath(import.meta.url)), 'distributed-worker.js');
const skip = distributedBackends().includes('gloo') ? false : 'addon built without Gloo (install libgloo-dev)';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

interface RankResult { code: number | null; stderr: string; ms: number }

/** Starts `worldSize` ranks of the worker with the launcher's variables (torchrun's or Slurm's). */
async function runRanks(args: string[], options: { style?: 'torchrun' | 'slurm'; worldSize?: number } = {}): Promise<RankResult[]> {
  const port = await freePort();
  const worldSize = options.worldSize ?? 2;
  const started = Date.now();
  return Promise.all([...Array(worldSize).keys()].map((rank) => new Promise<RankResult>((resolve) => {
    const vars = options.style === 'slurm'
      ? { SLURM_PROCID: String(rank), SLURM_NTASKS: String(worldSize), SLURM_LOCALID: String(rank) }
      : { RANK: String(rank), WORLD_SIZE: String(worldSize), LOCAL_RANK: String(rank) };
    const env = { ...process.env, ...vars, MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), CROSSMAX_NUM_THREADS: '1',
      CROSSMAX_TEST_TIMEOUT_MS: '15000' };
    if (options.style === 'slurm') { delete env.RANK; delete env.WORLD_SIZE; }
    const child = spawn(process.execPath, [worker, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const kill = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code) => { clearTimeout(kill); resolve({ code, stderr, ms: Date.now() - started }); });
  })));
}

/** The single-process reference: the same model (rank 0's initial weights) and steps on the whole batches. */
function singleProcess(steps: number, kind: FixtureModel = 'mlp'): Record<string, number[]> {
  manualSeed(100);
  const model = makeModel(kind);
  const optimizer = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
  for (let step = 0; step < steps; step++) {
    const { x, y } = makeBatch(step);
    optimizer.zeroGrad();
    const loss = crossEntropy(model.forward(x), y);
    loss.backward();
    optimizer.step();
    for (const t of [x, y, loss]) t.dispose();
  }
  return floatState(model);
}

/** The tensors whose largest difference exceeds 1e-6 relative to the tensor's largest magnitude. */
function differences(actual: Record<string, number[]>, expected: Record<string, number[]>): string[] {
  assert.deepEqual(Object.keys(actual), Object.keys(expected));
  const out: string[] = [];
  for (const name of Object.keys(expected)) {
    const a = actual[name]!;
    const e = expected[name]!;
    const scale = Math.max(...e.map(Math.abs));
    const worst = Math.max(...a.map((v, i) => Math.abs(v - e[i]!)));
    if (!(worst <= 1e-6 * scale)) out.push(`${name}: max difference ${worst} > 1e-6 × ${scale}`);
  }
  return out;
}

function assertClose(actual: Record<string, number[]>, expected: Record<string, number[]>): void {
  assert.deepEqual(differences(actual, expected), []);
}

test('worldFromEnvironment reads torchrun variables, else Slurm, else null', () => {
  assert.equal(worldFromEnvironment({}), null);
  assert.deepEqual(worldFromEnvironment({ RANK: '1', WORLD_SIZE: '4', LOCAL_RANK: '1', MASTER_ADDR: 'n1', MASTER_PORT: '1234' }),
    { rank: 1, worldSize: 4, localRank: 1, masterAddr: 'n1', masterPort: 1234, source: 'torchrun' });
  assert.deepEqual(worldFromEnvironment({ SLURM_PROCID: '3', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_LAUNCH_NODE_IPADDR: '10.0.0.2' }),
    { rank: 3, worldSize: 8, localRank: 1, masterAddr: '10.0.0.2', masterPort: 29500, source: 'slurm' });
  assert.throws(() => worldFromEnvironment({ RANK: '2', WORLD_SIZE: '2' }), /rank 2 is not below the world size 2/);
  assert.throws(() => worldFromEnvironment({ RANK: 'x', WORLD_SIZE: '2' }), /RANK="x" is not a non-negative integer/);
});

test('shardOfBatch: the ranks\' slices concatenate to the batch', () => {
  const batch = [...Array(10).keys()];
  for (const w of [1, 2, 3, 4]) {
    const slices = [...Array(w).keys()].map((r) => shardOfBatch(batch, r, w));
    assert.deepEqual(slices.flat(), batch);
    assert.ok(Math.max(...slices.map((s) => s.length)) - Math.min(...slices.map((s) => s.length)) <= 1);
  }
});

test('one and three data-parallel steps on 2 ranks equal single-process steps on the concatenated batch, with the all-reduce overlapping the backward pass or after it', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-ddp-'));
  for (const [steps, when] of [[1, 'overlap'], [3, 'overlap'], [3, 'after']] as const) {
    const out = join(dir, `params-${steps}-${when}.json`);
    const results = await runRanks(['steps', String(steps), out, 'mlp', when]);
    for (const r of results) {
      assert.equal(r.code, 0, r.stderr);
      // Tiny buckets: with overlap, buckets start inside the backward pass (not all: the first layer's finish it).
      const started = Number(/buckets started during backward: (\d+)/.exec(r.stderr)?.[1]);
      if (when === 'overlap') assert.ok(started > 0, `no bucket started during backward: ${r.stderr}`);
      else assert.equal(started, 0);
    }
    assertClose(JSON.parse(readFileSync(out, 'utf8')) as Record<string, number[]>, singleProcess(steps));
  }
});

test('with synchronised BatchNorm, one and three steps on 2 ranks equal single-process steps (parameters and running statistics); per-rank BatchNorm differs', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-syncbn-'));
  for (const steps of [1, 3]) {
    const expected = singleProcess(steps, 'bn');
    const synced = join(dir, `sync-${steps}.json`);
    for (const r of await runRanks(['steps', String(steps), synced, 'syncbn'])) assert.equal(r.code, 0, r.stderr);
    assertClose(JSON.parse(readFileSync(synced, 'utf8')) as Record<string, number[]>, expected);
    // Without synchronisation each rank normalises its own half: the same test must then fail, on the weights
    // before the BatchNorms and on the running statistics.
    const local = join(dir, `local-${steps}.json`);
    for (const r of await runRanks(['steps', String(steps), local, 'bn'])) assert.equal(r.code, 0, r.stderr);
    const wrong = differences(JSON.parse(readFileSync(local, 'utf8')) as Record<string, number[]>, expected);
    for (const name of ['0.weight', '1.running_mean', '1.running_var', '4.running_var']) {
      assert.ok(wrong.some((w) => w.startsWith(`${name}:`)), `per-rank BatchNorm should differ on ${name}; differing: ${wrong.join('; ')}`);
    }
  }
});

test('synchronised BatchNorm on 3 ranks (Slurm variables, uneven slices 4/3/3) equals the single process', { skip }, async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'crossmax-syncbn-')), 'state.json');
  for (const r of await runRanks(['steps', '2', out, 'syncbn'], { style: 'slurm', worldSize: 3 })) assert.equal(r.code, 0, r.stderr);
  assertClose(JSON.parse(readFileSync(out, 'utf8')) as Record<string, number[]>, singleProcess(2, 'bn'));
});

test('ranks started with Slurm variables (3 ranks, uneven slices) equal the single process too', { skip }, async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'crossmax-ddp-')), 'params.json');
  const results = await runRanks(['steps', '2', out], { style: 'slurm', worldSize: 3 });
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  assertClose(JSON.parse(readFileSync(out, 'utf8')) as Record<string, number[]>, singleProcess(2));
});

for (const dead of [1, 0]) {
  test(`rank ${dead} dies mid-epoch${dead === 0 ? ' (it hosts the store)' : ''}: the other fails naming it, within the timeout`, { skip }, async () => {
    const results = await runRanks(['die', String(dead)]);
    const survivor = results[1 - dead]!;
    assert.equal(results[dead]!.code, 3);
    assert.equal(survivor.code, 1, survivor.stderr);
    assert.match(survivor.stderr, new RegExp(`lost rank ${dead}\\b`));
    assert.ok(survivor.ms < 40_000, `the survivor took ${survivor.ms} ms to notice`);
  });
}

test('ranks with different model configurations are refused, naming the difference', { skip }, async () => {
  const results = await runRanks(['mismatch']);
  for (const r of results) {
    assert.equal(r.code, 1);
    assert.match(r.stderr, /modelConfig differs on rank 1 from rank 0's \(width: 16 on rank 0, 32 there\)/);
  }
});
