// Loads the native addon (native/, C++ over libtorch) and declares its raw interface.
// Everything here is untyped plumbing; src/tensor/tensor.ts is the typed API users see.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

export interface NativeTensorHandle {
  dispose(): void;
  readonly disposed: boolean;
  readonly shape: number[];
  readonly strides: number[];
  readonly dtype: number;
  readonly device: string;
  readonly numel: number;
  readonly dim: number;
  readonly nbytes: number;
  readonly version: number;
  isContiguous(): boolean;
  readonly requiresGrad: boolean;
  setRequiresGrad(value: boolean): NativeTensorHandle;
  readonly isLeaf: boolean;
  grad(): NativeTensorHandle | null;
  setGrad(grad: NativeTensorHandle | null): void;
  retainGrad(): void;
  item(): number | boolean;
  copyToArrayBuffer(): ArrayBuffer;
  viewAsArrayBuffer(): ArrayBuffer;
  sameStorage(other: NativeTensorHandle): boolean;
}

export type NativeGenerator = { readonly __generator: unique symbol };

export interface NativeBuildInfo {
  torchVersion: string;
  torchVersionMajor: number;
  config: string;
  parallelInfo: string;
  mkldnn: boolean;
  openmp: boolean;
  mkl: boolean;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  cudnnAvailable: boolean;
  cxx11Abi: boolean;
}

export interface NativeAddon {
  resolveOp(name: string, overload: string): number;
  opSchema(id: number): string;
  callOp(id: number, args: unknown[], discardResult?: boolean): unknown;
  backward(outputs: NativeTensorHandle[], gradOutputs: (NativeTensorHandle | null)[], retainGraph: boolean,
    createGraph: boolean, inputs?: NativeTensorHandle[]): void;
  grad(outputs: NativeTensorHandle[], inputs: NativeTensorHandle[], gradOutputs: (NativeTensorHandle | null)[],
    retainGraph: boolean, createGraph: boolean, allowUnused: boolean): (NativeTensorHandle | null)[];
  setGradEnabled(enabled: boolean): boolean;
  isGradEnabled(): boolean;
  enterInferenceMode(): number;
  exitInferenceMode(): number;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  setNumInteropThreads(n: number): void;
  manualSeed(seed: number): void;
  newGenerator(seed: number, device: string): NativeGenerator;
  generatorSeed(gen: NativeGenerator, seed?: number): number;
  generatorState(gen: NativeGenerator): NativeTensorHandle;
  setGeneratorState(gen: NativeGenerator, state: NativeTensorHandle): void;
  defaultGeneratorState(state?: NativeTensorHandle): NativeTensorHandle | undefined;
  fromBuffer(data: ArrayBufferView | ArrayBuffer, shape: number[], dtype: number, device: string): NativeTensorHandle;
  buildInfo(): NativeBuildInfo;
  cudaSynchronize(): void;
  liveHandleCount(): number;
  cpuAllocatorStats(): CpuAllocatorStats;
  emptyCpuCache(): void;
  setCpuCacheLimit(megabytes: number): void;
}

/** The caching CPU allocator's counters (native/src/cpu_allocator.cc); `enabled` is false with CROSSMAX_CPU_CACHE=0. */
export interface CpuAllocatorStats {
  enabled: boolean;
  inUseBytes?: number;
  cachedBytes?: number;
  limitBytes?: number;
  hits?: number;
  misses?: number;
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function loadAddon(): NativeAddon {
  const candidates = [
    process.env.CROSSMAX_NATIVE,
    join(packageRoot, 'native', 'build', 'Release', 'crossmax_native.node'),
    // node-gyp-build's layout, for a release that ships prebuilt addons (scripts/install.mjs copies one that loads)
    join(packageRoot, 'native', 'prebuilds', `${process.platform}-${process.arch}`, 'crossmax_native.node'),
  ].filter((p): p is string => Boolean(p));
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `crossmax: the native addon is not built (looked in ${candidates.join(', ')}). ` +
        'In a checkout run `bash scripts/setup.sh` (installs libtorch if missing and builds it); where crossmax was ' +
        'installed with npm, install libtorch (PyTorch, Debian\'s libtorch-dev, or LIBTORCH=/path) and `npm rebuild crossmax`.',
    );
  }
  const require = createRequire(import.meta.url);
  try {
    return require(found) as NativeAddon;
  } catch (err) {
    throw new Error(`crossmax: could not load the native addon ${found}: ${(err as Error).message}. ` +
      'If libtorch changed since it was built, rebuild with `npm run build:native`.');
  }
}

export const native: NativeAddon = loadAddon();

// Debian's libtorch starts with one intra-op thread; PyTorch's default is one per core. Use every core
// unless CROSSMAX_NUM_THREADS (or OMP_NUM_THREADS) says otherwise: two multi-threaded libtorch processes
// on the same cores slow each other many-fold, so background jobs should set it.
function defaultThreadCount(): number {
  for (const name of ['CROSSMAX_NUM_THREADS', 'OMP_NUM_THREADS']) {
    const raw = process.env[name];
    if (raw !== undefined && raw !== '') {
      const n = Number(raw);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${raw} is not a positive integer`);
      return n;
    }
  }
  return os.availableParallelism();
}

native.setNumThreads(defaultThreadCount());
