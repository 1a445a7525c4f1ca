// Atomic file replacement: the target path holds either the old complete file or the new complete file, never
// a partial one, even if the process dies or the disk fills mid-write. The data goes to a temporary file in the
// same directory (rename is only atomic within one file system), is flushed with fsync, and is renamed over the
// target; the directory is then fsynced so the rename itself survives a power loss.
import {
  closeSync, fsyncSync, openSync, realpathSync, renameSync, statSync, unlinkSync, writeSync,
  promises as fsp,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

export type FileData = Uint8Array | string | readonly Uint8Array[];

export interface AtomicWriteOptions {
  /**
   * Permission bits of a newly created file. Default: those of the file being replaced, or 0o666 (less the
   * umask) for a new one.
   */
  mode?: number;
}

/**
 * Writes `data` (bytes, a UTF-8 string, or byte chunks written in order) to `path` atomically. A symbolic link
 * at `path` is followed, so the file it points to is replaced and the link is kept. On failure the temporary
 * file is removed, the old file is left untouched, and the error is rethrown.
 */
export function writeFileAtomic(path: string, data: FileData, options: AtomicWriteOptions = {}): void {
  const chunks = chunksOf(data);
  const { target, temporary, mode } = plan(path, options);
  let fd: number | undefined;
  try {
    fd = openSync(temporary, 'wx', mode);
    for (const chunk of chunks) {
      let written = 0;
      while (written < chunk.byteLength) written += writeSync(fd, chunk, written, chunk.byteLength - written);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(temporary, target);
  } catch (err) {
    if (fd !== undefined) ignoreErrors(() => closeSync(fd!));
    ignoreErrors(() => unlinkSync(temporary));
    throw err;
  }
  syncDirectory(dirname(target));
}

/** writeFileAtomic without blocking the event loop; same guarantees. */
export async function writeFileAtomicAsync(path: string, data: FileData, options: AtomicWriteOptions = {}): Promise<void> {
  const chunks = chunksOf(data);
  const { target, temporary, mode } = plan(path, options);
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(temporary, 'wx', mode);
    for (const chunk of chunks) {
      let written = 0;
      while (written < chunk.byteLength) {
        written += (await handle.write(chunk, written, chunk.byteLength - written)).bytesWritten;
      }
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(temporary, target);
  } catch (err) {
    if (handle !== undefined) await handle.close().catch(() => undefined);
    await fsp.unlink(temporary).catch(() => undefined);
    throw err;
  }
  syncDirectory(dirname(target));
}

function plan(path: string, options: AtomicWriteOptions): { target: string; temporary: string; mode: number } {
  let target = path;
  let existingMode: number | undefined;
  try {
    target = realpathSync(path);
    existingMode = statSync(target).mode & 0o7777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // Pid and random suffix: concurrent writers (threads, processes) never share a temporary file.
  const temporary = join(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  return { target, temporary, mode: options.mode ?? existingMode ?? 0o666 };
}

function chunksOf(data: FileData): readonly Uint8Array[] {
  if (typeof data === 'string') return [Buffer.from(data, 'utf8')];
  if (data instanceof Uint8Array) return [data];
  for (const chunk of data) {
    if (!(chunk instanceof Uint8Array)) throw new TypeError('writeFileAtomic: every chunk must be a Uint8Array');
  }
  return data;
}

function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (err) {
    // Some platforms (Windows) and file systems cannot open or fsync a directory; the rename has happened, only
    // its durability across a power loss is then up to the file system.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF' && code !== 'EACCES') throw err;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function ignoreErrors(fn: () => void): void {
  try {
    fn();
  } catch {
    // cleanup after a failure must not mask the original error
  }
}
