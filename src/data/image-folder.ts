// Image folders laid out as `dir/<class>/<image>.png|jpg|jpeg` (torchvision's ImageFolder; e.g. the
// cifar10-jpeg copy's train/ and test/). Decoding tens of thousands of JPEGs in JS takes seconds, so the decoded
// bytes are kept in a cache file keyed by the folder's path and checked against its file list, sizes and mtimes.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { InMemoryImageDataset, type InMemoryImageDatasetInit, labelArray } from './dataset.js';
import { type CacheInfo, type DecodedImages, PlanarImageWriter, withDecodedCache } from './decoded-cache.js';
import { defaultCacheDir, naturalCompare } from './paths.js';

export type { CacheInfo, CacheStatus } from './decoded-cache.js';

/** Settings of {@link loadImageFolder}. */
export interface ImageFolderOptions {
  /** Class names in label order, each a sub-folder. Default: the sub-folders' names, sorted. */
  classes?: readonly string[];
  /** Dataset name. Default: the folder's parent and own name, e.g. 'cifar10-jpeg/test'. */
  name?: string;
  /**
   * Directory for the decoded cache file, or null for no cache. Default: `defaultCacheDir()`/image-folder
   * (~/.cache/crossmax/image-folder).
   */
  cacheDir?: string | null;
}

export class ImageFolderDataset extends InMemoryImageDataset {
  /**
   * @param init - The decoded images, labels and names.
   * @param cache - Whether the decoded images came from the cache.
   */
  constructor(init: InMemoryImageDatasetInit, readonly cache: CacheInfo) {
    super(init);
  }
}

const IMAGE_FILE = /\.(png|jpe?g)$/i;
/** Part of the fingerprint: bump when the listing rules change, so old caches are rebuilt. */
const LISTING_VERSION = 1;

interface Listing {
  classes: string[];
  files: { path: string; label: number }[];
  fingerprint: string;
}

function listFolder(root: string, given: readonly string[] | undefined): Listing {
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new Error(`${root}: no such image folder`);
  const folders = readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  let classes: string[];
  if (given) {
    classes = [...given];
    if (new Set(classes).size !== classes.length) throw new Error(`${root}: the class list names a class twice`);
    const missing = classes.filter((c) => !folders.includes(c));
    if (missing.length > 0) throw new Error(`${root}: no folder for class${missing.length > 1 ? 'es' : ''} ${missing.join(', ')}`);
    const extra = folders.filter((f) => !classes.includes(f));
    if (extra.length > 0) throw new Error(`${root}: folder${extra.length > 1 ? 's' : ''} ${extra.join(', ')} not in the given class list`);
  } else {
    classes = folders;
  }
  if (classes.length === 0) throw new Error(`${root}: no class folders (expected ${root}/<class>/<image>.png|jpg)`);
  const hash = createHash('sha256');
  hash.update(`crossmax image folder v${LISTING_VERSION}\n${classes.join('\n')}\n`);
  const files: Listing['files'] = [];
  classes.forEach((cls, label) => {
    const names = readdirSync(join(root, cls)).filter((n) => IMAGE_FILE.test(n) && !n.startsWith('.')).sort(naturalCompare);
    if (names.length === 0) throw new Error(`${join(root, cls)}: no .png/.jpg/.jpeg images`);
    for (const name of names) {
      const path = join(root, cls, name);
      const stat = statSync(path);
      hash.update(`${cls}/${name}\t${stat.size}\t${stat.mtimeMs}\n`);
      files.push({ path, label });
    }
  });
  return { classes, files, fingerprint: hash.digest('hex') };
}

/** Decodes a PNG or JPEG (by content, not extension) into RGB bytes, height and width. */
export function decodeImage(path: string, bytes: Uint8Array = readFileSync(path)): { rgb: Uint8Array; channelsPerPixel: number; height: number; width: number } {
  try {
    if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) {
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      return { rgb: png.data, channelsPerPixel: 4, height: png.height, width: png.width };
    }
    if (bytes[0] === 0xff && bytes[1] === 0xd8) {
      // tolerantDecoding off: a damaged file is an error, not an image with grey blocks.
      const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false });
      return { rgb: img.data, channelsPerPixel: 3, height: img.height, width: img.width };
    }
  } catch (err) {
    throw new Error(`${path}: cannot decode image: ${(err as Error).message}`);
  }
  const head = Buffer.from(bytes.subarray(0, 4)).toString('hex');
  throw new Error(`${path}: neither PNG nor JPEG (starts with 0x${head})`);
}

function decodeAll(listing: Listing): DecodedImages {
  const writer = new PlanarImageWriter(listing.files.length);
  for (const { path } of listing.files) writer.push(decodeImage(path), path);
  const labels = labelArray(listing.classes.length, listing.files.length);
  listing.files.forEach((f, i) => (labels[i] = f.label));
  return { classes: listing.classes, labels, images: writer.finish(), height: writer.height, width: writer.width };
}

function cachePath(cacheDir: string, root: string, classes: readonly string[] | undefined): string {
  const key = createHash('sha256').update(JSON.stringify({ root, classes: classes ?? null })).digest('hex').slice(0, 20);
  return join(cacheDir, `${basename(root).replace(/[^A-Za-z0-9_.-]/g, '_')}-${key}.bin`);
}

/** Loads every image of `dir/<class>/*` into memory; all images must have the same size. */
export function loadImageFolder(dir: string, options: ImageFolderOptions = {}): ImageFolderDataset {
  const root = resolve(dir);
  const listing = listFolder(root, options.classes);
  const cacheDir = options.cacheDir === undefined ? join(defaultCacheDir(), 'image-folder') : options.cacheDir;
  const path = cacheDir === null ? null : cachePath(resolve(cacheDir), root, options.classes);
  const init = {
    name: options.name ?? `${basename(resolve(root, '..'))}/${basename(root)}`,
    classes: listing.classes,
    source: `${root} (image folder)`,
  };
  const { data, cache } = withDecodedCache(path, { root, fingerprint: listing.fingerprint, classes: listing.classes }, () => decodeAll(listing));
  return new ImageFolderDataset({ ...init, labels: data.labels, images: data.images, height: data.height, width: data.width }, cache);
}
