// .tar.gz archives (the dataset releases we download), extracted by npm's `tar` package. What we add: every path
// must stay inside the destination (an archive that names another place is refused, not quietly rewritten), only
// regular files and directories are written, and errors name the archive and say what is wrong with it.
import { existsSync, mkdirSync } from 'node:fs';
import { posix, resolve, sep } from 'node:path';
import { extract } from 'tar';

/** Whether an entry's name is a relative path inside `dest` (no absolute path, no '..': the "zip slip" attack). */
function isSafe(dest: string, name: string): boolean {
  const normalized = posix.normalize(name.replace(/\\/g, '/'));
  if (normalized.startsWith('/') || /^[A-Za-z]:/.test(normalized) || normalized === '..' || normalized.startsWith('../') || name.includes('\0')) return false;
  const target = resolve(dest, normalized);
  return target === dest || target.startsWith(dest + sep);
}

/** Entry types written: regular files (ustar '0', old '\0', contiguous '7') and directories. */
const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

/**
 * Extracts a .tar.gz into `dest` (created if needed). Returns the paths of the files written, relative to
 * `dest`. Links and special files are skipped; an entry whose path leaves `dest` is an error.
 */
export async function extractTarGz(archive: string, dest: string): Promise<string[]> {
  if (!existsSync(archive)) throw new Error(`${archive}: missing`);
  const root = resolve(dest);
  mkdirSync(root, { recursive: true });
  const written: string[] = [];
  let unsafe: string | null = null;
  try {
    await extract({
      file: archive, cwd: root, strict: true, gzip: true,
      filter: (path, entry) => {
        if (unsafe !== null) return false;
        if (!isSafe(root, path)) {
          unsafe = path;
          return false;
        }
        const type = (entry as { type?: string }).type ?? '';
        if (FILE_TYPES.has(type)) written.push(posix.normalize(path));
        return FILE_TYPES.has(type) || type === 'Directory';
      },
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'TAR_ENTRY_INVALID' || /checksum/i.test(e.message)) throw new Error(`${archive}: bad tar header checksum (not a tar archive, or corrupt)`);
    if (e.code === 'TAR_BAD_ARCHIVE' || e.code?.startsWith('Z_') || e.code === 'TAR_ABORT') {
      throw new Error(`${archive}: not a valid .tar.gz (${e.message}; corrupt or incomplete download?)`);
    }
    throw err;
  }
  if (unsafe !== null) throw new Error(`${archive}: refusing unsafe path '${unsafe}' (outside the destination)`);
  return written;
}
