// Process-wide settings and facts: threads, build configuration, devices.
import { readFileSync, realpathSync } from 'node:fs';
import { native, type CpuAllocatorStats, type NativeBuildInfo } from './native.js';

/**
 * Sets libtorch's intra-op thread count (torch.set_num_threads); a positive integer. The CLI's `--threads` and
 * CROSSMAX_NUM_THREADS end up here.
 */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`thread count must be a positive integer, got ${n}`);
  native.setNumThreads(n);
}
/** libtorch's current intra-op thread count (torch.get_num_threads). */
export function getNumThreads(): number {
  return native.getNumThreads();
}
/** How the native addon was built: libtorch version, CUDA, compiler and the like (what `crossmax info` prints). */
export function buildInfo(): NativeBuildInfo {
  return native.buildInfo();
}
/** True when libtorch sees at least one CUDA device (torch.cuda.is_available()). */
export function cudaAvailable(): boolean {
  return native.buildInfo().cudaAvailable;
}
/** Waits for queued CUDA work (for timing); a no-op without CUDA. */
export function synchronize(): void {
  native.cudaSynchronize();
}
/** Number of live native tensor handles (for leak tests). */
export function liveTensorCount(): number {
  return native.liveHandleCount();
}

/**
 * The BLAS library libtorch's matrix products go through, read from the process's memory map (Linux).
 * Debian's libtorch uses whatever libblas.so.3 the system selects; the reference BLAS is ~30x slower than OpenBLAS.
 */
export function blasLibrary(): string {
  let maps: string;
  try {
    maps = readFileSync('/proc/self/maps', 'utf8');
  } catch {
    return 'unknown (no /proc/self/maps)';
  }
  const libs = new Set<string>();
  for (const line of maps.split('\n')) {
    const path = line.slice(line.indexOf('/'));
    if (line.includes('/') && /blas|mkl_rt|libmkl|accelerate/i.test(path)) libs.add(path);
  }
  if (libs.size === 0) return 'none mapped (statically linked, or MKL inside libtorch)';
  return [...libs].map((p) => {
    try { return realpathSync(p); } catch { return p; }
  }).join(', ');
}

/**
 * Counters of the caching CPU allocator. Freed tensor memory is kept for reuse by the next tensor of its size class
 * (up to CROSSMAX_CPU_CACHE_MB, default 2048), which keeps the heap flat in long synchronous loops.
 */
export function cpuAllocatorStats(): CpuAllocatorStats {
  return native.cpuAllocatorStats();
}
/** Returns the allocator's cached (free) blocks to the system. */
export function emptyCpuCache(): void {
  native.emptyCpuCache();
}
/** Caps the memory the CPU allocator keeps cached, in MB (0 disables caching). */
export function setCpuCacheLimit(megabytes: number): void {
  native.setCpuCacheLimit(megabytes);
}
