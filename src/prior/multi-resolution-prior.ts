// The multi-resolution input prior of Fort & Lakshminarayanan (2024), "Ensemble everything everywhere",
// arXiv 2408.05446: every image is turned into a stack of noisy, jittered copies at several
// resolutions, concatenated on the channel axis ([N, 3, H, W] -> [N, 3·V, H, W]), and the network sees only
// the stack. It is random on every forward pass (training, test and attack alike), and differentiable end to
// end so that gradient attacks go through it.
//
// Per resolution and per image, in the order of the official notebook (make_multichannel_input /
// apply_transformations in quick_replication_for_multi_resolution_self_ensemble.ipynb):
//   1. contrast change: torchvision's adjust_contrast, a blend with the mean of the luminance image
//      (0.2989 R + 0.587 G + 0.114 B), clamped to [0, 1];
//   2. a circular shift (torch.roll) by a random integer in [-3, 3] on each axis;
//   3. a blend toward grey, c·img + (1 - c)·(plain mean over channels);
//   4. bicubic down-sampling to the resolution (align_corners=False, no antialiasing);
//   5. + 0.2·U[0, 1) noise at the low resolution;
//   6. bicubic up-sampling back to the input size;
//   7. + 0.2·U[0, 1) noise at full resolution;
//   8. clip to [0, 1].
//
// The notebook's quirks, which preset 'paper' (the default) reproduces and 'corrected' fixes:
//   - `color_amounts = contrasts = custom_choices(np.linspace(0.5, 1.0, 100), ...)` rebinds `contrasts`, so the
//     contrast factor and the grey-blend factor are one and the same draw from linspace(0.5, 1.0, 100) (picked
//     by np.random.choice, i.e. one of 100 discrete values); the contrast range linspace(0.7, 1.5, 100) drawn
//     on the line before is never used.
//   - The noise is uniform on [0, 0.2) (mean 0.1, std 0.058) although the comments call 0.2 a "standard
//     deviation": each addition brightens the image by 0.1 on average.
//   - `jit_x` shifts rows (dim -2) and `jit_y` columns; the distribution is symmetric, so this only matters
//     for naming: here they are `rowShift` and `colShift`.
import { Module } from '../nn/module.js';
import { interpolate, type InterpolationMode } from '../nn/functional.js';
import { cat, noGrad, ones, rand, randint, randn, tidy, zeros, type Device, type DType, type Generator, type Tensor } from '../tensor/index.js';
import { rollPerImage } from './roll.js';
import { bicubicResize } from './bicubic.js';

/**
 * Which defaults the prior takes: 'paper' reproduces the official notebook with its quirks (uniform noise, the colour
 * range used for contrast, one shared draw); 'corrected' does what the notebook's comments describe (Gaussian noise,
 * contrast in [0.7, 1.5], independent draws).
 */
export type PriorPreset = 'paper' | 'corrected';
/** The noise added to each view: amplitude · U[0, 1) ('uniform') or amplitude · N(0, 1) ('gaussian'). */
export type PriorNoiseKind = 'uniform' | 'gaussian';

/** The noise added to each view after down-sampling and after up-sampling. */
export interface PriorNoiseOptions {
  /**
   * 'uniform': amplitude · U[0, 1), the notebook's noise (mean amplitude/2). 'gaussian': amplitude · N(0, 1),
   * zero-mean with standard deviation `amplitude`, what the notebook's comments describe.
   * Default: 'uniform' for preset 'paper', 'gaussian' for 'corrected'.
   */
  kind?: PriorNoiseKind;
  /** Added after down-sampling (the notebook's down_noise). Default 0.2. */
  downAmplitude?: number;
  /** Added after up-sampling (the notebook's up_noise). Default 0.2. */
  upAmplitude?: number;
}

/** The random contrast and colour changes applied to each view, one draw per image. */
export interface PriorJitterOptions {
  /**
   * Range of the contrast factor (adjust_contrast's contrast_factor, 1 = unchanged), or null for no contrast
   * change. Default: [0.5, 1.0] for 'paper' (the quirk: the colour range), [0.7, 1.5] for 'corrected'.
   */
  contrast?: readonly [number, number] | null;
  /**
   * Range of the colour amount c in c·img + (1 - c)·grey (1 = unchanged, 0 = grey), or null for none.
   * Default [0.5, 1.0].
   */
  color?: readonly [number, number] | null;
  /**
   * One draw per image used as both the contrast factor and the colour amount (the notebook's
   * `color_amounts = contrasts = ...`); `contrast` and `color` must then be the same range.
   * Default: true for 'paper', false for 'corrected'.
   */
  shared?: boolean;
  /**
   * Draw from `steps` evenly spaced values of each range (np.linspace(lo, hi, steps) with np.random.choice, as
   * the notebook does), or from the continuous range when null. Default 100.
   */
  steps?: number | null;
}

/**
 * Settings of the {@link MultiResolutionPrior} (section 3 of Fort & Lakshminarayanan 2024); every one defaults to the
 * preset's value, and {@link resolvePriorConfig} writes them all out.
 */
export interface MultiResolutionPriorOptions {
  /** Default 'paper': the official notebook, quirks included (see the file header). */
  preset?: PriorPreset;
  /**
   * Side lengths of the square down-sampled views, in stack order, e.g. [32, 16, 8, 4]. Default: from
   * `resolutionFactors`, relative to each input's size.
   */
  resolutions?: readonly number[];
  /**
   * View sizes as fractions of the input's height and width (rounded, at least 1 pixel), used when
   * `resolutions` is not given. Default [1, 1/2, 1/4, 1/8]: [32, 16, 8, 4] for CIFAR's 32×32 images.
   */
  resolutionFactors?: readonly number[];
  /** Default 'bicubic' (the notebook's). */
  downsample?: InterpolationMode;
  /** Default 'bicubic'. */
  upsample?: InterpolationMode;
  /** Low-pass filter when down-sampling (bilinear/bicubic only). Default false: the notebook aliases. */
  antialias?: boolean;
  /** Largest circular shift in pixels on each axis; shifts are uniform integers in [-shift, shift]. Default 3. */
  shift?: number;
  /** Noise added at each resolution; false for none. */
  noise?: PriorNoiseOptions | false;
  /** Contrast and colour changes; false for none. */
  jitter?: PriorJitterOptions | false;
  /** Clip the views to [0, 1]. Default true. */
  clip?: boolean;
  /**
   * No noise, no shift, no contrast or colour change: only the down/up-sampling stack (and the clip). For tests
   * and for inspecting the views. Default false. Can be changed later through the `deterministic` field.
   */
  deterministic?: boolean;
  /**
   * When false, forward() returns the image repeated once per view (the notebook's unused
   * default_make_multichannel_input), for ablations. Default true.
   */
  enabled?: boolean;
  /**
   * Source of every random draw, for reproducible runs; it must live on the images' device. Default: libtorch's
   * default generator of that device.
   */
  generator?: Generator;
}

/** The options with every default applied. */
export interface ResolvedPriorConfig {
  /** The preset whose defaults filled the gaps. */
  readonly preset: PriorPreset;
  /** Fixed side lengths of the views, or null when they follow resolutionFactors. */
  readonly resolutions: readonly number[] | null;
  /** View sizes relative to the input's size (1 = full resolution), used when `resolutions` is null. */
  readonly resolutionFactors: readonly number[];
  /** Interpolation down to each view's size. */
  readonly downsample: InterpolationMode;
  /** Interpolation back up to the input's size. */
  readonly upsample: InterpolationMode;
  /** Whether down-sampling low-pass filters first (bilinear/bicubic only). */
  readonly antialias: boolean;
  /** Largest circular shift in pixels on each axis (uniform integers in [−shift, shift]), 0 for none. */
  readonly shift: number;
  /** The noise settings, or null for no noise. */
  readonly noise: Required<PriorNoiseOptions> | null;
  /** The contrast and colour settings (see {@link PriorJitterOptions}), or null for none. */
  readonly jitter: {
    readonly contrast: readonly [number, number] | null;
    readonly color: readonly [number, number] | null;
    readonly shared: boolean;
    readonly steps: number | null;
  } | null;
  /** Whether each view is clipped to [0, 1]. */
  readonly clip: boolean;
}

/**
 * The random choices for one view of a batch. Null fields are skipped (no shift, no contrast change, ...).
 * Factors are per image, [N]; shifts are int64 [N]; noise has the view's shape.
 */
export interface PriorViewDraws {
  /** [height, width] of the down-sampled view. */
  readonly size: readonly [number, number];
  /** Row shift per image (int64 [N]), or null. */
  readonly rowShift: Tensor | null;
  /** Column shift per image (int64 [N]), or null. */
  readonly colShift: Tensor | null;
  /** Contrast factor per image ([N]), or null. */
  readonly contrast: Tensor | null;
  /** Colour amount per image ([N]), or null. */
  readonly color: Tensor | null;
  /** [N, C, size[0], size[1]] */
  readonly downNoise: Tensor | null;
  /** [N, C, H, W] */
  readonly upNoise: Tensor | null;
}

const presets: Record<PriorPreset, { noiseKind: PriorNoiseKind; contrast: readonly [number, number]; shared: boolean }> = {
  paper: { noiseKind: 'uniform', contrast: [0.5, 1.0], shared: true },
  corrected: { noiseKind: 'gaussian', contrast: [0.7, 1.5], shared: false },
};

const defaultColorRange: readonly [number, number] = [0.5, 1.0];

// ITU-R BT.601 luma weights as torchvision's rgb_to_grayscale writes them (adjust_contrast's grey mean).
const lumaWeights = [0.2989, 0.587, 0.114] as const;

/**
 * The multi-resolution prior as a parameter-free module: forward(images [N, C, H, W] in [0, 1]) returns
 * [N, C·V, H, W], views stacked on channels in the order of the resolutions (32, 16, 8, 4 by default).
 * Randomness does not depend on train()/eval(): the paper keeps it on at test time and under attack.
 */
export class MultiResolutionPrior extends Module {
  /** Every setting, defaults applied (what a model file stores). */
  readonly config: ResolvedPriorConfig;
  /** See MultiResolutionPriorOptions.deterministic. */
  deterministic: boolean;
  /** See MultiResolutionPriorOptions.enabled. */
  enabled: boolean;
  /** The random stream of the views' draws; undefined uses the device's default generator. */
  generator: Generator | undefined;

  constructor(options: MultiResolutionPriorOptions = {}) {
    super();
    this.config = resolvePriorConfig(options);
    this.deterministic = options.deterministic ?? false;
    this.enabled = options.enabled ?? true;
    this.generator = options.generator;
  }

  /** Number of views V (the output has C·V channels). */
  get numViews(): number {
    return (this.config.resolutions ?? this.config.resolutionFactors).length;
  }

  /** [height, width] of each down-sampled view for an input of the given size. */
  viewSizes(height: number, width: number): [number, number][] {
    if (this.config.resolutions) return this.config.resolutions.map((r) => [r, r]);
    return this.config.resolutionFactors.map((f) => [Math.max(1, Math.round(height * f)), Math.max(1, Math.round(width * f))]);
  }

  /**
   * images [N, C, H, W] in [0, 1] to the views stacked on channels, [N, C·V, H, W]; fresh random draws every call.
   */
  forward(images: Tensor): Tensor {
    checkImages(images);
    if (!this.enabled) return images.repeat([1, this.numViews, 1, 1]);
    return tidy(() => this.applyDraws(images, this.sampleDraws(images)));
  }

  /**
   * Draws the random choices for a batch like `images` (its shape, dtype and device), in stack order. In
   * deterministic mode every field except `size` is null. The caller owns the returned tensors.
   */
  sampleDraws(images: Tensor): PriorViewDraws[] {
    checkImages(images);
    const [n, c, h, w] = images.shape as [number, number, number, number];
    const dtype = images.dtype;
    const device = images.device as Device;
    const sizes = this.viewSizes(h, w);
    if (this.deterministic) {
      return sizes.map((size) => ({ size, rowShift: null, colShift: null, contrast: null, color: null, downNoise: null, upNoise: null }));
    }
    const { shift, noise, jitter } = this.config;
    const generator = this.generator;
    return noGrad(() => sizes.map((size) => {
      const rowShift = shift > 0 ? randint(-shift, shift + 1, [n], { generator, device }) : null;
      const colShift = shift > 0 ? randint(-shift, shift + 1, [n], { generator, device }) : null;
      let contrast: Tensor | null = null;
      let color: Tensor | null = null;
      if (jitter) {
        const draw = (range: readonly [number, number]) => drawFactors(range, jitter.steps, n, { generator, device, dtype });
        if (jitter.contrast) contrast = draw(jitter.contrast);
        // The notebook's quirk: the colour amount *is* the contrast draw.
        if (jitter.color) color = jitter.shared && contrast ? contrast.clone() : draw(jitter.color);
      }
      const downNoise = noise ? drawNoise(noise.kind, noise.downAmplitude, [n, c, size[0], size[1]], { generator, device, dtype }) : null;
      const upNoise = noise ? drawNoise(noise.kind, noise.upAmplitude, [n, c, h, w], { generator, device, dtype }) : null;
      return { size, rowShift, colShift, contrast, color, downNoise, upNoise };
    }));
  }

  /** The stack for given draws (one per view): differentiable in `images`, the draws are constants. */
  applyDraws(images: Tensor, draws: readonly PriorViewDraws[]): Tensor {
    checkImages(images);
    if (draws.length === 0) throw new Error('MultiResolutionPrior.applyDraws needs at least one view');
    return tidy(() => cat(draws.map((d) => this.renderView(images, d)), 1));
  }

  private renderView(images: Tensor, d: PriorViewDraws): Tensor {
    const [n, , h, w] = images.shape as [number, number, number, number];
    let x = images;
    if (d.contrast) x = adjustContrast(x, perImage(d.contrast, n));
    if (d.rowShift || d.colShift) {
      const none = () => zeros([n], { dtype: 'int64', device: images.device as Device });
      x = rollPerImage(x, d.rowShift ?? none(), d.colShift ?? none());
    }
    if (d.color) x = blendTowardGrey(x, perImage(d.color, n));
    x = this.resize(x, d.size, this.config.downsample, this.config.antialias);
    if (d.downNoise) x = x.add(d.downNoise);
    x = this.resize(x, [h, w], this.config.upsample, false);
    if (d.upNoise) x = x.add(d.upNoise);
    return this.config.clip ? x.clamp(0, 1) : x;
  }

  /** interpolate(), with bicubic resizing (no antialiasing, float32/64) as matrix products: see bicubic.ts for why. */
  private resize(x: Tensor, size: readonly [number, number], mode: InterpolationMode, antialias: boolean): Tensor {
    if (mode === 'bicubic' && !antialias && (x.dtype === 'float32' || x.dtype === 'float64')) return bicubicResize(x, size);
    return interpolate(x, { size: [size[0], size[1]], mode, antialias });
  }
}

/**
 * torchvision.transforms.functional.adjust_contrast on a batch with one factor per image: a blend with the mean
 * of the luminance image (plain mean for non-RGB images), clamped to [0, 1]. `factor` broadcasts as [N, 1, 1, 1].
 */
export function adjustContrast(images: Tensor, factor: Tensor): Tensor {
  return tidy(() => {
    const c = images.size(1);
    // Summed left to right, as torchvision does, so the result matches it to the last bit or two.
    const grey = c === 3
      ? images.narrow(1, 0, 1).mul(lumaWeights[0]).add(images.narrow(1, 1, 1).mul(lumaWeights[1])).add(images.narrow(1, 2, 1).mul(lumaWeights[2]))
      : images;
    const mean = grey.mean({ dim: [1, 2, 3], keepdim: true });
    return images.mul(factor).add(mean.mul(factor.rsub(1))).clamp(0, 1);
  });
}

/** c·img + (1 - c)·(mean over channels), the notebook's "grayscaling"; `amount` broadcasts as [N, 1, 1, 1]. */
export function blendTowardGrey(images: Tensor, amount: Tensor): Tensor {
  return tidy(() => images.mul(amount).add(images.mean({ dim: 1, keepdim: true }).mul(amount.rsub(1))));
}

function perImage(values: Tensor, n: number): Tensor {
  if (values.ndim !== 1 || values.shape[0] !== n) throw new Error(`per-image factors must have shape [${n}], got [${values.shape.join(', ')}]`);
  return values.view([n, 1, 1, 1]);
}

interface DrawTarget {
  generator: Generator | undefined;
  device: Device;
  dtype: DType;
}

function drawFactors(range: readonly [number, number], steps: number | null, n: number, t: DrawTarget): Tensor {
  const [lo, hi] = range;
  return tidy(() => {
    if (steps === null) return rand([n], t).mul(hi - lo).add(lo);
    if (steps === 1) return ones([n], t).mul(lo); // np.linspace(lo, hi, 1) is [lo]
    // np.random.choice(np.linspace(lo, hi, steps)): a uniform index into the grid, whose values are computed
    // in float64 as numpy does and then rounded once, so the ends are exactly lo and hi.
    return randint(0, steps, [n], { generator: t.generator, device: t.device }).to('float64')
      .mul((hi - lo) / (steps - 1)).add(lo).to(t.dtype);
  });
}

function drawNoise(kind: PriorNoiseKind, amplitude: number, shape: number[], t: DrawTarget): Tensor | null {
  if (amplitude === 0) return null;
  return tidy(() => (kind === 'uniform' ? rand(shape, t) : randn(shape, t)).mul(amplitude));
}

function checkImages(images: Tensor): void {
  if (images.ndim !== 4) throw new Error(`MultiResolutionPrior expects images [N, C, H, W], got [${images.shape.join(', ')}]`);
  const dtype = images.dtype;
  if (dtype !== 'float32' && dtype !== 'float64' && dtype !== 'float16' && dtype !== 'bfloat16') {
    throw new TypeError(`MultiResolutionPrior expects floating-point images in [0, 1], got ${dtype}`);
  }
}

/**
 * The prior's options checked and with every default applied, without building a prior (a pure function: what
 * the MultiResolutionPrior constructor uses, and what configurations validate with). Throws on invalid options.
 * `deterministic`, `enabled` and `generator` are state of a built prior, not part of the resolved config.
 */
export function resolvePriorConfig(o: MultiResolutionPriorOptions): ResolvedPriorConfig {
  const preset = o.preset ?? 'paper';
  const p = presets[preset];
  if (!p) throw new Error(`unknown prior preset '${preset as string}' (one of ${Object.keys(presets).join(', ')})`);
  if (o.resolutions !== undefined && o.resolutionFactors !== undefined) {
    throw new Error('give either resolutions or resolutionFactors, not both');
  }
  const resolutions = o.resolutions ? [...o.resolutions] : null;
  const resolutionFactors = [...(o.resolutionFactors ?? [1, 1 / 2, 1 / 4, 1 / 8])];
  if (resolutions) {
    if (resolutions.length === 0 || !resolutions.every((r) => Number.isInteger(r) && r > 0)) {
      throw new RangeError(`resolutions must be positive integers, got [${resolutions.join(', ')}]`);
    }
  } else if (resolutionFactors.length === 0 || !resolutionFactors.every((f) => Number.isFinite(f) && f > 0)) {
    throw new RangeError(`resolutionFactors must be positive numbers, got [${resolutionFactors.join(', ')}]`);
  }
  const downsample = o.downsample ?? 'bicubic';
  const upsample = o.upsample ?? 'bicubic';
  const antialias = o.antialias ?? false;
  if (antialias && downsample !== 'bilinear' && downsample !== 'bicubic') {
    throw new Error(`antialias applies to bilinear and bicubic down-sampling, not ${downsample}`);
  }
  const shift = o.shift ?? 3;
  if (!Number.isInteger(shift) || shift < 0) throw new RangeError(`shift must be a non-negative integer, got ${shift}`);

  let noise: Required<PriorNoiseOptions> | null = null;
  if (o.noise !== false) {
    noise = {
      kind: o.noise?.kind ?? p.noiseKind,
      downAmplitude: o.noise?.downAmplitude ?? 0.2,
      upAmplitude: o.noise?.upAmplitude ?? 0.2,
    };
    if (noise.kind !== 'uniform' && noise.kind !== 'gaussian') throw new Error(`unknown noise kind '${noise.kind as string}'`);
    for (const a of [noise.downAmplitude, noise.upAmplitude]) {
      if (!Number.isFinite(a) || a < 0) throw new RangeError(`noise amplitudes must be non-negative, got ${a}`);
    }
  }

  let jitter: ResolvedPriorConfig['jitter'] = null;
  if (o.jitter !== false) {
    const contrast = o.jitter?.contrast === undefined ? p.contrast : o.jitter.contrast;
    const color = o.jitter?.color === undefined ? defaultColorRange : o.jitter.color;
    const shared = o.jitter?.shared ?? p.shared;
    const steps = o.jitter?.steps === undefined ? 100 : o.jitter.steps;
    for (const [name, range] of [['contrast', contrast], ['color', color]] as const) {
      if (range && !(Number.isFinite(range[0]) && Number.isFinite(range[1]) && range[0] >= 0 && range[0] <= range[1])) {
        throw new RangeError(`jitter.${name} must be a range [lo, hi] with 0 <= lo <= hi, got [${range.join(', ')}]`);
      }
    }
    if (shared && contrast && color && (contrast[0] !== color[0] || contrast[1] !== color[1])) {
      throw new Error(`jitter.shared uses one draw for contrast and colour, so their ranges must agree (got [${contrast.join(', ')}] and [${color.join(', ')}])`);
    }
    if (steps !== null && (!Number.isInteger(steps) || steps < 1)) throw new RangeError(`jitter.steps must be a positive integer or null, got ${steps}`);
    jitter = { contrast: contrast ? [contrast[0], contrast[1]] : null, color: color ? [color[0], color[1]] : null, shared, steps };
  }
  return { preset, resolutions, resolutionFactors, downsample, upsample, antialias, shift, noise, jitter, clip: o.clip ?? true };
}
