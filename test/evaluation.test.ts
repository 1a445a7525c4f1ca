// The evaluation protocol: on a deterministic model its three definitions agree with each other and with
// AutoAttack's runner; on a model whose randomness flips predictions the strict all-R definition is the lowest;
// the worst case is the per-image minimum over attacks; every adversarial image lies in the ball and in [0, 1];
// the masking checks flag a model with zero gradient and pass a linear one; the report is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Generator, liveTensorCount, noGrad, rand, tidy, type Tensor } from '../src/tensor/index.js';
import { tinySelfEnsemble } from './helpers/self-ensemble.js';
import { Linear, NoisyLinear } from './helpers/linear.js';
import type { Classifier } from '../src/nn/classifier.js';
import { perImageNorm, type AttackEntry } from '../src/attacks/index.js';
import {
  AutoAttack, adaptiveSuite, evaluateRobustness, runMaskingChecks, type AccuracyByDefinition,
  type RobustnessEvaluation,
} from '../src/robustness/index.js';
import { writeRobustReport } from '../src/report/index.js';

/** The linear model's predictions with zero gradient (logits rounded to 1e-3). */
class Masked implements Classifier {
  constructor(readonly smooth: Classifier) {}
  forward(x: Tensor): Tensor {
    return tidy(() => this.smooth.forward(x).mul(1000).round().div(1000));
  }
}

function problem(model: Classifier, n: number, seed: number): { images: Tensor; labels: Tensor } {
  const images = rand([n, 3, 4, 4], { generator: new Generator(seed) });
  const labels = noGrad(() => tidy(() => model.forward(images).argmax({ dim: 1 })));
  return { images, labels };
}

const DEFINITIONS = ['single-evaluation', 'mean-over-R', 'all-R'] as const;

function assertAllInBall(evaluation: RobustnessEvaluation, images: Tensor, eps: number): void {
  tidy(() => {
    for (const [name, adv] of [...evaluation.adversarial, ['worst', evaluation.worstAdversarial] as const]) {
      assert.deepEqual(adv.shape, images.shape, name);
      assert.ok(adv.min().item() >= 0 && adv.max().item() <= 1, `${name}: outside [0, 1]`);
      const size = perImageNorm(adv.double().sub(images.double()), 'Linf').max().item();
      assert.ok(size <= eps + 1e-6, `${name}: perturbation ${size} > eps ${eps}`);
    }
  });
}

function assertNonIncreasing(values: AccuracyByDefinition[], what: string): void {
  for (const d of DEFINITIONS) {
    for (let i = 1; i < values.length; i++) assert.ok(values[i]![d] <= values[i - 1]![d] + 1e-12, `${what} ${d}: ${values.map((v) => v[d])}`);
  }
}

const EPS = 0.03;
const pgd = (name: string, seed = 0): AttackEntry => ({ name, attack: 'pgd', options: { steps: 8, seed } });
const fgsm: AttackEntry = { name: 'fgsm', attack: 'fgsm', options: {} };

test('a model in training mode is measured in eval mode: BatchNorm statistics untouched, modes given back', () => {
  const model = tinySelfEnsemble();
  model.train();
  const images = rand([3, 3, 16, 16], { generator: new Generator(21) });
  const labels = noGrad(() => tidy(() => model.forward(images).argmax({ dim: 1 })));
  const stats = () => tidy(() => model.stateDict().get('backbone.block1.layer.0.bn1.running_var')!.clone());
  const before = stats();
  // Batches of one image: a training-mode BatchNorm would write 0/0 into its running variance.
  const evaluation = evaluateRobustness(model, images, labels, { attacks: [{ name: 'pgd', attack: 'pgd', options: { steps: 2 } }], eps: EPS, reEvaluations: 2, batchSize: 1, masking: false });
  const after = stats();
  try {
    assert.equal(tidy(() => after.sub(before).abs().max().item()), 0, 'running statistics unchanged');
    assert.ok(model.modules().every((m) => m.training), 'training mode given back');
    assert.ok(!tidy(() => model.stateDict().get('backbone.block1.layer.0.bn1.running_var')!.isnan().any().item()));
  } finally {
    for (const t of [before, after, images, labels, evaluation.worstAdversarial, ...evaluation.adversarial.values()]) t.dispose();
    model.dispose();
  }
});

test('deterministic model: the three definitions agree, and agree with the AutoAttack runner', () => {
  const before = liveTensorCount();
  tidy(() => {
    const model = new Linear(1);
    const { images, labels } = problem(model, 24, 2);
    const attacks = [fgsm, pgd('pgd')];
    const evaluation = evaluateRobustness(model, images, labels, { attacks, eps: EPS, reEvaluations: 3, batchSize: 10, masking: false });
    const { results } = evaluation;
    const reference = new AutoAttack(model, { version: 'custom', attacks: attacks as never, eps: EPS, batchSize: 10 }).run(images, labels);
    for (const a of [results.cleanAccuracy, results.worstCase, ...results.attacks.map((x) => x.robustAccuracyAfter)]) {
      assert.equal(a['all-R'], a['mean-over-R']);
      assert.equal(a['all-R'], a['single-evaluation']);
    }
    assert.equal(results.cleanAccuracy['all-R'], 1);
    assert.equal(results.worstCase['single-evaluation'], reference.robustAccuracy);
    assert.equal(results.attacks[0]!.robustAccuracyAfter['single-evaluation'], reference.robustAccuracyAfter.fgsm);
    assert.ok(results.worstCase['all-R'] > 0 && results.worstCase['all-R'] < 1, `not vacuous: ${results.worstCase['all-R']}`);
    assert.deepEqual(results.perImage.robust, reference.robust);
    assertNonIncreasing([results.cleanAccuracy, ...results.attacks.map((a) => a.robustAccuracyAfter)], 'after');
    assert.equal(results.headline.definition, 'all-R');
    assert.equal(results.headline.value, results.worstCase['all-R']);
    // The second attack ran only on the points the first left robust.
    assert.equal(results.attacks[1]!.attackedImages, Math.round(results.attacks[0]!.robustAccuracyAfter['all-R'] * 24));
    assert.equal(results.attacks[1]!.robustAccuracy, null);
    assertAllInBall(evaluation, images, EPS);
    JSON.parse(JSON.stringify(results));
  });
  assert.equal(liveTensorCount(), before, 'the returned tensors belong to the caller\'s scope; nothing else survives');
});

test('stochastic model: all-R ≤ mean-over-R, all-R ≤ single evaluation (AutoAttack-style), strictly where predictions flip', () => {
  tidy(() => {
    const model = new NoisyLinear(3, 0.6);
    const { images, labels } = problem(new Linear(3), 80, 4);
    const attacks = [fgsm, pgd('pgd')];
    const evaluation = evaluateRobustness(model, images, labels, { attacks, eps: EPS, reEvaluations: 10, batchSize: 32, masking: false, seed: 5 });
    const { results } = evaluation;
    const autoAttack = new AutoAttack(model, { version: 'custom', attacks: attacks as never, eps: EPS, batchSize: 32, seed: 5 }).run(images, labels);
    for (const [what, a] of [['clean', results.cleanAccuracy], ['worst', results.worstCase], ...results.attacks.map((x) => [x.name, x.robustAccuracyAfter] as const)] as const) {
      assert.ok(a['all-R'] <= a['mean-over-R'], `${what}: all-R ${a['all-R']} > mean ${a['mean-over-R']}`);
      assert.ok(a['all-R'] < a['mean-over-R'], `${what}: some predictions must flip (all-R ${a['all-R']}, mean ${a['mean-over-R']})`);
      assert.ok(a['all-R'] < a['single-evaluation'], `${what}: all-R ${a['all-R']} vs single ${a['single-evaluation']}`);
      // One evaluation and the mean of R evaluations estimate the same quantity (the single one with more noise).
      assert.ok(Math.abs(a['mean-over-R'] - a['single-evaluation']) <= 0.15, `${what}: mean ${a['mean-over-R']} vs single ${a['single-evaluation']}`);
    }
    assert.ok(results.worstCase['all-R'] < autoAttack.robustAccuracy, `all-R ${results.worstCase['all-R']} vs AutoAttack ${autoAttack.robustAccuracy}`);
    assertNonIncreasing([results.cleanAccuracy, ...results.attacks.map((a) => a.robustAccuracyAfter)], 'after');
    // Per image: the all-R flag is "every pass correct", the attacks' own final passes included, so it implies
    // robustness in every evaluation and under single-evaluation.
    results.perImage.robust.forEach((robust, i) => {
      const ownPasses = results.attacks.every((a) => a.success[i] !== true);
      assert.equal(robust, results.perImage.robustEvaluations[i] === 10 && results.perImage.robustSingleEvaluation[i] === true);
      assert.equal(results.perImage.robustSingleEvaluation[i], results.perImage.cleanPredicted[i] === results.perImage.labels[i] && ownPasses);
      assert.ok(results.perImage.robustEvaluations[i]! <= results.perImage.worstCorrect[i]!);
    });
    assertAllInBall(evaluation, images, EPS);
  });
});

test('the worst case is the per-image minimum over attacks, under every definition', () => {
  tidy(() => {
    const model = new NoisyLinear(6, 0.4);
    const { images, labels } = problem(new Linear(6), 40, 7);
    const attacks = [fgsm, pgd('pgd-a', 1), pgd('pgd-b', 2)];
    const evaluation = evaluateRobustness(model, images, labels, { attacks, eps: EPS, reEvaluations: 6, batchSize: 16, masking: false, independent: true });
    const { results } = evaluation;
    const R = 6;
    const counts = (i: number) => [results.perImage.cleanCorrect[i]!, ...results.attacks.map((a) => a.correctReEvaluations[i] ?? 0)];
    let allR = 0;
    let single = 0;
    results.perImage.labels.forEach((_, i) => {
      const minimum = Math.min(...counts(i));
      assert.equal(results.perImage.worstCorrect[i], minimum, `image ${i}`);
      const worst = results.perImage.worstAttack[i];
      if (worst === null) assert.equal(results.perImage.cleanCorrect[i], minimum);
      else assert.equal(results.attacks.find((a) => a.name === worst)!.correctReEvaluations[i], minimum);
      const robustSingle = results.perImage.cleanPredicted[i] === results.perImage.labels[i] && results.attacks.every((a) => a.success[i] === false);
      if (minimum === R && robustSingle) allR++;
      if (robustSingle) single++;
      // The worst adversarial image is that attack's.
      const source = worst === null ? images : evaluation.adversarial.get(worst)!;
      assert.equal(tidy(() => evaluation.worstAdversarial.select(0, i).sub(source.select(0, i)).abs().max().item()), 0);
    });
    assert.equal(results.worstCase['all-R'], allR / 40);
    assert.equal(results.worstCase['single-evaluation'], single / 40);
    assert.ok(results.worstCase['all-R'] < results.cleanAccuracy['all-R'], 'the attacks break something');
    // Every attack ran on every point (independent), so each has its own accuracy, never below the worst case.
    for (const a of results.attacks) {
      assert.ok(a.robustAccuracy !== null);
      const own = results.perImage.labels.filter((_, i) => results.perImage.cleanCorrect[i] === R && a.correctReEvaluations[i] === R && a.success[i] === false).length / 40;
      assert.equal(a.robustAccuracy!['all-R'], own, a.name);
      for (const d of DEFINITIONS) assert.ok(a.robustAccuracy![d] >= results.worstCase[d] - 1e-12, `${a.name} ${d}`);
    }
    assertAllInBall(evaluation, images, EPS);
  });
});

test('evaluateRobustness refuses an entry with a threat model of its own (it is the evaluation\'s, given once) and repeated attack names', () => {
  tidy(() => {
    const model = new Linear(1);
    const { images, labels } = problem(model, 4, 2);
    const ownEps = { name: 'pgd', attack: 'pgd', options: { eps: 0.05, steps: 2 } } as unknown as AttackEntry;
    assert.throws(() => evaluateRobustness(model, images, labels, { attacks: [ownEps], eps: EPS, masking: false }), /sets its own eps: the threat model is given once/);
    assert.throws(() => evaluateRobustness(model, images, labels, { attacks: [fgsm, { ...fgsm }], eps: EPS, masking: false }), /used twice/);
    assert.throws(() => evaluateRobustness(model, images, labels, { attacks: [], masking: false }), /at least one attack/);
    assert.throws(() => evaluateRobustness(model, images, labels, { attacks: [fgsm], eps: EPS, reEvaluations: 0, masking: false }), /reEvaluations/);
  });
});

// ---- masking checks ---------------------------------------------------------------------------------------------

const maskingSettings = {
  images: 12,
  eps: EPS,
  reEvaluations: 2,
  batchSize: 12,
  epsSweep: [EPS, 0.1, 0.3, 1],
  sweepAttacks: [{ name: 'pgd', attack: 'pgd', options: { steps: 10, randomStart: false } }] as AttackEntry[],
  mainAttack: { name: 'pgd', attack: 'pgd', options: { steps: 10, randomStart: false } } as AttackEntry,
  blackBoxAttack: { name: 'square', attack: 'square', options: { queries: 200 } } as AttackEntry,
};

test('masking checks pass a plain linear model and flag the same model with zero gradient', () => {
  tidy(() => {
    const smooth = new Linear(8);
    const { images, labels } = problem(smooth, 12, 9);
    const plain = runMaskingChecks(smooth, images, labels, maskingSettings);
    assert.deepEqual(plain.checks.map((c) => [c.name, c.passed]), [['eps-sweep', true], ['black-box-vs-white-box', true], ['budget', true]], JSON.stringify(plain.checks));
    const curve = plain.epsCurve.map((p) => p.robustAccuracy['mean-over-R']);
    assert.equal(plain.epsCurve.length, 4);
    assert.equal(curve[3], 0, 'eps = 1 breaks every image');
    assert.ok(curve[0]! > 0, `not vacuous at eps ${EPS}: ${curve}`);

    const masked = runMaskingChecks(new Masked(smooth), images, labels, maskingSettings);
    const byName = new Map(masked.checks.map((c) => [c.name, c]));
    assert.equal(byName.get('eps-sweep')!.passed, false);
    assert.match(byName.get('eps-sweep')!.details, /gradient masking.*pgd leaves 100\.0% at eps 1/);
    assert.equal(byName.get('black-box-vs-white-box')!.passed, false, 'Square beats PGD on the masked model');
    assert.deepEqual(masked.epsCurve.map((p) => p.robustAccuracy['mean-over-R']), [1, 1, 1, 1]);
  });
});

test('the budget check flags an attack that keeps improving with more iterations', () => {
  tidy(() => {
    const model = new Linear(8);
    const { images, labels } = problem(model, 12, 9);
    // A PGD with a fixed step that covers half the ball in its one step: twice the steps reach further.
    const eps = 0.1;
    const crawling: AttackEntry = { name: 'pgd-crawl', attack: 'pgd', options: { steps: 1, stepSize: eps / 2, randomStart: false } };
    const result = runMaskingChecks(model, images, labels, { ...maskingSettings, eps, mainAttack: crawling, blackBoxAttack: null });
    const budget = result.checks.find((c) => c.name === 'budget')!;
    assert.equal(budget.passed, false, budget.details);
    assert.equal(result.checks.length, 2);
    const converged = runMaskingChecks(model, images, labels, { ...maskingSettings, eps, mainAttack: { name: 'pgd', attack: 'pgd', options: { steps: 20 } }, blackBoxAttack: null });
    assert.equal(converged.checks.find((c) => c.name === 'budget')!.passed, true);
  });
});

// ---- the report -------------------------------------------------------------------------------------------------

test('writeRobustReport writes report/robust.html and robust.json with escaped class names and the masking warnings', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-robust-'));
  try {
    tidy(() => {
      const smooth = new Linear(8);
      const model = new Masked(smooth);
      const { images, labels } = problem(smooth, 12, 9);
      const evaluation = evaluateRobustness(model, images, labels, {
        attacks: [pgd('pgd'), { name: 'square', attack: 'square', options: { queries: 50 } }], eps: EPS, reEvaluations: 2,
        modelName: 'masked <linear>', dataSource: 'random & tiny', masking: maskingSettings,
      });
      assert.ok(evaluation.results.masking!.checks.some((c) => !c.passed));
      const classNames = ['cat <script>alert(1)</script>', 'dog & co', '"bird"', 'fish'];
      const paths = writeRobustReport(evaluation, images, { dir, classNames, galleryImages: 4 });
      assert.equal(paths.html, join(dir, 'robust.html'));
      const html = readFileSync(paths.html, 'utf8');
      assert.ok(!html.includes('<script>alert'), 'class names are escaped');
      const used = new Set(evaluation.results.perImage.labels);
      if (used.has(0)) assert.ok(html.includes('cat &lt;script&gt;alert(1)&lt;/script&gt;'));
      if (used.has(1)) assert.ok(html.includes('dog &amp; co'));
      assert.ok(html.includes('masked &lt;linear&gt;'));
      assert.ok(html.includes('class="warnings"') && html.includes('Signs of gradient masking'));
      assert.ok(html.includes('eps-sweep: possible gradient masking'));
      assert.ok(html.includes('<svg'), 'the accuracy-vs-eps chart');
      assert.ok(html.includes('all-R') && html.includes('mean-over-R') && html.includes('single-evaluation'));
      const srcs = [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);
      assert.equal(srcs.length, 12, 'four clean / adversarial / perturbation triples');
      for (const src of srcs) assert.ok(existsSync(join(dir, src)), src);
      const json = JSON.parse(readFileSync(paths.json, 'utf8'));
      assert.equal(json.format, 'crossmax-robustness-v1');
      assert.equal(json.headline.definition, 'all-R');
      assert.equal(json.headline.value, evaluation.results.worstCase['all-R']);
      assert.equal(json.model, 'masked <linear>');
      assert.equal(json.masking.checks.length, 3);
      assert.equal(json.attacks[1].name, 'square');
      assert.ok(!existsSync(join(dir, 'robust.json.tmp')));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('end to end on a real stochastic self-ensemble: the quick adaptive suite, R re-evaluations and the masking checks', () => {
  using model = tinySelfEnsemble();
  const before = liveTensorCount();
  tidy(() => {
    const images = rand([3, 3, 16, 16], { generator: new Generator(1) });
    const labels = noGrad(() => model.forward(images).argmax({ dim: 1 }));
    const eps = 8 / 255;
    const attacks = adaptiveSuite(model, { budget: 'quick', steps: 2, eot: 1, squareQueries: 5, transfer: { transferSteps: 2, transferEot: 1, refineSteps: 1, refineEot: 1 } });
    const events = new Set<string>();
    const evaluation = evaluateRobustness(model, images, labels, {
      attacks, eps, reEvaluations: 3, batchSize: 2, modelName: 'tiny', dataSource: 'noise',
      masking: { images: 2, epsSweep: [eps, 1], sweepAttacks: [{ name: 'pgd', attack: 'pgd', options: { steps: 2 } }] },
      onProgress: (e) => events.add(e.phase),
    });
    const { results } = evaluation;
    assert.deepEqual(results.attacks.map((a) => a.name), attacks.map((a) => a.name));
    assert.equal(results.attacks[0]!.options.surrogate, 'mean-logits');
    assert.equal(results.masking!.checks.length, 3);
    assert.equal(results.masking!.epsCurve.length, 2);
    assert.deepEqual([...events].sort(), ['attack', 'clean', 'masking', 're-evaluation']);
    for (const d of DEFINITIONS) assert.ok(results.worstCase[d] >= 0 && results.worstCase[d] <= 1);
    assert.ok(results.worstCase['all-R'] <= results.worstCase['mean-over-R']);
    assertAllInBall(evaluation, images, eps);
  });
  assert.equal(liveTensorCount(), before, 'tensors leaked');
});

test('retries: images an attack skipped (its first pass misclassified them) are attacked again; images it ran on without result are not', () => {
  tidy(() => {
    // FAB-T at a radius too small to cross any boundary: it runs on every image, finds nothing, returns them
    // unchanged. Retrying those would only repeat the whole attack.
    const linear = new Linear(1);
    const deterministic = problem(linear, 12, 2);
    const fab: AttackEntry = { name: 'fab-t', attack: 'fab', options: { steps: 3, targeted: true, nTargetClasses: 2 } };
    const [fabRun] = evaluateRobustness(linear, deterministic.images, deterministic.labels, { attacks: [fab], eps: 1e-4, reEvaluations: 2, masking: false }).results.attacks;
    assert.equal(fabRun!.attackedImages, 12);
    assert.equal(fabRun!.fooledImages, 0);
    assert.equal(fabRun!.retriedImages, 0);

    // A stochastic model: some images its first pass gets right are misclassified by the attack's own first
    // pass, which skips them; those are attacked again with another seed.
    const noisy = new NoisyLinear(3, 0.6);
    const stochastic = problem(new Linear(3), 80, 4);
    const [pgdRun] = evaluateRobustness(noisy, stochastic.images, stochastic.labels, { attacks: [pgd('pgd')], eps: EPS, reEvaluations: 4, masking: false, seed: 5 }).results.attacks;
    assert.ok(pgdRun!.retriedImages > 0 && pgdRun!.retriedImages <= 2 * pgdRun!.attackedImages, `retried ${pgdRun!.retriedImages} of ${pgdRun!.attackedImages}`);
  });
});
