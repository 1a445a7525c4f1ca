// Decoding tens of thousands of JPEGs in JS takes seconds to minutes, so every compressed image source (image
// folders, WebDataset shards) keeps the decoded bytes in one cache file, keyed by the source's location and checked
// against a fingerprint of its files (names, sizes, mtimes) before use. One file format for every source:
//   'CMXIMGF\n' · u32 version · u32 header length · header JSON · labels (u8 or u16 LE) · images (N×3×H×W u8).
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { CHANNELS, labelArray } from './dataset.js';
import { writeFileAtomic } from '../util/atomic-write.js';

/** How the images were obtained: read from a valid cache, decoded (no cache yet / stale cache), or no cache. */
export type CacheStatus = 'hit' | 'miss' | 'invalidated' | 'disabled';

/** Where a loaded dataset's decoded cache is, and whether it was used. */
export interface CacheInfo {
  /**
   * How the images were obtained: 'hit' (read from a matching cache file), 'miss' (no cache file yet: decoded, then
   * written), 'invalidated' (stale or damaged cache file: decoded, then rewritten) or 'disabled' (no cache path:
   * decoded only).
   */
  status: CacheStatus;
  /** The cache file's path, or null when caching is disabled. */
  path: string | null;
  /** Why the cache file could not be written (the data are still loaded). */
  writeError?: string;
}

const CACHE_MAGIC = 'CMXIMGF\n';
/** Bump when the cache layout or the decoding changes, so old caches are rebuilt. */
const CACHE_VERSION = 1;

/** What a cache file holds besides the bytes: enough to check it against its source and to rebuild the dataset. */
export interface DecodedCacheHeader {
  /** The source's location (folder or first shard), for people reading the file. */
  root: string;
  /** A hash of the source's file list (names, sizes, mtimes) and of the options that change labels or classes. */
  fingerprint: string;
  /**
   * Class names, indexed by label. Kept in the file so that a cache hit rebuilds the dataset without reading the
   * source.
   */
  classes: string[];
}

/** Decoded images and labels, as held in a cache file. */
export interface DecodedImages {
  /** Class names, indexed by label (label l is `classes[l]`). */
  classes: string[];
  /** One class index per image (length N), in [0, classes.length): uint8 for up to 256 classes, else uint16. */
  labels: Uint8Array | Uint16Array;
  /** N×3×H×W uint8. */
  images: Uint8Array;
  /** Image height in pixels (every image has the same size). */
  height: number;
  /** Image width in pixels. */
  width: number;
}

interface StoredHeader extends DecodedCacheHeader {
  version: number;
  length: number;
  height: number;
  width: number;
  labelBytes: number;
}

/** The cached images if the file exists and matches `fingerprint`; null for no file or a stale/damaged one. */
export function readDecodedCache(path: string, fingerprint: string): DecodedImages | null {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch {
    return null;
  }
  if (buf.length < 16 || buf.toString('latin1', 0, 8) !== CACHE_MAGIC || buf.readUInt32LE(8) !== CACHE_VERSION) return null;
  const headerLength = buf.readUInt32LE(12);
  if (16 + headerLength > buf.length) return null;
  let header: StoredHeader;
  try {
    header = JSON.parse(buf.toString('utf8', 16, 16 + headerLength)) as StoredHeader;
  } catch {
    return null;
  }
  if (header.fingerprint !== fingerprint || !Array.isArray(header.classes) || ![1, 2].includes(header.labelBytes)) return null;
  const labelsStart = 16 + headerLength;
  const imagesStart = labelsStart + header.length * header.labelBytes;
  const imageBytes = header.length * CHANNELS * header.height * header.width;
  if (buf.length !== imagesStart + imageBytes) return null;
  const labels = labelArray(header.labelBytes === 1 ? 256 : 65536, header.length);
  for (let i = 0; i < header.length; i++) labels[i] = header.labelBytes === 1 ? buf[labelsStart + i]! : buf.readUInt16LE(labelsStart + 2 * i);
  // The images stay in the file's buffer (no copy).
  const images = new Uint8Array(buf.buffer, buf.byteOffset + imagesStart, imageBytes);
  return { classes: header.classes, labels, images, height: header.height, width: header.width };
}

/** Writes a cache file atomically (a reader never sees half a file). */
export function writeDecodedCache(path: string, header: DecodedCacheHeader, data: DecodedImages): void {
  const { labels, images, height, width } = data;
  const stored: StoredHeader = {
    version: CACHE_VERSION, ...header, length: labels.length, height, width, labelBytes: labels.BYTES_PER_ELEMENT,
  };
  const json = Buffer.from(JSON.stringify(stored), 'utf8');
  const prefix = Buffer.alloc(16);
  prefix.write(CACHE_MAGIC, 0, 'latin1');
  prefix.writeUInt32LE(CACHE_VERSION, 8);
  prefix.writeUInt32LE(json.length, 12);
  const labelBytes = Buffer.alloc(labels.length * labels.BYTES_PER_ELEMENT);
  labels.forEach((l, i) => (labels.BYTES_PER_ELEMENT === 1 ? labelBytes.writeUInt8(l, i) : labelBytes.writeUInt16LE(l, 2 * i)));
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, [prefix, json, labelBytes, images]);
}

/**
 * Reads the cache when it matches, else decodes with `decode` and writes the cache. A cache that cannot be written
 * (read-only or full disk) costs speed next time, not this load: its error is reported in `CacheInfo.writeError`.
 */
export function withDecodedCache(path: string | null, header: DecodedCacheHeader, decode: () => DecodedImages): {
  /** The images and labels: read from the cache on a hit, else freshly decoded. */
  data: DecodedImages;
  /** Whether the cache was used, and where it is. */
  cache: CacheInfo;
} {
  if (path) {
    const cached = readDecodedCache(path, header.fingerprint);
    if (cached) return { data: cached, cache: { status: 'hit', path } };
  }
  const data = decode();
  const cache: CacheInfo = { status: 'disabled', path };
  if (path) {
    cache.status = existsSync(path) ? 'invalidated' : 'miss';
    try {
      writeDecodedCache(path, { ...header, classes: data.classes }, data);
    } catch (err) {
      cache.writeError = (err as Error).message;
    }
  }
  return { data, cache };
}

/**
 * Packs decoded images of one size into N×3×H×W bytes: interleaved RGB or RGBA pixels to planar CHW. The first
 * image fixes the size; one of another size is an error naming both (`describe(i)` names image i).
 */
export class PlanarImageWriter {
  private chunks: Uint8Array[] = [];
  private current: Uint8Array | null = null;
  private filled = 0;
  private first = '';
  /** Images written so far. */
  count = 0;
  /** Height in pixels of every image written, fixed by the first one (0 until then). */
  height = 0;
  /** Width in pixels of every image written, fixed by the first one (0 until then). */
  width = 0;

  /** `chunkImages`: images per allocation, so an unknown total needs no copy of the whole set on growth. */
  constructor(chunkImages = 4096) {
    this.chunkImages = Math.max(1, chunkImages);
  }

  private readonly chunkImages: number;

  /** Appends one decoded image; `name` says which in an error. */
  push(img: { rgb: Uint8Array; channelsPerPixel: number; height: number; width: number }, name: string): void {
    if (this.count === 0) {
      this.height = img.height;
      this.width = img.width;
      this.first = name;
    } else if (img.height !== this.height || img.width !== this.width) {
      throw new Error(`${name}: ${img.height}×${img.width} pixels, but ${this.first} (and the images before this one) are ${this.height}×${this.width}`);
    }
    const plane = this.height * this.width;
    const size = CHANNELS * plane;
    if (!this.current || this.filled === this.current.length) {
      this.current = new Uint8Array(this.chunkImages * size);
      this.chunks.push(this.current);
      this.filled = 0;
    }
    const out = this.current;
    const base = this.filled;
    const step = img.channelsPerPixel;
    for (let p = 0; p < plane; p++) {
      out[base + p] = img.rgb[p * step]!;
      out[base + plane + p] = img.rgb[p * step + 1]!;
      out[base + 2 * plane + p] = img.rgb[p * step + 2]!;
    }
    this.filled += size;
    this.count++;
  }

  /** Every image written, packed into one array. */
  finish(): Uint8Array {
    const size = CHANNELS * this.height * this.width;
    if (this.chunks.length === 1 && this.filled === this.chunks[0]!.length) return this.chunks[0]!;
    const all = new Uint8Array(this.count * size);
    let offset = 0;
    for (const chunk of this.chunks) {
      const used = Math.min(chunk.length, all.length - offset);
      all.set(chunk.subarray(0, used), offset);
      offset += used;
    }
    return all;
  }
}
