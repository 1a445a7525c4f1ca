// bench/attack-throughput: the cost of APGD-CE's bookkeeping over the bare input-gradient step it is built on.
// Same model and batch as bench/parity (CIFAR ResNet-18, 12-channel 32x32 input, batch 128), eval mode. The
// labels are the model's own predictions, so every image is attacked for every iteration (APGD skips images that
// are misclassified from the start). Pairs of adjacent measurements, as in bench/parity: this machine's speed drifts.
import { parseArgs } from 'node:util';
import { APGD } from '../../src/attacks/index.js';
import { crossEntropy, resnet18 } from '../../src/nn/index.js';
import { getNumThreads, grad, manualSeed, noGrad, rand, tidy, type Tensor } from '../../src/tensor/index.js';

const { values: args } = parseArgs({
  options: { batch: { type: 'string', default: '128' }, steps: { type: 'string', default: '10' }, pairs: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } },
});
const batch = Number(args.batch);
const steps = Number(args.steps);
const pairs = Number(args.pairs);

manualSeed(0);
const model = resnet18({ stem: 'cifar', inChannels: 12, numClasses: 10 });
model.eval();
const x = rand([batch, 12, 32, 32]);
// noGrad, not inferenceMode: inference tensors cannot take part in autograd later, and y is a target of the loss.
const y = tidy(() => noGrad(() => model.forward(x).argmax({ dim: 1 })));

/** One step of the bare signed-gradient attack, as bench/parity's (b). */
function inputGradientStep(): void {
  tidy(() => {
    const xa = x.clone().setRequiresGrad(true);
    const [g] = grad(crossEntropy(model.forward(xa), y), [xa]);
    noGrad(() => xa.detach().add((g as Tensor).sign().mul(2 / 255)).clamp_(0, 1));
  });
}

function seconds(fn: () => void): number {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

inputGradientStep();
const ratios: number[] = [];
const apgdPerStep: number[] = [];
const bare: number[] = [];
for (let i = 0; i < pairs; i++) {
  const apgd = new APGD(model, { loss: 'ce', steps, restarts: 1, eps: 8 / 255, seed: i });
  const tApgd = seconds(() => tidy(() => { apgd.run(x, y); }));
  let tBare = 0;
  for (let s = 0; s < steps; s++) tBare += seconds(inputGradientStep);
  // APGD's time includes its fixed passes (clean pass, gradient at the random start, final check) as the
  // reference's does: they are part of what a user pays for N iterations.
  apgdPerStep.push(tApgd / steps);
  bare.push(tBare / steps);
  ratios.push(tApgd / tBare);
  process.stderr.write(`  pair ${i + 1}/${pairs}: APGD-CE ${(tApgd / steps * 1000).toFixed(0)} ms/step, bare input-gradient ${(tBare / steps * 1000).toFixed(0)} ms/step\n`);
}
const summary = {
  model: 'CIFAR ResNet-18, 12-channel 32x32, batch ' + batch, threads: getNumThreads(), stepsPerRun: steps, pairs,
  apgdSecondsPerStep: median(apgdPerStep), inputGradientSecondsPerStep: median(bare), overhead: median(ratios) - 1,
};
if (args.json) {
  console.log(JSON.stringify(summary, null, 2));
} else {
  console.log(`\nAPGD-CE ${steps} iterations vs ${steps} bare input-gradient steps, ${summary.model}, ${summary.threads} threads`);
  console.log(`APGD-CE: ${(batch / summary.apgdSecondsPerStep).toFixed(1)} img·steps/s; bare step: ${(batch / summary.inputGradientSecondsPerStep).toFixed(1)} img/s`);
  console.log(`overhead (median over ${pairs} pairs, including APGD's clean, start and final passes): ${(100 * summary.overhead).toFixed(1)}%`);
}
model.dispose();
