// The aggregators an ensemble's members can be read through besides CrossMax (crossmax.ts): the baselines the
// paper compares it with (mean of logits or probabilities, median, one member alone). An aggregator turns the
// logits of an ensemble's members, [N, members, classes], into one set of logits [N, classes].
import { tidy, type Tensor } from '../tensor/index.js';

/** A rule that turns an ensemble's member logits [N, members, classes] into one set of logits [N, classes]. */
export interface Aggregator {
  /** Short name for reports, e.g. 'crossmax(k=3)'. */
  readonly name: string;
  /** memberLogits [N, members, classes] -> logits [N, classes]; differentiable where the rule is. */
  aggregate(memberLogits: Tensor): Tensor;
}

/** Checks [N, members, classes] and returns [N, members, classes]. */
export function checkMemberLogits(memberLogits: Tensor, aggregator: string): [number, number, number] {
  const shape = memberLogits.shape;
  if (shape.length !== 3) {
    throw new Error(`${aggregator}: expected member logits [N, members, classes], got a ${shape.length}-d tensor [${shape.join(', ')}]`);
  }
  const [n, m, c] = shape as [number, number, number];
  if (m < 1 || c < 1) throw new Error(`${aggregator}: expected at least one member and one class, got [${shape.join(', ')}]`);
  return [n, m, c];
}

/** Plain average of the members' logits. */
export class MeanLogits implements Aggregator {
  readonly name = 'mean-logits';
  aggregate(memberLogits: Tensor): Tensor {
    checkMemberLogits(memberLogits, this.name);
    return memberLogits.mean({ dim: 1 });
  }
}

/**
 * Average of the members' softmax probabilities, returned as its logarithm: log(mean_m softmax(z_m)). Its
 * argmax is the averaged prediction, and cross-entropy on it is the NLL of the averaged probabilities.
 */
export class MeanProbabilities implements Aggregator {
  readonly name = 'mean-probabilities';
  aggregate(memberLogits: Tensor): Tensor {
    const [, m] = checkMemberLogits(memberLogits, this.name);
    // logsumexp over members of log-probabilities, minus log m: stable where probabilities underflow.
    return tidy(() => memberLogits.logSoftmax(2).logsumexp({ dim: 1 }).sub(Math.log(m)));
  }
}

/** Median of the raw member logits per class (torch.median: the lower middle value for an even count). */
export class Median implements Aggregator {
  readonly name = 'median';
  aggregate(memberLogits: Tensor): Tensor {
    checkMemberLogits(memberLogits, this.name);
    return tidy(() => memberLogits.median({ dim: 1 }).values);
  }
}

/** Settings of {@link Single}. */
export interface SingleOptions {
  /** Which member; negative counts from the end. Default -1: the last member (the network's final layer). */
  memberIndex?: number;
}

/** One member alone, e.g. the final layer's head: the non-ensembled baseline. */
export class Single implements Aggregator {
  readonly name: string;
  /** The member read (negative counts from the end). */
  readonly memberIndex: number;
  constructor(options: SingleOptions = {}) {
    this.memberIndex = options.memberIndex ?? -1;
    if (!Number.isInteger(this.memberIndex)) throw new RangeError(`memberIndex must be an integer, got ${this.memberIndex}`);
    this.name = `single(${this.memberIndex})`;
  }
  aggregate(memberLogits: Tensor): Tensor {
    const [, m] = checkMemberLogits(memberLogits, this.name);
    const i = this.memberIndex < 0 ? this.memberIndex + m : this.memberIndex;
    if (i < 0 || i >= m) throw new Error(`${this.name}: member ${this.memberIndex} out of range for ${m} members`);
    return tidy(() => memberLogits.select(1, i).contiguous());
  }
}
