// Resuming a robustness evaluation after a kill. At the published budgets an evaluation of 1,000 images runs for
// hours on a CPU, and its work is a sequence of attack calls on batches of images. Each call is deterministic
// given the attack's description (name and options, its seed included), the images' indices and the model: an
// attack seeds libtorch's generator itself (Attack.run), and the pools of later attacks follow from seeded
// re-evaluations. So the checkpoint is a store of finished batch calls, each written atomically as it finishes,
// keyed by exactly those inputs; a resumed evaluation replays the cheap bookkeeping (clean passes,
// re-evaluations) and takes every batch it finds instead of attacking again. A key that does not match (a pool
// that came out differently) only costs the recomputation; it can never hand back another batch's images.
// The store's manifest names the model and data it belongs to, and a store of another evaluation is refused.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type Device, type Tensor } from '../tensor/index.js';
import { loadSafetensors, saveSafetensors } from '../serialize/safetensors.js';
import { writeJsonAtomic } from '../util/json.js';
import type { AttackDescription } from '../attacks/registry.js';

const MANIFEST = 'manifest.json';
const FORMAT = 'crossmax-robustness-checkpoint-v1';

/** What one attack call on one batch returned (rows in the batch's order). */
export interface BatchOutcome {
  /** [rows, C, H, W], the attack's result for the batch. */
  adversarial: Tensor;
  /** Per row: the attack's own final pass misclassified it. */
  success: boolean[];
  /** Rows the attack skipped (retried with another seed; see RobustnessOptions.retryUntouched). */
  skipped: boolean[];
}

/** What an {@link EvaluationCheckpoint} did with the batch calls since it was opened. */
export interface CheckpointStats {
  /** Taken from files an earlier run left (what a resumed run gets back). */
  reused: number;
  /** Taken from files this run wrote (a masking check repeating a call of the evaluation): not a resume. */
  shared: number;
  /** Attacked afresh. */
  computed: number;
  /**
   * Seconds that the `reused` batches took in the runs that computed them: the work a resumed evaluation did not
   * repeat, so that its reported times are those of the whole evaluation, not of its last run.
   */
  earlierSeconds: number;
  /** Reused batches whose files hold no time (written before times were stored): `earlierSeconds` misses them. */
  untimed: number;
}

/** How {@link EvaluationCheckpoint.open} treats a folder that already holds results. */
export interface EvaluationCheckpointOptions {
  /** Continue the evaluation the folder holds (it must belong to the same `identity`). Default false. */
  resume?: boolean;
  /** Delete whatever the folder holds and start afresh. Default false. */
  overwrite?: boolean;
}

/**
 * A folder of finished batch calls of one evaluation. `identity` says what the cached results depend on beyond
 * each call's own description (which holds the threat model and seed): the model (its file's hash, the aggregator),
 * the data, the device. Open one with
 * `EvaluationCheckpoint.open`, hand it to evaluateRobustness as `checkpoint`, and `remove()` it once the results
 * are written.
 */
export class EvaluationCheckpoint {
  private hits = 0;
  private shared = 0;
  private misses = 0;
  private earlierSeconds = 0;
  private untimed = 0;
  /**
   * Files this process wrote or already took: a later call on the same batch (a masking check repeating one) is
   * not a resume, and its time is counted once.
   */
  private readonly seenHere = new Set<string>();

  /**
   * @param dir - The checkpoint folder.
   * @param identity - What the cached results depend on (model, data, device).
   */
  private constructor(readonly dir: string, readonly identity: Record<string, string>) {}

  /**
   * Opens `dir` for the evaluation described by `identity`. A folder holding another evaluation is refused; one
   * holding this evaluation is refused too unless `resume` (continue it) or `overwrite` (discard it) says what to
   * do, so that finished work is never thrown away by accident.
   */
  static open(dir: string, identity: Record<string, string>, options: EvaluationCheckpointOptions = {}): EvaluationCheckpoint {
    const manifestPath = join(dir, MANIFEST);
    if (options.overwrite) rmSync(dir, { recursive: true, force: true });
    if (existsSync(manifestPath)) {
      const held = readManifest(manifestPath);
      const differences = Object.keys({ ...held, ...identity }).filter((key) => held[key] !== identity[key]);
      if (differences.length > 0) {
        const detail = differences.map((key) => `${key}: '${held[key] ?? '(none)'}' there, '${identity[key] ?? '(none)'}' here`).join('; ');
        throw new Error(`${dir} holds the progress of another evaluation (${detail}): --overwrite to discard it, or another --report folder`);
      }
      const batches = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).length;
      // A folder with nothing finished in it (a run that stopped before its first batch) has nothing to lose.
      if (!options.resume && batches > 0) {
        throw new Error(`${dir} holds an unfinished evaluation of this model (${batches} attack batches done): --resume to continue it, --overwrite to start afresh`);
      }
    } else if (existsSync(dir) && readdirSync(dir).length > 0) {
      throw new Error(`${dir} exists and is not an evaluation checkpoint (no ${MANIFEST}): choose another --report folder`);
    }
    mkdirSync(dir, { recursive: true });
    if (!existsSync(manifestPath)) writeJsonAtomic(manifestPath, { format: FORMAT, identity });
    return new EvaluationCheckpoint(dir, identity);
  }

  /** Batch calls since the folder was opened, by where their results came from. */
  get stats(): CheckpointStats {
    return { reused: this.hits, shared: this.shared, computed: this.misses, earlierSeconds: this.earlierSeconds, untimed: this.untimed };
  }

  /**
   * The finished call of the attack `description` (describeAttack with the threat model and seed) on the images `indices`, or null. Custom attacks (a function,
   * no description to key on) are never cached.
   */
  load(description: AttackDescription, indices: readonly number[], device: Device): BatchOutcome | null {
    const key = keyOf(description, indices);
    if (key === null) return null;
    const path = this.pathOf(key);
    if (!existsSync(path)) {
      this.misses++;
      return null;
    }
    let file: ReturnType<typeof loadSafetensors>;
    try {
      file = loadSafetensors(path, { device });
    } catch (err) {
      throw new Error(`evaluation checkpoint batch is unreadable (${(err as Error).message}): --overwrite to start afresh`);
    }
    const adversarial = file.tensors.get('adversarial');
    const stored = file.metadata;
    const success = JSON.parse(stored.success ?? 'null') as boolean[] | null;
    const skipped = JSON.parse(stored.skipped ?? 'null') as boolean[] | null;
    const seconds = stored.seconds === undefined ? null : Number(stored.seconds);
    const valid = stored.key === key && adversarial !== undefined && adversarial.shape[0] === indices.length
      && success?.length === indices.length && skipped?.length === indices.length;
    if (!valid) {
      for (const t of file.tensors.values()) t.dispose();
      throw new Error(`evaluation checkpoint file ${path} does not hold the batch it is named for: --overwrite to start afresh`);
    }
    if (seconds !== null && !(Number.isFinite(seconds) && seconds >= 0)) {
      for (const t of file.tensors.values()) t.dispose();
      throw new Error(`evaluation checkpoint file ${path} records a time that is not a number of seconds ('${stored.seconds}'): --overwrite to start afresh`);
    }
    for (const [name, t] of file.tensors) if (name !== 'adversarial') t.dispose();
    if (this.seenHere.has(path)) this.shared++;
    else {
      this.hits++;
      if (seconds === null) this.untimed++;
      else this.earlierSeconds += seconds;
      this.seenHere.add(path);
    }
    return { adversarial, success, skipped };
  }

  /**
   * Records a finished call that took `seconds` (atomically: a kill mid-write leaves no partial file).
   */
  save(description: AttackDescription, indices: readonly number[], outcome: BatchOutcome, seconds: number): void {
    const key = keyOf(description, indices);
    if (key === null) return;
    const path = this.pathOf(key);
    this.seenHere.add(path);
    saveSafetensors(path, { adversarial: outcome.adversarial.detach().contiguous() }, {
      key, success: JSON.stringify(outcome.success), skipped: JSON.stringify(outcome.skipped), seconds: String(seconds),
    });
  }

  /** Deletes the folder (the evaluation is finished and its results written). */
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private pathOf(key: string): string {
    return join(this.dir, `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.safetensors`);
  }
}

/** The description a batch call is keyed by; null for a custom attack. */
function keyOf(description: AttackDescription, indices: readonly number[]): string | null {
  if (description.attack === 'custom') return null;
  return stableJson({ ...description, indices });
}

/** JSON with object keys sorted, so that equal descriptions give equal keys. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${stableJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function readManifest(path: string): Record<string, string> {
  let parsed: { format?: string; identity?: Record<string, string> };
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`evaluation checkpoint manifest ${path} is not valid JSON (${(err as Error).message}): --overwrite to start afresh`);
  }
  if (parsed.format !== FORMAT || typeof parsed.identity !== 'object' || parsed.identity === null) {
    throw new Error(`${path} is not a crossmax evaluation checkpoint manifest (format '${parsed.format}'): --overwrite to start afresh`);
  }
  return parsed.identity;
}
