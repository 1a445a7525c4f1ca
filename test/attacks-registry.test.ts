// The attack registry (name → build, scale to a budget) that suites, the masking checks and the CLI share, and
// the one runner of "attack the points still robust, in batches" that AutoAttack and the evaluation share.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Generator, liveTensorCount, noGrad, rand, tensor, tidy, type Tensor } from '../src/tensor/index.js';
import type { Classifier } from '../src/nn/classifier.js';
import { MeanLogits } from '../src/ensemble/index.js';
import {
  ATTACK_PRESETS, ATTACK_PRESET_NAMES, ATTACK_REGISTRY, Attack, buildAttack, checkAdversarial, describeAttack, resizeAttackBudget,
  scaleAttackBudget, type AttackEntry, type AttackResult, type ProgressEvent, type RunnableAttack,
} from '../src/attacks/index.js';
import { attackInBatches } from '../src/robustness/index.js';
import { Linear, LinearEnsemble } from './helpers/linear.js';

const EPS = 0.05;
const THREAT = { norm: 'Linf', eps: EPS, seed: 1 } as const;

function problem(model: Classifier, n: number): { images: Tensor; labels: Tensor } {
  const images = rand([n, 3, 4, 4], { generator: new Generator(2) });
  const labels = noGrad(() => tidy(() => model.forward(images).argmax({ dim: 1 })));
  return { images, labels };
}

// One entry per registered attack, with small budgets, and what scaling by 3 and resizing make of its budget.
const KINDS: { entry: AttackEntry; scaled: Record<string, number>; resized: Record<string, number> }[] = [
  { entry: { name: 'apgd', attack: 'apgd', options: { steps: 2 } }, scaled: { steps: 6, eot: 3 }, resized: { steps: 7, eot: 2 } },
  { entry: { name: 'pgd', attack: 'pgd', options: { steps: 2 } }, scaled: { steps: 6, eot: 3 }, resized: { steps: 7, eot: 2 } },
  { entry: { name: 'fgsm', attack: 'fgsm', options: {} }, scaled: { eot: 3 }, resized: { eot: 2 } },
  { entry: { name: 'fab', attack: 'fab', options: { steps: 2 } }, scaled: { steps: 6 }, resized: { steps: 7 } },
  { entry: { name: 'square', attack: 'square', options: { queries: 5 } }, scaled: { queries: 15 }, resized: { queries: 9 } },
  {
    entry: { name: 'surrogate', attack: 'surrogate', options: { steps: 2, attack: 'pgd', surrogate: new MeanLogits() } },
    scaled: { steps: 6, eot: 3 }, resized: { steps: 7, eot: 2 },
  },
  { entry: { name: 'per-head', attack: 'per-head', options: { steps: 2 } }, scaled: { steps: 6, eot: 3 }, resized: { steps: 7, eot: 2 } },
  {
    entry: { name: 'transfer-then-refine', attack: 'transfer-then-refine', options: { transferSteps: 2, transferEot: 1, refineSteps: 1, refineEot: 1 } },
    scaled: { transferSteps: 6, transferEot: 3, refineSteps: 3, refineEot: 3 }, resized: { transferEot: 2, refineEot: 2 },
  },
];

function pick(options: object, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, (options as Record<string, unknown>)[k]]));
}

test('every registered attack builds under the given threat model and stays inside it; its budget scales and resizes', () => {
  const before = liveTensorCount();
  tidy(() => {
    assert.deepEqual(KINDS.map((k) => k.entry.attack).sort(), Object.keys(ATTACK_REGISTRY).sort(), 'one case per registered attack');
    const model = new LinearEnsemble([new Linear(1), new Linear(2)], new MeanLogits());
    const { images, labels } = problem(model, 6);
    for (const { entry, scaled, resized } of KINDS) {
      const attack = buildAttack(entry, model, THREAT) as Attack;
      assert.ok(attack instanceof Attack, entry.name);
      assert.deepEqual([attack.norm, attack.eps, attack.seed], ['Linf', EPS, 1], `${entry.name}: the runner's threat model and seed`);
      const result = attack.run(images, labels);
      checkAdversarial(images, result.adversarial, THREAT);
      assert.deepEqual(pick(scaleAttackBudget(entry, 3).options!, Object.keys(scaled)), scaled, `${entry.name} ×3`);
      assert.deepEqual(pick(resizeAttackBudget(entry, { steps: 7, eot: 2, queries: 9 }).options!, Object.keys(resized)), resized, `${entry.name} resized`);
      assert.equal(resizeAttackBudget(entry, {}), entry, `${entry.name}: an empty budget changes nothing`);
    }
    // An entry's own seed wins over the runner's; a threat model of its own is refused (it is given once).
    assert.equal((buildAttack({ name: 'p', attack: 'pgd', options: { seed: 9 } }, model, THREAT) as Attack).seed, 9);
    assert.throws(() => buildAttack({ name: 'p', attack: 'pgd', options: { eps: 0.1 } } as unknown as AttackEntry, model, THREAT), /sets its own eps/);
    assert.throws(() => buildAttack({ name: 'x', attack: 'nope' } as unknown as AttackEntry, model, THREAT), /unknown attack 'nope'/);
  });
  assert.equal(liveTensorCount(), before, 'tensors leaked');
});

test('a hand-made attack is run as it is: built unchanged, never resized, and its budget cannot be scaled', () => {
  const custom: RunnableAttack = { run: (images) => ({ adversarial: images.clone(), success: [] }) };
  const entry: AttackEntry = { name: 'mine', attack: custom };
  assert.equal(buildAttack(entry, { forward: (x) => x }, THREAT), custom);
  assert.equal(resizeAttackBudget(entry, { steps: 3 }), entry);
  assert.throws(() => scaleAttackBudget(entry, 2), /custom attack 'mine' cannot be scaled/);
  assert.equal(describeAttack(entry).attack, 'custom');
});

test("the single attacks of 'crossmax attack' are registry entries, and a description puts the threat model first", () => {
  tidy(() => {
    const model = new Linear(3);
    const { images, labels } = problem(model, 4);
    for (const name of ATTACK_PRESET_NAMES) {
      const entry = resizeAttackBudget(ATTACK_PRESETS[name], { steps: 2, queries: 5 });
      const result = buildAttack(entry, model, THREAT).run(images, labels);
      checkAdversarial(images, result.adversarial, THREAT);
    }
    const described = describeAttack(ATTACK_PRESETS['apgd-t'], { norm: 'Linf', eps: EPS, seed: 4 });
    assert.deepEqual(Object.keys(described.options).slice(0, 3), ['norm', 'eps', 'seed']);
    assert.deepEqual(described.options, { norm: 'Linf', eps: EPS, seed: 4, eot: 1, steps: 100, loss: 'dlr', targeted: true, nTargetClasses: 9 });
    assert.equal(describeAttack({ name: 'p', attack: 'pgd', options: { seed: 7 } }, { norm: 'L2', eps: 1, seed: 4 }).options.seed, 7);
  });
});

test('attackInBatches attacks only the given rows, in batches, each as the attack alone would, and leaves the others clean', () => {
  tidy(() => {
    const model = new Linear(4);
    const { images, labels } = problem(model, 8);
    const entry: AttackEntry = { name: 'pgd', attack: 'pgd', options: { steps: 3 } };
    const rows = [0, 2, 3, 5, 6];
    const batches: number[][] = [];
    const progress = new Set<string>();
    const ran = attackInBatches(model, images, labels, entry, rows, {
      ...THREAT, batchSize: 2,
      onBatch: (batch) => batches.push([...batch]),
      onProgress: (event: ProgressEvent, batch) => progress.add(`${event.attack}:${batch.join(',')}`),
    });
    try {
      assert.deepEqual(batches, [[0, 2], [3, 5], [6]]);
      assert.deepEqual([...progress].sort(), ['pgd:0,2', 'pgd:3,5', 'pgd:6']);
      assert.equal(ran.retried, 0);
      const expected: boolean[] = [];
      for (const batch of batches) {
        const index = tensor(batch, { dtype: 'int64' });
        const alone: AttackResult = buildAttack(entry, model, THREAT).run(images.indexSelect(0, index), labels.indexSelect(0, index));
        expected.push(...alone.success);
        assert.equal(ran.adversarial.indexSelect(0, index).sub(alone.adversarial).abs().max().item(), 0, `batch ${batch}: bit for bit`);
      }
      assert.deepEqual(ran.success, expected);
      const untouched = tensor([1, 4, 7], { dtype: 'int64' });
      assert.equal(ran.adversarial.indexSelect(0, untouched).sub(images.indexSelect(0, untouched)).abs().max().item(), 0, 'other rows clean');
    } finally {
      ran.adversarial.dispose();
    }
  });
});
