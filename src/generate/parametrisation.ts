// Images as the sum of tensors at many resolutions, the parametrisation that turns classifiers and CLIP into
// image generators (Fort & Lakshminarayanan 2024, "Ensemble everything everywhere", arXiv 2408.05446; Fort &
// Whitaker 2025, "Direct Ascent Synthesis", arXiv 2502.07753). One tensor per resolution r, up-sampled to the
// canvas (nearest for 1×1, bicubic otherwise) and summed with the base image's raw value, then squashed to [0, 1]:
//
//   image = (tanh(atanh(2·base − 1) + Σ_r up(P_r)) + 1) / 2
//
// Gradient steps on the P_r change coarse structure and fine detail together; a step on raw pixels (one tensor
// at full resolution, pixelImage) only adds high-frequency, adversarial-looking noise.
//
// DAS defaults, from its generation demo's generate_image() (github.com/stanislavfort/Direct_Ascent_Synthesis).
// The notebook itself was not in our sources; two derivatives that cite it and keep its signature were:
// zer0int/CLIP-Direct-Ascent-Synthesis clip-generate.py (comments and defaults as the demo's) and a FastAPI port
// of the demo. Both give:
//   - canvas 224 + 2·56 = 336 ("adding the buffer on the side" for the jitter); the model sees 224×224 crops;
//   - resolutions range(1, 336 + 1): every side length from 1 to the canvas;
//   - perturbations start at zero; the starting image is grey 0.5 (raw value 0) unless one is given;
//   - squashing raw_to_real_image = (tanh(x) + 1) / 2, real_to_raw_image = atanh(clip(x, 1e-5, 1 − 1e-5)·2 − 1);
//   - attack_size_factor (default None) to shrink the change from the starting image: our constraint { scale }.
// They differ on the step: zer0int's keeps SGD lr 0.2, jitter 56, 64 copies in batches of 32 (its CLI defaults),
// the port uses lr 0.1, jitter 28, 8 copies; we follow the former (see generate.ts and augment.ts). The authors'
// blog post (johnowhitaker.dev/posts/DAS.html) gives the classifier variant: resolutions range(1, 337, 4), SGD lr
// 0.005, 16 copies, jitter 56, noise 0.2 (DAS_CLASSIFIER_DEFAULTS).
import { interpolate } from '../nn/functional.js';
import { projectToThreatModel, type Norm } from '../attacks/threat-model.js';
import { full, keep, noGrad, randn, tidy, zeros, type Device, type DType, type Generator, type Tensor } from '../tensor/index.js';

/** DAS's canvas: the 224×224 model input plus a 56-pixel buffer on each side for the jitter. */
export const DAS_CANVAS_SIZE = 224 + 2 * 56;

/** Every side length from 1 to `size` (DAS's range(1, size + 1)). */
export function everyResolution(size: number): number[] {
  return Array.from({ length: size }, (_, i) => i + 1);
}

/**
 * The sides of a multi-resolution image on a canvas of the given height: each once, smallest first, every one an
 * integer in [1, height]; a RangeError names the first that is not.
 */
export function resolutionSides(resolutions: readonly number[], height: number): number[] {
  const sides = [...new Set(resolutions)].sort((a, b) => a - b);
  if (sides.length === 0) throw new RangeError('a multi-resolution image needs at least one resolution');
  for (const r of sides) {
    if (!Number.isInteger(r) || r < 1 || r > height) {
      throw new RangeError(`resolution ${r} is not an integer in [1, ${height}] (the canvas height)`);
    }
  }
  return sides;
}

/** The clip margin of DAS's real_to_raw_image, which keeps atanh finite at 0 and 1. */
export const RAW_CLIP_EPS = 1e-5;

/** (tanh(x) + 1) / 2: raw values to [0, 1] (DAS's raw_to_real_image). */
export function rawToImage(raw: Tensor): Tensor {
  return tidy(() => raw.tanh().add(1).div(2));
}

/** The inverse of rawToImage, after clipping to [eps, 1 − eps] (DAS's real_to_raw_image). */
export function imageToRaw(image: Tensor, eps = RAW_CLIP_EPS): Tensor {
  return tidy(() => {
    const t = image.clamp(eps, 1 - eps).mul(2).sub(1);
    // atanh(t) = ½·ln((1 + t)/(1 − t)); the Tensor API has no atanh.
    return t.add(1).div(t.rsub(1)).log().mul(0.5);
  });
}

/**
 * How far the generated image may move from the base image:
 *   { norm: 'Linf' | 'L2', eps }: projected onto that ball around the base (and [0, 1]) inside the rendering, so
 *     every rendered image is admissible; useful for small, interpretable changes of a real image.
 *   { scale }: DAS's attack_size_factor, base + scale · (image − base), clipped to [0, 1].
 */
export type PerturbationConstraint = { norm: Norm; eps: number } | { scale: number };

/** How the summed tensors become pixels in [0, 1]: (tanh + 1)/2 (DAS) or a clamp. */
export type Squash = 'tanh' | 'clamp';

/** Settings of a {@link MultiResolutionImage}; the defaults are DAS's. */
export interface MultiResolutionImageOptions {
  /** Canvas [height, width] (or one number for a square). Default DAS's 336. */
  size?: number | [number, number];
  /**
   * Side lengths of the tensors (for a non-square canvas, the height; the width follows the aspect ratio). Default
   * every length from 1 to the canvas height, as DAS. Sizes above the canvas are refused.
   */
  resolutions?: readonly number[];
  /** Images optimised together (DAS's multiple_generations_at_once). Default 1, or the base's batch size. */
  batch?: number;
  /**
   * The starting image: [N, 3, H, W] or [3, H, W] in [0, 1] at the canvas size, or a grey level. Default 0.5 (DAS).
   * The parametrisation keeps its own copy.
   */
  base?: Tensor | number;
  /** Keep the result near the base (see PerturbationConstraint). Default none. */
  constraint?: PerturbationConstraint | null;
  /**
   * 'tanh' (default, DAS): the raw sum through (tanh + 1)/2. 'clamp': base + Σ clamped to [0, 1] (plain projected
   * gradient ascent, for comparison; gradients stop at saturated pixels).
   */
  squash?: Squash;
  /**
   * Standard deviation of a Gaussian start for every tensor (different images from one prompt). Default 0, DAS's
   * zero start.
   */
  initialNoise?: number;
  /** Draws for initialNoise. Default: libtorch's global generator. */
  generator?: Generator;
  /** Default float32. */
  dtype?: DType;
  /** Default: the base tensor's device, else 'cpu'. */
  device?: Device;
}

/** What generate() optimises: leaf tensors, and a differentiable map from them to images. */
export interface ImageParametrisation {
  /** The leaf tensors (requiresGrad) an optimiser updates. */
  readonly parameters: readonly Tensor[];
  /** Images rendered together. */
  readonly batch: number;
  /** Image height in pixels. */
  readonly height: number;
  /** Image width in pixels. */
  readonly width: number;
  /** The images [batch, 3, height, width] in [0, 1], differentiable with respect to the parameters. */
  render(): Tensor;
  /** Frees the parameters and the base. */
  dispose(): void;
}

/** An image (or a change of a base image) as the sum of up-sampled tensors at several resolutions. */
export class MultiResolutionImage implements ImageParametrisation, Disposable {
  readonly parameters: readonly Tensor[];
  /** [height, width] of each tensor, smallest first. */
  readonly resolutions: readonly [number, number][];
  /** Images rendered together. */
  readonly batch: number;
  /** Canvas height in pixels. */
  readonly height: number;
  /** Canvas width in pixels. */
  readonly width: number;
  /** How the sum becomes pixels. */
  readonly squash: Squash;
  /** The bound on the change from the base, or null. */
  readonly constraint: PerturbationConstraint | null;
  /** The base image [batch, 3, H, W] in [0, 1]. */
  readonly base: Tensor;
  // The base's raw value for 'tanh' (atanh(2·base − 1)), the base itself for 'clamp'; null when it is exactly 0
  // (a grey 0.5 start with tanh), so nothing is added.
  private readonly rawBase: Tensor | null;

  constructor(options: MultiResolutionImageOptions = {}) {
    const size = options.size ?? DAS_CANVAS_SIZE;
    [this.height, this.width] = typeof size === 'number' ? [size, size] : [size[0], size[1]];
    if (![this.height, this.width].every((s) => Number.isInteger(s) && s >= 1)) {
      throw new RangeError(`canvas size must be positive integers, got [${this.height}, ${this.width}]`);
    }
    this.squash = options.squash ?? 'tanh';
    this.constraint = options.constraint ?? null;
    checkConstraint(this.constraint);
    const dtype = options.dtype ?? 'float32';
    const baseOption = options.base ?? 0.5;
    const device = options.device ?? (typeof baseOption === 'number' ? 'cpu' : baseOption.device as Device);

    const sides = resolutionSides(options.resolutions ?? everyResolution(this.height), this.height);
    this.resolutions = sides.map((r) => [r, Math.max(1, Math.min(this.width, Math.round((r * this.width) / this.height)))]);

    const { base, batch } = tidy(() => makeBase(baseOption, options.batch, this.height, this.width, dtype, device));
    this.base = keep(base);
    this.batch = batch;
    this.rawBase = keep(tidy(() => {
      if (this.squash === 'clamp') return this.base.clone();
      return typeof baseOption === 'number' && baseOption === 0.5 ? null : imageToRaw(this.base);
    }));

    const noise = options.initialNoise ?? 0;
    if (!(noise >= 0)) throw new RangeError(`initialNoise must be ≥ 0, got ${noise}`);
    this.parameters = this.resolutions.map(([h, w]) => {
      const p = noise > 0
        ? noGrad(() => randn([batch, 3, h, w], { dtype, device, generator: options.generator }).mul(noise))
        : zeros([batch, 3, h, w], { dtype, device });
      return keep(p.setRequiresGrad(true));
    });
  }

  /** The raw sum Σ_r up(P_r) (+ the base's raw value), before squashing: [batch, 3, H, W]. */
  renderRaw(): Tensor {
    return tidy(() => {
      let sum: Tensor | null = this.rawBase;
      this.parameters.forEach((p, i) => {
        const [h, w] = this.resolutions[i]!;
        const up = h === this.height && w === this.width ? p
          : interpolate(p, { size: [this.height, this.width], mode: h === 1 && w === 1 ? 'nearest' : 'bicubic' });
        sum = sum === null ? up : sum.add(up);
      });
      return sum === this.parameters[0] ? sum!.view(sum!.shape) : sum!;
    });
  }

  render(): Tensor {
    return tidy(() => {
      const raw = this.renderRaw();
      const image = this.squash === 'tanh' ? rawToImage(raw) : raw.clamp(0, 1);
      return constrain(image, this.base, this.constraint);
    });
  }

  /**
   * One resolution's contribution alone, squashed around grey (what DAS shows as "its individual resolutions"),
   * [batch, 3, H, W], without gradient.
   */
  renderResolution(index: number): Tensor {
    const p = this.parameters[index];
    if (!p) throw new RangeError(`no resolution at index ${index} (there are ${this.parameters.length})`);
    const [h, w] = this.resolutions[index]!;
    return noGrad(() => tidy(() => rawToImage(interpolate(p, { size: [this.height, this.width], mode: h === 1 && w === 1 ? 'nearest' : 'bicubic' }))));
  }

  dispose(): void {
    for (const p of this.parameters) p.dispose();
    this.base.dispose();
    this.rawBase?.dispose();
  }
  /** Same as dispose(), for `using image = ...`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Raw pixels: one tensor at the canvas size, squashed and constrained like MultiResolutionImage (for comparison). */
export function pixelImage(options: Omit<MultiResolutionImageOptions, 'resolutions'> = {}): MultiResolutionImage {
  const size = options.size ?? DAS_CANVAS_SIZE;
  return new MultiResolutionImage({ ...options, resolutions: [typeof size === 'number' ? size : size[0]] });
}

function checkConstraint(c: PerturbationConstraint | null): void {
  if (c === null) return;
  if ('scale' in c) {
    if (!(c.scale >= 0)) throw new RangeError(`constraint scale must be ≥ 0, got ${c.scale}`);
  } else {
    if (c.norm !== 'Linf' && c.norm !== 'L2') throw new RangeError(`constraint norm must be 'Linf' or 'L2', got '${String(c.norm)}'`);
    if (!(c.eps >= 0)) throw new RangeError(`constraint eps must be ≥ 0, got ${c.eps}`);
  }
}

/** The image pulled back into the constraint around the base (differentiable). */
export function constrain(image: Tensor, base: Tensor, constraint: PerturbationConstraint | null): Tensor {
  if (constraint === null) return image;
  return tidy(() => {
    if ('scale' in constraint) return base.add(image.sub(base).mul(constraint.scale)).clamp(0, 1);
    if (constraint.norm === 'Linf') return projectToThreatModel(image, base, 'Linf', constraint.eps);
    // Radial L2 projection written with √(‖δ‖² + tiny): the attacks' version differentiates √ at δ = 0, which is
    // where a zero-initialised perturbation starts, and gets NaN gradients there.
    const delta = image.sub(base);
    const norm = delta.flatten(1).square().sum({ dim: 1 }).add(1e-24).sqrt();
    const shrink = norm.reciprocal().mul(constraint.eps).clamp(null, 1).view([-1, 1, 1, 1]);
    return base.add(delta.mul(shrink)).clamp(0, 1);
  });
}

function makeBase(base: Tensor | number, batchOption: number | undefined, height: number, width: number, dtype: DType, device: Device): { base: Tensor; batch: number } {
  if (typeof base === 'number') {
    if (!(base >= 0 && base <= 1)) throw new RangeError(`a grey base must be in [0, 1], got ${base}`);
    const batch = batchOption ?? 1;
    checkBatch(batch);
    return { base: full([batch, 3, height, width], base, { dtype, device }), batch };
  }
  const b4 = base.ndim === 3 ? base.unsqueeze(0) : base;
  if (b4.ndim !== 4 || b4.shape[1] !== 3 || b4.shape[2] !== height || b4.shape[3] !== width) {
    throw new Error(`base image must be [N, 3, ${height}, ${width}] or [3, ${height}, ${width}], got [${base.shape.join(', ')}]`);
  }
  const n = b4.shape[0]!;
  const batch = batchOption ?? n;
  checkBatch(batch);
  if (n !== batch && n !== 1) throw new Error(`base has ${n} images but batch is ${batch}`);
  const expanded = n === batch ? b4 : b4.expand([batch, 3, height, width]);
  // A copy, detached from any graph, so the caller may dispose or change its tensor.
  return { base: noGrad(() => expanded.to({ dtype, device }, { copy: true }).detach()), batch };
}

function checkBatch(batch: number): void {
  if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`batch must be a positive integer, got ${batch}`);
}
