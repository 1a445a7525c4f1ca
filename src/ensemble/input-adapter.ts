// What sits between the multi-resolution prior and a backbone that expects other inputs: resizing and per-channel
// normalisation (the notebook's prepare_input for an ImageNet-pretrained ResNet).
import { tensor, tidy, type Tensor } from '../tensor/index.js';
import { interpolate, type InterpolationMode } from '../nn/functional.js';
import { Module } from '../nn/module.js';

/** How {@link InputAdapter} resizes the stack. */
export interface InputResizeOptions {
  /** Output [height, width], or one number for both. */
  size: number | [number, number];
  /** Default 'bicubic' (the notebook's F.interpolate(x, size=(224, 224), mode='bicubic')). */
  mode?: InterpolationMode;
  /** Default false, as the notebook. */
  antialias?: boolean;
}

/** Per-channel normalisation: (x − mean) / std. */
export interface InputNormalizeOptions {
  /** Per-channel means of one image (e.g. ImageNet's three); repeated for every view of the stack. */
  mean: number[];
  /** Per-channel standard deviations of one image, paired with `mean`. */
  std: number[];
}

/** Settings of an {@link InputAdapter}. */
export interface InputAdapterOptions {
  /** Resize the stack before the backbone (null: no resizing). Default null. */
  resize?: InputResizeOptions | null;
  /** Subtract the mean and divide by the std, per channel (null: none). Default null. */
  normalize?: InputNormalizeOptions | null;
}

/** ImageNet's channel statistics, what torchvision's pretrained weights expect. */
export const IMAGENET_NORMALIZATION: Readonly<InputNormalizeOptions> = Object.freeze({
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
});

/**
 * What an ImageNet-pretrained backbone needs between the prior and itself (the notebook's prepare_input):
 * bicubic up-sampling of the 32x32 stack to 224x224 and ImageNet normalisation, its three means and stds
 * repeated once per view. Has no state-dict entries (its constants are non-persistent buffers, so they move with
 * `to()`).
 */
export class InputAdapter extends Module {
  /** Output [height, width], or null for no resizing. */
  readonly size: [number, number] | null;
  /** Interpolation of the resize. */
  readonly mode: InterpolationMode;
  /** Whether the resize low-pass filters when shrinking. */
  readonly antialias: boolean;
  /** Means per input channel ([1, channels, 1, 1]), or null for no normalisation. */
  readonly mean: Tensor | null;
  /** Standard deviations per input channel ([1, channels, 1, 1]), or null. */
  readonly std: Tensor | null;

  /**
   * @param channels - Channels of the input stack (3 per view).
   * @param options - Resizing and normalisation.
   */
  constructor(readonly channels: number, options: InputAdapterOptions = {}) {
    super();
    const resize = options.resize ?? null;
    this.size = resize ? (typeof resize.size === 'number' ? [resize.size, resize.size] : [resize.size[0], resize.size[1]]) : null;
    if (this.size && !this.size.every((s) => Number.isInteger(s) && s >= 1)) throw new RangeError(`resize size must be positive integers, got [${this.size.join(', ')}]`);
    this.mode = resize?.mode ?? 'bicubic';
    this.antialias = resize?.antialias ?? false;
    const normalize = options.normalize ?? null;
    if (normalize) {
      const { mean, std } = normalize;
      if (mean.length === 0 || mean.length !== std.length || channels % mean.length !== 0) {
        throw new Error(`normalize needs mean and std of one length that divides the ${channels} channels, got ${mean.length} and ${std.length}`);
      }
      if (!std.every((s) => s > 0)) throw new RangeError('normalize std must be positive');
      const repeat = <T>(values: T[]) => Array.from({ length: channels }, (_, c) => values[c % values.length]!);
      this.mean = this.registerBuffer('mean', tensor(repeat(mean), { shape: [1, channels, 1, 1] }), { persistent: false });
      this.std = this.registerBuffer('std', tensor(repeat(std), { shape: [1, channels, 1, 1] }), { persistent: false });
    } else {
      this.mean = null;
      this.std = null;
    }
  }

  /** The [height, width] the backbone sees for images of the given size. */
  outputSize(height: number, width: number): [number, number] {
    return this.size ? [this.size[0], this.size[1]] : [height, width];
  }

  /** [N, channels, H, W] to the resized, normalised stack. */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let out = x;
      if (this.size) out = interpolate(out, { size: this.size, mode: this.mode, antialias: this.antialias || undefined });
      if (this.mean && this.std) {
        const [mean, std] = out.dtype === this.mean.dtype ? [this.mean, this.std] : [this.mean.to(out.dtype), this.std.to(out.dtype)];
        out = out.sub(mean).div(std);
      }
      return out === x ? x.view(x.shape) : out;
    });
  }
}
