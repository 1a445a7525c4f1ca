// Results as JSON that other tools can read (RobustBench-style result files), replaced atomically, so a reader
// never sees half of one. The JSON text itself and the JSON Lines log are in util/json.ts.
import { writeFileAtomic } from '../util/atomic-write.js';
import { toJson, type JsonOptions } from '../util/json.js';

/** Writes `value` as JSON (with a final newline) to `path`, atomically: the old file or the new, never half. */
export function writeJsonAtomic(path: string, value: unknown, options: JsonOptions = {}): void {
  writeFileAtomic(path, toJson(value, options) + '\n');
}
