// Images as PNG files: tensors in the layout PyTorch uses for images ([C, H, W], values in [0, 1]) become 8-bit
// PNGs the way torchvision.utils.save_image writes them (x·255 + 0.5, clamped, truncated), so a picture saved
// here and one saved from PyTorch have the same bytes per pixel.
import { PNG } from 'pngjs';
import { tidy, type Tensor } from '../tensor/index.js';
import { writeFileAtomic } from '../util/atomic-write.js';

/** Pixels in memory: row-major, channels interleaved (H, W, C), one byte per channel. */
export interface RasterImage {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** 1 grey, 3 RGB, 4 RGBA. */
  channels: 1 | 3 | 4;
  /** height × width × channels bytes. */
  data: Uint8Array;
}

/** How tensors are encoded as PNG. */
export interface PngOptions {
  /** Integer nearest-neighbour up-scaling, so a 32×32 CIFAR image can be seen (scale 4 → 128×128). Default 1. */
  scale?: number;
}

/**
 * Encodes an image as PNG bytes. `image` is a tensor [3, H, W] (RGB), [1, H, W] or [H, W] (grey), float in
 * [0, 1] or uint8 in [0, 255], on any device; or a RasterImage. Float values outside [0, 1] (infinities
 * included) are clipped; NaN is an error, since it has no colour and nearly always means a bug upstream.
 */
export function encodePng(image: Tensor | RasterImage, options: PngOptions = {}): Uint8Array {
  const raster = upscale(isRaster(image) ? image : tensorToRaster(image), options.scale ?? 1);
  const colorType = raster.channels === 1 ? 0 : raster.channels === 3 ? 2 : 6;
  // pngjs passes the bytes through untouched when the input and output colour types agree.
  const bytes = PNG.sync.write(
    { width: raster.width, height: raster.height, data: Buffer.from(raster.data.buffer, raster.data.byteOffset, raster.data.byteLength) } as PNG,
    { colorType, inputColorType: colorType, inputHasAlpha: colorType === 6, deflateLevel: 6 },
  );
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Writes `image` (see encodePng) to `path` as a PNG, atomically. */
export function savePng(path: string, image: Tensor | RasterImage, options: PngOptions = {}): void {
  writeFileAtomic(path, encodePng(image, options));
}

/**
 * The pixels of an image tensor ([3, H, W], [1, H, W] or [H, W]; float in [0, 1] or uint8) as bytes, with
 * floats converted as torchvision's save_image does. Throws on NaN, naming how many and where the first is.
 */
export function tensorToRaster(image: Tensor): RasterImage {
  const shape = image.shape;
  if (shape.length === 4) {
    throw new RangeError(`expected one image [3, H, W] or [H, W], got a batch [${shape.join(', ')}]; use imageGrid() for several`);
  }
  if (shape.length !== 2 && !(shape.length === 3 && (shape[0] === 1 || shape[0] === 3))) {
    throw new RangeError(`expected an image [3, H, W], [1, H, W] or [H, W], got shape [${shape.join(', ')}]`);
  }
  const [channels, height, width] = shape.length === 2 ? [1, shape[0]!, shape[1]!] : [shape[0]!, shape[1]!, shape[2]!];
  if (height === 0 || width === 0) throw new RangeError(`cannot encode an empty image (shape [${shape.join(', ')}])`);
  const dtype = image.dtype;
  if (dtype !== 'uint8' && dtype !== 'float32' && dtype !== 'float64' && dtype !== 'float16' && dtype !== 'bfloat16') {
    throw new TypeError(`image dtype must be a float type (values in [0, 1]) or uint8, got ${dtype}`);
  }
  const data = tidy(() => {
    let t = image.detach().reshape([channels, height, width]);
    if (t.device !== 'cpu') t = t.to('cpu');
    if (dtype !== 'uint8') {
      t = t.to('float32');
      const nan = t.isnan();
      const count = nan.sum().item();
      if (count > 0) {
        const [c, y, x] = nan.nonzero().select(0, 0).toArray();
        throw new RangeError(
          `image holds ${count} NaN value${count === 1 ? '' : 's'} (first at channel ${c}, row ${y}, column ${x}); ` +
          'NaN has no colour: find where the tensor became NaN',
        );
      }
      t = t.mul(255).add(0.5).clamp(0, 255).to('uint8');
    }
    return t.permute([1, 2, 0]).contiguous().toTypedArray() as Uint8Array;
  });
  return { width, height, channels: channels as 1 | 3, data };
}

/** Settings of {@link perturbationToImage}. */
export interface PerturbationImageOptions {
  /**
   * Factor on δ = adv - clean before it is centred on grey. 'auto' (default) maps the largest |δ| in the whole
   * tensor to ±0.5, so a batch shares one factor and its images compare; see autoAmplification().
   */
  amplify?: number | 'auto';
}

/**
 * A perturbation made visible, as papers show it: 0.5 + amplify·(adv - clean), clipped to [0, 1]. Grey means
 * unchanged; the colour shows the sign and channel of the change. Shapes of `adv` and `clean` must agree.
 */
export function perturbationToImage(adv: Tensor, clean: Tensor, options: PerturbationImageOptions = {}): Tensor {
  checkSameShape(adv, clean);
  const amplify = options.amplify ?? 'auto';
  if (amplify !== 'auto' && !(Number.isFinite(amplify) && amplify > 0)) {
    throw new RangeError(`amplify must be a positive number or 'auto', got ${amplify}`);
  }
  return tidy(() => {
    const delta = adv.detach().to('float32').sub(clean.detach().to('float32'));
    const factor = amplify === 'auto' ? autoFactor(delta) : amplify;
    return delta.mul(factor).add(0.5).clamp(0, 1);
  });
}

/** The factor perturbationToImage's 'auto' uses: 0.5 / max|adv - clean| (1 when they are equal), for captions. */
export function autoAmplification(adv: Tensor, clean: Tensor): number {
  checkSameShape(adv, clean);
  return tidy(() => autoFactor(adv.detach().to('float32').sub(clean.detach().to('float32'))));
}

function autoFactor(delta: Tensor): number {
  const maxAbs = delta.abs().max().item();
  if (Number.isNaN(maxAbs)) throw new RangeError('the perturbation holds NaN values');
  return maxAbs > 0 ? 0.5 / maxAbs : 1;
}

function checkSameShape(a: Tensor, b: Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((s, i) => s !== b.shape[i])) {
    throw new RangeError(`adversarial and clean images differ in shape: [${a.shape.join(', ')}] vs [${b.shape.join(', ')}]`);
  }
}

function isRaster(image: Tensor | RasterImage): image is RasterImage {
  return (image as RasterImage).data instanceof Uint8Array && !(image as Tensor).isTensor;
}

/** Nearest-neighbour up-scaling by an integer factor (each pixel becomes a scale×scale block). */
export function upscale(raster: RasterImage, scale: number): RasterImage {
  if (!Number.isInteger(scale) || scale < 1) throw new RangeError(`scale must be a positive integer, got ${scale}`);
  const { width, height, channels, data } = raster;
  if (data.length !== width * height * channels) {
    throw new RangeError(`raster of ${width}×${height}×${channels} needs ${width * height * channels} bytes, has ${data.length}`);
  }
  if (scale === 1) return raster;
  const outWidth = width * scale;
  const out = new Uint8Array(outWidth * height * scale * channels);
  const rowBytes = outWidth * channels;
  for (let y = 0; y < height; y++) {
    const rowStart = y * scale * rowBytes;
    for (let x = 0; x < width; x++) {
      const src = (y * width + x) * channels;
      for (let k = 0; k < scale; k++) {
        const dst = rowStart + (x * scale + k) * channels;
        for (let c = 0; c < channels; c++) out[dst + c] = data[src + c]!;
      }
    }
    for (let k = 1; k < scale; k++) out.copyWithin(rowStart + k * rowBytes, rowStart, rowStart + rowBytes);
  }
  return { width: outWidth, height: height * scale, channels, data: out };
}
