// Synchronised BatchNorm (torch.nn.SyncBatchNorm's semantics) without a collective inside forward or backward.
//
// PyTorch all-gathers each BatchNorm's per-rank sums inside the forward and all-reduces the gradients of the
// statistics inside the backward. Here Module.forward is synchronous, collectives are promises, and the addon's
// backward is one native call with no JS hooks, so the same arithmetic is arranged around them:
//
// Forward. A BatchNorm call's global statistics depend on the earlier calls' global statistics, so they are found
// call by call: statistics-only passes (no autograd) where calls 0..k−1 normalise with the global sums already
// known and call k stops the pass with its local sums, which are then all-reduced. L calls cost up to L partial
// forward passes before the real one (each stops at its call, so about L/2 full forwards in all). The real pass
// normalises every call with its global sums, written as local + (global − local).detach() so that autograd
// reaches this rank's own sums.
//
// Backward. The loss's gradient reaches rank r's sums s_k,r only through rank r's own loss (a_k,r); the exact
// gradient of the global loss needs Σ_r' share_r'·a_k,r' there (the adjoint of an all-reduce is an all-reduce,
// which is what SyncBatchNorm's backward does with sum_dy and sum_dy_xmu). After loss.backward(), calls are taken
// last to first: the adjoint of call k is complete once the later calls' corrections have flowed back (they only
// reach earlier calls), so it is all-reduced, and the difference is back-propagated from s_k,r. With DDP then
// weighting each rank's gradients by its share and summing, the parameters' gradients equal the single-process
// gradients on the concatenated batch (test/distributed.test.ts pins it).
import { BatchNorm, type BatchStatistics, type BatchStatisticsSource, type Module } from '../nn/index.js';
import {
  backward, cat, defaultGeneratorState, type Generator, keep, noGrad, setDefaultGeneratorState, tidy, type Tensor, zerosLike,
} from '../tensor/index.js';
import type { ProcessGroup } from './process-group.js';

/** Thrown inside a statistics-only pass to stop it at the call whose local sums are wanted. */
class StopPass extends Error {
  constructor(readonly local: Tensor, readonly count: number) { super('statistics pass stopped'); }
}

/** The result of {@link SyncBatchNorm.forwardBackward}: whatever the forward returned, plus the pass count. */
export interface SyncBatchNormStep<T> {
  /** What `compute` returned on the real pass (its tensors are the caller's to dispose). */
  result: T;
  /** BatchNorm calls synchronised (= statistics-only passes run, = all-reduces of statistics). */
  calls: number;
}

/** Options of {@link SyncBatchNorm.forwardBackward}. */
export interface SyncBatchNormOptions {
  /**
   * This rank's share of the global batch (its examples / all ranks' examples), the weight
   * DistributedDataParallel.allReduceGradients will give its gradients. Default 1/worldSize. Must be positive.
   */
  share?: number;
  /**
   * Generators the forward draws from besides libtorch's default CPU one (a model's own noise generators): their
   * states are restored before every pass too, so every pass sees the same numbers. Default none.
   */
  generators?: Generator[];
}

/**
 * Synchronised BatchNorm for every BatchNorm of `module` (torch.nn.SyncBatchNorm.convert_sync_batchnorm's effect):
 * inside {@link forwardBackward}, training-mode BatchNorm calls normalise with the mean and variance of the global
 * batch over all ranks and update their running statistics with them, and the gradients include the other ranks'
 * dependence on this rank's input. Outside it the BatchNorms behave as before (per-rank statistics).
 */
export class SyncBatchNorm {
  private readonly layers: BatchNorm[];

  /**
   * Binds the BatchNorms of `module` to `group`; nothing is communicated until {@link forwardBackward}.
   * @param module the model whose BatchNorm layers normalise with statistics over every rank's slice of the batch
   * @param group the process group of this launch
   */
  constructor(readonly module: Module, readonly group: ProcessGroup) {
    this.layers = module.modules().filter((m): m is BatchNorm => m instanceof BatchNorm);
  }

  /** How many BatchNorm layers `module` has (0: forwardBackward is a plain forward and backward). */
  get layerCount(): number { return this.layers.length; }

  /**
   * Runs `compute` (a synchronous forward that returns the scalar loss at `loss`) with synchronised batch
   * statistics and back-propagates the loss, so that parameter gradients, once DDP weights them by `share` and sums
   * them, equal the single-process gradients. Every rank must call it for every step, with the same model and the
   * same control flow. `compute` runs more than once (statistics-only passes under noGrad first): it must not have
   * side effects other than the forward's; the default CPU generator (and `options.generators`) is restored before
   * every pass, so every pass normalises the same activations and dropout draws the masks a single pass would.
   * (A CUDA generator is not restored: random ops on a GPU would differ between passes.)
   */
  async forwardBackward<T extends {
    /** The scalar loss of this rank's slice, which the real pass back-propagates. */
    loss: Tensor;
  }>(compute: () => T, options: SyncBatchNormOptions = {}): Promise<SyncBatchNormStep<T>> {
    const share = options.share ?? 1 / this.group.worldSize;
    if (!(share > 0 && share <= 1)) throw new RangeError(`SyncBatchNorm: this rank's share of the batch must be in (0, 1], got ${share}`);
    const totals: BatchStatistics[] = [];
    const records: { local: BatchStatistics; combined: BatchStatistics }[] = [];
    const rng = defaultGeneratorState();
    const others = (options.generators ?? []).map((g) => [g, g.getState()] as const);
    const rewind = (): void => {
      setDefaultGeneratorState(rng);
      for (const [g, state] of others) g.setState(state);
    };
    let mode: 'probe' | 'final' = 'probe';
    let call = 0;
    const source: BatchStatisticsSource = {
      combine: (layer, local) => {
        const index = call++;
        if (index < totals.length) return { total: totals[index]!, final: mode === 'final' };
        if (mode === 'final') {
          throw new Error(`SyncBatchNorm: the forward made more BatchNorm calls (${index + 1}) than in its statistics passes (${totals.length}); it must be deterministic`);
        }
        const packed = keep(cat([local.sum.detach(), local.sumSq.detach()]).contiguous());
        throw new StopPass(packed, local.count);
      },
      record: (local, combined) => {
        // Kept out of every scope at once: a model's forward may free its intermediates in a tidy of its own.
        keep([local.sum, local.sumSq, combined.sum, combined.sumSq]);
        combined.sum.retainGrad();
        combined.sumSq.retainGrad();
        records.push({ local, combined });
      },
    };
    for (const layer of this.layers) layer.statisticsSource = source;
    const sums: Tensor[] = [];
    try {
      // Statistics-only passes: each ends at the first call whose global sums are not known yet (none when no
      // BatchNorm is in training mode: a frozen backbone's).
      while (this.layers.some((l) => l.training)) {
        call = 0;
        rewind();
        let stop: StopPass | null = null;
        try {
          tidy(() => noGrad(() => { compute(); }));
        } catch (err) {
          if (!(err instanceof StopPass)) throw err;
          stop = err;
        }
        if (stop === null) break;
        const base = zerosLike(stop.local);
        const counts = base.narrow(0, 0, 1).fill_(stop.count);
        const packed = cat([stop.local, counts]);
        for (const t of [stop.local, counts, base]) t.dispose();
        sums.push(packed);
        await this.group.allReduce(packed, { op: 'sum' });
        const channels = (packed.shape[0]! - 1) / 2;
        totals.push({ sum: packed.narrow(0, 0, channels), sumSq: packed.narrow(0, channels, channels), count: packed.narrow(0, 2 * channels, 1).item() });
      }
      // The real pass, with autograd.
      call = 0;
      mode = 'final';
      rewind();
      // Inside tidy the forward's intermediates are freed after backward; the graph keeps what the corrections need.
      const result = tidy(() => {
        const out = compute();
        if (call !== totals.length) {
          throw new Error(`SyncBatchNorm: the forward made ${call} BatchNorm calls, its statistics passes ${totals.length}; it must be deterministic`);
        }
        out.loss.backward(undefined, { retainGraph: records.length > 0 });
        return out;
      });
      for (let k = records.length - 1; k >= 0; k--) {
        const { local, combined } = records[k]!;
        const adjoint = noGrad(() => {
          const gs = combined.sum.grad ?? zerosLike(combined.sum);
          const gq = combined.sumSq.grad ?? zerosLike(combined.sumSq);
          const joined = cat([gs, gq]);
          gs.dispose();
          gq.dispose();
          return joined;
        });
        const mine = noGrad(() => adjoint.mul(share));
        await this.group.allReduce(mine, { op: 'sum' });
        // Deliver Σ_r' share_r'·a_r' / share − a (this rank already received a through its own loss).
        const extra = noGrad(() => mine.div(share).sub_(adjoint));
        const channels = local.sum.shape[0]!;
        const es = extra.narrow(0, 0, channels);
        const eq = extra.narrow(0, channels, channels);
        backward([local.sum, local.sumSq], { gradOutputs: [es, eq], retainGraph: k > 0 });
        for (const t of [adjoint, mine, extra, es, eq]) t.dispose();
      }
      return { result, calls: totals.length };
    } finally {
      for (const layer of this.layers) layer.statisticsSource = null;
      for (const r of records) for (const t of [r.local.sum, r.local.sumSq, r.combined.sum, r.combined.sumSq]) t.dispose();
      for (const t of totals) { t.sum.dispose(); t.sumSq.dispose(); }
      for (const t of sums) t.dispose();
      rng.dispose();
      for (const [, state] of others) state.dispose();
    }
  }
}
