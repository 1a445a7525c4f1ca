// Parts of one robust evaluation (shard.ts) combined into the results the evaluation gives in one process: the
// per-image arrays concatenated in image order, every accuracy recomputed from its per-image inputs with the
// same function (definitions.ts `accuracies`) and in the same image order, so the numbers are equal bit for bit;
// counts summed; timings summed (the work done, not the wall time). Parts of different models, data, budgets or
// settings are refused, naming the difference, and so are parts that leave images out or cover an image twice.
import { HEADLINE_DEFINITION, accuracies, type AccuracyByDefinition } from './definitions.js';
import { resumeFields, type AttackEvaluation, type EvaluationSeconds, type PerImageResults, type PerImageRobustness, type RobustnessResults } from './evaluation.js';
import { SHARD_FORMAT, portableDataName, type ShardRecord } from './shard.js';
import { robustnessIntervals } from './intervals.js';

/** Where `a` and `b` differ, as paths ('settings.budget: "quick" vs "cpu"'); at most `limit`. */
export function differences(a: unknown, b: unknown, path = '', limit = 5): string[] {
  const found: string[] = [];
  const walk = (x: unknown, y: unknown, at: string) => {
    if (found.length >= limit) return;
    const objects = x !== null && y !== null && typeof x === 'object' && typeof y === 'object' && Array.isArray(x) === Array.isArray(y);
    if (objects) {
      for (const key of new Set([...Object.keys(x as object), ...Object.keys(y as object)])) {
        walk((x as Record<string, unknown>)[key], (y as Record<string, unknown>)[key], at ? `${at}.${key}` : key);
      }
    } else if (JSON.stringify(x) !== JSON.stringify(y)) {
      found.push(`${at || '(value)'}: ${JSON.stringify(x) ?? '(none)'} vs ${JSON.stringify(y) ?? '(none)'}`);
    }
  };
  walk(a, b, path);
  return found;
}

/** How parts are merged. */
export interface MergeOptions {
  /**
   * The masking checks come with the part holding image 0, and one asked for but missing is an error (shards).
   * False: the caller runs them after the merge (a distributed run's rank 0). Default true.
   */
  maskingFromParts?: boolean;
  /**
   * Parts may leave images out (`crossmax merge --partial`: an evaluation still running in shards): the results
   * cover the images the parts hold, in image order, and their `partial` field names the held and missing images.
   * Overlapping parts are refused all the same. Default false: a missing part is an error.
   */
  partial?: boolean;
}

/**
 * What must be equal in every part: everything a number depends on. The data by its name without the directory
 * (portableDataName) and by its pixels' SHA-256 where both parts hold one (shards written before 2026-12-05 have
 * none, and a path in place of the name).
 */
function signature(record: ShardRecord, other: ShardRecord): Record<string, unknown> {
  const r = record.results;
  const { dataSha256, ...identity } = record.identity;
  return {
    identity: {
      ...identity,
      data: portableDataName(identity.data ?? ''),
      ...(dataSha256 !== undefined && other.identity.dataSha256 !== undefined ? { dataSha256 } : {}),
    },
    settings: record.settings,
    images: record.range.images,
    results: {
      dataSource: portableDataName(r.dataSource), norm: r.norm, eps: r.eps, reEvaluations: r.reEvaluations, settings: r.settings, definitions: r.definitions,
      headline: { definition: r.headline.definition, scope: r.headline.scope },
      attacks: r.attacks.map((a) => ({ name: a.name, attack: a.attack, options: a.options, alone: a.perImageAlone !== null })),
    },
  };
}

/**
 * The results of the evaluation whose parts are `records` (named by `names`, e.g. their folders, in messages),
 * as one process would give them (timings aside), and the records' order by first image.
 */
export function mergeShardRecords(
  records: readonly ShardRecord[], names: readonly string[] = records.map((_, i) => `part ${i}`), options: MergeOptions = {},
): {
  /** The merged results over every image of the evaluation, as one process would give them (timings aside). */
  results: RobustnessResults;
  /** Indices into `records`, sorted by each part's first image (then by its end): the order the parts were joined in. */
  order: number[];
} {
  if (records.length === 0) throw new RangeError('merge needs at least one shard');
  records.forEach((record, i) => {
    if (record?.format !== SHARD_FORMAT) throw new Error(`${names[i]} is not a crossmax shard (format '${String(record?.format)}')`);
    const count = record.range.end - record.range.start;
    if (record.results.images !== count || record.results.perImage.labels.length !== count) {
      throw new Error(`${names[i]}: its results hold ${record.results.images} images, its range ${record.range.start}–${record.range.end} has ${count}`);
    }
  });
  records.forEach((record, i) => {
    const diff = differences(signature(records[0]!, record), signature(record, records[0]!));
    if (diff.length > 0) throw new Error(`${names[i]} is not a part of the same evaluation as ${names[0]}: ${diff.join('; ')}`);
  });

  const order = records.map((_, i) => i).sort((a, b) => records[a]!.range.start - records[b]!.range.start || records[a]!.range.end - records[b]!.range.end);
  const total = records[0]!.range.images;
  // Image ranges as [start, end) pairs: those no part holds, and those held (adjacent parts joined).
  const missing: [number, number][] = [];
  const held: [number, number][] = [];
  let covered = 0;
  for (const i of order) {
    const { start, end } = records[i]!.range;
    if (start < covered) {
      const other = order.find((j) => j !== i && records[j]!.range.start < end && records[j]!.range.end > start)!;
      throw new Error(`${names[i]} (images ${start}–${end - 1}) overlaps ${names[other]} (images ${records[other]!.range.start}–${records[other]!.range.end - 1}): give each part once`);
    }
    if (start > covered) missing.push([covered, start]);
    if (held.length > 0 && held[held.length - 1]![1] === start) held[held.length - 1]![1] = end;
    else held.push([start, end]);
    covered = end;
  }
  if (covered < total) missing.push([covered, total]);
  if (missing.length > 0 && !options.partial) {
    const [from, to] = missing[0]!;
    throw new Error(`no shard holds images ${from}–${to - 1} of ${total}: a shard is missing (have ${describeParts(records, names)}; --partial merges the parts there are)`);
  }

  const parts = order.map((i) => records[i]!.results);
  const firstRecord = records[order[0]!]!;
  const first = firstRecord.results;
  // The masking checks are run once, by the part holding image 0 (shard.ts), which a partial merge may lack.
  const holdsImageZero = firstRecord.range.start === 0;
  if ((options.maskingFromParts ?? true) && holdsImageZero && firstRecord.settings.masking !== false && first.masking === null) {
    throw new Error(`${names[order[0]!]} holds image 0 but no gradient-masking checks, which its settings ask for`);
  }
  const passes = first.reEvaluations;
  const concat = <K extends keyof PerImageResults>(key: K) => parts.flatMap((p) => p.perImage[key] as unknown[]) as PerImageResults[K];
  const perImage: PerImageResults = {
    labels: concat('labels'), cleanCorrect: concat('cleanCorrect'), cleanPredicted: concat('cleanPredicted'), worstAttack: concat('worstAttack'),
    worstCorrect: concat('worstCorrect'), worstPredicted: concat('worstPredicted'), robustEvaluations: concat('robustEvaluations'), robustSingleEvaluation: concat('robustSingleEvaluation'),
    robust: concat('robust'),
  };
  const cleanAccuracy = fromPerImage({ single: perImage.cleanPredicted.map((p, i) => p === perImage.labels[i]), robustEvaluations: perImage.cleanCorrect }, passes);
  const attacks: AttackEvaluation[] = first.attacks.map((attack, a) => {
    const all = parts.map((p) => p.attacks[a]!);
    const sum = (key: 'attackedImages' | 'retriedImages' | 'fooledImages' | 'seconds') => all.reduce((s, x) => s + x[key], 0);
    const perImageAfter = joinPerImage(all.map((x) => x.perImageAfter));
    const perImageAlone = attack.perImageAlone === null ? null : joinPerImage(all.map((x) => x.perImageAlone!));
    return {
      name: attack.name, attack: attack.attack, options: attack.options,
      attackedImages: sum('attackedImages'), retriedImages: sum('retriedImages'), fooledImages: sum('fooledImages'),
      robustAccuracyAfter: fromPerImage(perImageAfter, passes),
      robustAccuracy: perImageAlone === null ? null : fromPerImage(perImageAlone, passes),
      seconds: sum('seconds'),
      correctReEvaluations: all.flatMap((x) => x.correctReEvaluations),
      success: all.flatMap((x) => x.success),
      perImageAfter, perImageAlone,
    };
  });
  // The worst case is the state after the last attack: its single-evaluation verdicts, the final robust passes.
  const last = attacks[attacks.length - 1]!;
  const worstCase = fromPerImage({ single: last.perImageAfter.single, robustEvaluations: perImage.robustEvaluations }, passes);
  const measured: Omit<RobustnessResults, 'intervals'> = {
    format: first.format,
    model: first.model,
    dataSource: first.dataSource,
    norm: first.norm, eps: first.eps, images: perImage.labels.length, reEvaluations: passes,
    ...(missing.length > 0 ? { partial: { of: total, held: held.map(describeRange), missing: missing.map(describeRange) } } : {}),
    definitions: { ...first.definitions },
    headline: { value: worstCase[HEADLINE_DEFINITION], definition: HEADLINE_DEFINITION, scope: first.headline.scope },
    cleanAccuracy,
    attacks,
    worstCase,
    perImage,
    masking: holdsImageZero ? first.masking : null,
    settings: { ...first.settings },
    seconds: mergedSeconds(parts, holdsImageZero ? first.seconds.masking : 0),
  };
  const results: RobustnessResults = { ...measured, intervals: robustnessIntervals(measured) };
  return { results, order };
}

/**
 * The parts' work: their attacks, the masking checks (held by the part with image 0) and what earlier, interrupted
 * runs of the parts contributed. The total is attacks plus masking, not the parts' totals added: shard files
 * written before the masking checks' time counted in a part's total would otherwise leave it out.
 */
function mergedSeconds(parts: readonly RobustnessResults[], masking: number): EvaluationSeconds {
  const attacks = parts.reduce((s, p) => s + p.seconds.attacks, 0);
  return { total: attacks + masking, attacks, masking, ...resumeFields(parts.map((p) => p.seconds)) };
}

/** The accuracies from per-image inputs, through `accuracies` itself (the evaluation's arithmetic, in its order). */
function fromPerImage(perImage: PerImageRobustness, passes: number): AccuracyByDefinition {
  return accuracies(perImage.single, perImage.robustEvaluations.map((k) => Array.from({ length: passes }, (_, r) => r < k)), passes);
}

function joinPerImage(parts: readonly PerImageRobustness[]): PerImageRobustness {
  return { single: parts.flatMap((p) => p.single), robustEvaluations: parts.flatMap((p) => p.robustEvaluations) };
}

/** [start, end) as the images' numbers, '50–249' (one image: '50'). */
function describeRange([start, end]: [number, number]): string {
  return end - start === 1 ? String(start) : `${start}–${end - 1}`;
}

/**
 * The image ranges results hold, as describeRange writes them: a partial merge's `held`, else all its images from
 * image 0. Two results with equal ranges hold the same images.
 */
export function heldImageRanges(results: RobustnessResults): string[] {
  return results.partial ? results.partial.held : [describeRange([0, results.images])];
}

/** Whether the results hold image 0, whose part alone carries the gradient-masking checks (shard.ts). */
export function holdsImageZero(results: RobustnessResults): boolean {
  return /^0(–|$)/.test(heldImageRanges(results)[0] ?? '');
}

function describeParts(records: readonly ShardRecord[], names: readonly string[]): string {
  return records.map((r, i) => `${names[i]}: ${r.range.part}, images ${r.range.start}–${r.range.end - 1}`).join('; ');
}
