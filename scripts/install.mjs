// npm's install hook for the package (`npm install crossmax`): finds libtorch and builds the native addon against
// it, or takes a prebuilt one. It never fails the install: without libtorch it says what to install, and the
// package still installs for type-only use (loading the addon then fails with the same advice).
// libtorch, first found: $LIBTORCH; a pip/conda PyTorch (`python3 -c "import torch"`: its include/ and lib/, how a
// CUDA build is used); Debian's libtorch-dev (/usr/include/torch). A checkout builds through scripts/setup.sh.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addon = join(root, 'native', 'build', 'Release', 'crossmax_native.node');
const say = (text) => console.log(`crossmax: ${text}`);
const { ownLibtorch } = createRequire(import.meta.url)('./libtorch-paths.cjs');

/** The addon loads in a fresh process (its libtorch found and ABI-compatible). */
function loads(file) {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { encoding: 'utf8' });
  return r.status === 0 ? null : (r.stderr.trim().split('\n').find((l) => /Error/.test(l)) ?? `exit ${r.status}`);
}

/** A pip/conda PyTorch's own libtorch root (not Debian's python3-torch, which links the system libtorch). */
function pythonTorch() {
  for (const python of [process.env.PYTHON, 'python3', 'python'].filter(Boolean)) {
    const r = spawnSync(python, ['-c', 'import os, torch; print(os.path.dirname(torch.__file__))'], { encoding: 'utf8' });
    if (r.status !== 0) continue;
    const dir = r.stdout.trim();
    if (ownLibtorch(dir)) return dir;
  }
  return null;
}

function main() {
  if (existsSync(join(root, '.git')) || process.env.CROSSMAX_SKIP_INSTALL === '1') return; // a checkout: scripts/setup.sh
  if (existsSync(addon) && !loads(addon)) return say(`native addon already built (${addon})`);
  const prebuilt = join(root, 'native', 'prebuilds', `${process.platform}-${process.arch}`, 'crossmax_native.node');
  if (existsSync(prebuilt)) {
    const problem = loads(prebuilt);
    if (!problem) {
      mkdirSync(dirname(addon), { recursive: true });
      copyFileSync(prebuilt, addon);
      return say(`using the prebuilt addon for ${process.platform}-${process.arch}`);
    }
    say(`the prebuilt addon does not load here (${problem}); building one`);
  }
  const env = { ...process.env };
  if (process.env.LIBTORCH && !existsSync(join(process.env.LIBTORCH, 'include', 'torch'))) {
    say(`LIBTORCH=${process.env.LIBTORCH} has no include/torch, so the native addon was not built: point LIBTORCH at ` +
      'a libtorch (or a PyTorch package directory), then `npm rebuild crossmax`.');
    return;
  }
  let where = process.env.LIBTORCH ? `LIBTORCH=${process.env.LIBTORCH}` : null;
  if (!where) {
    const torch = pythonTorch();
    if (torch) { env.LIBTORCH = torch; where = `PyTorch's libtorch in ${torch}`; }
    else if (existsSync('/usr/include/torch/csrc/api/include/torch/torch.h')) where = "Debian's libtorch-dev";
  }
  if (!where) {
    say('no libtorch found, so the native addon was not built; crossmax installs for type-only use. To compute, ' +
      'install one of: PyTorch (`pip install torch`: its libtorch is used, CUDA included), Debian/Ubuntu\'s ' +
      '`apt-get install libtorch-dev libopenblas0-pthread`, or an unpacked libtorch with LIBTORCH=/path/to/libtorch; ' +
      'then `npm rebuild crossmax`.');
    return;
  }
  say(`building the native addon against ${where} (a minute or two)`);
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { env, stdio: 'inherit' });
  if (r.status !== 0) say(`the native addon did not build (exit ${r.status}); see the compiler's output above. ` +
    'Check g++, make and python3 are installed, then `npm rebuild crossmax`.');
}

main();
