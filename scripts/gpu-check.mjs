// The stages of the GPU readiness check (started by scripts/gpu-check, which first unpacks the carried Node.js,
// npm packages, dist/ and data where the machine has none). Each stage runs its commands as child processes under
// a hard time limit taken from one deadline for the whole check, so the check ends in time even when a stage hangs
// or fails; a failed stage is recorded with its error and the next one runs. At the end one table is printed and
// written, with every figure, as gpu-check.json and gpu-check.md under --out.
//
//   node scripts/gpu-check.mjs [--device cuda] [--tiny] [--out DIR] [--budget SECONDS] [--stages a,b,...]
//                              [--data DIR] [--first-test DIR] [--python EXE]
//   node scripts/gpu-check.mjs prepare-data --out DIR [--jpeg DIR --train-per-class K --test-per-class M]
//                              [--binary FILE --first N]
//
// Stages: environment (PyTorch, CUDA, GPU), build (the addon against that PyTorch's libtorch), distributed (a c10d
// process group of world size 1: NCCL on cuda, Gloo on cpu; its collectives and synchronised BatchNorm on the
// device), tests (the suite's
// device variants, test/device.test.ts), parity (bench/parity on the device, both models), train (the full-width
// CIFAR ResNet-18 with the paper's prior for as many epochs as the time left allows), eval (clean accuracy of every
// member and CrossMax), autoattack (AutoAttack 'rand' at the published budget on the first 100 official test images).
// --tiny runs every stage on a tiny setting (a CPU dry run in CI: scripts/gpu-check --device cpu --tiny).
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { ownLibtorch } = createRequire(import.meta.url)('./libtorch-paths.cjs');
const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const STAGES = ['environment', 'build', 'distributed', 'tests', 'parity', 'train', 'eval', 'autoattack'];

/**
 * Per stage: the most it may take (seconds) and the least it is left when earlier stages ran long (the reserve
 * that earlier stages may not eat into). The full check's budget (470 s) is what the device tool's lease allows
 * with room for one rerun: 15 minutes of device time, a minute or two of it spent starting the machine.
 */
const LIMITS = {
  full: {
    budget: 470,
    environment: { max: 30, reserve: 10 }, build: { max: 240, reserve: 60 },
    // NCCL's communicator set-up takes a few seconds on one GPU
    distributed: { max: 30, reserve: 10 }, tests: { max: 90, reserve: 20 },
    parity: { max: 90, reserve: 20 }, train: { max: 300, reserve: 60 }, eval: { max: 60, reserve: 20 },
    // measured on an H200: about 220 s for the full-width model (APGD-CE 88 s on 100 images, EOT 20)
    autoattack: { max: 300, reserve: 240 },
  },
  tiny: {
    budget: 600,
    environment: { max: 30, reserve: 10 }, build: { max: 400, reserve: 30 }, distributed: { max: 60, reserve: 10 },
    tests: { max: 120, reserve: 30 },
    parity: { max: 120, reserve: 30 }, train: { max: 120, reserve: 30 }, eval: { max: 60, reserve: 10 },
    autoattack: { max: 60, reserve: 20 },
  },
};

/** The training run's settings: the authors' from-scratch CIFAR setting (full-width ResNet-18, the paper's prior). */
const TRAIN = {
  full: { preset: 'cifar-resnet18', batchSize: 256, probeImages: 256 * 12, trainImages: 50000, testImages: 10000 },
  tiny: { preset: 'cifar-small', batchSize: 16, probeImages: 32, trainImages: null, testImages: null },
};
const AUTOATTACK = {
  full: { images: 100, budget: 'published' },
  tiny: { images: 4, budget: 'quick' },
};

// ---------------------------------------------------------------------------------------------------------------
// prepare-data: the data the check runs on, made from the shared copies (by scripts/gpu-bundle, or for the dry run).

/**
 * The first `n` test images of the official CIFAR-10 binary release as lossless PNGs in an image folder
 * (test/<class>/<index>.png, every class folder present so labels keep their CIFAR-10 indices): "the first N test
 * images" of RobustBench's protocol, small enough to carry where the 30 MB binary file does not fit.
 */
function writeFirstTestImages(binaryFile, n, outDir) {
  const { PNG } = createRequire(join(root, 'package.json'))('pngjs');
  if (!existsSync(binaryFile)) throw new Error(`--binary ${binaryFile}: no such file (the official CIFAR-10 test_batch.bin)`);
  const bytes = readFileSync(binaryFile);
  const record = 1 + 3072;
  if (bytes.length % record !== 0 || bytes.length / record < n) {
    throw new Error(`${binaryFile}: not a CIFAR-10 binary file with at least ${n} records`);
  }
  const labels = Array.from({ length: n }, (_, i) => bytes[i * record]);
  const missing = CIFAR10_CLASSES.filter((_, c) => !labels.includes(c));
  // An image folder takes its classes from its folders, and an empty one is refused: every class must occur.
  if (missing.length) throw new Error(`the first ${n} test images hold no ${missing.join(', ')}: take more (26 hold every class)`);
  for (let i = 0; i < n; i++) {
    const label = labels[i];
    mkdirSync(join(outDir, 'test', CIFAR10_CLASSES[label]), { recursive: true });
    const png = new PNG({ width: 32, height: 32 });
    for (let p = 0; p < 1024; p++) {
      for (let c = 0; c < 3; c++) png.data[p * 4 + c] = bytes[i * record + 1 + c * 1024 + p];
      png.data[p * 4 + 3] = 255;
    }
    // The official index in the name: the loader orders by class, then by name.
    writeFileSync(join(outDir, 'test', CIFAR10_CLASSES[label], `${String(i).padStart(5, '0')}.png`), PNG.sync.write(png));
  }
}

/** The first k training and m test images of every class of an image folder with train/ and test/ (the dry run's data). */
function writeImageFolderSubset(jpegDir, perClass, outDir) {
  for (const [split, count] of Object.entries(perClass)) {
    for (const name of CIFAR10_CLASSES) {
      const from = join(jpegDir, split, name);
      const to = join(outDir, split, name);
      mkdirSync(to, { recursive: true });
      for (const file of readdirSync(from).sort().slice(0, count)) copyFileSync(join(from, file), join(to, file));
    }
  }
}

function prepareData(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' }, jpeg: { type: 'string' }, 'train-per-class': { type: 'string', default: '8' },
      'test-per-class': { type: 'string', default: '4' }, binary: { type: 'string' }, first: { type: 'string', default: '100' },
    },
  });
  if (!values.out) throw new Error('prepare-data: --out DIR is required');
  if (values.jpeg) {
    writeImageFolderSubset(values.jpeg, { train: Number(values['train-per-class']), test: Number(values['test-per-class']) }, values.out);
  }
  if (values.binary) writeFirstTestImages(values.binary, Number(values.first), join(values.out, `first-${values.first}`));
}

// ---------------------------------------------------------------------------------------------------------------
// Running commands under a deadline.

let logFile = null;

function log(text) {
  if (logFile) appendFileSync(logFile, text);
}

/**
 * Runs a command in its own process group with a hard limit; its output goes to the log file (and stdout is kept
 * for parsing). On time-out the whole group is killed, so no grandchild outlives the stage.
 */
function runCommand(command, args, { env = {}, seconds, cwd = root }) {
  return new Promise((resolvePromise) => {
    log(`\n$ ${[command, ...args].join(' ')}   (limit ${seconds.toFixed(0)} s)\n`);
    const started = Date.now();
    // A null value removes a variable (NODE_TEST_CONTEXT, when the check itself runs under node --test).
    const childEnv = Object.fromEntries(Object.entries({ ...process.env, ...env }).filter(([, v]) => v !== null && v !== undefined));
    const child = spawn(command, args, { cwd, env: childEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderrTail = '';
    child.stdout.on('data', (chunk) => { stdout += chunk; log(chunk); });
    child.stderr.on('data', (chunk) => { stderrTail = (stderrTail + chunk).slice(-4000); log(chunk); });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }, Math.max(1, seconds) * 1000);
    const finish = (code, error) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderrTail, timedOut, error, seconds: (Date.now() - started) / 1000 });
    };
    child.on('error', (error) => finish(null, error));
    child.on('close', (code) => finish(code, null));
  });
}

class StageError extends Error {
  constructor(message, { timedOut = false } = {}) {
    super(message);
    this.timedOut = timedOut;
  }
}

/** Runs a command and returns its stdout; a non-zero exit or a time-out becomes a StageError with the output's tail. */
async function mustRun(what, command, args, options) {
  const r = await runCommand(command, args, options);
  if (r.timedOut) throw new StageError(`${what}: stopped at its time limit (${options.seconds.toFixed(0)} s)`, { timedOut: true });
  if (r.error) throw new StageError(`${what}: could not start ${command}: ${r.error.message}`);
  if (r.code !== 0) {
    const tail = r.stderrTail.trim().split('\n').filter((l) => !/^\s*$/.test(l)).slice(-6).join(' | ');
    throw new StageError(`${what}: exit code ${r.code}: ${tail}`);
  }
  return r.stdout;
}

/** The last top-level JSON value a command printed (commands print progress on stderr and one JSON on stdout). */
function parseJsonOutput(what, stdout) {
  const start = stdout.indexOf('{');
  if (start < 0) throw new StageError(`${what}: printed no JSON`);
  try {
    return JSON.parse(stdout.slice(start));
  } catch (err) {
    throw new StageError(`${what}: unreadable JSON output (${err.message})`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The stages. Each receives the shared context and its time limit; it returns its result object or throws.

const crossmax = (args) => ['node', [join(root, 'bin', 'crossmax.js'), ...args]];
const pct = (x) => `${(100 * x).toFixed(1)}%`;

async function environmentStage(ctx, seconds) {
  const probe = [
    'import json, os, torch',
    'd = os.path.dirname(torch.__file__)',
    'cuda = torch.cuda.is_available()',
    'print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "cudaAvailable": cuda,',
    '  "gpu": torch.cuda.get_device_name(0) if cuda else None, "gpus": torch.cuda.device_count() if cuda else 0,',
    '  "torchDir": d, "cxx11Abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI)}))',
  ].join('\n');
  const candidates = [ctx.python, process.env.CROSSMAX_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean);
  const tried = [];
  const started = Date.now();
  for (const python of [...new Set(candidates)]) {
    const left = seconds - (Date.now() - started) / 1000;
    const r = await runCommand(python, ['-c', probe], { seconds: left });
    if (r.timedOut) throw new StageError(`${python} -c 'import torch' did not answer within the stage's ${seconds.toFixed(0)} s`, { timedOut: true });
    if (r.code === 0) {
      const torch = parseJsonOutput('python', r.stdout);
      torch.hasLibtorch = ownLibtorch(torch.torchDir);
      ctx.python = python;
      ctx.torch = torch;
      if (ctx.device.startsWith('cuda') && !torch.cudaAvailable) {
        throw new StageError(`${python}'s PyTorch ${torch.torch} sees no CUDA device`);
      }
      const smi = spawnSync('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'], { encoding: 'utf8' });
      return {
        python, ...torch, nvidiaSmi: smi.status === 0 ? smi.stdout.trim() : null,
        node: process.version, cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      };
    }
    tried.push(`${python}: ${(r.error?.message ?? r.stderrTail.trim().split('\n').at(-1)) || `exit ${r.code}`}`);
  }
  throw new StageError(`no Python with PyTorch found (${tried.join('; ')})`);
}

async function buildStage(ctx, seconds) {
  const started = Date.now();
  // A pip/conda PyTorch carries its libtorch (include/ and lib/); Debian's python3-torch does not (the addon then
  // builds against libtorch-dev, as scripts/setup.sh does).
  // The wheel's C++ ABI from PyTorch itself, so libtorch-paths.cjs need not scan its libraries for it.
  const env = ctx.torch?.hasLibtorch ? { LIBTORCH: ctx.torch.torchDir, LIBTORCH_CXX11_ABI: ctx.torch.cxx11Abi ? '1' : '0' } : {};
  await mustRun('build', 'bash', [join(root, 'scripts', 'setup.sh'), '--addon-only'], { env, seconds });
  const left = seconds - (Date.now() - started) / 1000;
  const [cmd, args] = crossmax(['info', '--json', '--no-benchmark']);
  const info = parseJsonOutput('crossmax info', await mustRun('crossmax info', cmd, args, { seconds: left }));
  const cuda = info.cuda === true && info.cudaDevices > 0;
  if (ctx.device.startsWith('cuda') && !cuda) throw new StageError('the addon loads but its libtorch sees no CUDA device');
  if (ctx.device.startsWith('cuda')) {
    // Carried back, so a rerun can skip the build: put these two files into .gpu-bundle/addon/.
    copyFileSync(join(root, 'native', 'build', 'Release', 'crossmax_native.node'), join(ctx.out, 'crossmax_native.node'));
    copyFileSync(join(root, 'native', 'build', 'libtorch.stamp'), join(ctx.out, 'libtorch.stamp'));
  }
  const libtorchRoot = env.LIBTORCH ?? process.env.LIBTORCH ?? null;
  return { libtorch: info.torchVersion, libtorchRoot, cuda, cudaDevices: info.cudaDevices, cudnn: info.cudnn, cxx11Abi: info.cxx11Abi };
}

/** A free TCP port on the loopback interface, for the rendezvous store of a world of one. */
function freePort() {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePromise(port));
    });
  });
}

/**
 * c10d on the device, as a launch of world size 1 sets it up (the variables torchrun sets): a child process (so
 * the stage's limit can kill a hang) joins the process group, checks all-reduce, broadcast, all-gather and barrier
 * on a device tensor, and one synchronised-BatchNorm step against a plain one.
 */
async function distributedStage(ctx, seconds) {
  const port = await freePort();
  const out = await mustRun('distributed probe', 'node', [join(root, 'scripts', 'gpu-check.mjs'), 'distributed-probe', '--device', ctx.device], {
    env: { RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) }, seconds,
  });
  const r = parseJsonOutput('distributed probe', out);
  if (!r.available) throw Object.assign(new StageError(r.reason), { result: r });
  if (r.problems.length > 0) throw Object.assign(new StageError(`distributed on ${ctx.device}: ${r.problems.join('; ')}`), { result: r });
  return r;
}

/** The distributed stage's child: prints one JSON object (reasons for failure included) and exits 0 unless it crashed. */
async function distributedProbe(argv) {
  const { values } = parseArgs({ args: argv, options: { device: { type: 'string', default: 'cuda' } } });
  const device = values.device === 'cuda' ? 'cuda:0' : values.device;
  const load = (path) => import(join(root, 'dist', 'src', ...path.split('/')));
  const { distributedBackends, initProcessGroup, SyncBatchNorm } = await load('distributed/index.js');
  const { tensor, manualSeed, randn } = await load('tensor/index.js');
  const { BatchNorm2d, Conv2d, Sequential } = await load('nn/index.js');
  const backend = device.startsWith('cuda') ? 'nccl' : 'gloo';
  const backends = distributedBackends();
  if (!backends.includes(backend)) {
    const how = backend === 'nccl' ? 'build it against a CUDA libtorch that has NCCL' : 'install libgloo-dev and rebuild';
    console.log(JSON.stringify({ available: false, backend, backends,
      reason: `the addon was built without ${backend} (it has: ${backends.join(', ') || 'no backend'}): ${how}` }));
    return;
  }
  const problems = [];
  const times = {};
  const timed = async (name, fn) => { const t = performance.now(); const v = await fn(); times[name] = (performance.now() - t) / 1000; return v; };
  const group = await timed('init', () => initProcessGroup({ device, timeoutMs: 20_000 }));
  try {
    const x = tensor(new Float32Array([1, 2, 3, 4])).to(device);
    await timed('allReduce', () => group.allReduce(x, { op: 'sum' }));
    await group.allReduce(x, { op: 'avg' });
    await timed('broadcast', () => group.broadcast(x, { root: 0 }));
    const gathered = await timed('allGather', () => group.allGather(x));
    await timed('barrier', () => group.barrier());
    const values = x.to('cpu').toArray();
    if (values.join(',') !== '1,2,3,4') problems.push(`all-reduce/broadcast of [1,2,3,4] on a world of one gave [${values.join(',')}]`);
    if (gathered.length !== 1 || gathered[0].to('cpu').toArray().join(',') !== '1,2,3,4') problems.push('all-gather differs from the input');
    // Synchronised BatchNorm over a world of one is plain BatchNorm: same loss and gradients on the device.
    manualSeed(0);
    const model = new Sequential(new Conv2d(3, 8, 3), new BatchNorm2d(8)).to(device);
    const input = randn([4, 3, 8, 8]).to(device);
    // Weighted by a fixed random tensor: a loss BatchNorm's normalisation leaves nearly constant has no gradient to compare.
    const weights = randn([4, 8, 6, 6]).to(device);
    const lossOf = () => ({ loss: model.forward(input).mul(weights).sum() });
    const plain = lossOf().loss;
    plain.backward();
    const expected = model.parameters().map((p) => p.grad.to('cpu').toArray());
    model.zeroGrad();
    const { result } = await timed('syncBatchNormStep', () => new SyncBatchNorm(model, group).forwardBackward(lossOf));
    const got = model.parameters().map((p) => p.grad.to('cpu').toArray());
    let worst = Math.abs(result.loss.item() - plain.item()) / Math.max(1e-12, Math.abs(plain.item()));
    // Relative to the largest gradient: the convolution's bias has none through a BatchNorm (only rounding).
    const scale = Math.max(1e-12, ...expected.flat().map(Math.abs));
    for (const [i, e] of expected.entries()) worst = Math.max(worst, ...e.map((v, j) => Math.abs(got[i][j] - v) / scale));
    if (!(worst <= 1e-4)) problems.push(`synchronised BatchNorm differs from BatchNorm by ${worst} relative`);
    console.log(JSON.stringify({ available: true, backend: group.backend, device, worldSize: group.worldSize, seconds: times,
      syncBatchNormRelativeDifference: worst, problems }));
  } finally {
    group.destroy();
  }
}

async function testsStage(ctx, seconds) {
  const r = await runCommand('node', ['--test', '--test-reporter=tap', join(root, 'dist', 'test', 'device.test.js')], {
    env: { CROSSMAX_TEST_DEVICE: ctx.device, NODE_TEST_CONTEXT: null }, seconds,
  });
  if (r.timedOut) throw new StageError(`tests: stopped at the time limit (${seconds.toFixed(0)} s)`, { timedOut: true });
  const count = (name) => Number((new RegExp(`^# ${name} (\\d+)`, 'm').exec(r.stdout) ?? [])[1] ?? NaN);
  const result = { pass: count('pass'), fail: count('fail'), skipped: count('skipped') };
  const failures = [...r.stdout.matchAll(/^not ok \d+ - (.*)$/gm)].map((m) => m[1]);
  result.failures = failures;
  if (!(result.pass > 0) || result.fail > 0 || result.skipped > 0 || r.code !== 0) {
    throw Object.assign(new StageError(`tests on ${ctx.device}: ${result.pass} passed, ${result.fail} failed, ` +
      `${result.skipped} skipped${failures.length ? ` (${failures.join('; ')})` : ''}`), { result });
  }
  return result;
}

async function parityStage(ctx, seconds) {
  const started = Date.now();
  const results = {};
  const errors = [];
  for (const model of ['resnet18', 'cifar-fast']) {
    const left = seconds - (Date.now() - started) / 1000;
    const extra = ctx.tiny ? ['--rounds', '1', '--steps', '1', '--batch', '8'] : ['--rounds', '3', '--steps', '2'];
    try {
      const out = await mustRun(`parity ${model}`, 'node', [join(root, 'dist', 'bench', 'parity', 'parity.js'),
        '--model', model, '--device', ctx.device, '--python', ctx.python ?? 'python3', '--json', ...extra],
      // the first model may take at most about half of the time, so the second one runs
      { seconds: model === 'resnet18' ? left * 0.5 : left });
      results[model] = parseJsonOutput(`parity ${model}`, out);
    } catch (err) {
      errors.push(err.message);
    }
  }
  if (errors.length) throw Object.assign(new StageError(errors.join('; ')), { result: results });
  for (const [model, r] of Object.entries(results)) {
    if (!r.gradientCheck.pass) throw Object.assign(new StageError(`parity ${model}: gradients differ from PyTorch's`), { result: results });
  }
  return results;
}

function epochRecords(runDir) {
  const file = join(runDir, 'metrics.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.type === 'epoch');
}

async function trainStage(ctx, seconds) {
  const started = Date.now();
  const s = ctx.tiny ? TRAIN.tiny : TRAIN.full;
  if (!ctx.data) throw new StageError('no training data: --data DIR (an image folder with train/ and test/; scripts/gpu-bundle packs one)');
  // Every epoch is evaluated on the whole test set (train's per-epoch default is the first 2,000 test images, and
  // an image folder is ordered by class: its first 2,000 are two classes).
  const common = ['--preset', s.preset, '--data', ctx.data, '--batch-size', String(s.batchSize),
    ...(s.testImages ? ['--eval-limit', String(s.testImages)] : []), '--device', ctx.device, '--json', '--overwrite'];
  // A short probe of two epochs measures this machine's img/s in the second one (the first pays for CUDA's and
  // cuDNN's start-up) and warms the decoded-image cache; then the run takes as many epochs as fit into the time
  // left, less the probe's fixed cost (start-up, data, evaluation).
  const probeDir = join(ctx.work, 'train-probe');
  const [cmd, probeArgs] = crossmax(['train', ...common, '--out', probeDir, '--epochs', '2', '--train-limit', String(s.probeImages)]);
  const probeOut = parseJsonOutput('train probe', await mustRun('train probe', cmd, probeArgs, { seconds: seconds * 0.4 }));
  const probeWall = (Date.now() - started) / 1000;
  const probeEpoch = epochRecords(probeDir).at(-1);
  if (!probeEpoch) throw new StageError('train probe: no epoch record in metrics.jsonl');
  const trainImages = s.trainImages ?? Number(/^(\d+) images/.exec(probeOut.facts?.['training data'] ?? '')?.[1] ?? NaN);
  const imagesPerSecond = probeEpoch.imagesPerSecond;
  const overhead = Math.max(0, probeWall - 2 * s.probeImages / imagesPerSecond);
  const left = seconds - probeWall;
  const perEpoch = trainImages / imagesPerSecond;
  const epochs = ctx.tiny ? 1 : Math.max(1, Math.floor((left - overhead - 10) / (perEpoch * 1.1)));
  const runDir = join(ctx.work, 'train-run');
  const [, runArgs] = crossmax(['train', ...common, '--out', runDir, '--epochs', String(epochs)]);
  const runOut = parseJsonOutput('train', await mustRun('train', cmd, runArgs, { seconds: seconds - (Date.now() - started) / 1000 }));
  const records = epochRecords(runDir);
  ctx.model = runOut.model;
  const last = records.at(-1);
  return {
    preset: s.preset, facts: runOut.facts, epochs: records.length, batchSize: s.batchSize, trainImages,
    imagesPerSecond: records.reduce((a, r) => a + r.imagesPerSecond, 0) / Math.max(1, records.length),
    trainingSeconds: last?.elapsedSeconds ?? 0, probeImagesPerSecond: imagesPerSecond,
    lastEpoch: last ? { loss: last.loss, trainAccuracy: last.accuracy, test: last.test ?? null } : null,
  };
}

async function evalStage(ctx, seconds) {
  if (!ctx.model) throw new StageError('no model: the train stage did not finish');
  const [cmd, args] = crossmax(['eval', '--model', ctx.model, '--data', ctx.data, '--device', ctx.device, '--json']);
  const out = parseJsonOutput('eval', await mustRun('eval', cmd, args, { seconds }));
  const e = out.evaluation;
  return {
    images: e.count, dataset: e.dataset, crossmax: e.accuracy,
    members: (out.members ?? e.memberAccuracies.map((_, i) => `member ${i}`)).map((m, i) => ({
      name: typeof m === 'string' ? m : (m.name ?? `member ${i}`), accuracy: e.memberAccuracies[i],
    })),
    aggregators: e.aggregators.map((a) => ({ name: a.name, accuracy: a.accuracy })),
  };
}

async function autoattackStage(ctx, seconds) {
  if (!ctx.model) throw new StageError('no model: the train stage did not finish');
  if (!ctx.firstTest) throw new StageError('no test images: --first-test DIR (the first official test images; scripts/gpu-bundle packs them)');
  const a = ctx.tiny ? AUTOATTACK.tiny : AUTOATTACK.full;
  const [cmd, args] = crossmax(['eval', '--robust', '--model', ctx.model, '--data', ctx.firstTest, '--suite', 'autoattack-rand',
    '--budget', a.budget, '--n', String(a.images), '--no-masking', '--device', ctx.device, '--json',
    '--report', join(ctx.work, 'autoattack'), '--overwrite']);
  const r = parseJsonOutput('autoattack', await mustRun('autoattack', cmd, args, { seconds }));
  return {
    images: r.images, budget: a.budget, clean: r.cleanAccuracy, robust: r.worstCase, seconds: r.seconds.total,
    attacks: r.attacks.map((x) => ({ name: x.name, options: x.options, attackedImages: x.attackedImages, seconds: x.seconds })),
  };
}

const STAGE_BODIES = {
  environment: environmentStage, build: buildStage, distributed: distributedStage, tests: testsStage, parity: parityStage,
  train: trainStage, eval: evalStage, autoattack: autoattackStage,
};

// ---------------------------------------------------------------------------------------------------------------
// The table.

function summarise(stage) {
  const r = stage.result;
  if (!r) return '';
  switch (stage.name) {
    case 'environment':
      return `PyTorch ${r.torch}, CUDA ${r.cuda ?? 'none'}, ${r.gpu ?? 'no GPU'}${r.gpus > 1 ? ` (×${r.gpus})` : ''}; Node ${r.node}, ${r.cpus} CPUs`;
    case 'build':
      return `addon against libtorch ${r.libtorch} (${r.libtorchRoot ?? "the system's"}); ` +
        `CUDA ${r.cuda ? `available, ${r.cudaDevices} device(s), cuDNN ${r.cudnn ? 'yes' : 'no'}` : 'not available'}`;
    case 'distributed':
      return `${r.backend} on ${r.device}, world size ${r.worldSize}: init ${r.seconds.init.toFixed(1)} s, all-reduce ` +
        `${(1000 * r.seconds.allReduce).toFixed(1)} ms; synchronised BatchNorm = BatchNorm to ${r.syncBatchNormRelativeDifference.toExponential(1)}`;
    case 'tests':
      return `${r.pass} passed, ${r.fail} failed, ${r.skipped} skipped`;
    case 'parity':
      return Object.entries(r).map(([model, p]) => `${model} (batch ${p.batch}): ` + Object.entries(p.results)
        .map(([mode, x]) => `${mode} ${x.crossmax.toFixed(0)} vs ${x.pytorch.toFixed(0)} img/s (×${x.ratio.toFixed(2)})`).join(', ') +
        `; gradients ${p.gradientCheck.pass ? 'match' : 'DIFFER'} (${p.gradientCheck.worst.relativeError.toExponential(1)})`).join('; ');
    case 'train':
      return `${r.preset}, ${r.epochs} epochs × ${r.trainImages} images, batch ${r.batchSize}: ${r.imagesPerSecond.toFixed(0)} img/s, ` +
        `${r.trainingSeconds.toFixed(0)} s; last epoch test ${r.lastEpoch?.test ? pct(r.lastEpoch.test.accuracy) : '-'} ` +
        `on ${r.lastEpoch?.test?.count ?? 0} images`;
    case 'eval':
      return `${r.images} test images: CrossMax ${pct(r.crossmax)}; members ${r.members.map((m) => pct(m.accuracy)).join(' ')}; ` +
        r.aggregators.map((a) => `${a.name} ${pct(a.accuracy)}`).join(', ');
    case 'autoattack':
      return `${r.images} images, '${r.budget}' budget, ${r.seconds.toFixed(0)} s: clean ${pct(r.clean['all-R'])} → robust ` +
        `${pct(r.robust['single-evaluation'])} single / ${pct(r.robust['mean-over-R'])} mean-over-R / ${pct(r.robust['all-R'])} all-R`;
    default:
      return '';
  }
}

function table(report) {
  const lines = ['| stage | status | seconds (limit) | result |', '|---|---|---:|---|'];
  for (const s of report.stages) {
    const text = (s.status === 'ok' ? summarise(s) : s.error ?? s.status).replaceAll('|', '\\|').replaceAll('\n', ' ');
    lines.push(`| ${s.name} | ${s.status} | ${s.seconds.toFixed(0)} (${s.limit.toFixed(0)}) | ${text} |`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------

async function check(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      device: { type: 'string', default: 'cuda' }, tiny: { type: 'boolean', default: false },
      out: { type: 'string' }, budget: { type: 'string' }, stages: { type: 'string' },
      data: { type: 'string' }, 'first-test': { type: 'string' }, python: { type: 'string' },
    },
  });
  if (!/^(cpu|cuda(:\d+)?)$/.test(values.device)) throw new Error(`--device ${values.device}: cpu, cuda or cuda:N`);
  const limits = values.tiny ? LIMITS.tiny : LIMITS.full;
  const budget = Number(values.budget ?? limits.budget);
  if (!(budget > 0)) throw new Error(`--budget ${values.budget}: a number of seconds`);
  const stages = values.stages ? values.stages.split(',') : STAGES;
  for (const s of stages) if (!STAGES.includes(s)) throw new Error(`--stages: unknown stage ${s} (${STAGES.join(', ')})`);
  const out = resolve(values.out ?? process.env.OUT ?? join(root, 'gpu-check-out'));
  mkdirSync(out, { recursive: true });
  logFile = join(out, 'gpu-check.log');
  writeFileSync(logFile, '');
  const work = join(os.tmpdir(), `crossmax-gpu-check-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const ctx = {
    device: values.device, tiny: values.tiny, out, work, python: values.python,
    data: values.data ?? process.env.CROSSMAX_GPU_DATA, firstTest: values['first-test'] ?? process.env.CROSSMAX_GPU_FIRST_TEST,
    torch: null, model: null,
  };
  const report = {
    format: 'crossmax-gpu-check-v1', date: new Date().toISOString(), device: ctx.device, tiny: ctx.tiny, budgetSeconds: budget,
    host: { hostname: os.hostname(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? null }, stages: [],
  };
  const started = Date.now();
  const deadline = started + budget * 1000;
  console.log(`crossmax gpu-check on ${ctx.device}${ctx.tiny ? ' (tiny dry run)' : ''}: stages ${stages.join(', ')}; ` +
    `budget ${budget} s; log ${logFile}`);
  for (const [i, name] of stages.entries()) {
    const reserve = stages.slice(i + 1).reduce((a, s) => a + limits[s].reserve, 0);
    const limit = Math.min(limits[name].max, (deadline - Date.now()) / 1000 - reserve);
    const stageStart = Date.now();
    const record = { name, status: 'ok', seconds: 0, limit: Math.max(0, limit), result: null, error: null };
    log(`\n===== ${name} (limit ${limit.toFixed(0)} s) =====\n`);
    if (limit < 5) {
      Object.assign(record, { status: 'skipped', error: 'no time left in the budget' });
    } else {
      try {
        record.result = await STAGE_BODIES[name](ctx, limit);
      } catch (err) {
        record.status = err.timedOut ? 'timeout' : 'failed';
        record.error = err.message;
        record.result = err.result ?? null;
        log(`\n${name} ${record.status}: ${err.stack ?? err.message}\n`);
      }
    }
    record.seconds = (Date.now() - stageStart) / 1000;
    report.stages.push(record);
    console.log(`  ${name}: ${record.status} in ${record.seconds.toFixed(1)} s${record.error ? ` — ${record.error}` : ''}`);
  }
  report.totalSeconds = (Date.now() - started) / 1000;
  const text = `${table(report)}\n\nTotal ${report.totalSeconds.toFixed(0)} s of a ${budget} s budget.`;
  writeFileSync(join(out, 'gpu-check.json'), JSON.stringify(report, null, 2) + '\n');
  writeFileSync(join(out, 'gpu-check.md'), text + '\n');
  console.log(`\n${text}\n\nwritten: ${join(out, 'gpu-check.json')}, ${join(out, 'gpu-check.md')}`);
  rmSync(work, { recursive: true, force: true });
  return report.stages.every((s) => s.status === 'ok') ? 0 : 1;
}

const [first, ...rest] = process.argv.slice(2);
try {
  if (first === 'prepare-data') {
    prepareData(rest);
  } else if (first === 'distributed-probe') {
    await distributedProbe(rest);
  } else {
    process.exitCode = await check(process.argv.slice(2));
  }
} catch (err) {
  console.error(`gpu-check: ${err.message}`);
  process.exitCode = 2;
}
