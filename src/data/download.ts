// Finding a dataset release on disk, or downloading its official archive and checking the published MD5.
// Machines that build and test crossmax are often offline: then every failure says where to put the files.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { type CifarFormat, type CifarName, cifarRelease, releaseFiles } from './cifar-common.js';
import { defaultCacheDir, temporaryPath } from './paths.js';
import { extractTarGz } from './tar.js';

/** A release that unpacks to one folder. */
export interface ArchiveSpec {
  /** For messages, e.g. 'CIFAR-10 binary release'. */
  description: string;
  /** Archive file name, e.g. 'cifar-10-binary.tar.gz'. */
  archive: string;
  /** Where the archive is downloaded from. */
  url: string;
  /** The published MD5 of the archive (hex). */
  md5: string;
  /** The folder the archive unpacks to. */
  folder: string;
  /** Files the folder must hold to count as complete. */
  files: string[];
}

/** Where {@link ensureDataset} looks for a release and whether it may download it. */
export interface EnsureOptions {
  /** Where extracted folders live (and are extracted to). Default `defaultCacheDir()`/datasets. */
  root?: string;
  /** More directories to look in, for the extracted folder or the archive (e.g. '../shared/datasets'). */
  searchPaths?: string[];
  /** Where a downloaded archive is kept. Default: `root`. */
  archiveDir?: string;
  /** Download when nothing is found. Default true. */
  download?: boolean;
  /** Seconds to wait for the server's response headers. Default 30. */
  connectTimeoutSeconds?: number;
}

/** Where {@link ensureDataset} found the release and how. */
export interface EnsureResult {
  /** The complete extracted folder. */
  dir: string;
  /** 'found': already extracted; 'extracted': from an archive on disk; 'downloaded': fetched now. */
  how: 'found' | 'extracted' | 'downloaded';
  /** The archive it was extracted from, when it was extracted now. */
  archive?: string;
}

/** MD5 of a file, hex. */
export async function md5File(path: string): Promise<string> {
  const hash = createHash('md5');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

function missingFiles(dir: string, files: string[]): string[] {
  return files.filter((f) => !existsSync(join(dir, f)));
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Finds the extracted folder, or extracts/downloads the archive. */
export async function ensureDataset(spec: ArchiveSpec, options: EnsureOptions = {}): Promise<EnsureResult> {
  const root = resolve(options.root ?? join(defaultCacheDir(), 'datasets'));
  const searchPaths = (options.searchPaths ?? []).map((p) => resolve(p));
  const archiveDir = resolve(options.archiveDir ?? root);
  const notes: string[] = [];

  for (const base of [root, ...searchPaths]) {
    for (const dir of [join(base, spec.folder), base]) {
      if (!isDirectory(dir)) continue;
      const missing = missingFiles(dir, spec.files);
      if (missing.length === 0) return { dir, how: 'found' };
      if (dir !== base || missing.length < spec.files.length) notes.push(`${dir} lacks ${missing.join(', ')}`);
    }
  }

  const target = join(root, spec.folder);
  if (existsSync(target)) {
    throw new Error(`${target} exists but is incomplete (${notes.find((n) => n.startsWith(target)) ?? 'files missing'}): remove it to extract the ${spec.description} again`);
  }
  for (const base of [...new Set([archiveDir, root, ...searchPaths])]) {
    const archive = join(base, spec.archive);
    if (!existsSync(archive)) continue;
    await verifyMd5(archive, spec);
    return { dir: await extractInto(archive, spec, root), how: 'extracted', archive };
  }

  const where = `Put ${spec.archive} (md5 ${spec.md5}) in ${archiveDir}, or its extracted folder ${spec.folder}/ in ${root}`
    + (searchPaths.length ? ` or in one of ${searchPaths.join(', ')}` : '');
  const found = notes.length ? ` Found only: ${notes.join('; ')}.` : '';
  if (options.download === false) {
    throw new Error(`${spec.description} not found and downloading is off.${found} ${where}.`);
  }
  const archive = join(archiveDir, spec.archive);
  try {
    await downloadFile(spec.url, archive, { md5: spec.md5, connectTimeoutSeconds: options.connectTimeoutSeconds });
  } catch (err) {
    throw new Error(`${(err as Error).message}.${found} ${where}.`);
  }
  return { dir: await extractInto(archive, spec, root), how: 'downloaded', archive };
}

async function verifyMd5(archive: string, spec: ArchiveSpec): Promise<void> {
  const md5 = await md5File(archive);
  if (md5 !== spec.md5.toLowerCase()) {
    throw new Error(`${archive}: md5 ${md5}, expected ${spec.md5} (corrupt or incomplete download, or not the official ${spec.description}; delete it and retry)`);
  }
}

/** Extracts into a temporary folder, then moves the release folder into place: no half-extracted folder remains. */
async function extractInto(archive: string, spec: ArchiveSpec, root: string): Promise<string> {
  mkdirSync(root, { recursive: true });
  const scratch = temporaryPath(join(root, `.${spec.folder}`));
  try {
    await extractTarGz(archive, scratch);
    const extracted = join(scratch, spec.folder);
    const missing = isDirectory(extracted) ? missingFiles(extracted, spec.files) : [`the folder ${spec.folder}/`];
    if (missing.length > 0) throw new Error(`${archive}: the archive lacks ${missing.join(', ')} (not the ${spec.description}?)`);
    const target = join(root, spec.folder);
    renameSync(extracted, target);
    return target;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

const OFFLINE_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'UND_ERR_CONNECT_TIMEOUT']);

/** Downloads `url` to `dest` (via a temporary file), checking the MD5 when given. */
export async function downloadFile(url: string, dest: string, options: { md5?: string; connectTimeoutSeconds?: number } = {}): Promise<void> {
  mkdirSync(resolve(dest, '..'), { recursive: true });
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error('no response')), (options.connectTimeoutSeconds ?? 30) * 1000);
  let response: Response;
  try {
    response = await fetch(url, { signal: controller.signal });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const code = cause?.code ?? (err as { code?: string }).code;
    const offline = code !== undefined && OFFLINE_CODES.has(code) || controller.signal.aborted;
    throw new Error(`could not download ${url}: ${cause?.message ?? (err as Error).message}${offline ? ' (this machine looks offline)' : ''}`);
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok || !response.body) throw new Error(`could not download ${url}: HTTP ${response.status} ${response.statusText}`);
  const tmp = temporaryPath(dest);
  const hash = createHash('md5');
  try {
    const body = Readable.fromWeb(response.body as unknown as WebReadableStream<Uint8Array>);
    body.on('data', (chunk: Buffer) => hash.update(chunk));
    await pipeline(body, createWriteStream(tmp));
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new Error(`could not download ${url}: ${(err as Error).message}`);
  }
  const md5 = hash.digest('hex');
  if (options.md5 && md5 !== options.md5.toLowerCase()) {
    rmSync(tmp, { force: true });
    throw new Error(`downloaded ${url} has md5 ${md5}, expected ${options.md5} (interrupted or altered download)`);
  }
  renameSync(tmp, dest);
}

/** Which CIFAR release {@link ensureCifar} finds or fetches. */
export interface EnsureCifarOptions extends EnsureOptions {
  /** Which dataset. */
  name: CifarName;
  /** Default 'binary'. */
  format?: CifarFormat;
}

/**
 * The folder of an official CIFAR release (e.g. '<root>/cifar-10-batches-bin'): found in `root` or
 * `searchPaths`, extracted from its archive there, or downloaded from the official URL and checked against
 * the published MD5.
 */
export async function ensureCifar(options: EnsureCifarOptions): Promise<EnsureResult> {
  const release = cifarRelease(options.name, options.format ?? 'binary');
  const spec: ArchiveSpec = {
    description: `official ${options.name === 'cifar10' ? 'CIFAR-10' : 'CIFAR-100'} ${release.format} release`,
    archive: release.archive,
    url: release.url,
    md5: release.md5,
    folder: release.folder,
    files: releaseFiles(release),
  };
  return ensureDataset(spec, options);
}
