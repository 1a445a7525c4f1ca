// Learning-rate schedules (torch.optim.lr_scheduler, 1.13). A schedule is made after its optimiser, sets
// the step-0 learning rate at once (as PyTorch's constructors do), and is stepped after each optimiser step:
//
//   const schedule = new OneCycleLR(optimizer, { maxLr: 0.1, totalSteps: epochs * batchesPerEpoch });
//   for (...) { loss.backward(); optimizer.step(); optimizer.zeroGrad(); schedule.step(); }
//
// Each schedule also has a pure form (stepLrAt, cosineLrAt, oneCycleLrAt) giving the rate at any step.
import type { Optimizer, BaseOptions, ParamState } from './optimizer.js';

type AnyOptimizer = Optimizer<BaseOptions, ParamState>;

/** What every schedule offers. */
export interface LRSchedule {
  /** Steps taken (PyTorch's last_epoch): 0 after construction, +1 per step(). */
  readonly stepCount: number;
  /** The learning rate of each parameter group, as last set by the schedule (get_last_lr()). */
  readonly lastLr: readonly number[];
  /** Advances one step and writes the new rates (and momenta, for OneCycleLR) into the optimiser's groups. */
  step(): void;
  /** The rate of each group at `step` (closed form; the optimiser is not touched). */
  lrAt(step: number): number[];
  /** The progress to save in a checkpoint (plain JSON). */
  stateDict(): ScheduleStateDict;
  /** Restores the progress saved by stateDict(); the options are the constructor's. */
  loadStateDict(state: ScheduleStateDict): void;
}

/** A schedule's progress, plain JSON. The rates themselves live in the optimiser's state dict. */
export interface ScheduleStateDict {
  /** The schedule class's name; loading into another class is refused. */
  schedule: string;
  /** Steps taken. */
  stepCount: number;
  /** Each group's rate when the schedule was created. */
  baseLrs: number[];
  /** Each group's rate after the last step. */
  lastLr: number[];
}

abstract class LRScheduler implements LRSchedule {
  /** Each group's rate when the schedule was created (the rates it scales). */
  protected baseLrs: number[];
  private count = -1;
  private last: number[] = [];

  /**
   * Subclasses end their constructor with `this.step()`, which sets the step-0 rates.
   * @param name - The schedule's class name, stored in its state dict.
   * @param optimizer - The optimiser whose groups' rates the schedule sets.
   * @param baseLrs - Each group's base rate. Default: the groups' current `lr`.
   */
  protected constructor(readonly name: string, readonly optimizer: AnyOptimizer, baseLrs?: number[]) {
    this.baseLrs = baseLrs ?? optimizer.paramGroups.map((g) => g.lr);
  }

  get stepCount(): number { return this.count; }
  get lastLr(): readonly number[] { return this.last; }

  /** The rates for `step`, given the groups as they are (PyTorch's chainable forms read the current lr). */
  protected abstract computeLrs(step: number): number[];
  abstract lrAt(step: number): number[];

  step(): void {
    const groups = this.optimizer.paramGroups;
    if (groups.length !== this.baseLrs.length) {
      throw new Error(`${this.name}: the optimiser has ${groups.length} parameter groups, the schedule was made for ${this.baseLrs.length}`);
    }
    const lrs = this.computeLrs(this.count + 1);
    this.count += 1;
    groups.forEach((g, i) => { g.lr = lrs[i]!; });
    this.last = lrs;
  }

  stateDict(): ScheduleStateDict {
    return { schedule: this.name, stepCount: this.count, baseLrs: [...this.baseLrs], lastLr: [...this.last] };
  }

  loadStateDict(state: ScheduleStateDict): void {
    if (state.schedule !== this.name) throw new Error(`${this.name}: cannot load the state of a ${state.schedule}`);
    if (state.baseLrs.length !== this.baseLrs.length || state.lastLr.length !== this.baseLrs.length) {
      throw new Error(`${this.name}: the saved state has ${state.baseLrs.length} groups, this schedule ${this.baseLrs.length}`);
    }
    checkStep(this.name, state.stepCount);
    this.count = state.stepCount;
    this.baseLrs = [...state.baseLrs];
    this.last = [...state.lastLr];
  }
}

// ---- StepLR ---------------------------------------------------------------------------------------------------

/** Settings of {@link StepLR} and {@link stepLrAt}. */
export interface StepLROptions {
  /** Steps between decays (a positive integer). */
  stepSize: number;
  /** Factor applied every stepSize steps. Default 0.1. */
  gamma?: number;
}

/** lr = baseLr · gamma^⌊step / stepSize⌋ (StepLR's closed form). */
export function stepLrAt(step: number, options: StepLROptions & { baseLr: number }): number {
  checkStep('stepLrAt', step);
  const { stepSize, gamma } = resolveStepLR(options);
  return options.baseLr * gamma ** Math.floor(step / stepSize);
}

/**
 * Multiplies each group's rate by gamma every stepSize steps (torch.optim.lr_scheduler.StepLR). step()
 * uses PyTorch's chainable form (lr ← lr·gamma), so its rates equal PyTorch's bit for bit; lrAt() is the
 * closed form, which can differ from them in the last bit.
 */
export class StepLR extends LRScheduler {
  /** Steps between decays. */
  readonly stepSize: number;
  /** Factor applied every stepSize steps. */
  readonly gamma: number;

  constructor(optimizer: AnyOptimizer, options: StepLROptions) {
    const resolved = resolveStepLR(options);
    super('StepLR', optimizer);
    this.stepSize = resolved.stepSize;
    this.gamma = resolved.gamma;
    this.step();
  }

  protected override computeLrs(step: number): number[] {
    const groups = this.optimizer.paramGroups;
    if (step === 0 || step % this.stepSize !== 0) return groups.map((g) => g.lr);
    return groups.map((g) => g.lr * this.gamma);
  }

  /** baseLr · gamma^⌊step / stepSize⌋ for each group. */
  override lrAt(step: number): number[] {
    return this.baseLrs.map((baseLr) => stepLrAt(step, { baseLr, stepSize: this.stepSize, gamma: this.gamma }));
  }
}

function resolveStepLR(options: StepLROptions): Required<StepLROptions> {
  const { stepSize, gamma = 0.1 } = options;
  if (!Number.isInteger(stepSize) || stepSize < 1) throw new RangeError(`StepLR: stepSize must be a positive integer, got ${stepSize}`);
  checkFiniteNonNegative('StepLR', 'gamma', gamma);
  return { stepSize, gamma };
}

// ---- cosine annealing with linear warmup ------------------------------------------------------------------------

/** Settings of {@link CosineAnnealingLR} and {@link cosineLrAt}. */
export interface CosineAnnealingOptions {
  /** Step at which the rate reaches minLr (and stays). */
  totalSteps: number;
  /** Steps of linear warmup from 0 to the base rate. Default 0. */
  warmupSteps?: number;
  /** Final rate (absolute, the same for every group; PyTorch's eta_min). Default 0. */
  minLr?: number;
}

/**
 * Linear warmup then half a cosine (Loshchilov & Hutter 2017, SGDR without restarts):
 *   step < W:       baseLr · step / W                     (0 at step 0, as in Hugging Face's schedule)
 *   W ≤ step ≤ T:   minLr + (baseLr − minLr)·(1 + cos(π·(step − W)/(T − W)))/2
 *   step > T:       minLr
 * With W = 0 and step ≤ T this is PyTorch's CosineAnnealingLR(T_max = T, eta_min = minLr) in closed form.
 */
export function cosineLrAt(step: number, options: CosineAnnealingOptions & { baseLr: number }): number {
  checkStep('cosineLrAt', step);
  const { totalSteps, warmupSteps, minLr } = resolveCosine(options);
  const { baseLr } = options;
  if (step < warmupSteps) return baseLr * step / warmupSteps;
  if (step >= totalSteps) return minLr;
  // The same operations in the same order as PyTorch's _get_closed_form_lr.
  return minLr + (baseLr - minLr) * (1 + Math.cos(Math.PI * (step - warmupSteps) / (totalSteps - warmupSteps))) / 2;
}

/**
 * Cosine annealing with linear warmup (see cosineLrAt), applied to each group's rate at construction.
 * PyTorch needs SequentialLR(LinearLR, CosineAnnealingLR) for this; the closed form used here avoids the
 * drift of CosineAnnealingLR's recursive form (which matches it to about 1e-15 relative).
 */
export class CosineAnnealingLR extends LRScheduler {
  /** Step at which the rate reaches minLr. */
  readonly totalSteps: number;
  /** Steps of linear warmup from 0. */
  readonly warmupSteps: number;
  /** Final rate (the same for every group). */
  readonly minLr: number;

  constructor(optimizer: AnyOptimizer, options: CosineAnnealingOptions) {
    const resolved = resolveCosine(options);
    super('CosineAnnealingLR', optimizer);
    this.totalSteps = resolved.totalSteps;
    this.warmupSteps = resolved.warmupSteps;
    this.minLr = resolved.minLr;
    this.step();
  }

  protected override computeLrs(step: number): number[] { return this.lrAt(step); }

  /** Each group's rate at `step` by the closed form of {@link cosineLrAt}. */
  override lrAt(step: number): number[] {
    return this.baseLrs.map((baseLr) => cosineLrAt(step, {
      baseLr, totalSteps: this.totalSteps, warmupSteps: this.warmupSteps, minLr: this.minLr,
    }));
  }
}

function resolveCosine(options: CosineAnnealingOptions): Required<CosineAnnealingOptions> {
  const { totalSteps, warmupSteps = 0, minLr = 0 } = options;
  if (!Number.isInteger(totalSteps) || totalSteps < 1) {
    throw new RangeError(`CosineAnnealingLR: totalSteps must be a positive integer, got ${totalSteps}`);
  }
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0 || warmupSteps >= totalSteps) {
    throw new RangeError(`CosineAnnealingLR: warmupSteps must be an integer in [0, totalSteps), got ${warmupSteps}`);
  }
  checkFiniteNonNegative('CosineAnnealingLR', 'minLr', minLr);
  return { totalSteps, warmupSteps, minLr };
}

// ---- OneCycleLR --------------------------------------------------------------------------------------------------

/** Settings of {@link OneCycleLR} (torch.optim.lr_scheduler.OneCycleLR's, camelCase, same defaults). */
export interface OneCycleOptions {
  /** Peak rate, one for all groups or one per group. */
  maxLr: number | number[];
  /** Steps in the cycle; step() may be called this many times after construction. */
  totalSteps: number;
  /** Fraction of the cycle spent rising to maxLr. Default 0.3. */
  pctStart?: number;
  /** Shape of each phase. Default 'cos'. */
  anneal?: 'cos' | 'linear';
  /**
   * Cycle the momentum inversely to the rate, between maxMomentum and baseMomentum: SGD's momentum, or
   * β1 of Adam/AdamW. Default true.
   */
  cycleMomentum?: boolean;
  /** Momentum at the peak rate, one or per group. Default 0.85. */
  baseMomentum?: number | number[];
  /** Momentum at the start and end, one or per group. Default 0.95. */
  maxMomentum?: number | number[];
  /** The rate starts at maxLr / divFactor. Default 25. */
  divFactor?: number;
  /** The rate ends at maxLr / divFactor / finalDivFactor. Default 1e4. */
  finalDivFactor?: number;
  /** fast.ai's three phases (up, back down to the start rate, then down to the end rate) instead of two. Default false. */
  threePhase?: boolean;
}

/** Options of the pure forms: one group, so single numbers. */
export type OneCycleSingleOptions = Omit<OneCycleOptions, 'maxLr' | 'baseMomentum' | 'maxMomentum' | 'cycleMomentum'> &
  { maxLr: number; baseMomentum?: number; maxMomentum?: number };

/** The 1cycle rate at `step` (Smith & Topin 2018; torch.optim.lr_scheduler.OneCycleLR). */
export function oneCycleLrAt(step: number, options: OneCycleSingleOptions): number {
  const o = resolveOneCycle(options);
  const levels = oneCycleLevels(options.maxLr, o.divFactor, o.finalDivFactor);
  return oneCycleValue(step, o, (phase, pct) => o.annealFn(levels[phase.startLr], levels[phase.endLr], pct));
}

/** The 1cycle momentum (or β1) at `step`. */
export function oneCycleMomentumAt(step: number, options: OneCycleSingleOptions): number {
  const o = resolveOneCycle(options);
  const momenta = { base: options.baseMomentum ?? 0.85, max: options.maxMomentum ?? 0.95 };
  checkMomentum(momenta.base, 'baseMomentum');
  checkMomentum(momenta.max, 'maxMomentum');
  return oneCycleValue(step, o, (phase, pct) => o.annealFn(momenta[phase.startMomentum], momenta[phase.endMomentum], pct));
}

/**
 * The 1cycle policy (torch.optim.lr_scheduler.OneCycleLR): the rate rises from maxLr/divFactor to maxLr over
 * pctStart of the cycle, then falls to maxLr/(divFactor·finalDivFactor); with cycleMomentum, the momentum
 * (SGD) or β1 (Adam, AdamW) moves the opposite way. The groups' own lr at construction is ignored.
 * Formulas are PyTorch's, in the same order, so rates match it to the last bit of Math.cos.
 */
export class OneCycleLR extends LRScheduler {
  /** Steps in the cycle. */
  readonly totalSteps: number;
  private readonly resolved: ResolvedOneCycle;
  private readonly levels: OneCycleLevels[];
  private readonly momenta: { base: number; max: number }[] | null;
  private readonly useBeta1: boolean;

  constructor(optimizer: AnyOptimizer, options: OneCycleOptions) {
    const resolved = resolveOneCycle(options);
    const groupCount = optimizer.paramGroups.length;
    const maxLrs = perGroup('maxLr', options.maxLr, groupCount);
    maxLrs.forEach((lr) => checkFiniteNonNegative('OneCycleLR', 'maxLr', lr));
    const levels = maxLrs.map((maxLr) => oneCycleLevels(maxLr, resolved.divFactor, resolved.finalDivFactor));
    super('OneCycleLR', optimizer, levels.map((l) => l.initial));
    this.totalSteps = resolved.totalSteps;
    this.resolved = resolved;
    this.levels = levels;
    this.useBeta1 = 'betas' in optimizer.defaults;
    if (options.cycleMomentum ?? true) {
      if (!this.useBeta1 && !('momentum' in optimizer.defaults)) {
        throw new Error(`OneCycleLR: cycleMomentum needs an optimiser with momentum or betas (${optimizer.name} has neither); pass cycleMomentum: false`);
      }
      const base = perGroup('baseMomentum', options.baseMomentum ?? 0.85, groupCount);
      const max = perGroup('maxMomentum', options.maxMomentum ?? 0.95, groupCount);
      base.forEach((m) => checkMomentum(m, 'baseMomentum'));
      max.forEach((m) => checkMomentum(m, 'maxMomentum'));
      this.momenta = base.map((b, i) => ({ base: b, max: max[i]! }));
    } else {
      this.momenta = null;
    }
    this.step();
  }

  protected override computeLrs(step: number): number[] {
    if (step > this.totalSteps) {
      throw new RangeError(`OneCycleLR: step() called ${step} times, more than totalSteps (${this.totalSteps})`);
    }
    const lrs = this.lrAt(step);
    if (this.momenta) {
      const momenta = this.momentumAt(step);
      this.optimizer.paramGroups.forEach((group, i) => {
        const g = group as unknown as { betas: [number, number]; momentum: number };
        if (this.useBeta1) g.betas = [momenta[i]!, g.betas[1]];
        else g.momentum = momenta[i]!;
      });
    }
    return lrs;
  }

  /** Each group's 1cycle rate at `step` (see {@link oneCycleLrAt}). */
  override lrAt(step: number): number[] {
    const o = this.resolved;
    return this.levels.map((levels) => oneCycleValue(step, o, (phase, pct) => o.annealFn(levels[phase.startLr], levels[phase.endLr], pct)));
  }

  /** The momentum (or β1) of each group at `step`; empty without cycleMomentum. */
  momentumAt(step: number): number[] {
    const o = this.resolved;
    return (this.momenta ?? []).map((m) => oneCycleValue(step, o, (phase, pct) => o.annealFn(m[phase.startMomentum], m[phase.endMomentum], pct)));
  }
}

interface OneCycleLevels { initial: number; max: number; min: number }
interface OneCyclePhase {
  endStep: number;
  startLr: keyof OneCycleLevels;
  endLr: keyof OneCycleLevels;
  startMomentum: 'base' | 'max';
  endMomentum: 'base' | 'max';
}
interface ResolvedOneCycle {
  totalSteps: number;
  divFactor: number;
  finalDivFactor: number;
  phases: OneCyclePhase[];
  annealFn: (start: number, end: number, pct: number) => number;
}

function oneCycleLevels(maxLr: number, divFactor: number, finalDivFactor: number): OneCycleLevels {
  checkFiniteNonNegative('OneCycleLR', 'maxLr', maxLr);
  const initial = maxLr / divFactor;
  return { initial, max: maxLr, min: initial / finalDivFactor };
}

function resolveOneCycle(options: Omit<OneCycleOptions, 'maxLr'>): ResolvedOneCycle {
  const { totalSteps, pctStart = 0.3, anneal = 'cos', divFactor = 25, finalDivFactor = 1e4, threePhase = false } = options;
  if (!Number.isInteger(totalSteps) || totalSteps < 1) throw new RangeError(`OneCycleLR: totalSteps must be a positive integer, got ${totalSteps}`);
  if (typeof pctStart !== 'number' || !(pctStart >= 0 && pctStart <= 1)) throw new RangeError(`OneCycleLR: pctStart must be in [0, 1], got ${pctStart}`);
  if (anneal !== 'cos' && anneal !== 'linear') throw new RangeError(`OneCycleLR: anneal must be 'cos' or 'linear', got '${anneal}'`);
  for (const [name, v] of [['divFactor', divFactor], ['finalDivFactor', finalDivFactor]] as const) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new RangeError(`OneCycleLR: ${name} must be a finite number > 0, got ${v}`);
  }
  // PyTorch's phase table: each phase ends at a (fractional) step and anneals between two named levels.
  const phases: OneCyclePhase[] = threePhase
    ? [
      { endStep: pctStart * totalSteps - 1, startLr: 'initial', endLr: 'max', startMomentum: 'max', endMomentum: 'base' },
      { endStep: 2 * pctStart * totalSteps - 2, startLr: 'max', endLr: 'initial', startMomentum: 'base', endMomentum: 'max' },
      { endStep: totalSteps - 1, startLr: 'initial', endLr: 'min', startMomentum: 'max', endMomentum: 'max' },
    ]
    : [
      { endStep: pctStart * totalSteps - 1, startLr: 'initial', endLr: 'max', startMomentum: 'max', endMomentum: 'base' },
      { endStep: totalSteps - 1, startLr: 'max', endLr: 'min', startMomentum: 'base', endMomentum: 'max' },
    ];
  const annealFn = anneal === 'cos'
    ? (start: number, end: number, pct: number) => end + (start - end) / 2.0 * (Math.cos(Math.PI * pct) + 1)
    : (start: number, end: number, pct: number) => (end - start) * pct + start;
  return { totalSteps, divFactor, finalDivFactor, phases, annealFn };
}

function oneCycleValue(step: number, o: ResolvedOneCycle, value: (phase: OneCyclePhase, pct: number) => number): number {
  checkStep('OneCycleLR', step);
  let startStep = 0;
  for (let i = 0; i < o.phases.length; i++) {
    const phase = o.phases[i]!;
    if (step <= phase.endStep || i === o.phases.length - 1) {
      if (phase.endStep === startStep) {
        throw new RangeError(`OneCycleLR: phase ${i} is empty at step ${step} (PyTorch divides by zero here); change pctStart or totalSteps`);
      }
      return value(phase, (step - startStep) / (phase.endStep - startStep));
    }
    startStep = phase.endStep;
  }
  throw new Error('unreachable: the last phase always matches');
}

function perGroup(name: string, value: number | number[], groupCount: number): number[] {
  if (!Array.isArray(value)) return new Array<number>(groupCount).fill(value);
  if (value.length !== groupCount) throw new RangeError(`OneCycleLR: expected ${groupCount} values for ${name}, got ${value.length}`);
  return [...value];
}

function checkMomentum(m: number, name: string): void {
  if (typeof m !== 'number' || !(m >= 0 && m < 1)) throw new RangeError(`OneCycleLR: ${name} must be in [0, 1), got ${m}`);
}

function checkFiniteNonNegative(schedule: string, name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`${schedule}: ${name} must be a finite number >= 0, got ${v}`);
}

function checkStep(where: string, step: number): void {
  if (!Number.isInteger(step) || step < 0) throw new RangeError(`${where}: step must be a non-negative integer, got ${step}`);
}
