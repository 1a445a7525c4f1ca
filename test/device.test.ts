// The CUDA variants of the suite: tensors, random draws, autograd, nn, optimisers, a training run, an attack and a
// generation loop on one device, each checked against the same computation on the CPU. The device is
// CROSSMAX_TEST_DEVICE (default 'cuda'); every test is skipped when that device is absent, so the file passes on a
// CPU-only machine. scripts/gpu-check runs it on 'cuda'; its dry run runs it with CROSSMAX_TEST_DEVICE=cpu, so the
// code paths themselves cannot rot where no GPU is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cat, cudaAvailable, Generator, grad, manualSeed, noGrad, randn, randint, stack, tensor, tidy, type Device, type Tensor,
} from '../src/tensor/index.js';
import { crossEntropy, Linear as LinearLayer, resnet18, type Module } from '../src/nn/index.js';
import { Adam, SGD, type Optimizer } from '../src/optim/index.js';
import { APGD } from '../src/attacks/index.js';
import type { Classifier } from '../src/nn/classifier.js';
import { classObjective, generate, MultiResolutionImage } from '../src/generate/index.js';
import { train } from '../src/train/index.js';
import { LINEAR_CLASSES, LINEAR_INPUTS } from './helpers/linear.js';
import { tinySelfEnsemble } from './helpers/self-ensemble.js';
import { tinyDataset, TinyEnsemble } from './fixtures/tiny-training.js';

const device = (process.env.CROSSMAX_TEST_DEVICE ?? 'cuda') as Device;
const present = device === 'cpu' || (device.startsWith('cuda') && cudaAvailable());
const skip = present ? false : `no ${device} device here (set CROSSMAX_TEST_DEVICE, or run on a GPU machine)`;
/** libtorch names a tensor's device with its index ('cuda:0' for 'cuda'). */
const deviceName = device === 'cuda' ? 'cuda:0' : device;

/**
 * Tolerances against the CPU. cuDNN's convolutions use TF32 by default in libtorch as in PyTorch (10-bit mantissa
 * products), so a deep network's outputs differ from the CPU's at ~1e-3 relative; element-wise work agrees to
 * float32 rounding.
 */
const TOL = device === 'cpu' ? { elementwise: 1e-6, network: 1e-5 } : { elementwise: 1e-5, network: 2e-2 };

/** max |a − b| / max(max |b|, 1e-12), reading both to the host. */
function relativeError(a: Tensor, b: Tensor): number {
  return tidy(() => {
    const x = a.to('cpu').to('float64');
    const y = b.to('cpu').to('float64');
    return x.sub(y).abs().max().item() / Math.max(y.abs().max().item(), 1e-12);
  });
}

function assertClose(a: Tensor, b: Tensor, tol: number, what: string): void {
  assert.equal(a.device, deviceName, `${what}: computed on ${device}`);
  const err = relativeError(a, b);
  assert.ok(Number.isFinite(err) && err <= tol, `${what}: relative error ${err.toExponential(2)} > ${tol}`);
}

test(`tensors on ${device}: creation, arithmetic, reductions, matmul and indexing equal the CPU's`, { skip }, () => {
  tidy(() => {
    const x = randn([64, 48], { generator: new Generator(1) });
    const w = randn([48, 10], { generator: new Generator(2) });
    const index = tensor(new BigInt64Array([3n, 0n, 63n, 7n]));
    const ops: [string, (x: Tensor, w: Tensor, index: Tensor) => Tensor][] = [
      ['add/mul/div', (x) => x.add(1.5).mul(x).div(x.abs().add(1))],
      ['exp/log/tanh/sigmoid', (x) => x.tanh().add(x.sigmoid()).add(x.abs().add(1).log()).add(x.clamp(-3, 3).exp())],
      ['sum/mean/max', (x) => stack([x.sum({ dim: 1 }), x.mean({ dim: 1 }), x.max({ dim: 1 }).values], 0)],
      ['softmax', (x) => x.softmax(1)],
      ['matmul', (x, w) => x.matmul(w)],
      ['transpose/reshape/cat', (x) => cat([x.transpose(0, 1).reshape([-1]), x.flatten()], 0)],
      ['indexSelect', (x, _w, i) => x.indexSelect(0, i)],
    ];
    const xd = x.to(device);
    const wd = w.to(device);
    const id = index.to(device);
    for (const [name, f] of ops) assertClose(f(xd, wd, id), f(x, w, index), TOL.elementwise * 10, name);
    // Host round trips: the bytes come back unchanged.
    assert.deepEqual(Buffer.from(xd.toTypedArray().buffer), Buffer.from(x.toTypedArray().buffer), 'toTypedArray from the device');
    assert.equal(tensor([1, 2, 3], { device }).sum().item(), 6, 'item() from the device');
  });
});

test(`random draws on ${device} follow the seed of the generator that made them`, { skip }, () => {
  tidy(() => {
    const draw = (seed: number) => randn([1000], { generator: new Generator(seed, device), device });
    const a = draw(7);
    assert.equal(a.device, deviceName);
    assert.equal(relativeError(a, draw(7)), 0, 'the same seed gives the same draws');
    assert.ok(relativeError(a, draw(8)) > 0.1, 'another seed other draws');
    manualSeed(11);
    const b = randint(0, 100, [500], { device });
    manualSeed(11);
    assert.equal(relativeError(b, randint(0, 100, [500], { device })), 0, "manualSeed seeds the device's default generator");
    const mean = a.mean().item();
    const std = a.std().item();
    assert.ok(Math.abs(mean) < 0.15 && Math.abs(std - 1) < 0.1, `standard normal: mean ${mean}, std ${std}`);
  });
});

test(`autograd on ${device}: gradients equal the CPU's`, { skip }, () => {
  tidy(() => {
    const x = randn([16, 32], { generator: new Generator(3) });
    const w = randn([32, 8], { generator: new Generator(4) });
    const gradients = (x: Tensor, w: Tensor): Tensor[] => {
      const xa = x.clone().setRequiresGrad(true);
      const wa = w.clone().setRequiresGrad(true);
      const loss = xa.matmul(wa).tanh().pow(2).sum().add(xa.sigmoid().mean());
      return grad(loss, [xa, wa]) as Tensor[];
    };
    const cpu = gradients(x, w);
    const dev = gradients(x.to(device), w.to(device));
    assertClose(dev[0]!, cpu[0]!, TOL.elementwise * 10, 'd/dx');
    assertClose(dev[1]!, cpu[1]!, TOL.elementwise * 10, 'd/dw');
  });
});

/** Forward logits, the loss's input gradient and every parameter gradient of a model on one batch. */
function forwardBackward(model: Module & { forward(x: Tensor): Tensor }, x: Tensor, y: Tensor): Map<string, Tensor> {
  model.zeroGrad();
  const xa = x.clone().setRequiresGrad(true);
  const logits = model.forward(xa);
  crossEntropy(logits, y).backward();
  const out = new Map<string, Tensor>([['logits', logits.detach()], ['input gradient', xa.grad!]]);
  for (const [name, p] of model.namedParameters()) out.set(`grad ${name}`, p.grad!);
  return out;
}

test(`nn on ${device}: a CIFAR ResNet-18 forward and backward (train mode, BatchNorm) equal the CPU's`, { skip }, () => {
  // float64 compares every output to rounding. In float32 cuDNN's TF32 convolutions (on by default, as in PyTorch)
  // put the input gradient 3.8e-2 (relative to its largest element) from the CPU's on an H200 with PyTorch 2.11:
  // there only the logits are compared, at TF32's tolerance.
  for (const dtype of ['float64', 'float32'] as const) {
    tidy(() => {
      manualSeed(5);
      const model = resnet18({ stem: 'cifar', inChannels: 12, numClasses: 10, widthMultiplier: 0.25 }).to(dtype);
      const initial = new Map([...model.stateDict()].map(([name, t]) => [name, t.clone()]));
      const x = randn([8, 12, 32, 32], { generator: new Generator(6) }).to(dtype);
      const y = randint(0, 10, [8], { generator: new Generator(7) });
      model.train();
      const cpu = forwardBackward(model, x, y);
      cpu.set('BatchNorm running mean', model.stateDict().get('bn1.running_mean')!.clone());
      // The same starting state (the CPU pass moved BatchNorm's running statistics), then on the device.
      model.loadStateDict(initial);
      model.to(device);
      const dev = forwardBackward(model, x.to(device), y.to(device));
      dev.set('BatchNorm running mean', model.stateDict().get('bn1.running_mean')!);
      const tolerance = dtype === 'float64' ? 1e-9 : TOL.network;
      for (const [name, t] of cpu) {
        if (dtype === 'float32' && name !== 'logits') continue;
        assertClose(dev.get(name)!, t, tolerance, `${dtype} ${name}`);
      }
      model.dispose();
    });
  }
});

test(`optimisers on ${device}: SGD (Nesterov, weight decay) and Adam follow the CPU's steps`, { skip }, () => {
  const run = (dev: Device, make: (params: Tensor[]) => Optimizer): Tensor => {
    const p = randn([256], { generator: new Generator(9) }).to(dev).setRequiresGrad(true);
    const optimizer = make([p]);
    for (let step = 0; step < 5; step++) {
      tidy(() => {
        optimizer.zeroGrad();
        p.sub(tensor(step / 10, { device: dev })).pow(3).sum().backward();
        optimizer.step();
      });
    }
    return p.detach();
  };
  const makers: [string, (params: Tensor[]) => Optimizer][] = [
    ['SGD', (params) => new SGD(params, { lr: 0.01, momentum: 0.9, nesterov: true, weightDecay: 5e-4 })],
    ['Adam', (params) => new Adam(params, { lr: 0.01, weightDecay: 1e-4 })],
  ];
  for (const [name, make] of makers) {
    const cpu = run('cpu', make);
    const dev = run(device, make);
    assertClose(dev, cpu, TOL.elementwise * 10, name);
    cpu.dispose();
    dev.dispose();
  }
});

test(`a training run on ${device}: the tiny self-ensemble learns, its weights stay there`, { skip }, async () => {
  const outDir = mkdtempSync(join(tmpdir(), 'crossmax-device-train-'));
  try {
    manualSeed(123);
    const model = new TinyEnsemble().to(device);
    const result = await train({
      model, trainSet: tinyDataset('tiny/train', 64, 1), testSet: tinyDataset('tiny/test', 32, 2), outDir,
      epochs: 6, batchSize: 16, optimizer: { kind: 'adam', lr: 0.02 }, seed: 5, logEvery: 0, progress: false,
    });
    for (const [name, p] of model.namedParameters()) assert.equal(p.device, deviceName, `${name} stays on ${device}`);
    const losses = result.metrics.filter((r) => r.type === 'epoch').map((r) => r.loss);
    assert.ok(losses.every(Number.isFinite), `finite losses ${losses}`);
    assert.ok(losses.at(-1)! < 0.7 * losses[0]!, `the loss falls: ${losses}`);
    const accuracy = result.summary.finalTest!.accuracy;
    assert.ok(accuracy >= 0.9, `test accuracy ${accuracy} (as on the CPU, test/train.test.ts)`);
    model.dispose();
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
});

/** The linear classifier of the attack tests, its weights on a given device. */
class DeviceLinear implements Classifier {
  readonly layer: LinearLayer;
  constructor(dev: Device) {
    manualSeed(13);
    this.layer = new LinearLayer(LINEAR_INPUTS, LINEAR_CLASSES).to(dev);
  }
  forward(x: Tensor): Tensor {
    return this.layer.forward(x.flatten(1));
  }
}

test(`an attack on ${device}: APGD-CE gives the CPU's adversarial images (its random start is drawn on the CPU)`, { skip }, () => {
  const images = tidy(() => randn([6, 3, 4, 4], { generator: new Generator(21) }).mul(0.2).add(0.5).clamp(0, 1));
  const labels = tensor(new BigInt64Array([0n, 1n, 2n, 3n, 0n, 1n]));
  const results = (['cpu', device] as Device[]).map((dev) => {
    const model = new DeviceLinear(dev);
    const result = new APGD(model, { steps: 10, eps: 8 / 255, seed: 3 }).run(images.to(dev), labels.to(dev));
    model.layer.dispose();
    return result;
  });
  const [cpu, dev] = results as [typeof results[0], typeof results[0]];
  assertClose(dev.adversarial, cpu.adversarial, 1e-4, 'adversarial images');
  assert.deepEqual(dev.success, cpu.success, 'the same images fooled');
  const distance = tidy(() => dev.adversarial.to('cpu').sub(images).abs().max().item());
  assert.ok(distance <= 8 / 255 + 1e-6, `within eps: ${distance}`);
  for (const r of results) r.adversarial.dispose();
  images.dispose();
});

test(`a self-ensemble with the multi-resolution prior on ${device}: EOT attack and evaluation run there`, { skip }, () => {
  const model = tinySelfEnsemble().to(device);
  const images = tidy(() => randn([4, 3, 16, 16], { generator: new Generator(22) }).mul(0.2).add(0.5).clamp(0, 1).to(device));
  const labels = tensor(new BigInt64Array([0n, 1n, 2n, 3n]), { device });
  const result = new APGD(model, { steps: 4, eot: 2, eps: 8 / 255, seed: 1 }).run(images, labels);
  try {
    assert.equal(result.adversarial.device, deviceName);
    const distance = tidy(() => result.adversarial.sub(images).abs().max().item());
    assert.ok(distance <= 8 / 255 + 1e-6, `within eps: ${distance}`);
    const logits = tidy(() => noGrad(() => model.forward(result.adversarial)).to('cpu'));
    assert.deepEqual(logits.shape, [4, 10]);
    assert.ok(tidy(() => logits.isfinite().all().item()) === 1, 'finite logits');
    logits.dispose();
  } finally {
    result.adversarial.dispose();
    images.dispose();
    labels.dispose();
    model.dispose();
  }
});

test(`a generation loop on ${device}: the multi-resolution image raises the class score`, { skip }, () => {
  const model = tinySelfEnsemble().to(device);
  const image = new MultiResolutionImage({ size: 16, resolutions: [1, 2, 4, 8, 16], batch: 2, device });
  const result = generate({
    parametrisation: image, objectives: [classObjective(model, { classIndex: 3 })], steps: 6,
    optimizer: { kind: 'sgd', lr: 1 }, augment: { copies: 4, jitter: 2, noise: 0.1 }, chunkSize: 4, seed: 2,
  });
  try {
    assert.equal(result.images.device, deviceName);
    assert.ok(result.loss.every(Number.isFinite), `finite losses ${result.loss}`);
    assert.ok(result.loss.at(-1)! < result.loss[0]!, `the loss falls: ${result.loss}`);
    const range = tidy(() => [result.images.min().item(), result.images.max().item()]);
    assert.ok(range[0]! >= 0 && range[1]! <= 1, `images in [0, 1]: ${range}`);
  } finally {
    result.images.dispose();
    image.dispose();
    model.dispose();
  }
});
