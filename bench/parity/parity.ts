// bench/parity: the same model in crossmax and in PyTorch (Debian's python3-torch, the same libtorch), timed
// alternately in one invocation so machine noise hits both alike. Prints img/s of each and the ratio for (a) a
// training step, (b) an input-gradient step, (c) inference, and checks that both produce the same loss and
// gradients from the same weights. --device cuda runs both sides on the GPU (timings end with a CUDA synchronise on
// both sides; give --python the interpreter that has CUDA PyTorch). Models (--model):
//   resnet18   a CIFAR ResNet-18 on a 12-channel input (the backbone alone; batch 128 by default);
//   cifar-fast the 60-minute recipe's whole model (recipes/cifar10-cpu-60min.json): the multi-resolution prior,
//              ResNet-18 at 1/4 width, pooled heads, trained on the mean of the members' label-smoothed losses
//              with Nesterov SGD, attacked and run through CrossMax (k = 3). The PyTorch side is
//              python/crossmax_ref/models.py's SelfEnsemble. The prior draws its own randomness on each side,
//              so the gradient check runs with the prior deterministic (no draws) on both. This model also gets
//              (d), a step of `crossmax generate` (see GENERATION), against the same loop in PyTorch.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  Tensor, cudaAvailable, getNumThreads, grad, inferenceMode, manualSeed, noGrad, rand, randint, synchronize, tidy, buildInfo,
  type Device,
} from '../../src/tensor/index.js';
import { crossEntropy, resnet18, type Module } from '../../src/nn/index.js';
import { SGD } from '../../src/optim/index.js';
import { buildSelfEnsemble, presetConfig, type SelfEnsemble } from '../../src/ensemble/index.js';
import { selfEnsembleLoss } from '../../src/train/losses.js';
import { MultiResolutionImage, classObjective, everyResolution, generate } from '../../src/generate/index.js';
import { loadSafetensors, saveSafetensors } from '../../src/serialize/safetensors.js';

type Mode = 'train' | 'input_grad' | 'inference' | 'generate';
const modeLabel: Record<Mode, string> = {
  train: '(a) training step (forward, backward, SGD)',
  input_grad: '(b) input-gradient step (attack core)',
  inference: '(c) inference',
  generate: '(d) generation step (views/s)',
};
/**
 * The generation step (cifar-fast only): crossmax generate's loop on GENERATION.images images of a 48-pixel canvas
 * (32 + 2·8 of jitter) parametrised at every resolution 1..48, GENERATION.copies augmented 32-pixel views of each
 * (shift, crop, 0.2·U noise) through the model's CrossMax, one class's logit maximised, SGD on the 48 tensors.
 * Its throughput counts views.
 */
const GENERATION = { images: 8, copies: 16, canvas: 48, jitter: 8, crop: 32, lr: 0.4, classIndex: 3 } as const;

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'resnet18' },
    batch: { type: 'string' },
    // pairs per mode = rounds × steps (twice that for inference)
    rounds: { type: 'string', default: '3' },
    steps: { type: 'string', default: '2' },
    json: { type: 'boolean', default: false },
    python: { type: 'string', default: '/usr/bin/python3' },
    device: { type: 'string', default: 'cpu' },
  },
});
const device = args.device as Device;
if (device !== 'cpu' && !/^cuda(:\d+)?$/.test(device)) throw new Error(`--device ${device}: cpu, cuda or cuda:N`);
if (device !== 'cpu' && !cudaAvailable()) throw new Error(`--device ${device}: this libtorch sees no CUDA device (crossmax info)`);
/**
 * The gradient check's tolerance (relative, worst tensor). On the GPU both sides use cuDNN with TF32 convolutions
 * (libtorch's and PyTorch's default) and may pick different algorithms, so agreement is to TF32's ~1e-3, not float32's.
 */
const gradientTolerance = device === 'cpu' ? 1e-4 : 1e-2;
if (args.model !== 'resnet18' && args.model !== 'cifar-fast') throw new Error(`--model ${args.model}: resnet18 or cifar-fast`);
// The recipe trains at batch 256; the backbone comparison has always used 128.
const batch = Number(args.batch ?? (args.model === 'cifar-fast' ? 256 : 128));
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
  return tidy(() => {
    const ours = a.to('cpu');
    return ours.sub(b).norm().item() / Math.max(b.norm().item(), 1e-30);
  });
}

/** What the benchmark runs: a model, its batch, its training loss, and what the PyTorch side needs to rebuild it. */
interface Subject {
  description: string;
  model: Module;
  x: Tensor;
  y: Tensor;
  /** Safetensors metadata for torch_side.py's load. */
  metadata: Record<string, string>;
  nesterov: boolean;
  /** The model's output logits (a self-ensemble's CrossMax), what attacks differentiate. */
  forward(x: Tensor): Tensor;
  trainLoss(x: Tensor, y: Tensor): Tensor;
  /** Runs f with the model's randomness (the prior's draws) switched off, for the gradient check. */
  deterministic<T>(f: () => T): T;
}

function makeSubject(kind: 'resnet18' | 'cifar-fast'): Subject {
  manualSeed(0);
  if (kind === 'resnet18') {
    const model = resnet18({ stem: 'cifar', inChannels: 12, numClasses: 10 });
    return {
      description: 'CIFAR ResNet-18, 12-channel 32x32 input, 10 classes', model,
      x: rand([batch, 12, 32, 32]), y: randint(0, 10, [batch]),
      metadata: { kind: 'resnet', depth: '18', in_channels: '12', num_classes: '10' }, nesterov: false,
      forward: (x) => model.forward(x),
      trainLoss: (x, y) => crossEntropy(model.forward(x), y),
      deterministic: <T>(f: () => T): T => f(),
    };
  }
  const config = presetConfig('cifar-fast');
  const model: SelfEnsemble = buildSelfEnsemble(config);
  const backbone = config.backbone as { depth: number; widthMultiplier: number };
  const labelSmoothing = 0.1; // the recipe's
  return {
    description: 'the cifar-fast self-ensemble (multi-resolution prior, ResNet-18 at 1/4 width, 5 pooled heads + fc, CrossMax k=3), 3x32x32 input, 10 classes',
    model, x: rand([batch, 3, 32, 32]), y: randint(0, 10, [batch]),
    metadata: {
      kind: 'self-ensemble', depth: String(backbone.depth), width: String(backbone.widthMultiplier), num_classes: '10',
      features: config.heads.features.join(','), k: '3', label_smoothing: String(labelSmoothing), nesterov: 'true',
    },
    nesterov: true,
    forward: (x) => model.forward(x),
    trainLoss: (x, y) => selfEnsembleLoss(model.memberLogits(x), y, { labelSmoothing }),
    deterministic: <T>(f: () => T): T => {
      const prior = model.prior!;
      prior.deterministic = true;
      try { return f(); } finally { prior.deterministic = false; }
    },
  };
}

function makeStep(subject: Subject, optimizer: SGD): Record<Mode, () => void> {
  const { model, x, y } = subject;
  let image: MultiResolutionImage | null = null;
  let generation = 0;
  return {
    generate: () => {
      model.eval();
      image ??= new MultiResolutionImage({
        size: GENERATION.canvas, batch: GENERATION.images, resolutions: everyResolution(GENERATION.canvas), device,
      });
      const result = generate({
        parametrisation: image, objectives: [classObjective(model as SelfEnsemble, { classIndex: GENERATION.classIndex })], steps: 1,
        optimizer: { kind: 'sgd', lr: GENERATION.lr }, seed: generation++, chunkSize: GENERATION.copies,
        augment: { copies: GENERATION.copies, jitter: GENERATION.jitter, cropSize: GENERATION.crop },
      });
      result.images.dispose();
    },
    train: () => tidy(() => {
      model.train();
      optimizer.zeroGrad();
      subject.trainLoss(x, y).backward();
      optimizer.step();
    }),
    input_grad: () => tidy(() => {
      model.eval();
      const xa = x.clone().setRequiresGrad(true);
      const [g] = grad(crossEntropy(subject.forward(xa), y), [xa]);
      noGrad(() => xa.detach().add(g!.sign().mul(2 / 255)).clamp_(0, 1));
    }),
    inference: () => tidy(() => {
      model.eval();
      inferenceMode(() => { subject.forward(x); });
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
    const built = makeSubject(args.model as 'resnet18' | 'cifar-fast');
    saveSafetensors(join(dir, 'weights.safetensors'), built.model.stateDict(), built.metadata);
    saveSafetensors(join(dir, 'batch.safetensors'), { images: built.x, labels: built.y });
    // Built and saved on the CPU (the same weights on both sides), then moved: each side loads its copy to the device.
    built.model.to(device);
    const subject: Subject = { ...built, x: built.x.to(device), y: built.y.to(device) };
    const { model, x, y } = subject;
    const threads = getNumThreads();
    const loaded = await worker.ask({
      cmd: 'load', weights: join(dir, 'weights.safetensors'), batch: join(dir, 'batch.safetensors'), threads, device,
    });

    // Correctness first: same weights, same batch, train-mode loss and every gradient.
    const check = await worker.ask({ cmd: 'check', out: join(dir, 'torch_grads.safetensors') });
    const reference = loadSafetensors(join(dir, 'torch_grads.safetensors')).tensors;
    const errors = tidy(() => {
      model.train();
      model.zeroGrad();
      const xa = x.clone().setRequiresGrad(true);
      const loss = subject.deterministic(() => subject.trainLoss(xa, y));
      loss.backward();
      const errs: [string, number][] = [['loss', Math.abs(loss.item() - (check.loss as number)) / Math.abs(check.loss as number)]];
      errs.push(['input gradient', relativeError(xa.grad!, reference.get('input_grad')!)]);
      for (const [name, p] of model.namedParameters()) errs.push([`grad ${name}`, relativeError(p.grad!, reference.get(`grad.${name}`)!)]);
      model.zeroGrad();
      return errs;
    });
    for (const t of reference.values()) t.dispose();
    const worst = errors.reduce((a, b) => (b[1] > a[1] ? b : a));
    const gradientsMatch = worst[1] <= gradientTolerance;

    const optimizer = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4, nesterov: subject.nesterov });
    const step = makeStep(subject, optimizer);
    // This machine's speed drifts by tens of percent within seconds (shared host), so each sample is a pair of
    // adjacent measurements, crossmax then PyTorch, and the ratio is the median over the pairs' ratios.
    const results: Record<string, { crossmax: number; pytorch: number; ratio: number; pairs: number }> = {};
    const modes: Mode[] = ['train', 'input_grad', 'inference', ...(args.model === 'cifar-fast' ? ['generate' as const] : [])];
    for (const mode of modes) {
      const pairs = mode === 'inference' ? 2 * rounds * steps : rounds * steps;
      const items = mode === 'generate' ? GENERATION.images * GENERATION.copies : batch;
      step[mode]();
      await worker.ask({ cmd: 'time', mode, steps: 1, warmup: 1 });
      const ours: number[] = [];
      const theirs: number[] = [];
      for (let i = 0; i < pairs; i++) {
        ours.push(timeSteps(step[mode], 1));
        theirs.push((await worker.ask({ cmd: 'time', mode, steps: 1, warmup: 0 })).seconds_per_step as number);
        process.stderr.write(`  ${mode} pair ${i + 1}/${pairs}: crossmax ${(items / ours.at(-1)!).toFixed(1)} img/s, ` +
          `PyTorch ${(items / theirs.at(-1)!).toFixed(1)} img/s\n`);
      }
      results[mode] = {
        crossmax: items / median(ours),
        pytorch: items / median(theirs),
        ratio: median(ours.map((t, i) => theirs[i]! / t)),
        pairs,
      };
    }

    const info = buildInfo();
    const summary = {
      model: subject.description, batch, threads,
      libtorch: info.torchVersion, pytorch: loaded.version, device, gpu: loaded.gpu ?? null, results,
      gradientCheck: { worst: { name: worst[0], relativeError: worst[1] }, tolerance: gradientTolerance, pass: gradientsMatch },
    };
    if (args.json) {
      console.log(JSON.stringify(summary, null, 2));
    } else {
      const where = device === 'cpu' ? `${threads} threads` : `${device} (${String(loaded.gpu)})`;
      console.log(`\nparity: ${summary.model}, batch ${batch}, ${where}, libtorch ${info.torchVersion} (crossmax) vs PyTorch ${String(loaded.version)}`);
      console.log('img/s: median over the steps; ratio: median over adjacent (crossmax, PyTorch) pairs of PyTorch time / crossmax time\n');
      console.log('| step | pairs | crossmax img/s | PyTorch img/s | ratio |');
      console.log('|---|---:|---:|---:|---:|');
      for (const mode of Object.keys(results) as Mode[]) {
        const r = results[mode]!;
        console.log(`| ${modeLabel[mode]} | ${r.pairs} | ${r.crossmax.toFixed(1)} | ${r.pytorch.toFixed(1)} | ${r.ratio.toFixed(3)} |`);
      }
      console.log(`\ngradients vs PyTorch (same weights, same batch): worst relative error ${worst[1].toExponential(2)} ` +
        `(${worst[0]}) — ${gradientsMatch ? 'match' : 'MISMATCH'} at ${gradientTolerance}`);
    }
    model.dispose();
    if (!gradientsMatch) process.exitCode = 1;
  } finally {
    worker.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
