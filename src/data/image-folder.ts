// Image folders laid out as `dir/<class>/<image>.png|jpg|jpeg` (torchvision's ImageFolder; e.g. the
// cifar10-jpeg copy's train/ and test/). Decoding tens of thousands of JPEGs in JS takes seconds, so the decoded
// bytes are kept in a cache file keyed by the folder's path and checked against its file list, sizes and mtimes.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { CHANNELS, InMemoryImageDataset, type InMemoryImageDatasetInit, labelArray } from './dataset.js';
import { defaultCacheDir, naturalCompare } from './paths.js';
import { writeFileAtomic } from '../util/atomic-write.js';

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

/** How the images were obtained: read from a valid cache, decoded (no cache yet / stale cache), or no cache. */
export type CacheStatus = 'hit' | 'miss' | 'invalidated' | 'disabled';

/** What happened with the decoded-image cache of an image folder. */
export interface CacheInfo {
  /** Hit, miss, invalidated (stale) or disabled. */
  status: CacheStatus;
  /** The cache file, or null when caching is disabled. */
  path: string | null;
  /** Why the cache file could not be written (the data are still loaded). */
  writeError?: string;
}

/** A dataset read from an image folder (one sub-folder per class), with what happened to its cache. */
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
const CACHE_MAGIC = 'CMXIMGF\n';
/** Bump when the cache layout or the decoding changes, so old caches are rebuilt. */
const CACHE_VERSION = 1;

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
  hash.update(`crossmax image folder v${CACHE_VERSION}\n${classes.join('\n')}\n`);
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

function decodeAll(listing: Listing): { images: Uint8Array; height: number; width: number } {
  let images: Uint8Array | null = null;
  let height = 0;
  let width = 0;
  let first = '';
  listing.files.forEach(({ path }, i) => {
    const img = decodeImage(path);
    if (!images) {
      ({ height, width } = img);
      first = path;
      images = new Uint8Array(listing.files.length * CHANNELS * height * width);
    } else if (img.height !== height || img.width !== width) {
      throw new Error(`${path}: ${img.height}×${img.width} pixels, but ${first} (and the images before this one) are ${height}×${width}`);
    }
    // Interleaved RGB(A) to planar CHW.
    const plane = height * width;
    const out = i * CHANNELS * plane;
    const step = img.channelsPerPixel;
    for (let p = 0; p < plane; p++) {
      images[out + p] = img.rgb[p * step]!;
      images[out + plane + p] = img.rgb[p * step + 1]!;
      images[out + 2 * plane + p] = img.rgb[p * step + 2]!;
    }
  });
  return { images: images!, height, width };
}

interface CacheHeader {
  version: number;
  root: string;
  fingerprint: string;
  classes: string[];
  length: number;
  height: number;
  width: number;
  labelBytes: number;
}

function cachePath(cacheDir: string, root: string, classes: readonly string[] | undefined): string {
  const key = createHash('sha256').update(JSON.stringify({ root, classes: classes ?? null })).digest('hex').slice(0, 20);
  return join(cacheDir, `${basename(root).replace(/[^A-Za-z0-9_.-]/g, '_')}-${key}.bin`);
}

/** The cached images if the cache file matches the listing; null for no file or a stale/damaged one. */
function readCache(path: string, listing: Listing): { labels: Uint8Array | Uint16Array; images: Uint8Array; height: number; width: number } | null {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch {
    return null;
  }
  if (buf.length < 16 || buf.toString('latin1', 0, 8) !== CACHE_MAGIC || buf.readUInt32LE(8) !== CACHE_VERSION) return null;
  const headerLength = buf.readUInt32LE(12);
  if (16 + headerLength > buf.length) return null;
  let header: CacheHeader;
  try {
    header = JSON.parse(buf.toString('utf8', 16, 16 + headerLength)) as CacheHeader;
  } catch {
    return null;
  }
  if (header.fingerprint !== listing.fingerprint || header.length !== listing.files.length) return null;
  const labelsStart = 16 + headerLength;
  const imagesStart = labelsStart + header.length * header.labelBytes;
  const imageBytes = header.length * CHANNELS * header.height * header.width;
  if (buf.length !== imagesStart + imageBytes) return null;
  const labels = labelArray(header.labelBytes === 1 ? 256 : 65536, header.length);
  for (let i = 0; i < header.length; i++) labels[i] = header.labelBytes === 1 ? buf[labelsStart + i]! : buf.readUInt16LE(labelsStart + 2 * i);
  // The images stay in the file's buffer (no copy).
  const images = new Uint8Array(buf.buffer, buf.byteOffset + imagesStart, imageBytes);
  return { labels, images, height: header.height, width: header.width };
}

function writeCache(path: string, root: string, listing: Listing, labels: Uint8Array | Uint16Array, images: Uint8Array, height: number, width: number): void {
  const header: CacheHeader = {
    version: CACHE_VERSION, root, fingerprint: listing.fingerprint, classes: listing.classes,
    length: labels.length, height, width, labelBytes: labels.BYTES_PER_ELEMENT,
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(16);
  prefix.write(CACHE_MAGIC, 0, 'latin1');
  prefix.writeUInt32LE(CACHE_VERSION, 8);
  prefix.writeUInt32LE(json.length, 12);
  const labelBytes = Buffer.alloc(labels.length * labels.BYTES_PER_ELEMENT);
  labels.forEach((l, i) => (labels.BYTES_PER_ELEMENT === 1 ? labelBytes.writeUInt8(l, i) : labelBytes.writeUInt16LE(l, 2 * i)));
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, [prefix, json, labelBytes, images]);
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
  if (path) {
    const cached = readCache(path, listing);
    if (cached) return new ImageFolderDataset({ ...init, ...cached }, { status: 'hit', path });
  }
  const labels = labelArray(listing.classes.length, listing.files.length);
  listing.files.forEach((f, i) => (labels[i] = f.label));
  const { images, height, width } = decodeAll(listing);
  const cache: CacheInfo = { status: 'disabled', path };
  if (path) {
    cache.status = existsSync(path) ? 'invalidated' : 'miss';
    try {
      writeCache(path, root, listing, labels, images, height, width);
    } catch (err) {
      // A read-only or full cache disk costs speed next time, not this load.
      cache.writeError = (err as Error).message;
    }
  }
  return new ImageFolderDataset({ ...init, labels, images, height, width }, cache);
}
