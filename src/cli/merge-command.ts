// `crossmax merge DIR...`: the shards of one robust evaluation (`eval --robust` / `attack` with --shard I/N, each
// folder a --report DIR) combined into the report the evaluation gives in one process: robust.json, robust.html and
// the adversarial images. Shards of different models, data, budgets or settings, and shards that leave images out
// or cover an image twice, are refused with the difference named.
import { resolve } from 'node:path';
import { cat, tidy } from '../tensor/index.js';
import { mergeShardRecords } from '../robustness/merge.js';
import { readShardFolder } from '../robustness/shard.js';
import type { RobustnessEvaluation } from '../robustness/index.js';
import { writeRobustReport } from '../report/index.js';
import { UsageError, parseCommandArgs, stringFlag } from './args.js';
import { formatRobustness, saveAdversarialImages } from './robust-command.js';

/** The flags of `crossmax merge`. */
export const MERGE_OPTIONS = { report: { type: 'string' }, json: { type: 'boolean' }, partial: { type: 'boolean' } } as const;

/** `crossmax merge --help`. */
export const MERGE_USAGE = `crossmax merge DIR... [--report OUT] [--partial] [--json]

Combines the shards of one robust evaluation (the --report folders of \`crossmax eval --robust --shard I/N\` or
\`crossmax attack --shard I/N\` runs, in any order) into OUT/robust.json, OUT/robust.html and
OUT/adversarial.safetensors / adversarial.png: the numbers of the same evaluation run in one process (timings are
the shards' sums). Refuses shards of another model (SHA-256), data, budget or settings, and a missing or
overlapping shard. The masking checks come from the shard holding image 0.
  --report OUT          default report
  --partial             merge the shards there are while others still run: the report covers their images only,
                        says which are missing, and is marked PARTIAL (overlapping or mismatched shards are still refused)
  --json                print the merged results as JSON`;

/** `crossmax merge DIR...`. */
export async function mergeCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, MERGE_OPTIONS, true);
  if (positionals.length === 0) throw new UsageError('give the shards\' folders: crossmax merge DIR...');
  const dirs = positionals.map((d) => resolve(d));
  const shards = dirs.map((dir) => readShardFolder(dir));
  try {
    const { results, order } = mergeShardRecords(shards.map((s) => s.record), dirs, { partial: values.partial === true });
    const out = resolve(stringFlag(values, 'report') ?? 'report');
    tidy(() => {
      const images = cat(order.map((i) => shards[i]!.tensors.clean), 0);
      const labels = cat(order.map((i) => shards[i]!.tensors.labels), 0);
      const evaluation: RobustnessEvaluation = { results, adversarial: new Map(), worstAdversarial: cat(order.map((i) => shards[i]!.tensors.adversarial), 0) };
      const files = writeRobustReport(evaluation, images, { dir: out, classNames: shards[order[0]!]!.record.classNames });
      const adversarial = saveAdversarialImages(out, evaluation, images, labels);
      if (values.json) console.log(JSON.stringify(results, null, 2));
      else console.log(`${formatRobustness(results)}\n\nmerged ${dirs.length} shards${results.partial ? ` (partial: ${results.images} of ${results.partial.of} images)` : ''}\nreport: ${files.html}\nresults: ${files.json}\nadversarial images: ${adversarial.join(', ')}`);
    });
  } finally {
    for (const s of shards) for (const t of Object.values(s.tensors)) t.dispose();
  }
  return 0;
}
