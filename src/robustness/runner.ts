// The one runner of "attack the points still robust, in batches" (AutoAttack's run_standard_evaluation loop),
// used by the AutoAttack runner (autoattack.ts) and the robustness evaluation (evaluation.ts): one attack entry
// over the rows its caller still counts robust, built through the attack registry under the caller's threat
// model, every batch's result checked (inside the ball, in [0, 1], finite) and, with a checkpoint, stored.
// Within one batch, the attack's own restarts and target classes run on its still-robust images (Attack.attackRobust).
import { type Device, type Tensor, keep, tensor, tidy } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { type ProgressEvent, replaceRows } from '../attacks/attack.js';
import { checkAdversarial, type ThreatModel } from '../attacks/threat-model.js';
import { buildAttack, describeAttack, type AttackEntry } from '../attacks/registry.js';
import type { BatchOutcome, EvaluationCheckpoint } from './checkpoint.js';

/** `indices` cut into consecutive batches of at most `size`. */
export function batchesOf(indices: readonly number[], size: number): number[][] {
  return Array.from({ length: Math.ceil(indices.length / size) }, (_, b) => indices.slice(b * size, (b + 1) * size));
}

/** How {@link attackInBatches} runs one attack over a set of images. */
export interface BatchRunSettings extends ThreatModel {
  /** Seeds the attack unless the entry has a seed of its own. */
  seed: number;
  /** Images per attack call. */
  batchSize: number;
  /**
   * Attacks skip the images their first forward pass misclassifies and return them untouched; for a stochastic
   * model that is the draw's luck, so such images are attacked again with another seed this many times (see
   * RobustnessOptions.retryUntouched). Default 0.
   */
  retries?: number;
  /** Where finished batch calls are stored and taken from (checkpoint.ts). Default none. */
  checkpoint?: EvaluationCheckpoint;
  /** The attack's progress on the batch `batch` (rows of the images). */
  onProgress?: (event: ProgressEvent, batch: readonly number[]) => void;
  /** After every attack call, with the rows of its batch and whether each was fooled. */
  onBatch?: (batch: readonly number[], success: readonly boolean[]) => void;
}

/** What {@link attackInBatches} returns. */
export interface BatchRunResult {
  /** All N rows: the attack's result where it ran, the clean image elsewhere. Kept: the caller disposes it. */
  adversarial: Tensor;
  /** Per row of `indices`: the attack's own final pass misclassified it (of the last attempt). */
  success: boolean[];
  /** Attack calls repeated on images the attack skipped. */
  retried: number;
}

/** Runs `entry` on the rows `indices` of `images` [N, C, H, W] (labels [N], int64), in batches. */
export function attackInBatches(
  model: Classifier, images: Tensor, labels: Tensor, entry: AttackEntry, indices: readonly number[], settings: BatchRunSettings,
): BatchRunResult {
  const threatModel: ThreatModel = { norm: settings.norm, eps: settings.eps };
  const device = images.device as Device;
  // Made in a scope of its own: a caller outside any scope (the transfer table's) would leak the detached view.
  let adversarial = keep(tidy(() => images.detach().clone()));
  const success = new Map<number, boolean>();
  let todo = [...indices];
  let retried = 0;
  try {
    for (let attempt = 0; attempt <= (settings.retries ?? 0) && todo.length > 0; attempt++) {
      const current = attempt === 0 ? entry : reseeded(entry, settings.seed, attempt);
      if (!current) break;
      if (attempt > 0) retried += todo.length;
      const description = settings.checkpoint ? describeAttack(current, { ...threatModel, seed: settings.seed }) : null;
      const skipped: number[] = [];
      for (const batch of batchesOf(todo, settings.batchSize)) {
        const next = tidy(() => {
          const index = tensor(batch, { dtype: 'int64', device });
          const xb = images.indexSelect(0, index);
          const stored = description ? settings.checkpoint!.load(description, batch, device) : null;
          const outcome = stored ?? attackBatch(current, xb, labels.indexSelect(0, index), batch);
          // A stored batch passes the same checks as a fresh one: the file could have been edited.
          checkAdversarial(xb, outcome.adversarial, threatModel);
          if (outcome.success.length !== batch.length) throw new Error(`attack '${entry.name}' returned ${outcome.success.length} flags for ${batch.length} images`);
          if (stored === null && description) settings.checkpoint!.save(description, batch, outcome);
          return { adversarial: keep(replaceRows(adversarial, index, outcome.adversarial)), success: outcome.success, skipped: outcome.skipped };
        });
        adversarial.dispose();
        adversarial = next.adversarial;
        batch.forEach((image, j) => {
          success.set(image, next.success[j]!);
          if (next.skipped[j]) skipped.push(image);
        });
        settings.onBatch?.(batch, next.success);
      }
      todo = skipped;
    }
  } catch (err) {
    adversarial.dispose();
    throw err;
  }
  return { adversarial, success: indices.map((i) => success.get(i)!), retried };

  function attackBatch(current: AttackEntry, xb: Tensor, yb: Tensor, batch: readonly number[]): BatchOutcome {
    const onProgress = settings.onProgress ? (event: ProgressEvent) => settings.onProgress!(event, batch) : undefined;
    const result = buildAttack(current, model, { ...threatModel, seed: settings.seed, onProgress }).run(xb, yb);
    const skipped = result.attacked?.map((a) => !a)
      ?? result.adversarial.sub(xb).flatten(1).abs().amax({ dim: 1 }).eq(0).toArray().map(Boolean);
    return { adversarial: result.adversarial, success: result.success, skipped };
  }
}

/** The entry with another seed (registered attacks only: a hand-made attack's seed is its own). */
function reseeded(entry: AttackEntry, seed: number, attempt: number): AttackEntry | null {
  if (typeof entry.attack !== 'string') return null;
  const own = (entry.options as { seed?: number }).seed ?? seed;
  return { ...entry, options: { ...entry.options, seed: own + 7919 * attempt } } as AttackEntry;
}
