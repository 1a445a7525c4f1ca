// Aggregators as data: the names CLI flags take, the JSON spec configuration files and checkpoints hold, and the
// one factory that turns either into an Aggregator.
import type { Aggregator } from './aggregators.js';
import { MeanLogits, MeanProbabilities, Median, Single } from './aggregators.js';
import { CrossMax, SoftCrossMax, type CrossMaxSelection } from './crossmax.js';

/** The aggregators by name, as `--aggregator` and configuration files take them. */
export const AGGREGATOR_NAMES = ['crossmax', 'crossmax-median', 'soft-crossmax', 'mean-logits', 'mean-probabilities', 'median', 'single'] as const;
/** One of {@link AGGREGATOR_NAMES}. */
export type AggregatorName = (typeof AGGREGATOR_NAMES)[number];

/** An aggregator as plain JSON (for configuration files and checkpoints). Options apply only to the names noted. */
export interface AggregatorSpec {
  /** Which aggregator. */
  name: AggregatorName;
  /** crossmax, soft-crossmax: the k-th highest (default 3) or 'median'. */
  k?: CrossMaxSelection;
  /** crossmax, soft-crossmax. Default true. */
  subtractMemberMax?: boolean;
  /** crossmax, soft-crossmax. Default true. */
  subtractClassMax?: boolean;
  /** soft-crossmax. Default 1. */
  temperature?: number;
  /** single. Default -1 (the last member, the backbone's classifier). */
  memberIndex?: number;
}

const aggregatorOptions: Record<AggregatorName, readonly (keyof AggregatorSpec)[]> = {
  'crossmax': ['k', 'subtractMemberMax', 'subtractClassMax'],
  'crossmax-median': ['subtractMemberMax', 'subtractClassMax'],
  'soft-crossmax': ['k', 'subtractMemberMax', 'subtractClassMax', 'temperature'],
  'mean-logits': [],
  'mean-probabilities': [],
  'median': [],
  'single': ['memberIndex'],
};

/** The spec with every default of its aggregator filled in, and options that do not apply rejected. */
export function resolveAggregatorSpec(spec: AggregatorSpec): Required<Pick<AggregatorSpec, 'name'>> & AggregatorSpec {
  if (spec === null || typeof spec !== 'object') throw new Error('aggregator must be an object like {"name": "crossmax", "k": 3}');
  const allowed = aggregatorOptions[spec.name];
  if (!allowed) throw new Error(`unknown aggregator '${String(spec.name)}' (one of ${Object.keys(aggregatorOptions).join(', ')})`);
  for (const key of Object.keys(spec)) {
    if (key !== 'name' && !allowed.includes(key as keyof AggregatorSpec)) {
      throw new Error(`aggregator option '${key}' does not apply to '${spec.name}'${allowed.length ? ` (it takes ${allowed.join(', ')})` : ''}`);
    }
  }
  switch (spec.name) {
    case 'crossmax': case 'soft-crossmax': case 'crossmax-median': {
      const out: AggregatorSpec = {
        name: spec.name,
        ...(spec.name === 'crossmax-median' ? {} : { k: spec.k ?? 3 }),
        subtractMemberMax: spec.subtractMemberMax ?? true,
        subtractClassMax: spec.subtractClassMax ?? true,
      };
      if (spec.name === 'soft-crossmax') out.temperature = spec.temperature ?? 1;
      return out;
    }
    case 'single': return { name: 'single', memberIndex: spec.memberIndex ?? -1 };
    default: return { name: spec.name };
  }
}

/**
 * An aggregator as a command line gives it: a name with its defaults ('crossmax', CrossMax with k = 3), or a name
 * with options after a colon, comma-separated ('crossmax:k=1', 'crossmax:k=median', 'soft-crossmax:k=2,temperature=0.5',
 * 'single:memberIndex=0'): the paper's ablations of CrossMax without a configuration file. Numbers and true/false are
 * read as such; the spec is checked as a configuration file's is (unknown names and options refused, naming them).
 */
export function parseAggregatorSpec(text: string): AggregatorSpec {
  const colon = text.indexOf(':');
  // The name and options are checked below by aggregatorFromSpec (resolveAggregatorSpec names an unknown one).
  const spec: Record<string, unknown> = { name: (colon < 0 ? text : text.slice(0, colon)).trim() };
  if (colon >= 0) {
    for (const item of text.slice(colon + 1).split(',')) {
      const match = /^\s*(\w+)\s*=\s*(\S+)\s*$/.exec(item);
      if (!match) throw new Error(`aggregator '${text}': give options as key=value, comma-separated (e.g. crossmax:k=2), not '${item}'`);
      const [, key, value] = match as unknown as [string, string, string];
      spec[key] = value === 'true' ? true : value === 'false' ? false : Number.isFinite(Number(value)) ? Number(value) : value;
    }
  }
  aggregatorFromSpec(spec as unknown as AggregatorSpec); // checks the options' values (k, temperature, …)
  return spec as unknown as AggregatorSpec;
}

/**
 * The aggregator a spec describes, or a name with its defaults (for CLI flags): 'crossmax' is CrossMax with k = 3.
 * Options are checked by the aggregator's constructor.
 */
export function aggregatorFromSpec(spec: AggregatorSpec | AggregatorName): Aggregator {
  const s = resolveAggregatorSpec(typeof spec === 'string' ? { name: spec } : spec);
  const crossMaxOptions = { k: s.k, subtractMemberMax: s.subtractMemberMax, subtractClassMax: s.subtractClassMax };
  switch (s.name) {
    case 'crossmax': return new CrossMax(crossMaxOptions);
    case 'crossmax-median': return new CrossMax({ ...crossMaxOptions, k: 'median' });
    case 'soft-crossmax': return new SoftCrossMax({ ...crossMaxOptions, temperature: s.temperature });
    case 'mean-logits': return new MeanLogits();
    case 'mean-probabilities': return new MeanProbabilities();
    case 'median': return new Median();
    case 'single': return new Single({ memberIndex: s.memberIndex });
  }
}
