// DistributedDataParallel's semantics over a ProcessGroup: rank 0's parameters and buffers broadcast at the start,
// gradients averaged over ranks in buckets, each rank its own contiguous slice of every global batch (so a step
// on W ranks is the single-process step on the concatenated batch), and a start-up check that the ranks agree.
//
// The gradients' all-reduce overlaps the backward pass, as PyTorch's Reducer does: call prepareForBackward(share)
// before loss.backward(), and the addon's hooks on the gradient accumulators start each bucket's all-reduce while
// autograd computes the earlier layers (GradientReducer). Without it (synchronised BatchNorm, whose corrections
// change the gradients after the first backward, or `overlap: false`), allReduceGradients reduces after backward.
import type { Module } from '../nn/module.js';
import { cat, noGrad, Tensor, zerosLike } from '../tensor/index.js';
import type { GradientReducer, ProcessGroup } from './process-group.js';

/** Options of {@link DistributedDataParallel}. */
export interface DataParallelOptions {
  /** Gradient bucket size, MB (PyTorch's bucket_cap_mb default). Default 25. */
  bucketMegabytes?: number;
  /** Start the all-reduce during the backward pass (prepareForBackward). Default true. */
  overlap?: boolean;
}

/** Options of {@link DistributedDataParallel.allReduceGradients}. */
export interface GradientReduceOptions {
  /**
   * This rank's share of the global batch (its examples / all ranks' examples). Default 1/worldSize. With unequal
   * slices (the last batch of an epoch) the weighted sum is the gradient of the mean loss over the global batch.
   */
  share?: number;
}

/**
 * Wraps a module for data-parallel training: call {@link synchronize} once (rank 0's weights everywhere, and the
 * consistency check), then after every backward {@link allReduceGradients} before the optimiser step.
 */
export class DistributedDataParallel {
  private readonly bucketBytes: number;
  private readonly overlap: boolean;
  private reducer: { reducer: GradientReducer; params: Tensor[] } | null = null;
  private armed = false;

  /**
   * Binds `module` to `group`; nothing is communicated until {@link synchronize}.
   * @param module the model whose parameters and buffers the ranks keep equal, and whose gradients they average
   * @param group the process group of this launch (one rank per process)
   */
  constructor(readonly module: Module, readonly group: ProcessGroup, options: DataParallelOptions = {}) {
    const mb = options.bucketMegabytes ?? 25;
    if (!(mb > 0)) throw new RangeError(`bucketMegabytes must be positive, got ${mb}`);
    this.bucketBytes = mb * 1024 * 1024;
    this.overlap = options.overlap ?? true;
  }

  /**
   * Arms the overlapped all-reduce for the next backward pass (call right before `loss.backward()`; then
   * {@link allReduceGradients} waits for it). `share` as in {@link GradientReduceOptions}. Does nothing with
   * `overlap: false`. The reducer follows the parameters that require grad (a 'heads' phase freezes some).
   */
  prepareForBackward(share = 1 / this.group.worldSize): void {
    if (!this.overlap) return;
    checkShare(share);
    const params = this.trainableParameters();
    const current = this.reducer;
    if (!current || current.params.length !== params.length || current.params.some((p, i) => p !== params[i])) {
      current?.reducer.destroy();
      this.reducer = { reducer: this.group.gradientReducer(params, this.bucketBytes), params };
    }
    this.reducer!.reducer.arm(share);
    this.armed = true;
  }

  /** Buckets whose all-reduce started inside the last backward pass (0 when not overlapped). */
  get bucketsLaunchedDuringBackward(): number {
    return this.reducer?.reducer.launchedDuringBackward ?? 0;
  }

  /** The parameters whose gradients are averaged: those that require grad now (a 'heads' phase freezes some). */
  private trainableParameters(): Tensor[] {
    return this.module.parameters().filter((p) => p.requiresGrad);
  }

  /** Removes the reducer's hooks from the parameters. */
  destroy(): void {
    this.reducer?.reducer.destroy();
    this.reducer = null;
    this.armed = false;
  }

  /**
   * Refuses ranks whose models differ (parameter names, shapes, dtypes) or whose `facts` differ (model
   * configuration, data, recipe: whatever the caller passes), naming the fact and the ranks; then copies rank 0's
   * parameters and buffers to every rank.
   */
  async synchronize(facts: Record<string, unknown> = {}): Promise<void> {
    const shapes = Object.fromEntries([...this.module.namedParameters(), ...this.module.namedBuffers()]
      .map(([name, t]) => [name, `${t.dtype}[${t.shape.join(',')}]`]));
    await checkConsistency(this.group, { ...facts, parameters: shapes });
    for (const [, t] of [...this.module.namedParameters(), ...this.module.namedBuffers()]) {
      if (t.isContiguous()) {
        // c10d writes into the tensor's memory directly, outside autograd, as torch.distributed does for DDP.
        await this.group.broadcast(t, { root: 0 });
      } else {
        const staging = t.contiguous();
        await this.group.broadcast(staging, { root: 0 });
        noGrad(() => t.copy_(staging));
        staging.dispose();
      }
    }
  }

  /**
   * Copies rank 0's buffers (BatchNorm's running statistics) to every rank, as PyTorch's DDP does before each
   * forward (broadcast_buffers=True): each rank's statistics come from its own slice, rank 0's are kept.
   */
  async broadcastBuffers(): Promise<void> {
    for (const [, t] of this.module.namedBuffers()) await this.group.broadcast(t, { root: 0 });
  }

  /**
   * Replaces every parameter's gradient by its average over ranks (weighted by `share`), in buckets of at most
   * `bucketMegabytes`; after {@link prepareForBackward}, waits for the all-reduces the backward pass started. A
   * parameter without a gradient on this rank takes part with zeros, so every rank issues the same collectives.
   */
  async allReduceGradients(options: GradientReduceOptions = {}): Promise<void> {
    if (this.armed) {
      // Armed by prepareForBackward: the all-reduces are under way (its share applies).
      this.armed = false;
      await this.reducer!.reducer.finish();
      return;
    }
    const share = checkShare(options.share ?? 1 / this.group.worldSize);
    const params = this.trainableParameters();
    const buckets: Tensor[][] = [];
    let current: Tensor[] = [];
    let bytes = 0;
    for (const p of params) {
      const size = p.numel * 4;
      if (current.length > 0 && bytes + size > this.bucketBytes) { buckets.push(current); current = []; bytes = 0; }
      current.push(p);
      bytes += size;
    }
    if (current.length > 0) buckets.push(current);
    const pending = buckets.map((bucket) => {
      const flat = noGrad(() => {
        const pieces = bucket.map((p) => { const g = p.grad; return g ? g.reshape([-1]) : zerosLike(p).reshape([-1]); });
        const joined = cat(pieces).mul_(share);
        for (const piece of pieces) piece.dispose();
        return joined;
      });
      return { bucket, flat, done: this.group.allReduce(flat, { op: 'sum' }) };
    });
    try {
      for (const { bucket, flat, done } of pending) {
        await done;
        noGrad(() => {
          let offset = 0;
          for (const p of bucket) {
            const piece = flat.narrow(0, offset, p.numel).reshape(p.shape);
            offset += p.numel;
            const g = p.grad;
            if (g) { g.copy_(piece); g.dispose(); piece.dispose(); } else { p.grad = piece.clone(); piece.dispose(); }
          }
        });
      }
    } finally {
      // On failure the remaining buckets' collectives have rejected too; their memory is freed either way.
      await Promise.allSettled(pending.map((b) => b.done));
      for (const { flat } of pending) flat.dispose();
    }
  }
}

/** `share` if it is a share of the global batch, in [0, 1]; a RangeError otherwise. */
function checkShare(share: number): number {
  if (!(share >= 0 && share <= 1)) throw new RangeError(`share must be in [0, 1], got ${share}`);
  return share;
}

/**
 * Refuses to go on when the ranks' `facts` differ: gathers every rank's facts and throws on every rank an error
 * naming each fact that differs from rank 0's and the ranks that differ.
 */
export async function checkConsistency(group: ProcessGroup, facts: Record<string, unknown>): Promise<void> {
  const all = await group.allGatherObject(facts);
  const reference = all[0]!;
  const problems: string[] = [];
  const keys = new Set(all.flatMap((f) => Object.keys(f)));
  for (const key of keys) {
    const want = JSON.stringify(reference[key]);
    const differing = all.map((f, r) => [r, JSON.stringify(f[key])] as const).filter(([, v]) => v !== want);
    if (differing.length === 0) continue;
    const detail = firstDifference(reference[key], all[differing[0]![0]]![key]);
    problems.push(`${key} differs on rank${differing.length > 1 ? 's' : ''} ${differing.map(([r]) => r).join(', ')} from rank 0's${detail}`);
  }
  if (problems.length > 0) {
    throw new Error(`distributed ranks disagree, refusing to start: ${problems.join('; ')}`);
  }
}

function firstDifference(a: unknown, b: unknown, path = ''): string {
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      const x = (a as Record<string, unknown>)[k];
      const y = (b as Record<string, unknown>)[k];
      if (JSON.stringify(x) !== JSON.stringify(y)) return firstDifference(x, y, path ? `${path}.${k}` : k);
    }
    return '';
  }
  return ` (${path || 'value'}: ${JSON.stringify(a)} on rank 0, ${JSON.stringify(b)} there)`;
}

/**
 * This rank's slice of one global batch: the contiguous part `rank` of `worldSize` nearly equal parts (sizes differ
 * by at most one), so the slices in rank order concatenate to the global batch. Walking an epoch's seeded order in
 * global batches of worldSize × batch size, the union over ranks is the single-process epoch.
 */
export function shardOfBatch<T>(batch: readonly T[], rank: number, worldSize: number): T[] {
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new RangeError(`worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new RangeError(`rank ${rank} is not in [0, ${worldSize})`);
  const base = Math.floor(batch.length / worldSize);
  const extra = batch.length % worldSize;
  const start = rank * base + Math.min(rank, extra);
  return batch.slice(start, start + base + (rank < extra ? 1 : 0));
}
