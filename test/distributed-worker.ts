// One rank of the distributed tests (test/distributed.test.ts starts two with the torchrun or Slurm variables).
// Mode (argv[2]):
//   steps N OUT [mlp|bn|syncbn] [after]   N data-parallel SGD steps of a small model on fixed data (bn: with
//                 BatchNorm and per-rank statistics, syncbn: the same model with synchronised BatchNorm); rank 0 writes
//                 its parameters and running statistics to OUT. The gradients' all-reduce overlaps the backward pass
//                 (prints how many buckets started inside it), except with syncbn or `after` (reduced after it)
//   die R         rank R exits in the middle of the second step; the other must fail naming it
//   mismatch      the ranks pass different model configurations to the consistency check
import { writeFileSync } from 'node:fs';
import { DistributedDataParallel, initProcessGroup, shardOfBatch, checkConsistency, SyncBatchNorm } from '../src/distributed/index.js';
import { crossEntropy } from '../src/nn/index.js';
import { SGD } from '../src/optim/index.js';
import { manualSeed } from '../src/tensor/index.js';
import { floatState, makeModel, makeBatch } from './helpers/distributed-fixture.js';


async function main(): Promise<void> {
  const [mode, arg, out] = process.argv.slice(2);
  const group = await initProcessGroup({ timeoutMs: Number(process.env.CROSSMAX_TEST_TIMEOUT_MS ?? 20000) });
  try {
    if (mode === 'mismatch') {
      await checkConsistency(group, { modelConfig: { width: group.rank === 0 ? 16 : 32 }, data: 'same' });
      return;
    }
    // Different initial weights per rank: synchronize() must replace them by rank 0's.
    manualSeed(100 + group.rank);
    const kind = process.argv[5] ?? 'mlp';
    if (!['mlp', 'bn', 'syncbn'].includes(kind)) throw new Error(`unknown model ${kind}`);
    const model = makeModel(kind === 'mlp' ? 'mlp' : 'bn');
    const sync = kind === 'syncbn' ? new SyncBatchNorm(model, group) : null;
    // Tiny buckets: several all-reduces in flight at once, which the ranks must pair up in the same order.
    const overlap = kind !== 'syncbn' && process.argv[6] !== 'after';
    const ddp = new DistributedDataParallel(model, group, { bucketMegabytes: 0.0005, overlap });
    await ddp.synchronize({ modelConfig: { width: 16 } });
    const optimizer = new SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
    const steps = mode === 'die' ? 1000 : Number(arg);
    for (let step = 0; step < steps; step++) {
      const { x, y } = makeBatch(step);
      const rows = shardOfBatch([...Array(x.shape[0]).keys()], group.rank, group.worldSize);
      const xs = x.narrow(0, rows[0]!, rows.length);
      const ys = y.narrow(0, rows[0]!, rows.length);
      const share = rows.length / x.shape[0]!;
      // As PyTorch's DDP (broadcast_buffers): rank 0's running statistics before every step.
      if (kind !== 'mlp') await ddp.broadcastBuffers();
      optimizer.zeroGrad();
      let loss;
      if (sync) {
        loss = (await sync.forwardBackward(() => ({ loss: crossEntropy(model.forward(xs), ys) }), { share })).result.loss;
      } else {
        loss = crossEntropy(model.forward(xs), ys);
        ddp.prepareForBackward(share);
        loss.backward();
        if (step === 0) process.stderr.write(`buckets started during backward: ${ddp.bucketsLaunchedDuringBackward}\n`);
      }
      if (mode === 'die' && step === 1 && group.rank === Number(arg)) process.exit(3);
      await ddp.allReduceGradients({ share });
      optimizer.step();
      for (const t of [x, y, xs, ys, loss]) t.dispose();
    }
    if (group.rank === 0 && out) {
      writeFileSync(out, JSON.stringify(floatState(model)));
    }
  } finally {
    group.destroy();
  }
}

main().then(() => process.exit(0), (err: Error) => {
  process.stderr.write(`rank ${process.env.RANK ?? process.env.SLURM_PROCID}: ${err.message}\n`);
  process.exit(1);
});
