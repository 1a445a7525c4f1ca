// Where data lives on disk: the cache directory, the project's root, atomic file writes.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** $CROSSMAX_CACHE_DIR, else $XDG_CACHE_HOME/crossmax, else ~/.cache/crossmax. */
export function defaultCacheDir(): string {
  if (process.env.CROSSMAX_CACHE_DIR) return resolve(process.env.CROSSMAX_CACHE_DIR);
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'crossmax');
}

/**
 * The crossmax package's root (the folder with its package.json), found from this module's own location so
 * that it does not depend on the working directory; falls back to the working directory.
 */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'crossmax') return dir;
      } catch {
        // An unreadable package.json is not ours; keep walking up.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
}

/** A temporary name next to `path`, unique per process and call, so concurrent writers never share one. */
export function temporaryPath(path: string): string {
  return `${path}.tmp-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Orders names as people do: 'img2.png' before 'img10.png' (digit runs compare as numbers). */
export function naturalCompare(a: string, b: string): number {
  const ra = a.match(/\d+|\D+/g) ?? [];
  const rb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(ra.length, rb.length); i++) {
    const x = ra[i]!;
    const y = rb[i]!;
    if (x === y) continue;
    const dx = /^\d/.test(x);
    const dy = /^\d/.test(y);
    if (dx && dy) {
      const nx = BigInt(x);
      const ny = BigInt(y);
      if (nx !== ny) return nx < ny ? -1 : 1;
      return x.length - y.length; // '01' after '1'
    }
    return x < y ? -1 : 1;
  }
  return ra.length - rb.length;
}
