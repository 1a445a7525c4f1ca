// Builds the native addon (native/build/Release/crossmax_native.node) with node-gyp, offline, against
// Node's installed headers and the libtorch chosen by scripts/libtorch-paths.cjs ($LIBTORCH or Debian's).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
// Node's own headers, so that node-gyp downloads nothing: the running Node's prefix (an official tarball or nvm
// install keeps them in <prefix>/include/node), else Debian/NodeSource's /usr.
const prefix = dirname(dirname(process.execPath));
const nodedir = process.env.CROSSMAX_NODEDIR
  ?? [prefix, '/usr'].find((dir) => existsSync(join(dir, 'include', 'node', 'node_api.h')));
const args = [gyp, 'rebuild', `--jobs=${os.availableParallelism()}`];
if (nodedir) args.push(`--nodedir=${nodedir}`);
const result = spawnSync(process.execPath, args, { cwd: join(root, 'native'), stdio: 'inherit' });
process.exit(result.status ?? 1);
