// bench/autoattack: AutoAttack 'rand' (APGD-CE then APGD-DLR, EOT) in crossmax against the same attacks in PyTorch
// (bench/autoattack/torch_side.py, our own script written from the published algorithm, on Debian's python3-torch,
// the same libtorch) on the same model rebuilt in PyTorch (python/crossmax_ref/models.py), the same first N CIFAR-10
// test images and the same budget, one after the other in one invocation, on the same number of threads. Prints per
// side and protocol: the points each attack ran on, seconds per attacked point, and robust accuracy with its Wilson
// interval and n.
//
// Protocols on crossmax's side (--protocols):
//   autoattack  crossmax's AutoAttack runner (src/robustness/autoattack.ts): the reference's protocol, one clean pass,
//               each attack on the points still robust, one pass of its output decides. Same work as the PyTorch side.
//   evaluation  `crossmax eval --robust --suite autoattack-rand --no-masking`'s protocol (src/robustness/evaluation.ts):
//               R = 10 re-evaluations, points right in any clean pass attacked, skipped points retried.
// An attacked point is one image handed to one attack (APGD-CE and APGD-DLR count separately), as both runners hand
// them out; per-point time is the attacks' seconds over those points.
//
// Budgets (--budget): published (100 iterations, EOT 20, the reference's), quick (10 iterations, EOT 4, for a smoke run).
//
// crossmax's attacks run the EOT draws of a step batched (stacked replicas of the batch in one forward/backward pass,
// up to 256 CIFAR images; GradientAttackOptions.eotImagesPerPass); the PyTorch side loops over them as the reference
// does, and is the base of every speed-up. --torch-eot-batched adds a second PyTorch row with crossmax's batching
// (not the reference's algorithm), to show what the trick alone gives PyTorch. --eot-images-per-pass N sets crossmax's
// cap (1: the reference's sequential loop on crossmax's side too, for an A/B of the batching).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Classifier } from '../../src/nn/classifier.js';
import { buildInfo, getNumThreads, isGradEnabled, manualSeed, noGrad, setNumThreads, tidy, type Tensor } from '../../src/tensor/index.js';
import { loadSafetensors, saveSafetensors } from '../../src/serialize/safetensors.js';
import { loadModel, type SelfEnsemble } from '../../src/ensemble/index.js';
import { loadDefaultCifar10 } from '../../src/data/index.js';
import { resizeAttackBudget } from '../../src/attacks/registry.js';
import { EOT_IMAGES_PER_PASS_32PX } from '../../src/attacks/attack.js';
import { AutoAttack, autoAttackSuite, evaluateRobustness } from '../../src/robustness/index.js';

const BUDGETS = { published: { steps: 100, eot: 20 }, quick: { steps: 10, eot: 4 } } as const;
type Protocol = 'autoattack' | 'evaluation';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'runs/demo/model.safetensors' },
    n: { type: 'string', default: '100' },
    budget: { type: 'string', default: 'published' },
    protocols: { type: 'string', default: 'autoattack,evaluation' },
    'batch-size': { type: 'string', default: '250' },
    seed: { type: 'string', default: '0' },
    threads: { type: 'string' },
    python: { type: 'string', default: '/usr/bin/python3' },
    json: { type: 'boolean', default: false },
    'torch-eot-batched': { type: 'boolean', default: false },
    'eot-images-per-pass': { type: 'string' },
  },
});

function positiveInteger(flag: string, text: string): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${flag} must be a positive integer, got '${text}'`);
  return v;
}
if (!(args.budget! in BUDGETS)) throw new Error(`--budget ${args.budget}: published or quick`);
const budget = BUDGETS[args.budget as keyof typeof BUDGETS];
const n = positiveInteger('n', args.n!);
const batchSize = positiveInteger('batch-size', args['batch-size']!);
const seed = Number(args.seed);
if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got '${args.seed}'`);
if (args.threads !== undefined) setNumThreads(positiveInteger('threads', args.threads));
const eotImagesPerPass = args['eot-images-per-pass'] === undefined ? undefined : positiveInteger('eot-images-per-pass', args['eot-images-per-pass']);
const protocols = args.protocols!.split(',').filter(Boolean) as Protocol[];
for (const p of protocols) if (p !== 'autoattack' && p !== 'evaluation') throw new Error(`--protocols: autoattack and/or evaluation, got '${p}'`);
const EPS = 8 / 255;

/** 95% Wilson score interval of k successes in n trials. */
export function wilson(k: number, total: number, z = 1.959964): [number, number] {
  if (total === 0) return [0, 1];
  const p = k / total;
  const denominator = 1 + (z * z) / total;
  const centre = (p + (z * z) / (2 * total)) / denominator;
  const half = (z * Math.sqrt((p * (1 - p)) / total + (z * z) / (4 * total * total))) / denominator;
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** What one side measured. */
interface SideResult {
  side: string;
  attacks: { name: string; attacked: number; fooled: number; seconds: number }[];
  robust: number;
  /** Images through a forward + backward pass during the attacks: the work, counted, which machine load cannot skew. */
  gradientPasses: number;
}

/** The metadata torch_side.py rebuilds the model from; refuses a model python/crossmax_ref cannot rebuild. */
function pytorchMetadata(model: SelfEnsemble): Record<string, string> {
  const c = model.config;
  if (!c) throw new Error("bench/autoattack needs a model loaded from a crossmax model file (it has no configuration)");
  const problems: string[] = [];
  const backbone = c.backbone as { arch: string; depth?: number; stem?: string; widthMultiplier?: number };
  if (backbone.arch !== 'resnet' || backbone.stem !== 'cifar') problems.push('a CIFAR-stem ResNet backbone');
  if (c.heads.kind !== 'pooled' || (c.heads as { poolSize?: number }).poolSize !== 2) problems.push('pooled heads (2x2)');
  if (c.aggregator.name !== 'crossmax' || typeof c.aggregator.k !== 'number') problems.push('CrossMax with a numeric k');
  if (!c.includeBackboneClassifier) problems.push("the backbone's fc as a member");
  if (c.inputAdapter) problems.push('no input adapter');
  const prior = c.prior as { preset?: string; resolutionFactors?: readonly number[]; resolutions?: readonly number[] | null } | null;
  if (!prior || prior.preset !== 'paper' || prior.resolutions || JSON.stringify(prior.resolutionFactors) !== JSON.stringify([1, 0.5, 0.25, 0.125])) {
    problems.push("the 'paper' prior at its default resolutions");
  }
  if (problems.length > 0) throw new Error(`bench/autoattack rebuilds only models with ${problems.join(', ')} in PyTorch (python/crossmax_ref/models.py)`);
  return {
    depth: String(backbone.depth ?? 18), width: String(backbone.widthMultiplier ?? 1), num_classes: String(c.numClasses),
    features: c.heads.features.join(','), k: String(c.aggregator.k),
  };
}

function runPyTorch(dir: string, model: SelfEnsemble, images: Tensor, labels: Tensor, threads: number, eotImagesPerPass = 1): { result: SideResult; logits: Tensor } {
  const weights = join(dir, 'weights.safetensors');
  saveSafetensors(weights, model.stateDict(), pytorchMetadata(model));
  saveSafetensors(join(dir, 'images.safetensors'), { images, labels });
  const request = {
    weights, images: join(dir, 'images.safetensors'), eps: EPS, steps: budget.steps, eot: budget.eot, seed, batch_size: batchSize, threads,
    eot_images_per_pass: eotImagesPerPass,
    out: join(dir, 'torch.json'), out_logits: join(dir, 'torch-logits.safetensors'),
  };
  writeFileSync(join(dir, 'request.json'), JSON.stringify(request));
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bench', 'autoattack', 'torch_side.py');
  const child = spawnSync(args.python!, [script, join(dir, 'request.json')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (child.error) throw new Error(`could not start ${args.python}: ${child.error.message}`);
  if (child.status !== 0) throw new Error(`the PyTorch side exited with status ${child.status} (is python3-torch installed? run \`bash scripts/setup.sh --tests\`)`);
  const out = JSON.parse(readFileSync(request.out, 'utf8')) as { attacks: SideResult['attacks']; robust: boolean[]; version: string; gradient_passes: number };
  const logits = loadSafetensors(request.out_logits).tensors.get('logits')!;
  const side = eotImagesPerPass === 1 ? `PyTorch ${out.version}` : `PyTorch ${out.version}, batched EOT (${eotImagesPerPass} images per pass; not the reference's loop)`;
  return { result: { side, attacks: out.attacks, robust: out.robust.filter(Boolean).length, gradientPasses: out.gradient_passes }, logits };
}

function runCrossmax(protocol: Protocol, model: SelfEnsemble, images: Tensor, labels: Tensor): SideResult {
  // Counts the images of every gradient-enabled forward pass (each is followed by its backward pass in the attacks).
  let gradientPasses = 0;
  // loadModel returns the model in eval mode, so the wrapper (not a Module) loses nothing to withEvalMode.
  const counted: Classifier = { forward: (x) => { if (isGradEnabled()) gradientPasses += x.shape[0]!; return model.forward(x); } };
  const result = runCrossmaxProtocol(protocol, counted, images, labels);
  return { ...result, gradientPasses };
}

function runCrossmaxProtocol(protocol: Protocol, model: Classifier, images: Tensor, labels: Tensor): Omit<SideResult, 'gradientPasses'> {
  const suite = autoAttackSuite('rand').map((e) => {
    const resized = resizeAttackBudget(e, budget);
    return eotImagesPerPass === undefined || resized.attack !== 'apgd' ? resized : { ...resized, options: { ...resized.options, eotImagesPerPass } };
  });
  manualSeed(seed);
  if (protocol === 'autoattack') {
    const attack = new AutoAttack(model, { version: 'custom', attacks: suite, eps: EPS, seed, batchSize });
    // The runner's per-attack pools: the points robust before each attack.
    return tidy(() => {
      const run = attack.run(images, labels);
      const after = ['clean', ...suite.map((e) => e.name)].map((name) => Math.round(run.robustAccuracyAfter[name]! * n));
      const attacks = suite.map((e, i) => ({ name: e.name, attacked: after[i]!, fooled: after[i]! - after[i + 1]!, seconds: run.summary.seconds[e.name]! }));
      return { side: `crossmax AutoAttack runner${eotNote()}`, attacks, robust: run.robust.filter(Boolean).length };
    });
  }
  return tidy(() => {
    const { results } = evaluateRobustness(model, images, labels, { attacks: suite, eps: EPS, seed, batchSize, masking: false, reEvaluations: 10 });
    const attacks = results.attacks.map((a) => ({ name: a.name, attacked: a.attackedImages, fooled: a.fooledImages, seconds: a.seconds }));
    return { side: `crossmax eval --robust (R = 10, all-R)${eotNote()}`, attacks, robust: results.perImage.robust.filter(Boolean).length };
  });
}

function eotNote(): string {
  if (eotImagesPerPass === undefined) return '';
  return eotImagesPerPass === 1 ? ', sequential EOT' : `, EOT ${eotImagesPerPass} images per pass`;
}

function perPoint(r: SideResult): number {
  const points = r.attacks.reduce((s, a) => s + a.attacked, 0);
  return r.attacks.reduce((s, a) => s + a.seconds, 0) / Math.max(points, 1);
}

async function main(): Promise<void> {
  const threads = getNumThreads();
  const model = loadModel(args.model!);
  const testSet = await loadDefaultCifar10({ split: 'test' });
  const count = Math.min(n, testSet.length);
  const { images, labels } = tidy(() => testSet.batch([...Array(count).keys()], { device: 'cpu' }));
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-autoattack-'));
  try {
    process.stderr.write(`PyTorch side: AutoAttack rand, ${budget.steps} iterations, EOT ${budget.eot}, ${count} images, ${threads} threads\n`);
    const torch = runPyTorch(dir, model, images, labels, threads);
    // The rebuild check: the same logits with the prior's draws switched off on both sides.
    const rebuildError = tidy(() => {
      const prior = model.prior!;
      prior.deterministic = true;
      try {
        const ours = noGrad(() => model.forward(images));
        return ours.sub(torch.logits).abs().max().item();
      } finally {
        prior.deterministic = false;
      }
    });
    torch.logits.dispose();
    if (!(rebuildError < 1e-3)) throw new Error(`the PyTorch rebuild gives other logits than crossmax (largest difference ${rebuildError}): not the same model`);
    const rows: SideResult[] = [torch.result];
    if (args['torch-eot-batched']) {
      process.stderr.write(`PyTorch side, batched EOT (${EOT_IMAGES_PER_PASS_32PX} images per pass)\n`);
      const batched = runPyTorch(dir, model, images, labels, threads, EOT_IMAGES_PER_PASS_32PX);
      batched.logits.dispose();
      rows.push(batched.result);
    }
    for (const protocol of protocols) {
      process.stderr.write(`crossmax side: protocol ${protocol}\n`);
      rows.push(runCrossmax(protocol, model, images, labels));
    }
    const reference = perPoint(torch.result);
    const table = rows.map((r) => {
      const [lo, hi] = wilson(r.robust, count);
      return {
        side: r.side, attacked: r.attacks.map((a) => `${a.name} ${a.attacked}`).join(', '),
        seconds: r.attacks.reduce((s, a) => s + a.seconds, 0), secondsPerPoint: perPoint(r), speedup: reference / perPoint(r),
        gradientPassesPerPoint: r.gradientPasses / Math.max(r.attacks.reduce((s, a) => s + a.attacked, 0), 1),
        robustAccuracy: r.robust / count, interval: [lo, hi], n: count,
      };
    });
    const info = buildInfo();
    if (args.json) {
      console.log(JSON.stringify({ model: args.model, images: count, budget, threads, libtorch: info.torchVersion, rebuildError, rows: table }, null, 2));
    } else {
      console.log(`\nAutoAttack rand on ${args.model}, first ${count} CIFAR-10 test images, L-inf 8/255, ${budget.steps} iterations, EOT ${budget.eot}, ` +
        `${threads} threads, libtorch ${info.torchVersion}; rebuild check: largest logit difference ${rebuildError.toExponential(1)}`);
      console.log('speed-up: the PyTorch side\'s seconds per attacked point over this row\'s\n');
      console.log('gradient passes: images through forward + backward per attacked point (the work done, which machine load cannot skew)\n');
      console.log('| side | points attacked | attack s | s / attacked point | speed-up | gradient passes / point | robust accuracy [95% Wilson] (n) |');
      console.log('|---|---|---:|---:|---:|---:|---|');
      for (const r of table) {
        console.log(`| ${r.side} | ${r.attacked} | ${r.seconds.toFixed(1)} | ${r.secondsPerPoint.toFixed(3)} | ${r.speedup.toFixed(2)}x | ${r.gradientPassesPerPoint.toFixed(1)} | ` +
          `${(100 * r.robustAccuracy).toFixed(1)}% [${(100 * r.interval[0]!).toFixed(1)}, ${(100 * r.interval[1]!).toFixed(1)}] (${r.n}) |`);
      }
    }
  } finally {
    images.dispose();
    labels.dispose();
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
