// The PyTorch reference side of the parity tests: Debian's torch 1.13 is importable only by /usr/bin/python3 (the
// `python3` on PATH is a pyenv without it), so every test runs its reference script through here.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const PYTHON = '/usr/bin/python3';

/** The repository's python/ folder (crossmax_ref): for `sys.path.insert(0, PYTHON_DIR)` in a reference script. */
export const PYTHON_DIR = fileURLToPath(new URL('../../../python', import.meta.url));

const missing = new Map<string, string | null>();

export interface PythonMissingOptions {
  /** The interpreter asked. Default PYTHON. */
  python?: string;
  /** Where CI is read from. Default process.env. */
  env?: NodeJS.ProcessEnv;
}

/**
 * Whether a missing reference fails the tests instead of skipping them: in CI (CI set, and not 'false' or '0'),
 * where `scripts/test` installs python3-torch, a skipped parity test would hide that nothing was compared.
 */
export function referenceRequired(env: NodeJS.ProcessEnv = process.env): boolean {
  const ci = env.CI?.trim().toLowerCase();
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

/**
 * Why the interpreter cannot import `modules` (a Python import list, e.g. 'torch, torchvision'), for `t.skip`;
 * null when it can. In CI (referenceRequired) it throws instead, so the parity tests fail rather than skip.
 * Asked once per interpreter, module list and process.
 */
export function pythonMissing(modules = 'torch', options: PythonMissingOptions = {}): string | null {
  const python = options.python ?? PYTHON;
  const key = `${python}\0${modules}`;
  if (!missing.has(key)) {
    const probe = spawnSync(python, ['-c', `import ${modules}`], { encoding: 'utf8' });
    const why = (probe.error?.message ?? probe.stderr ?? '').trim().split('\n').pop();
    missing.set(key, probe.status === 0 ? null : `${python} cannot import ${modules}: ${why}`);
  }
  const reason = missing.get(key)!;
  if (reason !== null && referenceRequired(options.env ?? process.env)) {
    throw new Error(`the PyTorch reference is required in CI (CI=${(options.env ?? process.env).CI}), but ${reason}. ` +
      'Install it with `bash scripts/setup.sh --tests` (Debian\'s python3-torch and python3-torchvision), or unset CI to skip these tests.');
  }
  return reason;
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

/**
 * Python source of `MetaDevice`, a torch function mode that builds modules on the meta device (no memory, no
 * initialisation): torch 1.13 (Debian's) has no `with torch.device("meta")` yet. Use `with MetaDevice(): ...`.
 */
export const META_DEVICE_PY = String.raw`class MetaDevice(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (torch.empty, torch.zeros, torch.ones, torch.full, torch.tensor):
            kwargs['device'] = 'meta'
        return func(*args, **kwargs)
`;
