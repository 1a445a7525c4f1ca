// Bicubic resizing as two matrix products, for the prior's down- and up-sampling. Resizing without antialiasing is
// linear and separable: out = A_h · x · A_wᵀ, where row o of A holds the four cubic-convolution weights (a = −0.75)
// of output o, on the input indices clamped at the border, exactly as PyTorch's upsample_bicubic2d computes them
// (align_corners=False: source = (o + 0.5)·in/out − 0.5, not clamped below, taps floor(source) − 1 … + 2).
//
// Why: libtorch's upsample_bicubic2d backward is a scalar scatter loop, and under attack the prior's eight resizes
// per forward pass were its most expensive part. Measured on one CPU thread, batch 64, the three resized views'
// down + up forward and backward: 14.9 ms with upsample_bicubic2d, 2.2 ms as matrix products. The values agree
// with upsample_bicubic2d to float rounding (largest difference 4e-7 on [0, 1] images): the same interpolation,
// summed in another order.
import { tensor, type Device, type DType, type Tensor } from '../tensor/index.js';

const CUBIC_A = -0.75;
const weightsCache = new Map<string, Float32Array | Float64Array>();

function cubicNear(x: number): number {
  return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1;
}

function cubicFar(x: number): number {
  return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A;
}

/**
 * The [outSize, inSize] matrix of bicubic resizing along one axis (align_corners=False, no antialiasing), row-major.
 * The source coordinate and the weights are computed in the images' precision, as upsample_bicubic2d does (its
 * opmath type: float for float32, double for float64).
 */
export function bicubicResizeWeights(outSize: number, inSize: number, dtype: 'float32' | 'float64' = 'float32'): Float32Array | Float64Array {
  if (!Number.isInteger(outSize) || !Number.isInteger(inSize) || outSize < 1 || inSize < 1) {
    throw new RangeError(`bicubic resizing needs positive integer sizes, got ${inSize} -> ${outSize}`);
  }
  const key = `${outSize}x${inSize}:${dtype}`;
  const cached = weightsCache.get(key);
  if (cached) return cached;
  const f = dtype === 'float32' ? Math.fround : (v: number) => v;
  const m = dtype === 'float32' ? new Float32Array(outSize * inSize) : new Float64Array(outSize * inSize);
  const scale = f(inSize / outSize);
  for (let o = 0; o < outSize; o++) {
    const source = f(f(scale * (o + 0.5)) - 0.5);
    const first = Math.floor(source);
    const t = f(source - first);
    const taps = [f(cubicFar(f(t + 1))), f(cubicNear(t)), f(cubicNear(f(1 - t))), f(cubicFar(f(f(1 - t) + 1)))];
    taps.forEach((w, k) => {
      const index = Math.min(Math.max(first - 1 + k, 0), inSize - 1);
      m[o * inSize + index] += w;
    });
  }
  weightsCache.set(key, m);
  return m;
}

/**
 * `images` [N, C, H, W] resized bicubically to `size` (align_corners=False, no antialiasing), differentiable: what
 * interpolate(images, { size, mode: 'bicubic' }) gives, to float rounding. Same size returns `images` itself, as
 * upsample_bicubic2d copies it. Float32 and float64 only (the caller falls back to interpolate otherwise).
 */
export function bicubicResize(images: Tensor, size: readonly [number, number]): Tensor {
  const [, , h, w] = images.shape as [number, number, number, number];
  const [outH, outW] = size;
  if (outH === h && outW === w) return images;
  const dtype = images.dtype as DType;
  if (dtype !== 'float32' && dtype !== 'float64') throw new TypeError(`bicubicResize takes float32 or float64 images, got ${dtype}`);
  const like = { dtype, device: images.device as Device };
  const rows = tensor(bicubicResizeWeights(outH, h, dtype), { shape: [outH, h], ...like });
  const columns = tensor(bicubicResizeWeights(outW, w, dtype), { shape: [outW, w], ...like }).transpose(0, 1);
  return rows.matmul(images.matmul(columns));
}
