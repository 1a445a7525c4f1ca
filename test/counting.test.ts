// What the robustness numbers count, pinned with a classifier whose verdict depends on the pass number
// (helpers/scripted.ts):
//   - all-R needs every pass right, the attack's own final pass included (the reference AutoAttack marks a point
//     non-robust as soon as one forward pass of an attack's output misclassifies it); mean-over-R is the R
//     re-evaluations alone; single-evaluation the first clean pass and the attack's own pass;
//   - an attack that wraps another (surrogate, transfer-then-refine, per-member) attacks exactly the images its own
//     run chose on the defended model: not re-chosen by the surrogate, one member, or another draw of the model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { noGrad, tidy, type Tensor } from '../src/tensor/index.js';
import { PerHeadAttack, SurrogateGradientAttack, TransferThenRefine, perImageNorm, type AttackEntry, type AttackResult } from '../src/attacks/index.js';
import { Single } from '../src/ensemble/index.js';
import { evaluateRobustness, type RobustnessResults } from '../src/robustness/index.js';
import { LinearEnsemble } from './helpers/linear.js';
import { ScriptedClassifier, scriptedProblem } from './helpers/scripted.js';

const EPS = 0.03;
const R = 3;
const N = 4;

/**
 * An attack that returns the clean images and makes exactly one forward pass, its "own final pass": with R = 3 and
 * one batch, passes 1–3 are the clean re-evaluations, pass 4 the attack's own, passes 5–7 the re-evaluations of its
 * output.
 */
function ownPassOnly(model: ScriptedClassifier): AttackEntry {
  return {
    name: 'own-pass',
    attack: {
      run(images: Tensor, labels: Tensor): AttackResult {
        const success = noGrad(() => tidy(() => model.forward(images).argmax({ dim: 1 }).ne(labels).toArray().map(Boolean)));
        return { adversarial: images.clone(), success, attacked: success.map(() => true) };
      },
    },
  };
}

function evaluate(wrongPasses: readonly number[]): RobustnessResults {
  return tidy(() => {
    const model = new ScriptedClassifier('scripted', (pass) => !wrongPasses.includes(pass));
    const { images, labels } = scriptedProblem(N);
    const { results } = evaluateRobustness(model, images, labels, { attacks: [ownPassOnly(model)], eps: EPS, reEvaluations: R, batchSize: 100, masking: false });
    assert.equal(model.passes, 2 * R + 1, 'the script assumes R clean passes, one own pass, R re-evaluations');
    return results;
  });
}

test("all-R: the attack's own final pass wrong, every re-evaluation right -> not robust (mean-over-R does not count that pass)", () => {
  const results = evaluate([R + 1]);
  assert.deepEqual(results.worstCase, { 'all-R': 0, 'mean-over-R': 1, 'single-evaluation': 0 });
  assert.equal(results.headline.value, 0);
  assert.equal(results.attacks[0]!.fooledImages, N);
  assert.deepEqual(results.perImage.robust, [false, false, false, false]);
  assert.deepEqual(results.perImage.robustSingleEvaluation, [false, false, false, false]);
  assert.deepEqual(results.perImage.robustEvaluations, [R, R, R, R]);
  // The image the attack's own pass misclassified is its worst, though as many re-evaluations are right as for the clean one.
  assert.deepEqual(results.perImage.worstAttack, ['own-pass', 'own-pass', 'own-pass', 'own-pass']);
});

test("all-R: the attack's own pass right, every re-evaluation wrong -> not robust; single evaluation (one pass each) says robust", () => {
  const results = evaluate([R + 2, R + 3, R + 4]);
  assert.deepEqual(results.worstCase, { 'all-R': 0, 'mean-over-R': 0, 'single-evaluation': 1 });
  assert.equal(results.attacks[0]!.fooledImages, 0);
  assert.deepEqual(results.perImage.worstCorrect, [0, 0, 0, 0]);
});

test('all-R: one wrong re-evaluation of R is enough; mean-over-R counts the others; every pass right -> robust under all three', () => {
  const one = evaluate([R + 3]);
  assert.equal(one.worstCase['all-R'], 0);
  assert.ok(Math.abs(one.worstCase['mean-over-R'] - (R - 1) / R) < 1e-12);
  assert.equal(one.worstCase['single-evaluation'], 1);
  const clean = evaluate([2]);
  assert.deepEqual(clean.cleanAccuracy, { 'all-R': 0, 'mean-over-R': (R - 1) / R, 'single-evaluation': 1 });
  assert.deepEqual(evaluate([]).worstCase, { 'all-R': 1, 'mean-over-R': 1, 'single-evaluation': 1 });
});

// ---- skipping is decided once, on the defended model ------------------------------------------------------------

/** Every image moved (the attack ran on it) and stayed in the ball. */
function assertEveryImageAttacked(clean: Tensor, result: AttackResult, what: string): void {
  assert.deepEqual(result.attacked, result.success.map(() => true), `${what}: attacked`);
  tidy(() => {
    const sizes = perImageNorm(result.adversarial.sub(clean), 'Linf').toArray();
    sizes.forEach((size, i) => assert.ok(size > 0 && size <= EPS + 1e-6, `${what}: image ${i} moved by ${size}`));
  });
}

test('a surrogate that misclassifies every image still transfers every image the defended model gets right', () => {
  tidy(() => {
    const { images, labels } = scriptedProblem(N);
    const defended = new ScriptedClassifier('defended', () => true);
    const twin = new ScriptedClassifier('twin', () => false);
    const transfer = new SurrogateGradientAttack(defended, { eps: EPS, surrogate: twin, mode: 'transfer', attack: 'pgd', steps: 2 }).run(images, labels);
    assertEveryImageAttacked(images, transfer, 'surrogate transfer');
    const stageOne = new TransferThenRefine(defended, { eps: EPS, surrogate: twin, transferSteps: 2, transferEot: 1, refineSteps: 0 }).run(images, labels);
    assertEveryImageAttacked(images, stageOne, 'transfer stage');
  });
});

test('a member that misclassifies every image is still attacked when the ensemble gets them right', () => {
  tidy(() => {
    const { images, labels } = scriptedProblem(N);
    const ensemble = new LinearEnsemble([new ScriptedClassifier('wrong member', () => false), new ScriptedClassifier('deciding member', () => true)], new Single({ memberIndex: 1 }));
    const result = new PerHeadAttack(ensemble, { eps: EPS, steps: 2, members: [0] }).run(images, labels);
    assertEveryImageAttacked(images, result, 'per-head');
  });
});

test("another draw of the defended model that misclassifies an image does not make the inner attack skip it", () => {
  tidy(() => {
    const { images, labels } = scriptedProblem(N);
    // Pass 1, the outer run's choice, is right; every later pass without gradient (what an inner attack's own
    // choice, or stage 2's, would see) is wrong.
    const straight = new ScriptedClassifier('defended', (pass) => pass === 1);
    const result = new SurrogateGradientAttack(straight, { eps: EPS, surrogate: new ScriptedClassifier('twin', () => true), steps: 2 }).run(images, labels);
    assertEveryImageAttacked(images, result, 'straight-through');
    // Transfer then refine: neither stage re-chooses, and no image comes back clean.
    const twoStages = new ScriptedClassifier('defended', (pass) => pass === 1);
    const refined = new TransferThenRefine(twoStages, { eps: EPS, surrogate: new ScriptedClassifier('twin', () => true), transferSteps: 2, transferEot: 1, refineSteps: 2, refineEot: 1 }).run(images, labels);
    assertEveryImageAttacked(images, refined, 'transfer-then-refine');
  });
});
