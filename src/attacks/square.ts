// Square Attack (score-based, no gradients): M. Andriushchenko, F. Croce, N. Flammarion, M. Hein, "Square
// Attack: a query-efficient black-box adversarial attack via random search", ECCV 2020,
// https://arxiv.org/abs/1912.00049; Linf version as in the reference autoattack/square.py (SquareAttack):
//   - start: vertical stripes, x + eps·(±1) per image, channel and column, clipped to [0, 1];
//   - each query: one window of side s = min(max(round(√(p·H·W)), 1), H, W) at a random position, the same for
//     every image of the batch, set to x_best + 2·eps·(±1 per channel), projected onto the ball and [0, 1] (the
//     cap at min(H, W) is the reference's since fra31/auto-attack issue #95: on an image far from square the
//     uncapped window does not fit); the window's corner is drawn from [0, H − s) (the reference never places a smaller window on the last row or
//     column, and neither do we);
//   - accept when the loss decreases or the image becomes misclassified; images stop once misclassified;
//   - p follows the reference's piecewise-constant schedule from p_init (halving at 10, 50, 200, 500, 1000,
//     2000, 4000, 6000, 8000 queries; `rescaleSchedule` maps the query index onto 10 000 first);
//   - defaults: 5000 queries, p_init 0.8, 1 restart, margin loss, rescaleSchedule true (the reference class's
//     default; AutoAttack's suites turn it off).
import { Tensor, type Device, tensor, tidy, where } from '../tensor/index.js';
import type { Classifier } from '../nn/classifier.js';
import { Attack, type AttackOptions, type AttackRun, type SingleRunInput, type SingleRunResult, checkPositiveInteger, iterate, replaceRows } from './attack.js';
import { perImage } from './threat-model.js';
import { crossEntropyLoss, marginLoss } from './losses.js';

/** Square's options, the reference SquareAttack's defaults. */
export interface SquareOptions extends AttackOptions {
  /** Queries per restart (the reference's n_queries). Default 5000. */
  queries?: number;
  /** Initial fraction of pixels a window covers. Default 0.8. */
  pInit?: number;
  /** Restarts, each on the images still robust. Default 1. */
  restarts?: number;
  /** Objective to descend: the margin z_y − max_{i≠y} z_i, or −cross-entropy. Default 'margin'. */
  loss?: 'margin' | 'ce';
  /** Stretch the p schedule (defined for 10 000 queries) over `queries`. Default true. */
  rescaleSchedule?: boolean;
}

/** The reference's schedule of p, the fraction of pixels a window covers, at query `iteration` (0-based). */
export function squareSchedule(iteration: number, options: { pInit: number; queries: number; rescale: boolean }): number {
  const it = options.rescale ? Math.trunc(iteration / options.queries * 10000) : iteration;
  const bounds: [number, number][] = [[10, 1], [50, 2], [200, 4], [500, 8], [1000, 16], [2000, 32], [4000, 64], [6000, 128], [8000, 256]];
  if (it <= bounds[0]![0]) return options.pInit;
  for (const [upper, divisor] of bounds.slice(1)) if (it <= upper) return options.pInit / divisor;
  return options.pInit / 512;
}

/**
 * The side of the query's window at fraction `p` on an `height`×`width` image: √(p·H·W) rounded as Python does,
 * at least 1, at most min(H, W) (the reference's cap: a window never leaves the image).
 */
export function squareWindowSide(p: number, height: number, width: number): number {
  return Math.min(Math.max(roundHalfEven(Math.sqrt(p * height * width)), 1), height, width);
}

/** Python's round(): halves go to the even neighbour (the window side must match the reference's). */
function roundHalfEven(v: number): number {
  const floor = Math.floor(v);
  const rest = v - floor;
  if (rest !== 0.5) return Math.round(v);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Square Attack, Linf (see the file header): construct with (model, options), call run(images, labels). */
export class Square extends Attack {
  readonly name = 'square';
  /** Queries per restart. */
  readonly queries: number;
  /** Initial fraction of pixels a window covers. */
  readonly pInit: number;
  /** Restarts, each on the images still robust. */
  readonly restarts: number;
  /** The objective descended. */
  readonly loss: 'margin' | 'ce';
  /** Whether the p schedule is stretched over `queries`. */
  readonly rescaleSchedule: boolean;

  constructor(model: Classifier, options: SquareOptions = {}) {
    super(model, options, ['Linf']);
    this.queries = checkPositiveInteger('queries', options.queries ?? 5000);
    this.pInit = options.pInit ?? 0.8;
    if (!(this.pInit > 0 && this.pInit <= 1)) throw new RangeError(`pInit must be in (0, 1], got ${this.pInit}`);
    this.restarts = checkPositiveInteger('restarts', options.restarts ?? 1);
    this.loss = options.loss ?? 'margin';
    this.rescaleSchedule = options.rescaleSchedule ?? true;
  }

  protected perturb(x: Tensor, y: Tensor, run: AttackRun): Tensor {
    const plan = { targeted: false, nTargetClasses: 0, restarts: this.restarts, stepsPerRun: this.queries };
    return this.attackRobust(x, y, run, plan, (input) => this.singleRun(input));
  }

  private marginAndLoss(x: Tensor, y: Tensor): { margin: Tensor; loss: Tensor } {
    const logits = this.model.forward(x);
    const margin = marginLoss(logits, y);
    return { margin, loss: this.loss === 'margin' ? margin : crossEntropyLoss(logits, y).neg() };
  }

  private randomSigns(shape: number[], run: AttackRun, like: Tensor): Tensor {
    return run.uniform(shape, like).mul(2).sub(1).sign();
  }

  /** ⌊low + (high − low)·u⌋ with u uniform on [0, 1): the reference's random_int, which never returns `high`. */
  private randomInt(low: number, high: number, run: AttackRun): number {
    return Math.min(Math.floor(low + (high - low) * run.uniformNumber()), Math.max(high - 1, low));
  }

  private singleRun({ x, y, run }: SingleRunInput): SingleRunResult {
    const [m, c, h, w] = x.shape as [number, number, number, number];
    const device = x.device as Device;
    const queries = new Array<number>(m).fill(1);
    let s = tidy(() => {
      const xBest = x.add(this.randomSigns([m, c, 1, w], run, x).mul(this.eps)).clamp(0, 1);
      const { margin, loss } = this.marginAndLoss(xBest, y);
      return { xBest, marginMin: margin, lossMin: loss };
    });
    for (let i = 0; i < this.queries; i++) {
      const active = tidy(() => s.marginMin.gt(0).toArray()).flatMap((a, j) => (a ? [j] : []));
      if (active.length === 0) break;
      const p = squareSchedule(i, { pInit: this.pInit, queries: this.queries, rescale: this.rescaleSchedule });
      const side = squareWindowSide(p, h, w);
      const top = this.randomInt(0, h - side, run);
      const left = this.randomInt(0, w - side, run);
      s = iterate(s, () => {
        const window = new Float32Array(h * w);
        for (let r = top; r < top + side; r++) window.fill(1, r * w + left, r * w + left + side);
        const signs = this.randomSigns([c, 1, 1], run, x);
        const delta = tensor(window, { shape: [1, h, w], device }).to(x.dtype).mul(signs.mul(2 * this.eps));
        const index = tensor(active, { dtype: 'int64', device });
        const xCurrent = x.indexSelect(0, index);
        const bestCurrent = s.xBest.indexSelect(0, index);
        const marginCurrent = s.marginMin.indexSelect(0, index);
        const lossCurrent = s.lossMin.indexSelect(0, index);
        const candidate = bestCurrent.add(delta).maximum(xCurrent.sub(this.eps)).minimum(xCurrent.add(this.eps)).clamp(0, 1);
        const { margin, loss } = this.marginAndLoss(candidate, y.indexSelect(0, index));
        const lower = loss.lt(lossCurrent);
        const accept = lower.logicalOr(margin.le(0));
        const next = {
          xBest: replaceRows(s.xBest, index, where(perImage(accept, x.ndim), candidate, bestCurrent)),
          marginMin: replaceRows(s.marginMin, index, where(accept, margin, marginCurrent)),
          lossMin: replaceRows(s.lossMin, index, where(lower, loss, lossCurrent)),
        };
        run.tick(next.marginMin, next.marginMin.le(0));
        return next;
      });
      for (const j of active) queries[j]!++;
    }
    run.addQueries(queries);
    const fooled = this.model.forward(s.xBest).argmax({ dim: 1 }).ne(y);
    return { fooled, adversarial: s.xBest, best: s.xBest, bestLoss: s.lossMin.neg() };
  }
}
