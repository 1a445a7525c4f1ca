// `crossmax compare A.json B.json`: two results on the same images, compared image by image (report/compare.ts).
import { readFileSync } from 'node:fs';
import { compareResults, formatComparison } from '../report/index.js';
import { UsageError, parseCommandArgs } from './args.js';

/** `crossmax compare --help`. */
export const COMPARE_USAGE = `crossmax compare A.json B.json [--json]

Compares two results on the same images, image by image: two robust.json files (e.g. CrossMax and
--aggregator mean-logits, or a multi- and a single-resolution model, on the same first N test images), or two
clean evaluations (results.json of train or demo, or the output of eval --json / train --json). Prints each
accuracy of both with its 95% interval and the paired difference A − B: Newcombe's interval and McNemar's exact
test for proportions (clean accuracy, single evaluation, all-R), a paired bootstrap for mean over R. Results on
different images are refused.
  --json   print the comparison as JSON`;

/** Reads a results file, naming the file in every error. */
function readResults(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${path} is not JSON: ${(err as Error).message}`);
  }
}

/** Runs `crossmax compare`. */
export function compareCommand(args: string[]): number {
  const { values, positionals } = parseCommandArgs(args, { json: { type: 'boolean' } }, true);
  if (positionals.length !== 2) throw new UsageError(`give two results files (A.json B.json), got ${positionals.length}`);
  const [pathA, pathB] = positionals as [string, string];
  const comparison = compareResults({ name: pathA, value: readResults(pathA) }, { name: pathB, value: readResults(pathB) });
  console.log(values.json ? JSON.stringify(comparison, null, 2) : formatComparison(comparison));
  return 0;
}
