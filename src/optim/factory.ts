// The optimiser and the learning-rate schedule as plain JSON specs (what a training recipe and a checkpoint's
// fingerprint hold) and the one factory for each.
import { Adam, AdamW } from './adam.js';
import type { BaseOptions, Optimizer, ParamState } from './optimizer.js';
import { CosineAnnealingLR, OneCycleLR, StepLR, type LRSchedule } from './schedules.js';
import { SGD } from './sgd.js';
import type { Tensor } from '../tensor/index.js';

/** Any optimiser, as the factory returns it. */
export type AnyOptimizer = Optimizer<BaseOptions, ParamState>;

/** The optimiser; options left out take the optimiser class's defaults (those of torch.optim). */
export interface OptimizerSpec {
  /** Which optimiser: {@link SGD}, {@link Adam} or {@link AdamW}. */
  kind: 'sgd' | 'adam' | 'adamw';
  /** Learning rate (the peak rate for 'onecycle'). Required for SGD; Adam/AdamW default 1e-3. */
  lr?: number;
  /** SGD only. Default 0. */
  momentum?: number;
  /** SGD only. Default false. */
  nesterov?: boolean;
  /** SGD and Adam: L2 penalty (default 0); AdamW: decoupled decay (default 1e-2). */
  weightDecay?: number;
  /** Adam/AdamW only. Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Adam/AdamW only. Default 1e-8. */
  eps?: number;
}

/** The learning-rate schedule, stepped after every batch. Defaults are those of src/optim/schedules.ts. */
export interface ScheduleSpec {
  /**
   * Which schedule: a constant rate, {@link CosineAnnealingLR} (with warmup), {@link OneCycleLR} or {@link StepLR}.
   */
  kind: 'constant' | 'cosine' | 'onecycle' | 'step';
  /** cosine: steps of linear warmup from 0. Default 0. */
  warmupSteps?: number;
  /** cosine: final rate. Default 0. */
  minLr?: number;
  /** onecycle: share of the cycle spent rising. Default 0.3. */
  pctStart?: number;
  /** onecycle: start rate = lr / divFactor. Default 25. */
  divFactor?: number;
  /** onecycle: end rate = lr / divFactor / finalDivFactor. Default 1e4. */
  finalDivFactor?: number;
  /** onecycle: cycle SGD's momentum or Adam's β1 against the rate. Default true. */
  cycleMomentum?: boolean;
  /** step: optimiser steps between decays (give this or stepEpochs). */
  stepSize?: number;
  /** step: epochs between decays. */
  stepEpochs?: number;
  /** step: decay factor. Default 0.1. */
  gamma?: number;
}

/** The optimiser a spec describes, over `parameters`; options left out take the class's (torch.optim's) defaults. */
export function makeOptimizer(parameters: Tensor[], spec: OptimizerSpec): AnyOptimizer {
  const { kind, lr, momentum, nesterov, weightDecay, betas, eps } = spec;
  if (kind === 'sgd') {
    if (betas !== undefined || eps !== undefined) throw new RangeError('optimizer: betas and eps are Adam options, not SGD\'s');
    if (lr === undefined) throw new RangeError('optimizer: sgd needs lr');
    return new SGD(parameters, { lr, momentum, nesterov, weightDecay }) as unknown as AnyOptimizer;
  }
  if (kind === 'adam' || kind === 'adamw') {
    if (momentum !== undefined || nesterov !== undefined) throw new RangeError(`optimizer: momentum and nesterov are SGD options; ${kind} takes betas`);
    const Class = kind === 'adam' ? Adam : AdamW;
    return new Class(parameters, { lr, betas, eps, weightDecay }) as unknown as AnyOptimizer;
  }
  throw new RangeError(`optimizer.kind must be 'sgd', 'adam' or 'adamw', got '${String(kind)}'`);
}

/** The schedule over `totalSteps` optimiser steps (`stepsPerEpoch` converts stepEpochs); null for a constant rate. */
export function makeSchedule(optimizer: AnyOptimizer, spec: ScheduleSpec | undefined, totalSteps: number, stepsPerEpoch: number): LRSchedule | null {
  const s = spec ?? { kind: 'constant' };
  switch (s.kind) {
    case 'constant':
      return null;
    case 'cosine':
      return new CosineAnnealingLR(optimizer, { totalSteps, warmupSteps: s.warmupSteps, minLr: s.minLr });
    case 'onecycle':
      return new OneCycleLR(optimizer, {
        maxLr: optimizer.paramGroups.map((g) => g.lr), totalSteps, pctStart: s.pctStart, divFactor: s.divFactor,
        finalDivFactor: s.finalDivFactor, cycleMomentum: s.cycleMomentum,
      });
    case 'step': {
      if ((s.stepSize === undefined) === (s.stepEpochs === undefined)) throw new RangeError("schedule 'step' needs exactly one of stepSize (steps) and stepEpochs");
      const stepSize = s.stepSize ?? s.stepEpochs! * stepsPerEpoch;
      return new StepLR(optimizer, { stepSize, gamma: s.gamma });
    }
    default:
      throw new RangeError(`schedule.kind must be 'constant', 'cosine', 'onecycle' or 'step', got '${String((s as ScheduleSpec).kind)}'`);
  }
}
