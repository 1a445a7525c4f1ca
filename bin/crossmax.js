#!/usr/bin/env node
// The `crossmax` command (compiled CLI in dist/). Build first: `bash scripts/setup.sh`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  console.error('crossmax: not built yet; run `bash scripts/setup.sh` first (or use scripts/crossmax, which does it).');
  process.exit(1);
}
const { run } = await import(main.href);
process.exitCode = await run(process.argv.slice(2));
