// The augmentations every generation step averages its gradient over. Without them the optimisation finds
// adversarial patterns that score well on one exact view of the image; with random shifts and noise it has to
// find features that survive them (Direct Ascent Synthesis, arXiv 2502.07753).
//
// DAS (its demo's make_image_augmentations / add_jitter / add_noise, see parametrisation.ts for the sources), per
// copy: torch.roll of the whole canvas by one random integer shift in [−56, 56] on each axis, the central 224×224
// crop of the 336×336 canvas (so the 56-pixel buffer hides the roll's wrap-around), + 0.2·U[0, 1) noise, clip to
// [0, 1]; 64 copies per step (in batches of 32; a port of the demo uses 8 copies and jitter 28). Random resized
// crops and flips are extensions, off by default.
import { interpolate } from '../nn/functional.js';
import { cat, rand, randint, randn, tidy, type Device, type Generator, type Tensor } from '../tensor/index.js';

/** DAS's jitter relative to its canvas: 56 pixels of 336. */
export const DAS_JITTER_FRACTION = 56 / 336;

/**
 * The augmentations of Direct Ascent Synthesis (DAS, Fort & Whitaker 2025): every step scores many jittered, cropped,
 * noised copies of each image, so that the images, not adversarial noise, carry the objective.
 */
export interface AugmentOptions {
  /** Augmented copies of every image per step. Default 64 (DAS's augmentation_copies). */
  copies?: number;
  /**
   * Largest shift in pixels on each axis; shifts are uniform integers in [−jitter, jitter]. Default:
   * (canvas − cropSize) / 2 when cropSize is given, else round(canvas / 6) (DAS's 56 at 336).
   */
  jitter?: number;
  /** Side of the central crop taken after the shift. Default canvas − 2·jitter (DAS's 224 of 336). */
  cropSize?: number;
  /**
   * Random resized crop after the central crop: a square of side s·cropSize (s uniform in [lo, hi]) at a random
   * place, resized back to cropSize (bilinear). null (default, as DAS): none.
   */
  scale?: readonly [number, number] | null;
  /** Flip each copy left-right with probability 1/2. Default false (DAS does not). */
  flip?: boolean;
  /** Resize the crops to this size for the model (bilinear). Default null: keep cropSize. */
  outputSize?: number | null;
  /** Noise amplitude. Default 0.2 (DAS's noise_scale). */
  noise?: number;
  /**
   * 'uniform' (default, DAS's add_noise: x + rand_like(x)·amplitude, which brightens by amplitude/2 on average) or
   * 'gaussian' (amplitude·N(0, 1), zero-mean).
   */
  noiseKind?: 'uniform' | 'gaussian';
  /** Clip the copies to [0, 1]. Default true (DAS). */
  clip?: boolean;
}

/** The options with every default applied, for a canvas of the given height. */
export interface ResolvedAugmentOptions {
  /** Augmented copies per image per step. */
  copies: number;
  /** Largest shift in pixels. */
  jitter: number;
  /** Side of the central crop. */
  cropSize: number;
  /** Random resized crop range, or null for none. */
  scale: readonly [number, number] | null;
  /** Whether copies are flipped left-right at random. */
  flip: boolean;
  /** Side of the crops the model sees. */
  outputSize: number;
  /** Noise amplitude. */
  noise: number;
  /** Uniform or Gaussian noise. */
  noiseKind: 'uniform' | 'gaussian';
  /** Whether copies are clipped to [0, 1]. */
  clip: boolean;
}

/** Every default of `options` for a canvas of side `canvas`, checked (crop inside the canvas, positive sizes). */
export function resolveAugmentOptions(options: AugmentOptions, canvas: number): ResolvedAugmentOptions {
  const jitter = options.jitter ?? (options.cropSize !== undefined
    ? Math.floor((canvas - options.cropSize) / 2)
    : Math.round(canvas * DAS_JITTER_FRACTION));
  const cropSize = options.cropSize ?? canvas - 2 * jitter;
  const resolved: ResolvedAugmentOptions = {
    copies: options.copies ?? 64,
    jitter,
    cropSize,
    scale: options.scale ?? null,
    flip: options.flip ?? false,
    outputSize: options.outputSize ?? cropSize,
    noise: options.noise ?? 0.2,
    noiseKind: options.noiseKind ?? 'uniform',
    clip: options.clip ?? true,
  };
  const { copies, scale, outputSize, noise } = resolved;
  if (!Number.isInteger(copies) || copies < 1) throw new RangeError(`copies must be a positive integer, got ${copies}`);
  if (!Number.isInteger(jitter) || jitter < 0) throw new RangeError(`jitter must be a non-negative integer, got ${jitter}`);
  if (!Number.isInteger(cropSize) || cropSize < 1 || cropSize > canvas) {
    throw new RangeError(`crop size ${cropSize} does not fit the ${canvas}-pixel canvas (jitter ${jitter})`);
  }
  if (scale && !(scale[0] > 0 && scale[0] <= scale[1] && scale[1] <= 1)) throw new RangeError(`scale must satisfy 0 < lo ≤ hi ≤ 1, got [${scale.join(', ')}]`);
  if (!Number.isInteger(outputSize) || outputSize < 1) throw new RangeError(`outputSize must be a positive integer, got ${outputSize}`);
  if (!(noise >= 0)) throw new RangeError(`noise must be ≥ 0, got ${noise}`);
  if (resolved.noiseKind !== 'uniform' && resolved.noiseKind !== 'gaussian') throw new RangeError(`unknown noiseKind '${String(resolved.noiseKind)}'`);
  return resolved;
}

/**
 * `copies` augmented views of every image, [copies·N, 3, outputSize, outputSize], copy-major (rows 0..N−1 are the
 * first copy). Differentiable with respect to the images. Random draws come from `generator`, which must live on
 * the images' device (default: libtorch's global generator).
 */
export function augmentImages(images: Tensor, options: AugmentOptions = {}, generator?: Generator): Tensor {
  if (images.ndim !== 4) throw new Error(`augmentImages expects images [N, C, H, W], got [${images.shape.join(', ')}]`);
  const [n, c, h, w] = images.shape as [number, number, number, number];
  if (h !== w) throw new Error(`augmentImages expects square canvases, got ${h}×${w}`);
  const o = resolveAugmentOptions(options, h);
  const device = images.device as Device;
  return tidy(() => {
    const random = { generator, device };
    const shifts = o.jitter > 0 ? randint(-o.jitter, o.jitter + 1, [o.copies, 2], random).toArray() : null;
    const crops = o.scale ? rand([o.copies, 3], { ...random, dtype: 'float64' }).toArray() : null;
    const flips = o.flip ? rand([o.copies], { ...random, dtype: 'float64' }).toArray() : null;
    const offset = Math.floor((h - o.cropSize) / 2);
    const views: Tensor[] = [];
    for (let k = 0; k < o.copies; k++) {
      let x = shifts ? images.roll([shifts[2 * k]!, shifts[2 * k + 1]!], [2, 3]) : images;
      x = x.narrow(2, offset, o.cropSize).narrow(3, offset, o.cropSize);
      if (crops && o.scale) {
        const [lo, hi] = o.scale;
        const side = Math.max(1, Math.round(o.cropSize * (lo + (hi - lo) * crops[3 * k]!)));
        const top = Math.min(o.cropSize - side, Math.floor(crops[3 * k + 1]! * (o.cropSize - side + 1)));
        const left = Math.min(o.cropSize - side, Math.floor(crops[3 * k + 2]! * (o.cropSize - side + 1)));
        x = x.narrow(2, top, side).narrow(3, left, side);
        if (side !== o.cropSize) x = interpolate(x, { size: o.cropSize, mode: 'bilinear' });
      }
      if (flips && flips[k]! < 0.5) x = x.flip([3]);
      if (o.outputSize !== o.cropSize) x = interpolate(x, { size: o.outputSize, mode: 'bilinear' });
      views.push(x);
    }
    let out = views.length === 1 ? views[0]!.contiguous() : cat(views, 0);
    if (o.noise > 0) {
      const shape = [o.copies * n, c, o.outputSize, o.outputSize];
      const noise = o.noiseKind === 'uniform'
        ? rand(shape, { ...random, dtype: images.dtype })
        : randn(shape, { ...random, dtype: images.dtype });
      out = out.add(noise.mul(o.noise));
    }
    return o.clip ? out.clamp(0, 1) : out;
  });
}

/** The central size×size square of images [N, C, H, W] (DAS shows the central 224 of its 336 canvas). */
export function centerCrop(images: Tensor, size: number): Tensor {
  const [h, w] = [images.shape[2]!, images.shape[3]!];
  if (size > h || size > w) throw new RangeError(`cannot crop ${size}×${size} from ${h}×${w}`);
  return tidy(() => images.narrow(2, Math.floor((h - size) / 2), size).narrow(3, Math.floor((w - size) / 2), size).contiguous());
}
