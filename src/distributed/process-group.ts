// A c10d process group (native/src/distributed.cc) behind a typed, promise-based API. Collectives run off the JS
// thread; a failed one (a peer that died, a timeout) rejects with an error that names the ranks that stopped
// answering, found through the rendezvous store (see `lostRanks`).
import { Tensor, tensor as makeTensor } from '../tensor/index.js';
import { native } from '../tensor/native.js';
import { worldFromEnvironment, type World } from './environment.js';

interface NativeProcessGroup {
  readonly rank: number;
  readonly size: number;
  readonly backend: string;
  readonly inFlight: number;
  allReduce(t: unknown, op: string): Promise<void>;
  broadcast(t: unknown, root: number): Promise<void>;
  allGather(t: unknown): Promise<unknown[]>;
  barrier(): Promise<void>;
  storeSet(key: string, value: string): void;
  storeCheck(keys: string[]): boolean;
  storeGet(key: string, timeoutMs?: number): Promise<string>;
  destroy(): void;
}

interface NativeGradientReducer {
  readonly launchedDuringBackward: number;
  arm(share: number): void;
  finish(): Promise<void>;
  destroy(): void;
}

interface DistributedAddon {
  newProcessGroup(options: Record<string, unknown>): Promise<NativeProcessGroup>;
  newGradientReducer(group: NativeProcessGroup, params: unknown[], bucketBytes: number): NativeGradientReducer;
  distributedBackends(): string[];
}

const addon = native as unknown as DistributedAddon;

/** The c10d backends this build of the addon has ('gloo' where gloo's headers were found, 'nccl' with CUDA). */
export function distributedBackends(): string[] {
  return addon.distributedBackends();
}

/** Options of {@link initProcessGroup}; every field defaults from the launch's variables. */
export interface ProcessGroupOptions {
  /** Rank/world/master; default `worldFromEnvironment()` (an error when the process was not launched distributed). */
  world?: World;
  /** Device this rank computes on; chooses the backend: 'gloo' for cpu, 'nccl' for cuda. Default 'cpu'. */
  device?: string;
  /** Backend, overriding the device's choice. */
  backend?: 'gloo' | 'nccl';
  /** How long a collective (and the rendezvous) may wait for a peer before failing, ms. Default 300 000 (c10d's). */
  timeoutMs?: number;
  /** A FileStore at this path instead of rank 0's TCPStore (shared file systems, no open port needed). */
  fileStore?: string;
  /** The address peers reach this rank at for Gloo; default 127.0.0.1 when the master is local, else the host's. */
  glooHostname?: string;
}

/** Options of {@link ProcessGroup.allReduce}. */
export interface AllReduceOptions {
  /** 'sum' or 'avg' (sum divided by the world size). Default 'sum'. */
  op?: 'sum' | 'avg';
}

/** A c10d process group: this rank's view of the collectives over all ranks. */
export class ProcessGroup {
  /** This process's rank. */
  readonly rank: number;
  /** The number of ranks. */
  readonly worldSize: number;
  /** The rank on this machine. */
  readonly localRank: number;
  /** 'gloo' or 'nccl'. */
  readonly backend: string;
  /** The collective timeout, ms. */
  readonly timeoutMs: number;
  private failures = 0;
  private destroyed = false;

  /** Wraps a native group; use {@link initProcessGroup}. */
  constructor(private readonly raw: NativeProcessGroup, world: World, timeoutMs: number) {
    this.rank = raw.rank;
    this.worldSize = raw.size;
    this.localRank = world.localRank;
    this.backend = raw.backend;
    this.timeoutMs = timeoutMs;
  }

  /** Reduces `tensor` over all ranks, in place (it must be contiguous). */
  allReduce(tensor: Tensor, options: AllReduceOptions = {}): Promise<void> {
    return this.collective('allReduce', () => this.live().allReduce(tensor.handle, options.op ?? 'sum'));
  }

  /** Copies `root`'s `tensor` into every rank's `tensor`, in place. */
  broadcast(tensor: Tensor, options: { root?: number } = {}): Promise<void> {
    return this.collective('broadcast', () => this.live().broadcast(tensor.handle, options.root ?? 0));
  }

  /** Every rank's `tensor` (same shape and dtype on all), in rank order; the caller owns (disposes) them. */
  async allGather(tensor: Tensor): Promise<Tensor[]> {
    const handles = await this.collective('allGather', () => this.live().allGather(tensor.handle));
    return handles.map((h) => new Tensor(h as Tensor['handle']));
  }

  /** Returns once every rank has called it. */
  barrier(): Promise<void> {
    return this.collective('barrier', () => this.live().barrier());
  }

  /** Every rank's JSON-serialisable `value`, in rank order (JSON bytes through two all-gathers: lengths, then padded bytes). */
  async allGatherObject<T>(value: T): Promise<T[]> {
    const bytes = Buffer.from(JSON.stringify(value) ?? 'null', 'utf8');
    const length = makeTensor(new Float64Array([bytes.length]));
    const lengths = await this.allGather(length);
    length.dispose();
    const sizes = lengths.map((t) => { const n = t.toArray()[0]!; t.dispose(); return n; });
    const width = Math.max(...sizes, 1);
    const padded = new Uint8Array(width);
    padded.set(bytes);
    const local = makeTensor(padded, { dtype: 'uint8' });
    const gathered = await this.allGather(local);
    local.dispose();
    return gathered.map((t, r) => {
      const all = Uint8Array.from(t.toArray());
      t.dispose();
      return JSON.parse(Buffer.from(all.subarray(0, sizes[r]!)).toString('utf8')) as T;
    });
  }

  /**
   * The ranks that stop answering, found after a failed collective: every surviving rank marks itself alive in the
   * store and waits a moment for the others' marks; whoever has not marked itself is named. If the store itself is
   * gone, rank 0 (which hosts it) is the one lost.
   */
  async lostRanks(waitMs = Math.min(5000, this.timeoutMs)): Promise<number[]> {
    const raw = this.raw;
    const round = `crossmax/alive/${this.failures++}/`;
    try {
      raw.storeSet(round + this.rank, '1');
      const deadline = Date.now() + waitMs;
      const others = [...Array(this.worldSize).keys()].filter((r) => r !== this.rank);
      for (;;) {
        const missing = others.filter((r) => !raw.storeCheck([round + r]));
        if (missing.length === 0 || Date.now() >= deadline) return missing;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } catch {
      return this.rank === 0 ? [] : [0];
    }
  }

  /**
   * A reducer of `params`' gradients that starts each bucket's all-reduce during the backward pass, as soon as the
   * bucket's gradients exist (see {@link GradientReducer}). `params` must be leaves that require grad.
   */
  gradientReducer(params: readonly Tensor[], bucketBytes: number): GradientReducer {
    const raw = addon.newGradientReducer(this.live(), params.map((p) => p.handle), bucketBytes);
    return new GradientReducer(raw, (what, start) => this.collective(what, start));
  }

  /** Releases the group (never blocks on a dead peer: collectives still waiting keep it alive until they fail). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.raw.destroy();
  }

  private live(): NativeProcessGroup {
    if (this.destroyed) throw new Error('process group used after destroy()');
    return this.raw;
  }

  private async collective<T>(what: string, start: () => Promise<T>): Promise<T> {
    try {
      return await start();
    } catch (err) {
      if (this.destroyed) throw err;
      const lost = await this.lostRanks();
      const who = lost.length > 0 ? `lost rank${lost.length > 1 ? 's' : ''} ${lost.join(', ')}` : 'no rank was found dead';
      throw new Error(`distributed ${what} failed on rank ${this.rank} of ${this.worldSize} (${who}): ${(err as Error).message}`,
        { cause: err });
    }
  }
}

/**
 * Joins the process group of this launch: rank 0 hosts a TCPStore at MASTER_ADDR:MASTER_PORT (or all share
 * `fileStore`), then every rank builds the backend chosen by its device (Gloo on cpu, NCCL on cuda:LOCAL_RANK).
 * Resolves once all ranks have arrived; rejects after `timeoutMs` naming what is missing.
 */
export async function initProcessGroup(options: ProcessGroupOptions = {}): Promise<ProcessGroup> {
  const world = options.world ?? worldFromEnvironment();
  if (world === null) {
    throw new Error('initProcessGroup: this process was not launched distributed (set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, ' +
      'or start it with `crossmax launch --nproc N --`, torchrun or srun)');
  }
  const device = options.device ?? 'cpu';
  const backend = options.backend ?? (device.startsWith('cuda') ? 'nccl' : 'gloo');
  if (!distributedBackends().includes(backend)) {
    throw new Error(`initProcessGroup: backend '${backend}' is not built into this addon (it has: ${distributedBackends().join(', ') || 'none'}); ` +
      (backend === 'gloo' ? 'install libgloo-dev and rebuild (bash scripts/setup.sh)' : 'build against a CUDA libtorch'));
  }
  const timeoutMs = options.timeoutMs ?? 300_000;
  const local = ['127.0.0.1', 'localhost', '::1'].includes(world.masterAddr);
  const raw = await addon.newProcessGroup({
    backend, rank: world.rank, worldSize: world.worldSize, timeoutMs,
    store: options.fileStore ? 'file' : 'tcp', path: options.fileStore, masterAddr: world.masterAddr, masterPort: world.masterPort,
    glooHostname: options.glooHostname ?? (local ? '127.0.0.1' : undefined),
    glooInterface: process.env.GLOO_SOCKET_IFNAME,
  });
  return new ProcessGroup(raw, world, timeoutMs);
}

/**
 * DistributedDataParallel's gradient all-reduce overlapped with the backward pass (native/src/distributed.cc): hooks
 * on the parameters' gradient accumulators start a bucket's all-reduce once all its gradients exist, in bucket order
 * (buckets are filled in reverse parameter order, the order the backward produces them). Use: {@link arm} before
 * `loss.backward()`, `await` {@link finish} after it (it launches what is left, waits, and writes the sums into the
 * gradients); backward passes outside arm/finish are ignored.
 */
export class GradientReducer {
  /** Made by {@link ProcessGroup.gradientReducer}. */
  constructor(private readonly raw: NativeGradientReducer,
    private readonly run: (what: string, start: () => Promise<void>) => Promise<void>) {}

  /** Buckets whose all-reduce started inside the last armed backward pass (the rest started in finish()). */
  get launchedDuringBackward(): number {
    return this.raw.launchedDuringBackward;
  }

  /** The next backward pass's gradients are this rank's, weighted by `share` (its part of the global batch) in the sum. */
  arm(share: number): void {
    this.raw.arm(share);
  }

  /** Every parameter's gradient replaced by the weighted sum over ranks. */
  finish(): Promise<void> {
    return this.run('gradient all-reduce', () => this.raw.finish());
  }

  /** Removes the hooks. */
  destroy(): void {
    this.raw.destroy();
  }
}
