// A small streaming reader for .tar.gz archives (ustar, with pax and GNU long names), enough for the dataset
// releases we download. Only regular files and directories are written; every path must stay inside the
// destination, so an archive cannot write elsewhere.
import { closeSync, createReadStream, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname, posix, resolve, sep } from 'node:path';
import { createGunzip } from 'node:zlib';

const BLOCK = 512;

interface Header {
  path: string;
  size: number;
  type: string;
}

function text(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.toString('utf8', 0, end < 0 ? length : end);
}

function octal(block: Buffer, start: number, length: number): number {
  if (block[start]! & 0x80) {
    // GNU base-256 for sizes ≥ 8 GiB: big-endian after the marker bit.
    let v = block[start]! & 0x7f;
    for (let i = 1; i < length; i++) v = v * 256 + block[start + i]!;
    return v;
  }
  const s = block.toString('latin1', start, start + length).replace(/[\0 ]+$/g, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return NaN;
  return parseInt(s, 8);
}

/** Splits a tar stream into entries; calls back for each header and each piece of data. */
class TarParser {
  private pending: Buffer = Buffer.alloc(0);
  private remaining = 0; // data bytes left in the current entry
  private padding = 0; // zero bytes after it up to the block boundary
  private current: Header | null = null;
  private longName: string | null = null;
  private paxPath: string | null = null;
  private meta: Buffer[] | null = null; // collects a pax or GNU long-name entry's data
  ended = false;

  constructor(
    private readonly archive: string,
    private readonly onEntry: (h: Header) => void,
    private readonly onData: (chunk: Buffer) => void,
    private readonly onEntryEnd: () => void,
  ) {}

  push(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let offset = 0;
    while (!this.ended) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, this.pending.length - offset);
        if (n === 0) break;
        const piece = this.pending.subarray(offset, offset + n);
        if (this.meta) this.meta.push(Buffer.from(piece));
        else this.onData(piece);
        offset += n;
        this.remaining -= n;
        if (this.remaining === 0) this.finishEntry();
        continue;
      }
      if (this.padding > 0) {
        const n = Math.min(this.padding, this.pending.length - offset);
        if (n === 0) break;
        offset += n;
        this.padding -= n;
        continue;
      }
      if (this.pending.length - offset < BLOCK) break;
      this.header(this.pending.subarray(offset, offset + BLOCK));
      offset += BLOCK;
    }
    this.pending = this.pending.subarray(offset);
  }

  end(): void {
    if (this.remaining > 0 || this.padding > 0 || (this.pending.length > 0 && !this.ended)) {
      throw new Error(`${this.archive}: truncated archive${this.current ? ` (ends inside '${this.current.path}')` : ''}`);
    }
  }

  private header(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      this.ended = true; // end-of-archive marker; anything after it is padding
      return;
    }
    const stored = octal(block, 148, 8);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
    if (stored !== sum) throw new Error(`${this.archive}: bad tar header checksum (corrupt archive, or not a tar file)`);
    const type = String.fromCharCode(block[156]! || 0x30);
    const size = octal(block, 124, 12);
    if (!Number.isFinite(size)) throw new Error(`${this.archive}: bad size field in a tar header`);
    let name = text(block, 0, 100);
    if (block.toString('latin1', 257, 262) === 'ustar') {
      const prefix = text(block, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    if (this.paxPath !== null) name = this.paxPath;
    if (this.longName !== null) name = this.longName;
    const header: Header = { path: name, size, type };
    this.remaining = size;
    this.padding = (BLOCK - (size % BLOCK)) % BLOCK;
    if (type === 'x' || type === 'g' || type === 'L') {
      this.meta = [];
      this.current = header;
      if (size === 0) this.finishEntry();
      return;
    }
    this.paxPath = null;
    this.longName = null;
    this.current = header;
    this.onEntry(header);
    if (size === 0) this.finishEntry();
  }

  private finishEntry(): void {
    const header = this.current!;
    if (this.meta) {
      const data = Buffer.concat(this.meta);
      this.meta = null;
      if (header.type === 'L') this.longName = data.toString('utf8').replace(/\0+$/, '');
      if (header.type === 'x') this.paxPath = paxValue(data, 'path') ?? this.paxPath;
      this.current = null;
      return;
    }
    this.onEntryEnd();
    this.current = null;
  }
}

/** The value of `key` in pax extended-header records ("<length> <key>=<value>\n"). */
function paxValue(data: Buffer, key: string): string | null {
  let pos = 0;
  let value: string | null = null;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const length = parseInt(data.toString('latin1', pos, space), 10);
    if (!(length > 0)) break;
    const record = data.toString('utf8', space + 1, pos + length - 1);
    const eq = record.indexOf('=');
    if (record.slice(0, eq) === key) value = record.slice(eq + 1);
    pos += length;
  }
  return value;
}

/** A relative path inside `dest`, or an error for absolute paths and '..' (the "zip slip" attack). */
function safeTarget(archive: string, dest: string, name: string): string {
  const normalized = posix.normalize(name.replace(/\\/g, '/'));
  if (normalized.startsWith('/') || /^[A-Za-z]:/.test(normalized) || normalized === '..' || normalized.startsWith('../') || name.includes('\0')) {
    throw new Error(`${archive}: refusing unsafe path '${name}' (outside the destination)`);
  }
  const target = resolve(dest, normalized);
  if (target !== dest && !target.startsWith(dest + sep)) throw new Error(`${archive}: refusing unsafe path '${name}' (outside the destination)`);
  return target;
}

/**
 * Extracts a .tar.gz into `dest` (created if needed). Returns the paths of the files written, relative to
 * `dest`. Links and special files are skipped.
 */
export async function extractTarGz(archive: string, dest: string): Promise<string[]> {
  const root = resolve(dest);
  mkdirSync(root, { recursive: true });
  const written: string[] = [];
  let fd: number | null = null;
  const parser = new TarParser(
    archive,
    (h) => {
      if (h.type === '5') {
        mkdirSync(safeTarget(archive, root, h.path), { recursive: true });
      } else if (h.type === '0' || h.type === '7') {
        const target = safeTarget(archive, root, h.path);
        mkdirSync(dirname(target), { recursive: true });
        fd = openSync(target, 'w');
        written.push(posix.normalize(h.path));
      }
    },
    (chunk) => {
      if (fd !== null) {
        let off = 0;
        while (off < chunk.length) off += writeSync(fd, chunk, off);
      }
    },
    () => {
      if (fd !== null) closeSync(fd);
      fd = null;
    },
  );
  const gunzip = createGunzip();
  const input = createReadStream(archive);
  input.on('error', (err) => gunzip.destroy(err));
  try {
    for await (const chunk of input.pipe(gunzip)) parser.push(chunk as Buffer);
    parser.end();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new Error(`${archive}: missing`);
    if (typeof e.code === 'string' && e.code.startsWith('Z_')) throw new Error(`${archive}: not a valid .tar.gz (${e.message}; corrupt or incomplete download?)`);
    throw err;
  } finally {
    if (fd !== null) closeSync(fd);
  }
  return written;
}
