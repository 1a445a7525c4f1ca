// `crossmax info`: what this installation computes with, and how fast its matrix products run; or, with --model,
// the configuration a model file records (the JSON `crossmax train --model-config` takes).
import { readModelInfo } from '../ensemble/model-file.js';
import { blasLibrary, buildInfo, getNumThreads, noGrad, randn, synchronize, tidy } from '../tensor/index.js';
import { UsageError, parseCommandArgs, stringFlag } from './args.js';

export const INFO_USAGE = `crossmax info [--json] [--no-benchmark] [--model FILE]

What this installation computes with: libtorch's version and build options, BLAS, threads, devices, and the
measured speed of a matrix product.
  --no-benchmark    skip the matrix-product measurement
  --model FILE      print the configuration a crossmax model file records instead (backbone, prior, heads,
                    aggregator, every default written out): the JSON \`crossmax train --model-config\` takes
  --json            as JSON (with --model: the file, its configuration and its metadata)`;

export function infoCommand(args: string[]): number {
  const { values } = parseCommandArgs(args, { json: { type: 'boolean' }, 'no-benchmark': { type: 'boolean' }, model: { type: 'string' } });
  const modelPath = stringFlag(values, 'model');
  if (modelPath !== undefined) {
    let info: ReturnType<typeof readModelInfo>;
    try {
      info = readModelInfo(modelPath);
    } catch (err) {
      throw new UsageError(`--model ${modelPath}: ${(err as Error).message}`);
    }
    console.log(JSON.stringify(values.json ? { path: info.path, config: info.config, metadata: info.metadata } : info.config, null, 2));
    return 0;
  }
  const report = collectInfo({ benchmark: !values['no-benchmark'] });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatInfo(report));
  return 0;
}

export interface InfoReport {
  torchVersion: string;
  cxx11Abi: boolean;
  oneDNN: boolean;
  openMP: boolean;
  mkl: boolean;
  cuda: boolean;
  cudaDevices: number;
  cudnn: boolean;
  blas: string;
  threads: number;
  devices: string[];
  matmulGflops: { size: number; gflops: number; device: string }[];
  node: string;
}

/** GFLOP/s of an n×n float32 matrix product (best of several runs). */
export function measureMatmulGflops(n = 2048, device: 'cpu' | 'cuda' = 'cpu', repeats = 5): number {
  return noGrad(() => tidy(() => {
    const a = randn([n, n], { device });
    const b = randn([n, n], { device });
    a.matmul(b).dispose(); // warm-up: thread pools, oneDNN/BLAS initialisation
    synchronize();
    let best = Infinity;
    for (let i = 0; i < repeats; i++) {
      const start = process.hrtime.bigint();
      a.matmul(b).dispose();
      synchronize();
      best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
    }
    return (2 * n ** 3) / best / 1e9;
  }));
}

export function collectInfo(options: { benchmark?: boolean } = {}): InfoReport {
  const b = buildInfo();
  const devices = ['cpu', ...Array.from({ length: b.cudaDeviceCount }, (_, i) => `cuda:${i}`)];
  const matmulGflops = [];
  if (options.benchmark ?? true) {
    matmulGflops.push({ size: 2048, gflops: measureMatmulGflops(2048, 'cpu'), device: 'cpu' });
    if (b.cudaAvailable) matmulGflops.push({ size: 4096, gflops: measureMatmulGflops(4096, 'cuda', 10), device: 'cuda' });
  }
  return {
    torchVersion: b.torchVersion,
    cxx11Abi: b.cxx11Abi,
    oneDNN: b.mkldnn,
    openMP: b.openmp,
    mkl: b.mkl,
    cuda: b.cudaAvailable,
    cudaDevices: b.cudaDeviceCount,
    cudnn: b.cudnnAvailable,
    blas: blasLibrary(),
    threads: getNumThreads(),
    devices,
    matmulGflops,
    node: process.version,
  };
}

export function formatInfo(r: InfoReport): string {
  const yes = (v: boolean) => (v ? 'yes' : 'no');
  const rows: [string, string][] = [
    ['libtorch', `${r.torchVersion}${r.cxx11Abi ? '' : ' (pre-C++11 ABI)'}`],
    ['oneDNN (MKL-DNN)', yes(r.oneDNN)],
    ['OpenMP', yes(r.openMP)],
    ['MKL', yes(r.mkl)],
    ['CUDA', r.cuda ? `yes, ${r.cudaDevices} device(s)${r.cudnn ? ', cuDNN' : ''}` : 'no'],
    ['BLAS', r.blas],
    ['intra-op threads', String(r.threads)],
    ['devices', r.devices.join(', ')],
    ...r.matmulGflops.map((m): [string, string] => [`matmul ${m.size}² float32 (${m.device})`, `${m.gflops.toFixed(1)} GFLOP/s`]),
    ['Node.js', r.node],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}
