import test from 'node:test';
import assert from 'node:assert/strict';
import { grad, Generator, randn, tensor, tidy, type Tensor } from '../src/tensor/index.js';
import {
  aggregatorFromSpec, parseAggregatorSpec, CrossMax, MeanLogits, MeanProbabilities, Median, Single, SoftCrossMax, type Aggregator,
} from '../src/ensemble/index.js';
import { pythonMissing, runPythonJson } from './helpers/python.js';

const close = (a: number[], b: number[], tol: number, what: string) => {
  assert.equal(a.length, b.length, `${what}: lengths differ`);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `${what}: element ${i} is ${a[i]}, expected ${b[i]} (tolerance ${tol})`);
  }
};

// Three members mildly prefer class 0; one is extremely sure of class 2. Mean logits pick class 2, CrossMax 0.
// After subtracting each member's max and then each class's max, the normalised logits are
//   m0 [0, -1, -3], m1 [0, 0, -2], m2 [0, -1, -1], m3 [-20, -19, 0].
const outlierCase = () => tensor([[[3, 1, 0], [2, 1, 0], [2, 0, 1], [0, 0, 20]]]);

test('CrossMax on a hand-computed case, k = 1..M and median', () => {
  tidy(() => {
    const z = outlierCase();
    const expected: Record<string, number[]> = {
      1: [0, 0, 0],
      2: [0, -1, -1],
      3: [0, -1, -2], // the notebook's k: the outlier member no longer decides
      4: [-20, -19, -3], // k = M: the minimum over members
      median: [0, -1, -2], // torch.median of 4 values is the lower middle one: the 3rd highest
    };
    for (const [k, want] of Object.entries(expected)) {
      const agg = new CrossMax({ k: k === 'median' ? 'median' : Number(k) });
      const y = agg.aggregate(z);
      assert.deepEqual(y.shape, [1, 3]);
      assert.deepEqual(y.toArray(), want, `k=${k}`);
    }
    assert.equal(new CrossMax().aggregate(z).argmax({ dim: 1 }).item(), 0);
    assert.equal(new MeanLogits().aggregate(z).argmax({ dim: 1 }).item(), 2, 'the baseline the hand case is built to fool');
  });
});

test('CrossMax with ties: tied members give the tied value, identical members give zeros', () => {
  tidy(() => {
    // Class 0 has three tied normalised values 0; the 2nd and 3rd highest are that same 0.
    const z = outlierCase();
    for (const k of [1, 2, 3]) assert.equal(new CrossMax({ k }).aggregate(z).toArray()[0], 0);
    // Every member identical: after both subtractions every entry is 0 whatever k.
    const same = tensor([[[1, 5, 2], [1, 5, 2], [1, 5, 2]]]);
    for (const k of [1, 2, 3]) assert.deepEqual(new CrossMax({ k }).aggregate(same).toArray(), [0, 0, 0]);
    // A single member: k = 1 = M, the member's logits shifted so that each class's max over members is 0.
    const one = tensor([[[2, -1, 4]]]);
    assert.deepEqual(new CrossMax({ k: 1 }).aggregate(one).toArray(), [0, 0, 0]);
  });
});

test('CrossMax ablations: without the subtractions it is the plain k-th highest logit', () => {
  tidy(() => {
    const z = outlierCase();
    const raw = new CrossMax({ k: 2, subtractMemberMax: false, subtractClassMax: false });
    assert.deepEqual(raw.aggregate(z).toArray(), [2, 1, 1]);
    assert.match(raw.name, /no-member-max, no-class-max/);
    // Only the member-max subtraction: m0 [0,-2,-3], m1 [0,-1,-2], m2 [0,-2,-1], m3 [-20,-20,0]; 2nd highest.
    const memberOnly = new CrossMax({ k: 2, subtractClassMax: false });
    assert.deepEqual(memberOnly.aggregate(z).toArray(), [0, -2, -1]);
  });
});

test('baseline aggregators on the hand-computed case', () => {
  tidy(() => {
    const z = outlierCase();
    close(new MeanLogits().aggregate(z).toArray(), [7 / 4, 2 / 4, 21 / 4], 1e-6, 'mean logits');
    assert.deepEqual(new Median().aggregate(z).toArray(), [2, 0, 0]); // lower middle of 4 values
    assert.deepEqual(new Single().aggregate(z).toArray(), [0, 0, 20]);
    assert.deepEqual(new Single({ memberIndex: 0 }).aggregate(z).toArray(), [3, 1, 0]);
    assert.deepEqual(new Single({ memberIndex: -2 }).aggregate(z).toArray(), [2, 0, 1]);
    // log of the mean of the members' softmax probabilities, computed by hand.
    const rows = [[3, 1, 0], [2, 1, 0], [2, 0, 1], [0, 0, 20]];
    const probs = rows.map((r) => {
      const e = r.map((v) => Math.exp(v - Math.max(...r)));
      const s = e.reduce((a, b) => a + b, 0);
      return e.map((v) => v / s);
    });
    const meanProbs = [0, 1, 2].map((c) => probs.reduce((a, p) => a + p[c]!, 0) / 4);
    close(new MeanProbabilities().aggregate(z).toArray(), meanProbs.map(Math.log), 1e-5, 'mean probabilities');
  });
});

test('every aggregator maps [N, M, C] to [N, C]', () => {
  tidy(() => {
    const z = randn([5, 7, 10], { generator: new Generator(1) });
    const all: Aggregator[] = [
      new CrossMax(), new CrossMax({ k: 'median' }), new CrossMax({ k: 7 }), new SoftCrossMax(), new SoftCrossMax({ k: 'median' }),
      new MeanLogits(), new MeanProbabilities(), new Median(), new Single(), new Single({ memberIndex: 3 }),
      ...(['crossmax', 'crossmax-median', 'soft-crossmax', 'mean-logits', 'mean-probabilities', 'median', 'single'] as const).map((name) => aggregatorFromSpec(name)),
    ];
    for (const agg of all) {
      const y = agg.aggregate(z);
      assert.deepEqual(y.shape, [5, 10], agg.name);
      assert.ok(y.isfinite().all().item(), `${agg.name} is finite`);
    }
  });
});

test('invalid shapes and settings give clear errors', () => {
  tidy(() => {
    const aggs: Aggregator[] = [new CrossMax(), new SoftCrossMax(), new MeanLogits(), new MeanProbabilities(), new Median(), new Single()];
    for (const agg of aggs) {
      assert.throws(() => agg.aggregate(randn([4, 10])), /expected member logits \[N, members, classes\], got a 2-d tensor \[4, 10\]/, agg.name);
      assert.throws(() => agg.aggregate(randn([2, 3, 4, 5])), /expected member logits \[N, members, classes\]/, agg.name);
      assert.throws(() => agg.aggregate(randn([2, 0, 4])), /at least one member and one class/, agg.name);
    }
    assert.throws(() => new CrossMax({ k: 4 }).aggregate(randn([2, 3, 10])), /k=4 is larger than the number of members \(3\)/);
    assert.throws(() => new SoftCrossMax({ k: 4 }).aggregate(randn([2, 3, 10])), /k=4 is larger than the number of members \(3\)/);
    assert.throws(() => new CrossMax({ k: 0 }), RangeError);
    assert.throws(() => new CrossMax({ k: 1.5 }), RangeError);
    assert.throws(() => new SoftCrossMax({ temperature: 0 }), RangeError);
    assert.throws(() => new Single({ memberIndex: 3 }).aggregate(randn([2, 3, 10])), /out of range for 3 members/);
  });
});

test('CrossMax is differentiable: gradients reach the members', () => {
  tidy(() => {
    const z = randn([4, 6, 10], { generator: new Generator(2) }).setRequiresGrad(true);
    const [g] = grad(new CrossMax().aggregate(z).logSoftmax(1).select(1, 0).sum(), [z]);
    assert.ok(g!.isfinite().all().item());
    assert.ok(g!.abs().sum().item() > 0);
  });
});

test('SoftCrossMax tends to CrossMax as the temperature goes to 0 and spreads gradient at higher temperature', () => {
  tidy(() => {
    // Values on a grid: neighbours in the sort are either tied (any mix of them is exact) or at least 1 apart,
    // so the relaxed selection at a small temperature is one-hot up to rounding.
    const z = randn([6, 7, 10], { generator: new Generator(3) }).mul(3).round();
    for (const k of [1, 3, 7, 'median'] as const) {
      const hard = new CrossMax({ k }).aggregate(z).toArray();
      close(new SoftCrossMax({ k, temperature: 1e-3 }).aggregate(z).toArray(), hard, 1e-4, `k=${k}`);
    }
    // The hard rule routes each class's gradient to one member; the surrogate to all of them.
    const countMembersWithGradient = (agg: Aggregator) => {
      const x = z.clone().setRequiresGrad(true);
      const [g] = grad(agg.aggregate(x).sum(), [x]);
      return g!.abs().sum({ dim: 2 }).gt(1e-6).sum().item();
    };
    const hardCount = countMembersWithGradient(new CrossMax());
    const softCount = countMembersWithGradient(new SoftCrossMax({ temperature: 1 }));
    assert.ok(softCount > hardCount, `soft surrogate reached ${softCount} members, hard ${hardCount}`);
    assert.equal(softCount, 6 * 7);
  });
});

// The notebook's CrossMax, written out in Python (torch.topk, then the last of the k values).
const notebookCrossMax = `
import sys, json, torch
torch.set_num_threads(1)
def get_cross_max_consensus(outputs, k):
    Z_hat = outputs - outputs.max(dim=2, keepdim=True)[0]
    Z_hat = Z_hat - Z_hat.max(dim=1, keepdim=True)[0]
    Y, _ = torch.topk(Z_hat, k, dim=1)
    return Y[:, -1, :]
def median_variant(outputs):
    Z_hat = outputs - outputs.max(dim=2, keepdim=True)[0]
    Z_hat = Z_hat - Z_hat.max(dim=1, keepdim=True)[0]
    return torch.median(Z_hat, dim=1)[0]
results = []
for case in json.load(sys.stdin):
    Z = torch.tensor(case['z'], dtype=torch.float32).view(*case['shape'])
    out = {str(k): get_cross_max_consensus(Z, k).reshape(-1).tolist() for k in case['ks']}
    out['median'] = median_variant(Z).reshape(-1).tolist()
    results.append(out)
print(json.dumps(results))
`;

test('CrossMax matches the notebook function in PyTorch on random inputs', (t) => {
  const missing = pythonMissing('torch');
  if (missing) {
    t.skip(missing);
    return;
  }
  tidy(() => {
    const cases = ([[8, 7, 100], [3, 4, 10], [5, 53, 10]] as const).map(([n, m, c]) => ({
      // Quantised values make ties common, which is where an off-by-one in the rank would show.
      z: randn([n, m, c], { generator: new Generator(10 + m) }).mul(2).round(),
      shape: [n, m, c],
      ks: [1, 2, 3, m],
    }));
    const refs = runPythonJson<Record<string, number[]>[]>(notebookCrossMax, { input: cases.map((cs) => ({ ...cs, z: cs.z.toArray() })) });
    cases.forEach((cs, i) => {
      for (const k of [...cs.ks, 'median' as const]) {
        // Compared by value: JSON turns -0 into 0.
        close(new CrossMax({ k }).aggregate(cs.z).toArray(), refs[i]![String(k)]!, 0, `[${cs.shape.join(', ')}] k=${k}`);
      }
    });
  });
});

test('aggregators free their intermediates', async () => {
  const { liveTensorCount } = await import('../src/tensor/index.js');
  const z: Tensor = randn([4, 5, 10]);
  const before = liveTensorCount();
  for (const agg of [new CrossMax(), new SoftCrossMax(), new MeanProbabilities(), new Median(), new Single()]) agg.aggregate(z).dispose();
  assert.equal(liveTensorCount(), before);
  z.dispose();
});

test('one factory: a name is its spec with the defaults (what --aggregator gives), a spec sets the options', () => {
  const names = (['crossmax', 'crossmax-median', 'soft-crossmax', 'mean-logits', 'mean-probabilities', 'median', 'single'] as const);
  assert.deepEqual(names.map((n) => aggregatorFromSpec(n).name),
    ['crossmax(k=3)', 'crossmax(median)', 'soft-crossmax(k=3, T=1)', 'mean-logits', 'mean-probabilities', 'median', 'single(-1)']);
  for (const n of names) assert.equal(aggregatorFromSpec({ name: n }).name, aggregatorFromSpec(n).name);
  assert.equal(aggregatorFromSpec({ name: 'crossmax', k: 2, subtractClassMax: false }).name, 'crossmax(k=2, no-class-max)');
  assert.equal(aggregatorFromSpec({ name: 'single', memberIndex: 0 }).name, 'single(0)');
  assert.throws(() => aggregatorFromSpec({ name: 'median', k: 2 }), /option 'k' does not apply to 'median'/);
  assert.throws(() => aggregatorFromSpec('max' as never), /unknown aggregator 'max' \(one of crossmax, /);
});

test('--aggregator text: a name, or a name with options (crossmax:k=1), checked as a configuration file is', () => {
  const name = (text: string) => aggregatorFromSpec(parseAggregatorSpec(text)).name;
  assert.equal(name('crossmax'), 'crossmax(k=3)');
  assert.equal(name('crossmax:k=1'), 'crossmax(k=1)');
  assert.equal(name('crossmax:k=median'), 'crossmax(median)');
  assert.equal(name('crossmax: k=2, subtractClassMax=false'), 'crossmax(k=2, no-class-max)');
  assert.equal(name('soft-crossmax:k=2,temperature=0.5'), 'soft-crossmax(k=2, T=0.5)');
  assert.equal(name('single:memberIndex=0'), 'single(0)');
  assert.deepEqual(parseAggregatorSpec('crossmax:k=2'), { name: 'crossmax', k: 2 });
  assert.throws(() => parseAggregatorSpec('max'), /unknown aggregator 'max'/);
  assert.throws(() => parseAggregatorSpec('median:k=2'), /option 'k' does not apply to 'median'/);
  assert.throws(() => parseAggregatorSpec('crossmax:k'), /key=value.*not 'k'/);
  assert.throws(() => parseAggregatorSpec('crossmax:k=0'));
  assert.throws(() => parseAggregatorSpec('crossmax:k=two'));
});
