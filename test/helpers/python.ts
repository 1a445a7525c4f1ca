// The PyTorch reference side of the parity tests: Debian's torch 1.13 is importable only by /usr/bin/python3 (the
// `python3` on PATH is a pyenv without it), so every test runs its reference script through here.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const PYTHON = '/usr/bin/python3';

/** The repository's python/ folder (crossmax_ref): for `sys.path.insert(0, PYTHON_DIR)` in a reference script. */
export const PYTHON_DIR = fileURLToPath(new URL('../../../python', import.meta.url));

const missing = new Map<string, string | null>();

/**
 * Why PYTHON cannot import `modules` (a Python import list, e.g. 'torch, torchvision'), for `t.skip`; null when it
 * can. Asked once per module list and process.
 */
export function pythonMissing(modules = 'torch'): string | null {
  if (!missing.has(modules)) {
    const probe = spawnSync(PYTHON, ['-c', `import ${modules}`], { encoding: 'utf8' });
    const why = (probe.error?.message ?? probe.stderr ?? '').trim().split('\n').pop();
    missing.set(modules, probe.status === 0 ? null : `${PYTHON} cannot import ${modules}: ${why}`);
  }
  return missing.get(modules)!;
}

export interface RunPythonOptions {
  /** sys.argv[1:]. Default none. */
  args?: readonly string[];
  /** Sent to stdin as JSON. Default: nothing. */
  input?: unknown;
}

/**
 * Runs a reference script with PYTHON, single-threaded (the script should still call torch.set_num_threads(1)),
 * and returns its stdout. Throws with its stderr when it fails: a broken reference must fail the test, not skip it.
 */
export function runPython(script: string, options: RunPythonOptions = {}): string {
  const run = spawnSync(PYTHON, ['-c', script, ...(options.args ?? [])], {
    input: options.input === undefined ? undefined : JSON.stringify(options.input),
    encoding: 'utf8', maxBuffer: 1 << 28, env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  if (run.status !== 0) throw new Error(`the PyTorch reference failed:\n${run.error ? `${run.error.message}\n` : ''}${run.stderr}`);
  return run.stdout;
}

/** runPython, its stdout parsed as JSON. */
export function runPythonJson<T>(script: string, options: RunPythonOptions = {}): T {
  return JSON.parse(runPython(script, options)) as T;
}
