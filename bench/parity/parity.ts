// bench/parity: the same CIFAR ResNet-18 (12-channel input, batch 128) in crossmax and in PyTorch (Debian's
// python3-torch, the same libtorch), timed alternately in one invocation so machine noise hits both alike.
// Prints img/s of each and the ratio for (a) a training step, (b) an input-gradient step, (c) inference, and
// checks that both produce the same loss and gradients from the same weights.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  Tensor, getNumThreads, grad, inferenceMode, manualSeed, noGrad, rand, randint, synchronize, tidy, buildInfo,
} from '../../src/tensor/index.js';
import { crossEntropy, resnet18, type ResNet } from '../../src/nn/index.js';
import { SGD } from '../../src/optim/index.js';
import { loadSafetensors, saveSafetensors } from '../../src/serialize/safetensors.js';

type Mode = 'train' | 'input_grad' | 'inference';
const modes: Mode[] = ['train', 'input_grad', 'inference'];
const modeLabel: Record<Mode, string> = {
  train: '(a) training step (forward, backward, SGD)',
  input_grad: '(b) input-gradient step (attack core)',
  inference: '(c) inference',
};

const { values: args } = parseArgs({
  options: {
    batch: { type: 'string', default: '128' },
    // pairs per mode = rounds × steps (twice that for inference)
    rounds: { type: 'string', default: '3' },
    steps: { type: 'string', default: '2' },
    json: { type: 'boolean', default: false },
    python: { type: 'string', default: '/usr/bin/python3' },
  },
});
const batch = Number(args.batch);
const rounds = Number(args.rounds);
const steps = Number(args.steps);

/** The PyTorch worker (bench/parity/torch_side.py), spoken to in JSON lines. */
class TorchWorker {
  private readonly proc;
  private readonly lines: AsyncIterator<string>;
  constructor(python: string) {
    const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bench', 'parity', 'torch_side.py');
    this.proc = spawn(python, [script], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = createInterface({ input: this.proc.stdout! })[Symbol.asyncIterator]();
  }
  async ask(request: object): Promise<Record<string, unknown>> {
    this.proc.stdin!.write(JSON.stringify(request) + '\n');
    const { value, done } = await this.lines.next();
    if (done) throw new Error('the PyTorch worker exited (is python3-torch installed? run `bash scripts/setup.sh --tests`)');
    const reply = JSON.parse(value) as Record<string, unknown>;
    if (!reply.ok) throw new Error(`PyTorch worker: ${String(reply.error)}`);
    return reply;
  }
  close(): void { this.proc.stdin!.end(); }
}

function relativeError(a: Tensor, b: Tensor): number {
  return tidy(() => a.sub(b).norm().item() / Math.max(b.norm().item(), 1e-30));
}

function makeStep(model: ResNet, optimizer: SGD, x: Tensor, y: Tensor): Record<Mode, () => void> {
  return {
    train: () => tidy(() => {
      model.train();
      optimizer.zeroGrad();
      crossEntropy(model.forward(x), y).backward();
      optimizer.step();
    }),
    input_grad: () => tidy(() => {
      model.eval();
      const xa = x.clone().setRequiresGrad(true);
      const [g] = grad(crossEntropy(model.forward(xa), y), [xa]);
      noGrad(() => xa.detach().add(g!.sign().mul(2 / 255)).clamp_(0, 1));
    }),
    inference: () => tidy(() => {
      model.eval();
      inferenceMode(() => { model.forward(x); });
    }),
  };
}

function timeSteps(step: () => void, n: number): number {
  synchronize();
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) step();
  synchronize();
  return Number(process.hrtime.bigint() - start) / 1e9 / n;
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-parity-'));
  const worker = new TorchWorker(args.python);
  try {
    manualSeed(0);
    const model = resnet18({ stem: 'cifar', inChannels: 12, numClasses: 10 });
    const x = rand([batch, 12, 32, 32]);
    const y = randint(0, 10, [batch]);
    saveSafetensors(join(dir, 'weights.safetensors'), model.stateDict(), { depth: '18', in_channels: '12', num_classes: '10' });
    saveSafetensors(join(dir, 'batch.safetensors'), { images: x, labels: y });
    const threads = getNumThreads();
    const loaded = await worker.ask({ cmd: 'load', weights: join(dir, 'weights.safetensors'), batch: join(dir, 'batch.safetensors'), threads });

    // Correctness first: same weights, same batch, train-mode loss and every gradient.
    const check = await worker.ask({ cmd: 'check', out: join(dir, 'torch_grads.safetensors') });
    const reference = loadSafetensors(join(dir, 'torch_grads.safetensors')).tensors;
    const errors = tidy(() => {
      model.train();
      model.zeroGrad();
      const xa = x.clone().setRequiresGrad(true);
      const loss = crossEntropy(model.forward(xa), y);
      loss.backward();
      const errs: [string, number][] = [['loss', Math.abs(loss.item() - (check.loss as number)) / Math.abs(check.loss as number)]];
      errs.push(['input gradient', relativeError(xa.grad!, reference.get('input_grad')!)]);
      for (const [name, p] of model.namedParameters()) errs.push([`grad ${name}`, relativeError(p.grad!, reference.get(`grad.${name}`)!)]);
      model.zeroGrad();
      return errs;
    });
    for (const t of reference.values()) t.dispose();
    const worst = errors.reduce((a, b) => (b[1] > a[1] ? b : a));
    const gradientsMatch = worst[1] <= 1e-4;

    const optimizer = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
    const step = makeStep(model, optimizer, x, y);
    // This machine's speed drifts by tens of percent within seconds (shared host), so each sample is a pair of
    // adjacent measurements, crossmax then PyTorch, and the ratio is the median over the pairs' ratios.
    const results: Record<string, { crossmax: number; pytorch: number; ratio: number; pairs: number }> = {};
    for (const mode of modes) {
      const pairs = mode === 'inference' ? 2 * rounds * steps : rounds * steps;
      step[mode]();
      await worker.ask({ cmd: 'time', mode, steps: 1, warmup: 1 });
      const ours: number[] = [];
      const theirs: number[] = [];
      for (let i = 0; i < pairs; i++) {
        ours.push(timeSteps(step[mode], 1));
        theirs.push((await worker.ask({ cmd: 'time', mode, steps: 1, warmup: 0 })).seconds_per_step as number);
        process.stderr.write(`  ${mode} pair ${i + 1}/${pairs}: crossmax ${(batch / ours.at(-1)!).toFixed(1)} img/s, ` +
          `PyTorch ${(batch / theirs.at(-1)!).toFixed(1)} img/s\n`);
      }
      results[mode] = {
        crossmax: batch / median(ours),
        pytorch: batch / median(theirs),
        ratio: median(ours.map((t, i) => theirs[i]! / t)),
        pairs,
      };
    }

    const info = buildInfo();
    const summary = {
      model: 'CIFAR ResNet-18, 12-channel 32x32 input, 10 classes', batch, threads,
      libtorch: info.torchVersion, pytorch: loaded.version, device: 'cpu', results,
      gradientCheck: { worst: { name: worst[0], relativeError: worst[1] }, tolerance: 1e-4, pass: gradientsMatch },
    };
    if (args.json) {
      console.log(JSON.stringify(summary, null, 2));
    } else {
      console.log(`\nparity: ${summary.model}, batch ${batch}, ${threads} threads, libtorch ${info.torchVersion} (crossmax) vs PyTorch ${String(loaded.version)}`);
      console.log('img/s: median over the steps; ratio: median over adjacent (crossmax, PyTorch) pairs of PyTorch time / crossmax time\n');
      console.log('| step | pairs | crossmax img/s | PyTorch img/s | ratio |');
      console.log('|---|---:|---:|---:|---:|');
      for (const mode of modes) {
        const r = results[mode]!;
        console.log(`| ${modeLabel[mode]} | ${r.pairs} | ${r.crossmax.toFixed(1)} | ${r.pytorch.toFixed(1)} | ${r.ratio.toFixed(3)} |`);
      }
      console.log(`\ngradients vs PyTorch (same weights, same batch): worst relative error ${worst[1].toExponential(2)} ` +
        `(${worst[0]}) — ${gradientsMatch ? 'match' : 'MISMATCH'} at 1e-4`);
    }
    model.dispose();
    if (!gradientsMatch) process.exitCode = 1;
  } finally {
    worker.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
