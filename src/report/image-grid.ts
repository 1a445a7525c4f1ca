// Many images as one picture, like torchvision.utils.make_grid: cells of equal size in rows, with padding
// around and between them. PNGs carry no text; where each image needs a caption (its label, prediction,
// confidence), show the images as an HtmlReport gallery instead, which writes one small PNG per image and puts
// the caption under it as HTML. The grid's cell geometry is returned too, for anyone who wants to place
// captions or links over the grid picture themselves.
import { tensor, tidy, type Tensor } from '../tensor/index.js';
import { savePng } from './png.js';

/** Settings of {@link imageGrid}. */
export interface ImageGridOptions {
  /** Images per row. Default: min(N, 8), as torchvision's nrow. */
  columns?: number;
  /** Pixels of background around and between cells, in output pixels (after scaling). Default 2. */
  padding?: number;
  /** Background grey level in [0, 1], or an [r, g, b] colour. Default 1 (white, like the report's pages). */
  background?: number | readonly [number, number, number];
  /** Integer nearest-neighbour up-scaling of every image. Default 1. */
  scale?: number;
}

/** Where image `index` sits in the grid picture, in output pixels (x to the right, y down, from the top left). */
export interface GridCell {
  /** The image's index in the batch. */
  index: number;
  /** Row, from 0 at the top. */
  row: number;
  /** Column, from 0 at the left. */
  column: number;
  /** Left edge in pixels. */
  x: number;
  /** Top edge in pixels. */
  y: number;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}

/** Where every image sits in a grid picture. */
export interface ImageGridLayout {
  /** Size of the whole picture in pixels. */
  width: number;
  /** Height of the whole picture in pixels. */
  height: number;
  /** Rows of images. */
  rows: number;
  /** Images per row. */
  columns: number;
  /** One cell per image, in batch order. */
  cells: GridCell[];
}

/** What {@link imageGrid} returns: the picture and its layout. */
export interface ImageGrid extends ImageGridLayout {
  /** The picture, float32 [3, height, width] on the CPU; the caller owns (disposes) it. */
  image: Tensor;
}

/**
 * Arranges images [N, 3, H, W] or [N, 1, H, W] (float in [0, 1] or uint8) in a grid, row by row; grey images
 * become RGB. Values are not clipped here (encodePng clips), so the grid keeps what it was given.
 */
export function imageGrid(images: Tensor, options: ImageGridOptions = {}): ImageGrid {
  const shape = images.shape;
  if (shape.length !== 4 || (shape[1] !== 1 && shape[1] !== 3)) {
    throw new RangeError(`imageGrid expects images [N, 3, H, W] or [N, 1, H, W], got [${shape.join(', ')}]`);
  }
  const [count, , imageHeight, imageWidth] = shape as [number, number, number, number];
  if (count === 0) throw new RangeError('imageGrid needs at least one image');
  const scale = options.scale ?? 1;
  if (!Number.isInteger(scale) || scale < 1) throw new RangeError(`scale must be a positive integer, got ${scale}`);
  const layout = gridLayout(count, imageHeight * scale, imageWidth * scale, options);
  const background = backgroundColor(options.background ?? 1);
  const image = tidy(() => {
    let pixels = images.detach();
    if (pixels.device !== 'cpu') pixels = pixels.to('cpu');
    pixels = images.dtype === 'uint8' ? pixels.to('float32').div(255) : pixels.to('float32');
    if (pixels.size(1) === 1) pixels = pixels.expand([count, 3, imageHeight, imageWidth]);
    if (scale > 1) pixels = pixels.repeatInterleave(scale, 2).repeatInterleave(scale, 3);
    const canvas = tensor(background).reshape([3, 1, 1]).repeat([1, layout.height, layout.width]);
    for (const cell of layout.cells) {
      canvas.narrow(1, cell.y, cell.height).narrow(2, cell.x, cell.width).copy_(pixels.select(0, cell.index));
    }
    return canvas;
  });
  return { ...layout, image };
}

/** Writes imageGrid(images, options) to `path` as a PNG (atomically) and returns its geometry. */
export function saveImageGrid(path: string, images: Tensor, options: ImageGridOptions = {}): ImageGridLayout {
  const { image, ...layout } = imageGrid(images, options);
  try {
    savePng(path, image);
  } finally {
    image.dispose();
  }
  return layout;
}

/** The geometry imageGrid uses for `count` cells of cellHeight × cellWidth output pixels. */
export function gridLayout(
  count: number, cellHeight: number, cellWidth: number, options: Pick<ImageGridOptions, 'columns' | 'padding'> = {},
): ImageGridLayout {
  const columns = Math.min(options.columns ?? 8, count);
  const padding = options.padding ?? 2;
  if (!Number.isInteger(columns) || columns < 1) throw new RangeError(`columns must be a positive integer, got ${options.columns}`);
  if (!Number.isInteger(padding) || padding < 0) throw new RangeError(`padding must be a non-negative integer, got ${padding}`);
  const rows = Math.ceil(count / columns);
  const cells: GridCell[] = [];
  for (let index = 0; index < count; index++) {
    const row = Math.floor(index / columns);
    const column = index % columns;
    cells.push({
      index, row, column,
      x: padding + column * (cellWidth + padding),
      y: padding + row * (cellHeight + padding),
      width: cellWidth,
      height: cellHeight,
    });
  }
  return {
    width: padding + columns * (cellWidth + padding),
    height: padding + rows * (cellHeight + padding),
    rows, columns, cells,
  };
}

function backgroundColor(background: number | readonly [number, number, number]): number[] {
  const rgb = typeof background === 'number' ? [background, background, background] : [...background];
  if (rgb.length !== 3 || rgb.some((v) => !(v >= 0 && v <= 1))) {
    throw new RangeError(`background must be a grey level or [r, g, b] in [0, 1], got ${JSON.stringify(background)}`);
  }
  return rgb;
}
