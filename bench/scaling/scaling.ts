// bench/scaling: what data parallelism costs and gives on this machine, beside PyTorch's DDP (torch_side.py).
// One rank of a measurement (bench/scaling/run starts the ranks with the torchrun variables, or one process alone):
//   shapes   --model M                 the model's parameter shapes as JSON (torch_side.py reduces the same sizes)
//   allreduce --model M --steps S      ms per step of averaging M's gradients over the ranks (25 MB buckets)
//   train    --model M --batch B --steps S [--overlap off]   data-parallel SGD steps on random CIFAR-sized data;
//            rank 0 prints img/s. The gradients' all-reduce overlaps the backward pass (DDP's default) unless off.
// Models: 'recipe' (the cifar-small self-ensemble: the recipe's model, ~0.7 M parameters), 'resnet18' (CIFAR stem,
// 3 channels, 11 M parameters: the model torch_side.py builds too, for the crossmax/PyTorch ratio).
import { parseArgs } from 'node:util';
import { DistributedDataParallel, initProcessGroup, shardOfBatch, worldFromEnvironment, type ProcessGroup } from '../../src/distributed/index.js';
import { buildSelfEnsemble, presetConfig } from '../../src/ensemble/index.js';
import { crossEntropy, resnet18, type Module } from '../../src/nn/index.js';
import { SGD } from '../../src/optim/index.js';
import { getNumThreads, manualSeed, onesLike, rand, randint, tidy, type Tensor } from '../../src/tensor/index.js';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { model: { type: 'string', default: 'resnet18' }, steps: { type: 'string', default: '20' }, batch: { type: 'string', default: '128' },
    warmup: { type: 'string', default: '2' }, overlap: { type: 'string', default: 'on' } },
});
const mode = positionals[0] ?? 'train';
const steps = Number(args.steps);
const warmup = Number(args.warmup);

function makeModel(name: string): Module & { forward(x: Tensor): Tensor } {
  manualSeed(0);
  if (name === 'resnet18') return resnet18({ stem: 'cifar', inChannels: 3, numClasses: 10 });
  if (name === 'recipe') return buildSelfEnsemble(presetConfig('cifar-small')) as unknown as Module & { forward(x: Tensor): Tensor };
  throw new Error(`--model must be resnet18 or recipe, got ${name}`);
}

async function main(): Promise<void> {
  const model = makeModel(args.model!);
  if (mode === 'shapes') {
    console.log(JSON.stringify(model.parameters().map((p) => p.shape)));
    return;
  }
  const world = worldFromEnvironment();
  const group: ProcessGroup | null = world ? await initProcessGroup({ world }) : null;
  if (!['on', 'off'].includes(args.overlap!)) throw new Error(`--overlap must be on or off, got ${args.overlap}`);
  const overlap = args.overlap === 'on';
  const ddp = group ? new DistributedDataParallel(model, group, { overlap }) : null;
  await ddp?.synchronize();
  const rank = group?.rank ?? 0;
  const worldSize = group?.worldSize ?? 1;
  const parameters = model.parameters().reduce((n, p) => n + p.numel, 0);
  if (mode === 'allreduce') {
    if (!ddp) throw new Error('allreduce needs a distributed launch (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)');
    for (const p of model.parameters()) p.grad = onesLike(p);
    let start = 0;
    for (let s = 0; s < warmup + steps; s++) {
      if (s === warmup) { await group!.barrier(); start = performance.now(); }
      await ddp.allReduceGradients();
    }
    const ms = (performance.now() - start) / steps;
    if (rank === 0) console.log(JSON.stringify({ side: 'crossmax', mode, model: args.model, parameters, worldSize, msPerStep: ms }));
  } else if (mode === 'train') {
    const batch = Number(args.batch);
    const optimizer = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
    model.train();
    const x = rand([batch, 3, 32, 32]);
    const y = randint(0, 10, [batch]);
    const rows = shardOfBatch([...Array(batch).keys()], rank, worldSize);
    const xs = x.narrow(0, rows[0]!, rows.length);
    const ys = y.narrow(0, rows[0]!, rows.length);
    let start = 0;
    for (let s = 0; s < warmup + steps; s++) {
      if (s === warmup) { await group?.barrier(); start = performance.now(); }
      if (ddp && model.buffers().length > 0) await ddp.broadcastBuffers();
      tidy(() => {
        optimizer.zeroGrad();
        const loss = crossEntropy(model.forward(xs), ys);
        ddp?.prepareForBackward();
        loss.backward();
      });
      await ddp?.allReduceGradients();
      optimizer.step();
    }
    const seconds = (performance.now() - start) / 1000;
    if (rank === 0) {
      console.log(JSON.stringify({ side: 'crossmax', mode, model: args.model, parameters, worldSize, threads: getNumThreads(), batch,
        overlap: ddp ? overlap : null, imagesPerSecond: (steps * batch) / seconds }));
    }
  } else {
    throw new Error(`mode must be shapes, allreduce or train, got ${mode}`);
  }
  group?.destroy();
}

main().then(() => process.exit(0), (err: Error) => { console.error(`scaling: ${err.message}`); process.exit(1); });
