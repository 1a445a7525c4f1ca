// Flag parsing shared by the commands: typed values with clear errors, and a JSON config file whose keys are
// the flags' names (flags given on the command line win).
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { cudaAvailable, setNumThreads, type Device } from '../tensor/index.js';

export class UsageError extends Error {
  override name = 'UsageError';
}

type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/**
 * Parses `args` against `options`; `--config file.json` (when the command declares it) supplies defaults for any
 * flag, keyed by the flag's name ("epochs", "batch-size").
 */
export function parseCommandArgs(args: string[], options: OptionSpec, allowPositionals = false): ParsedArgs {
  const { values, positionals } = parseArgs({ args, options, strict: true, allowPositionals });
  const merged = { ...values } as ParsedArgs["values"];
  const configPath = values.config;
  if (typeof configPath === 'string') {
    let config: unknown;
    try {
      config = JSON.parse(readFileSync(configPath, 'utf8'));
    } catch (err) {
      throw new UsageError(`--config ${configPath}: ${(err as Error).message}`);
    }
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw new UsageError(`--config ${configPath}: expected a JSON object of flag names and values`);
    }
    for (const [key, value] of Object.entries(config as Record<string, unknown>)) {
      const spec = options[key];
      if (!spec || key === 'config') throw new UsageError(`--config ${configPath}: unknown option '${key}'`);
      if (merged[key] !== undefined && args.some((a) => a === `--${key}` || a.startsWith(`--${key}=`))) continue;
      if (spec.type === 'boolean' ? typeof value !== 'boolean' : typeof value !== 'string' && typeof value !== 'number') {
        throw new UsageError(`--config ${configPath}: '${key}' must be a ${spec.type === 'boolean' ? 'boolean' : 'string or number'}`);
      }
      merged[key] = typeof value === 'number' ? String(value) : (value as string | boolean);
    }
  }
  return { values: merged, positionals };
}

export interface NumberRule {
  integer?: boolean;
  min?: number;
  max?: number;
}

/** A numeric flag: undefined when absent, otherwise a number obeying `rule`, else a UsageError naming the flag. */
export function numberFlag(values: ParsedArgs['values'], name: string, rule: NumberRule = {}): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw.trim() === '') throw new UsageError(`--${name} needs a number`);
  // Fractions like 8/255 are how epsilons are written.
  const fraction = /^\s*(-?[\d.]+)\s*\/\s*([\d.]+)\s*$/.exec(raw);
  const value = fraction ? Number(fraction[1]) / Number(fraction[2]) : Number(raw);
  if (!Number.isFinite(value)) throw new UsageError(`--${name} ${raw}: not a number`);
  if (rule.integer && !Number.isInteger(value)) throw new UsageError(`--${name} ${raw}: must be an integer`);
  if (rule.min !== undefined && value < rule.min) throw new UsageError(`--${name} ${raw}: must be at least ${rule.min}`);
  if (rule.max !== undefined && value > rule.max) throw new UsageError(`--${name} ${raw}: must be at most ${rule.max}`);
  return value;
}

/** A flag restricted to a list of words. */
export function choiceFlag<T extends string>(values: ParsedArgs['values'], name: string, choices: readonly T[]): T | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !(choices as readonly string[]).includes(raw)) {
    throw new UsageError(`--${name} ${String(raw)}: one of ${choices.join(', ')}`);
  }
  return raw as T;
}

export function stringFlag(values: ParsedArgs['values'], name: string): string | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string') throw new UsageError(`--${name} needs a value`);
  return raw;
}

/**
 * A comma-separated flag (`--model a,b`, `--eps 8/255,32/255`) as its trimmed, non-empty items: [] when the flag
 * is absent and there is no fallback; a UsageError when it is given but holds no item.
 */
export function listFlag(values: ParsedArgs['values'], name: string, fallback?: string): string[] {
  const raw = stringFlag(values, name) ?? fallback;
  if (raw === undefined) return [];
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new UsageError(`--${name} needs at least one value`);
  return items;
}

/**
 * A comma-separated list of whole numbers of at least `min` (view sides, resolutions): [] when absent, otherwise a
 * UsageError naming the flag and the first bad item; `example` is shown in that message.
 */
export function integerListFlag(values: ParsedArgs['values'], name: string, rule: { min: number; example?: string }): number[] {
  const items = listFlag(values, name);
  const bad = items.find((item) => !(Number.isInteger(Number(item)) && Number(item) >= rule.min));
  if (bad !== undefined) {
    throw new UsageError(`--${name} ${String(values[name])}: whole numbers of at least ${rule.min}, comma-separated (got '${bad}')` +
      (rule.example ? `, e.g. ${rule.example}` : ''));
  }
  return items.map(Number);
}

/** A flag that may be given several times (`--prompt a --prompt b`; declared with multiple: true): [] when absent. */
export function repeatedFlag(values: ParsedArgs['values'], name: string): string[] {
  const raw = values[name];
  if (raw === undefined) return [];
  const items = Array.isArray(raw) ? raw : [raw];
  if (items.some((item) => typeof item !== 'string' || item.trim() === '')) throw new UsageError(`--${name} needs a value`);
  return items as string[];
}

/** The help line of --device, as every command that takes it prints it. */
export const DEVICE_HELP = 'cpu (default) | cuda | cuda:N';

/**
 * `--device`: 'cpu' when absent; else cpu, cuda or cuda:N, checked against this libtorch (a UsageError that says
 * how to get CUDA when it has none), so that every command refuses a bad device before any work.
 */
export function deviceFlag(values: ParsedArgs['values']): Device {
  const device = stringFlag(values, 'device') ?? 'cpu';
  if (!/^(cpu|cuda(:\d+)?)$/.test(device)) throw new UsageError(`--device ${device}: cpu, cuda or cuda:N`);
  if (device !== 'cpu' && !cudaAvailable()) {
    throw new UsageError(`--device ${device}: this libtorch has no CUDA (see \`crossmax info\`; build with LIBTORCH=<CUDA libtorch>)`);
  }
  return device as Device;
}

/** `--threads N`: sets libtorch's intra-op threads when given; returns N (undefined when absent). */
export function threadsFlag(values: ParsedArgs['values']): number | undefined {
  const threads = numberFlag(values, 'threads', { integer: true, min: 1 });
  if (threads !== undefined) setNumThreads(threads);
  return threads;
}
