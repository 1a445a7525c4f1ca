// Process-wide settings and facts: threads, build configuration, devices.
import { native, type NativeBuildInfo } from './native.js';

export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`thread count must be a positive integer, got ${n}`);
  native.setNumThreads(n);
}
export function getNumThreads(): number {
  return native.getNumThreads();
}
export function buildInfo(): NativeBuildInfo {
  return native.buildInfo();
}
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
