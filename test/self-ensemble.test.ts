// The self-ensemble: member order and shapes, forward = aggregator(memberLogits), gradients to the pixels,
// heads-only training, the model file (round trip and every refusal), and the 'paper' preset against the official
// notebook's ResNet-152 (head placement, feature sizes, parameter names and count) computed by torchvision.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  disposeAll, Generator, grad, liveTensorCount, manualSeed, noGrad, rand, randint, randn, tensor, tidy, type Tensor,
} from '../src/tensor/index.js';
import { adaptPretrainedStem, BatchNorm, crossEntropy, notebookLayerFeature, ResNet, type Module } from '../src/nn/index.js';
import { SGD } from '../src/optim/index.js';
import { saveSafetensors } from '../src/serialize/safetensors.js';
import {
  buildSelfEnsemble, CrossMax, IMAGENET_NORMALIZATION, InputAdapter, loadModel, MeanLogits, Median,
  presetConfig, readModelInfo, resolveSelfEnsembleConfig, saveModel, SelfEnsemble, type SelfEnsembleConfig,
} from '../src/ensemble/index.js';
import { META_DEVICE_PY, pythonMissing, runPython } from './helpers/python.js';

const torchMissing = pythonMissing('torch, torchvision');
const PAPER_CLASSES = 100;
// The parameter-shape comparison with torchvision runs at 10 classes: the flatten heads' sizes are features ×
// classes either way, and at CIFAR-100's 100 the seven heads alone are 110 M numbers to allocate and initialise.
const SIGNATURE_CLASSES = 10;

// The notebook's ResNet-152 surgery and WrapModelForResNet152 (layer_operations, all_dims, BatchNormLinear heads on
// layers_to_use), rebuilt with torchvision on the meta device (names, shapes, dtypes and counts are all that is
// compared): no memory and no initialisation for ResNet-152's 60 M parameters or the heads' 200k-feature layers.
// Also the notebook's prepare_input (minus the prior) on a fixed 12-channel stack.
const referenceScript = String.raw`
import json, sys, torch, torchvision
import torch.nn as nn
import torch.nn.functional as F
torch.set_num_threads(1)
out_dir, classes = sys.argv[1], int(sys.argv[2])
resolutions = [32, 16, 8, 4]

# torch 1.13 (Debian's) has no 'with torch.device("meta")' yet; a function mode that sends the factory functions
# there does the same (test/helpers/python.ts).
${META_DEVICE_PY}

with MetaDevice():
    model = torchvision.models.resnet152()
    model.conv1 = nn.Conv2d(len(resolutions) * 3, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.fc = nn.Linear(2048, classes)
assert all(v.is_meta for v in model.state_dict().values())

layer_operations = [
    nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool),
    *model.layer1, *model.layer2, *model.layer3, *model.layer4, model.avgpool, model.fc,
]
all_dims = [
    3*224*224*len(resolutions), 64*56*56,
    *[256*56*56]*len(model.layer1), *[512*28*28]*len(model.layer2),
    *[1024*14*14]*len(model.layer3), *[2048*7*7]*len(model.layer4), 2048, 1000,
]
layers_to_use = [20, 30, 35, 40, 45, 50, 52]

# predict_from_layer(x, l) applies layer_operations[0:l], so layer l is the output of layer_operations[l - 1]
# (l = 0: the prepared input). Name that module by its torchvision path.
by_module = {id(m): name for name, m in model.named_modules()}
def feature_name(l):
    if l == 0:
        return 'input'
    op = layer_operations[l - 1]
    if isinstance(op, nn.Sequential) and op[3] is model.maxpool:
        return 'stem'
    return by_module[id(op)]

class BatchNormLinear(nn.Module):
    def __init__(self, in_features, out_features, device):
        super().__init__()
        self.batch_norm = nn.BatchNorm1d(in_features, device=device)
        self.linear = nn.Linear(in_features, out_features, device=device)

signature = [['backbone.' + k, list(v.shape), str(v.dtype).replace('torch.', '')] for k, v in model.state_dict().items()]
parameters = sum(p.numel() for p in model.parameters())
for j, l in enumerate(layers_to_use):
    head = BatchNormLinear(all_dims[l], classes, device='meta')
    parameters += sum(p.numel() for p in head.parameters())
    for k, v in head.state_dict().items():
        signature.append(['heads.%d.%s' % (j, k.replace('batch_norm.', 'bn.')), list(v.shape), str(v.dtype).replace('torch.', '')])

x = torch.rand(2, 12, 32, 32, generator=torch.Generator().manual_seed(3))
y = F.interpolate(x, size=(224, 224), mode='bicubic')
y = torchvision.transforms.Normalize(mean=[0.485, 0.456, 0.406]*(y.shape[1]//3), std=[0.229, 0.224, 0.225]*(y.shape[1]//3))(y)
with open(out_dir + '/adapter.bin', 'wb') as f:
    f.write(x.numpy().tobytes() + y.numpy().tobytes())

json.dump({
    'layers': layers_to_use,
    'features': [feature_name(l) for l in layers_to_use],
    'allNames': [feature_name(l) for l in range(len(all_dims) - 1)],
    'dims': [all_dims[l] for l in layers_to_use],
    'signature': signature,
    'parameters': parameters,
}, open(out_dir + '/index.json', 'w'))
`;

interface Reference {
  layers: number[];
  features: string[];
  allNames: string[];
  dims: number[];
  signature: [string, number[], string][];
  parameters: number;
}

let dir = '';
let reference: Reference | null = null;
let paperModel: SelfEnsemble | null = null;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'crossmax-self-ensemble-'));
  if (torchMissing) return;
  runPython(referenceScript, { args: [dir, String(SIGNATURE_CLASSES)] });
  reference = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as Reference;
});

after(() => {
  paperModel?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** The ResNet-152 'paper' model at SIGNATURE_CLASSES classes, built once (75 M parameters). */
function paper(): SelfEnsemble {
  paperModel ??= buildSelfEnsemble(presetConfig('paper', { numClasses: SIGNATURE_CLASSES }));
  return paperModel;
}

/** A tiny CIFAR-style model: ResNet-18 layout at 1/8 width on 16x16 images, four heads + fc, five members. */
function smallConfig(overrides: Partial<SelfEnsembleConfig> = {}): SelfEnsembleConfig {
  return {
    backbone: { arch: 'resnet', depth: 18, stem: 'cifar', widthMultiplier: 0.125 },
    numClasses: 5,
    inputSize: 16,
    prior: { preset: 'paper', deterministic: true },
    heads: { features: ['layer1.1', 'layer2.1', 'layer3.0', 'avgpool'], kind: 'pooled', poolSize: 2 },
    aggregator: { name: 'crossmax', k: 3 },
    ...overrides,
  };
}

/** Random BatchNorm affine parameters and statistics, so that eval mode is far from the identity. */
function randomiseBatchNorm(model: Module): void {
  noGrad(() => {
    for (const m of model.modules()) {
      if (!(m instanceof BatchNorm)) continue;
      m.weight!.uniform_(0.5, 1.5);
      m.bias!.normal_(0, 0.2);
      m.runningMean!.normal_(0, 0.2);
      m.runningVar!.uniform_(0.5, 2.0);
    }
  });
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  return tidy(() => a.sub(b).abs().max().item());
}

function withModel(config: SelfEnsembleConfig, fn: (model: SelfEnsemble) => void): void {
  manualSeed(1);
  const model = buildSelfEnsemble(config);
  try {
    tidy(() => fn(model));
  } finally {
    model.dispose();
  }
}

// ---- the model ----------------------------------------------------------------------------------------------

test('memberLogits is [N, members, classes]: the heads on their activations in memberNames order, then the backbone fc', () => {
  withModel(smallConfig(), (model) => {
    randomiseBatchNorm(model);
    model.eval();
    assert.deepEqual(model.memberNames(), ['layer1.1', 'layer2.1', 'layer3.0', 'avgpool', 'fc']);
    assert.equal(model.numMembers, 5);
    const x = rand([3, 3, 16, 16], { generator: new Generator(2) });
    const members = noGrad(() => model.memberLogits(x));
    assert.deepEqual(members.shape, [3, 5, 5]);
    // The same computation by hand: prior, backbone with every activation, each head on its own one.
    noGrad(() => {
      const stack = model.prior!.forward(x);
      assert.equal(stack.size(1), 12);
      const { logits, features } = model.backbone.forwardWithFeatures(stack);
      model.headFeatures.forEach((name, i) => {
        assert.equal(maxAbsDiff(members.select(1, i), model.heads.at(i).forward(features.get(name)!)), 0, `member ${i} (${name})`);
      });
      assert.equal(maxAbsDiff(members.select(1, 4), logits), 0, 'the last member is the backbone classifier');
    });
  });
});

test("backboneClassifierDraw 'independent' (the notebook's quirk, the 'paper' preset's): the fc member sees a second prior draw; 'shared' one", () => {
  // WrappedCombinedModel.forward: the heads from predict_from_several_layers(x), then model(prepare_input(x)), which
  // runs the prior again. Replayed by hand from the same seed: draw 1 for the heads, draw 2 for the fc member.
  const config = smallConfig({ prior: { preset: 'paper' } });
  assert.equal(presetConfig('paper').backboneClassifierDraw, 'independent');
  assert.equal(resolveSelfEnsembleConfig(presetConfig('cifar-small')).backboneClassifierDraw, 'shared');
  assert.equal(resolveSelfEnsembleConfig(config).backboneClassifierDraw, 'shared', 'absent (model files before the field): one draw');
  assert.throws(() => resolveSelfEnsembleConfig({ ...config, backboneClassifierDraw: 'twice' as never }), /backboneClassifierDraw must be 'shared' or 'independent', got "twice"/);
  const x = rand([2, 3, 16, 16], { generator: new Generator(4) });
  for (const draw of ['independent', 'shared'] as const) {
    withModel({ ...config, backboneClassifierDraw: draw }, (model) => {
      randomiseBatchNorm(model);
      model.eval();
      assert.equal(model.config!.backboneClassifierDraw, draw);
      noGrad(() => {
        manualSeed(8);
        const members = model.memberLogits(x);
        manualSeed(8);
        const first = model.backbone.forwardWithFeatures(model.prior!.forward(x));
        const second = model.backbone.forwardWithFeatures(model.prior!.forward(x), []).logits;
        model.headFeatures.forEach((name, i) => {
          assert.equal(maxAbsDiff(members.select(1, i), model.heads.at(i).forward(first.features.get(name)!)), 0, `${draw}: head ${name} on draw 1`);
        });
        const fc = members.select(1, 4);
        if (draw === 'independent') {
          assert.equal(maxAbsDiff(fc, second), 0, 'the fc member is the second draw');
          assert.ok(maxAbsDiff(fc, first.logits) > 1e-3, 'and not the heads\' draw');
        } else {
          assert.equal(maxAbsDiff(fc, first.logits), 0, 'one draw for every member');
        }
      });
    });
  }
});

test('forward is the aggregator applied to memberLogits (same prior draw); forwardAll and withAggregator agree', () => {
  withModel(smallConfig({ prior: { preset: 'paper' } }), (model) => {
    model.eval();
    assert.equal(model.aggregator.name, new CrossMax({ k: 3 }).name, "the notebook's CrossMax with k = 3");
    const x = rand([4, 3, 16, 16], { generator: new Generator(3) });
    const seeded = <T>(fn: () => T): T => {
      model.prior!.generator = new Generator(21);
      return noGrad(fn);
    };
    const members = seeded(() => model.memberLogits(x));
    const logits = seeded(() => model.forward(x));
    assert.equal(maxAbsDiff(logits, new CrossMax({ k: 3 }).aggregate(members)), 0);
    // The prior really is random: without reseeding, another draw gives other logits.
    assert.ok(maxAbsDiff(noGrad(() => model.memberLogits(x)), members) > 1e-4, 'the prior draws new noise at every call');

    const all = seeded(() => model.forwardAll(x, [{ name: 'crossmax', k: 2 }, new MeanLogits(), { name: 'median' }]));
    assert.deepEqual([...all.keys()], ['crossmax(k=2)', 'mean-logits', 'median']);
    assert.equal(maxAbsDiff(all.get('crossmax(k=2)')!, new CrossMax({ k: 2 }).aggregate(members)), 0);
    assert.equal(maxAbsDiff(all.get('median')!, new Median().aggregate(members)), 0);
    const view = model.withAggregator(new MeanLogits());
    assert.equal(maxAbsDiff(seeded(() => view.forward(x)), members.mean({ dim: 1 })), 0);
    assert.equal(model.aggregator.name, 'crossmax(k=3)', 'withAggregator leaves the model alone');
    model.setAggregator({ name: 'single', memberIndex: 0 });
    assert.equal(maxAbsDiff(seeded(() => model.forward(x)), members.select(1, 0)), 0);
    assert.deepEqual(model.config!.aggregator, { name: 'single', memberIndex: 0 });
  });
});

test('gradients reach the pixels through prior, backbone, heads and CrossMax: they equal finite differences (float64)', () => {
  withModel(smallConfig({ prior: { preset: 'paper' } }), (model) => {
    randomiseBatchNorm(model);
    model.eval().to('float64');
    const x = rand([2, 3, 16, 16], { generator: new Generator(4), dtype: 'float64' }).mul(0.8).add(0.1);
    const weights = randn([2, 5], { generator: new Generator(5), dtype: 'float64' });
    // One fixed prior draw for every evaluation, so the model is a deterministic function of the pixels.
    const objective = (images: Tensor) => {
      model.prior!.generator = new Generator(6);
      return model.forward(images).mul(weights).sum();
    };
    const input = x.clone().setRequiresGrad(true);
    const [g] = grad(objective(input), [input]);
    assert.ok(g && g.abs().max().item() > 0, 'the pixels receive a gradient');
    const direction = randn(x.shape, { generator: new Generator(7), dtype: 'float64' });
    const eps = 1e-6;
    const numeric = noGrad(() => (objective(x.add(direction.mul(eps))).item() - objective(x.sub(direction.mul(eps))).item()) / (2 * eps));
    const analytic = g!.mul(direction).sum().item();
    assert.ok(Math.abs(numeric - analytic) <= 1e-5 * Math.max(1, Math.abs(analytic)), `directional derivative: finite differences ${numeric}, autograd ${analytic}`);

    objective(x).backward();
    assert.ok(model.backbone.getParameter('conv1.weight').grad!.abs().sum().item() > 0, 'the backbone receives a gradient');
    const headGradient = [...model.heads].reduce((s, h) => s + (h.linear.weight.grad?.abs().sum().item() ?? 0), 0);
    assert.ok(headGradient > 0, 'the heads receive a gradient');
  });
});

test('the single-resolution baseline (prior null) has a 3-channel backbone; a head can read the input itself', () => {
  withModel(smallConfig({ prior: null, heads: { features: ['input', 'layer2.0'], kind: 'pooled' } }), (model) => {
    model.eval();
    assert.equal(model.prior, null);
    assert.equal(model.backbone.getParameter('conv1.weight').size(1), 3);
    const x = rand([2, 3, 16, 16]);
    const members = noGrad(() => model.memberLogits(x));
    assert.deepEqual(members.shape, [2, 3, 5]);
    assert.equal(maxAbsDiff(members.select(1, 0), noGrad(() => model.heads.at(0).forward(x))), 0);
    assert.throws(() => model.memberLogits(rand([2, 1, 16, 16])), /expects images \[N, 3, H, W\]/);
  });
});

test('flatten heads read the whole activation and fix the input size', () => {
  withModel(smallConfig({ heads: { features: ['layer2.1', 'avgpool'], kind: 'flatten' } }), (model) => {
    // ResNet-18 at width 1/8, 16x16 CIFAR stem: layer2 is 16 channels at 8x8; avgpool is the 64-channel vector.
    assert.deepEqual(model.heads.at(0).linear.weight.shape, [5, 16 * 8 * 8]);
    assert.deepEqual(model.heads.at(1).linear.weight.shape, [5, 64]);
    model.eval();
    assert.deepEqual(noGrad(() => model.forward(rand([2, 3, 16, 16]))).shape, [2, 5]);
    assert.throws(() => model.forward(rand([2, 3, 32, 32])), /sized for 16x16 images, got 32x32/);
  });
});

test('freezeBackbone: an optimiser step over every parameter changes each head and no backbone tensor', () => {
  withModel(smallConfig({ prior: { preset: 'paper' }, aggregator: { name: 'mean-logits' } }), (model) => {
    const snapshot = () => tidy(() => new Map([...model.stateDict()].map(([k, v]) => [k, v.clone()])));
    const step = () => {
      const optimiser = new SGD(model.parameters(), { lr: 0.5 });
      const x = rand([8, 3, 16, 16]);
      const y = randint(0, 5, [8]);
      // Each member trained on the labels, as the notebook trains every head on its own.
      const members = model.memberLogits(x);
      const loss = crossEntropy(members.flatten(0, 1), y.repeatInterleave(model.numMembers));
      loss.backward();
      optimiser.step();
    };
    model.freezeBackbone().train();
    assert.ok(model.isBackboneFrozen);
    assert.ok(model.backbone.parameters().every((p) => !p.requiresGrad));
    assert.equal(model.backbone.training, false, 'a frozen backbone stays in eval mode');
    assert.equal(model.heads.training, true);
    assert.equal(model.trainableParameters().length, model.parameterGroups().heads.length);
    const before = snapshot();
    step();
    const after = snapshot();
    for (const [name, value] of before) {
      const same = maxAbsDiff(value, after.get(name)!) === 0;
      if (name.startsWith('backbone.')) assert.ok(same, `${name} must not change`);
      else if (!name.endsWith('num_batches_tracked')) assert.ok(!same, `${name} must change`);
    }

    // Unfrozen, the same step moves the backbone too; the notebook's variant updates BatchNorm statistics only.
    model.freezeBackbone(true, { updateBatchNormStatistics: true }).train();
    assert.equal(model.backbone.training, true);
    const meanBefore = model.backbone.getBuffer('bn1.running_mean').clone();
    const weightBefore = model.backbone.getParameter('conv1.weight').clone();
    step();
    assert.ok(maxAbsDiff(meanBefore, model.backbone.getBuffer('bn1.running_mean')) > 0);
    assert.equal(maxAbsDiff(weightBefore, model.backbone.getParameter('conv1.weight')), 0);
    model.freezeBackbone(false);
    assert.ok(model.backbone.parameters().every((p) => p.requiresGrad));
    step();
    assert.ok(maxAbsDiff(weightBefore, model.backbone.getParameter('conv1.weight')) > 0);
    disposeAll([before, after]);
  });
});

test('memberLogits and forward free every intermediate tensor', () => {
  withModel(smallConfig({ prior: { preset: 'paper' }, heads: { features: ['input', 'stem', 'layer4.1'], kind: 'flatten' } }), (model) => {
    const x = rand([2, 3, 16, 16]);
    for (const train of [false, true]) {
      model.train(train);
      const count = liveTensorCount();
      noGrad(() => model.forward(x)).dispose();
      noGrad(() => model.memberLogits(x)).dispose();
      assert.equal(liveTensorCount(), count, `train=${train}`);
    }
  });
});

test('featureShapes equal the activations the backbones produce (both ResNet stems, a width multiplier)', () => {
  for (const options of [
    { depth: 18, stem: 'cifar', widthMultiplier: 0.25, size: [16, 12] },
    { depth: 50, stem: 'imagenet', widthMultiplier: 0.125, size: [40, 33] },
  ] as const) {
    tidy(() => {
      const net = new ResNet({ depth: options.depth, stem: options.stem, widthMultiplier: options.widthMultiplier, numClasses: 3 });
      const shapes = net.featureShapes(options.size[0], options.size[1]);
      const { features } = noGrad(() => net.forwardWithFeatures(rand([1, 3, ...options.size])));
      assert.deepEqual([...shapes.keys()], net.featureNames());
      for (const [name, t] of features) assert.deepEqual(shapes.get(name), t.shape.slice(1), `${options.depth}/${name}`);
      net.dispose();
    });
  }
});

// ---- configurations and the model file ----------------------------------------------------------------------

test('configurations: defaults are written out, unknown fields and inapplicable options are refused', () => {
  const resolved = resolveSelfEnsembleConfig({ backbone: { arch: 'resnet', depth: 18 }, numClasses: 10, prior: null, heads: { features: ['avgpool'] } });
  assert.deepEqual(resolved.backbone, { arch: 'resnet', depth: 18, stem: 'imagenet', widthMultiplier: 1, zeroInitResidual: false });
  assert.deepEqual(resolved.aggregator, { name: 'crossmax', k: 3, subtractMemberMax: true, subtractClassMax: true });
  assert.deepEqual(resolved.inputSize, [32, 32]);
  assert.deepEqual(resolved.heads, { features: ['avgpool'], kind: 'flatten' });
  const base = smallConfig();
  assert.throws(() => resolveSelfEnsembleConfig({ ...base, numClases: 3 } as unknown as SelfEnsembleConfig), /unknown field 'numClases'/);
  assert.throws(() => resolveSelfEnsembleConfig({ ...base, aggregator: { name: 'mean-logits', k: 3 } }), /option 'k' does not apply to 'mean-logits'/);
  assert.throws(() => resolveSelfEnsembleConfig({ ...base, classes: ['a', 'b'] }), /classes must be 5 class names/);
  assert.throws(() => resolveSelfEnsembleConfig({ ...base, prior: { shift: -1 } }), /shift must be a non-negative integer/);
  assert.throws(() => buildSelfEnsemble({ ...base, heads: { features: ['layer9.0'] } }), /no feature 'layer9.0'/);
  assert.throws(() => buildSelfEnsemble({ ...base, heads: { features: ['avgpool', 'avgpool'] } }), /more than one head/);
});

test('save -> load gives bit-identical members; torchvision names under backbone., heads as heads.<i>.bn/linear', () => {
  const config = smallConfig({ classes: ['a', 'b', 'c', 'd', 'e'] });
  withModel(config, (model) => {
    randomiseBatchNorm(model);
    model.eval();
    const file = saveModel(model, join(dir, 'round-trip'), { extraMetadata: { dataset: 'cifar10-test' } });
    assert.equal(file, join(dir, 'round-trip.safetensors'));
    const info = readModelInfo(file);
    assert.equal(info.metadata['crossmax.kind'], 'self-ensemble');
    assert.equal(info.metadata['crossmax.format_version'], '1');
    assert.equal(info.metadata.dataset, 'cifar10-test');
    assert.deepEqual(info.config, resolveSelfEnsembleConfig(config));
    const names = [...info.header.tensors.keys()];
    for (const name of ['backbone.conv1.weight', 'backbone.layer1.0.bn1.running_var', 'backbone.fc.bias', 'heads.0.bn.weight', 'heads.3.linear.weight']) {
      assert.ok(names.includes(name), name);
    }

    const loaded = loadModel(join(dir, 'round-trip'), { expectConfig: config, device: 'cpu' });
    try {
      assert.ok(loaded.modules().every((m) => !m.training), 'a loaded model is in eval mode');
      assert.deepEqual(loaded.memberNames(), model.memberNames());
      assert.deepEqual(loaded.config!.classes, ['a', 'b', 'c', 'd', 'e']);
      const x = rand([3, 3, 16, 16]);
      assert.equal(maxAbsDiff(noGrad(() => loaded.memberLogits(x)), noGrad(() => model.memberLogits(x))), 0);
    } finally {
      loaded.dispose();
    }
  });
});

test('loadModel with an expected configuration lists every differing field', () => {
  withModel(smallConfig(), (model) => {
    const file = saveModel(model, join(dir, 'expected.safetensors'));
    const other = smallConfig({
      numClasses: 10,
      backbone: { arch: 'resnet', depth: 34, stem: 'cifar', widthMultiplier: 0.125 },
      heads: { features: ['layer1.1', 'layer2.1', 'layer3.0', 'avgpool'], kind: 'flatten' },
    });
    assert.throws(() => loadModel(file, { expectConfig: other }), (err: Error) => {
      assert.match(err.message, /is not the expected model/);
      assert.match(err.message, /numClasses: checkpoint has 5, expected 10/);
      assert.match(err.message, /backbone\.depth: checkpoint has 18, expected 34/);
      assert.match(err.message, /heads\.kind: checkpoint has "pooled", expected "flatten"/);
      assert.match(err.message, /heads\.poolSize: checkpoint has 2, expected absent/);
      assert.doesNotMatch(err.message, /prior|aggregator|inputSize/);
      return true;
    });
  });
});

test('missing, corrupt, truncated, foreign and inconsistent files are refused with clear errors', () => {
  withModel(smallConfig(), (model) => {
    const good = saveModel(model, join(dir, 'good'));
    const bytes = readFileSync(good);
    const path = (name: string, content: Uint8Array | string) => {
      const p = join(dir, name);
      writeFileSync(p, content);
      return p;
    };
    assert.throws(() => loadModel(join(dir, 'nowhere')), /model file '.*nowhere\.safetensors' does not exist/);
    assert.throws(() => loadModel(path('truncated.safetensors', bytes.subarray(0, bytes.length - 100))), /not a readable crossmax model file: .*truncated/);
    assert.throws(() => loadModel(path('garbage.safetensors', 'this is not a model')), /not a readable crossmax model file/);
    const header = Buffer.from(bytes);
    header[20] = 0xff; // inside the JSON header
    assert.throws(() => loadModel(path('corrupt.safetensors', header)), /not a readable crossmax model file: .*header/);

    const state = model.stateDict();
    const rewrite = (name: string, metadata: Record<string, string> | undefined) => {
      const p = join(dir, name);
      saveSafetensors(p, state, metadata);
      return p;
    };
    const config = JSON.stringify(model.config);
    assert.throws(() => loadModel(rewrite('plain.safetensors', undefined)), /safetensors file but not a crossmax model file/);
    assert.throws(() => loadModel(rewrite('v2.safetensors', { 'crossmax.kind': 'self-ensemble', 'crossmax.format_version': '2', 'crossmax.config': config })),
      /format version "2"; this crossmax reads version 1 \(the file was written by a newer crossmax\)/);
    assert.throws(() => loadModel(rewrite('kind.safetensors', { 'crossmax.kind': 'optimizer', 'crossmax.format_version': '1', 'crossmax.config': config })),
      /holds a crossmax 'optimizer', not a 'self-ensemble'/);
    assert.throws(() => loadModel(rewrite('json.safetensors', { 'crossmax.kind': 'self-ensemble', 'crossmax.format_version': '1', 'crossmax.config': '{"numClasses": ' })),
      /stored configuration is not valid JSON/);
    const tampered = JSON.stringify({ ...model.config, numClasses: 7, heads: { ...model.config!.heads, features: ['layer1.1', 'layer2.1', 'layer3.1', 'avgpool'] } });
    assert.throws(() => loadModel(rewrite('tampered.safetensors', { 'crossmax.kind': 'self-ensemble', 'crossmax.format_version': '1', 'crossmax.config': tampered })),
      (err: Error) => {
        assert.match(err.message, /configuration builds a different architecture than its tensors/);
        assert.match(err.message, /'backbone\.fc\.weight': the config gives float32 \[7, 64\], the file has float32 \[5, 64\]/);
        assert.match(err.message, /'heads\.2\.linear\.weight': the config gives float32 \[7, 128\], the file has float32 \[5, 128\]/);
        return true;
      });
    disposeAll(state);

    assert.throws(() => saveModel(model, join(dir, 'x'), { extraMetadata: { 'crossmax.config': '{}' } }), /cannot set 'crossmax.config'/);
    const handBuilt = new SelfEnsemble({
      backbone: new ResNet({ depth: 18, stem: 'cifar', widthMultiplier: 0.125, numClasses: 5 }), heads: { features: ['avgpool'] }, inputSize: [16, 16],
    });
    assert.throws(() => saveModel(handBuilt, join(dir, 'y')), /no configuration to store/);
    handBuilt.dispose();
    assert.equal(existsSync(join(dir, 'y.safetensors')), false);
  });
});

// ---- the paper's preset -------------------------------------------------------------------------------------

test("'paper' preset: heads at the notebook's layer indices 20, 30, 35, 40, 45, 50, 52, plus fc; CrossMax k = 3", (t) => {
  const config = presetConfig('paper');
  assert.equal(config.numClasses, 100);
  assert.deepEqual(config.heads.features, ['layer3.7', 'layer3.17', 'layer3.22', 'layer3.27', 'layer3.32', 'layer4.1', 'avgpool']);
  assert.deepEqual(config.aggregator, { name: 'crossmax', k: 3 });
  assert.equal(notebookLayerFeature(0), 'input');
  assert.equal(notebookLayerFeature(1), 'stem');
  assert.equal(notebookLayerFeature(2), 'layer1.0');
  assert.equal(notebookLayerFeature(51), 'layer4.2');
  assert.throws(() => notebookLayerFeature(53), /53 is the fc output/);
  if (!reference) return t.skip(torchMissing!);
  assert.deepEqual(reference.layers, [20, 30, 35, 40, 45, 50, 52]);
  assert.deepEqual(config.heads.features, reference.features, "torchvision's module at each notebook index");
  reference.allNames.forEach((name, i) => assert.equal(notebookLayerFeature(i), name, `index ${i}`));
});

test("'paper' preset: torchvision ResNet-152 with a 12-channel conv1, the notebook's head sizes, names and parameter count (10 classes)", (t) => {
  if (!reference) return t.skip(torchMissing!);
  const model = paper();
  assert.equal(model.backbone.getParameter('conv1.weight').shape.join(), '64,12,7,7');
  const shapes = model.featureShapes();
  assert.deepEqual(model.headFeatures.map((f) => shapes.get(f)!.reduce((a, b) => a * b, 1)), reference.dims, "the notebook's all_dims");
  const signature = tidy(() => [...model.stateDict()].map(([k, v]) => [k, v.shape, v.dtype]));
  assert.deepEqual(signature, reference.signature);
  assert.equal(model.parameters().reduce((n, p) => n + p.numel, 0), reference.parameters);
});

test("'paper' preset: one image through prior, 224px adapter, ResNet-152 and 8 members", () => {
  // This checks that the pieces fit together, not the widths (the test above compares every parameter's shape with
  // torchvision's), so the preset runs at 1/16 of ResNet-152's width: 0.5 s on one thread, against 1.6 s to build the
  // full model (170 M parameters) and 1 s for its forward.
  const config = presetConfig('paper', { numClasses: PAPER_CLASSES });
  if (config.backbone.arch !== 'resnet') throw new Error(`the 'paper' preset's backbone is a ResNet, got ${config.backbone.arch}`);
  using model = buildSelfEnsemble({ ...config, backbone: { ...config.backbone, widthMultiplier: 1 / 16 } });
  model.eval();
  assert.deepEqual(model.memberNames(), ['layer3.7', 'layer3.17', 'layer3.22', 'layer3.27', 'layer3.32', 'layer4.1', 'avgpool', 'fc']);
  tidy(() => {
    const members = noGrad(() => model.memberLogits(rand([1, 3, 32, 32])));
    assert.deepEqual(members.shape, [1, 8, 100]);
    assert.ok(members.isfinite().all().item());
  });
});

test("the input adapter is the notebook's prepare_input: bicubic to 224x224, ImageNet mean and std per view", (t) => {
  if (!reference) return t.skip(torchMissing!);
  const raw = readFileSync(join(dir, 'adapter.bin'));
  const n = 2 * 12 * 32 * 32;
  const x = tensor(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + 4 * n)), { shape: [2, 12, 32, 32] });
  const expected = tensor(new Float32Array(raw.buffer.slice(raw.byteOffset + 4 * n, raw.byteOffset + raw.byteLength)), { shape: [2, 12, 224, 224] });
  const adapter = new InputAdapter(12, { resize: { size: 224 }, normalize: IMAGENET_NORMALIZATION });
  const out = adapter.forward(x);
  assert.ok(maxAbsDiff(out, expected) < 1e-5, `largest difference ${maxAbsDiff(out, expected)}`);
  disposeAll([x, expected, out]);
});

test('adaptPretrainedStem from a crossmax model: a --no-prior run\'s backbone, heads and fc kept, only the stem fresh for the views', () => {
  // The source: the same architecture without the prior (3 input channels), as `train --no-prior` makes it.
  withModel(smallConfig({ prior: null }), (source) => {
    randomiseBatchNorm(source);
    const weights = source.stateDict();
    withModel(smallConfig(), (model) => {
      adaptPretrainedStem(model, weights, { generator: new Generator(11) });
      const own = model.stateDict();
      for (const [name, value] of weights) {
        if (name === 'backbone.conv1.weight') continue;
        assert.equal(maxAbsDiff(own.get(name)!, value), 0, `${name} carried over`);
      }
      const conv1 = own.get('backbone.conv1.weight')!;
      assert.deepEqual(conv1.shape, [8, 12, 3, 3]);
      // nn.Conv2d(12, 8, 3) default: U(-1/sqrt(12·9), 1/sqrt(12·9)).
      const bound = 1 / Math.sqrt(12 * 9);
      const largest = conv1.abs().max().item();
      assert.ok(largest <= bound && largest > 0.9 * bound, `conv1: largest |w| ${largest}, bound ${bound}`);
      disposeAll(own);
    });
    // Other classes: refused, naming the mismatch, and nothing changes.
    withModel(smallConfig({ numClasses: 7 }), (model) => {
      const before = (model.backbone as ResNet).getParameter('layer1.0.conv1.weight').clone();
      assert.throws(() => adaptPretrainedStem(model, weights), /crossmax model does not fit this ResNet-18 .*self-ensemble: .*'heads\.0\.linear\.weight' has shape \[5, /);
      assert.equal(maxAbsDiff(before, (model.backbone as ResNet).getParameter('layer1.0.conv1.weight')), 0);
    });
    // A bare ResNet cannot take a self-ensemble's names.
    const bare = new ResNet({ depth: 18, stem: 'cifar', widthMultiplier: 0.125, numClasses: 5 });
    assert.throws(() => adaptPretrainedStem(bare, weights), /crossmax self-ensemble .* not a bare ResNet/);
    bare.dispose();
    disposeAll(weights);
  });
});

test('adaptPretrainedStem: ImageNet weights everywhere but a fresh conv1 for the views and a fresh fc', () => {
  // At 1/8 width: the surgery is the same at any width, and full-width ResNet-18s and a ResNet-34 cost seconds to build.
  const config: SelfEnsembleConfig = { ...smallConfig(), backbone: { arch: 'resnet', depth: 18, stem: 'imagenet', widthMultiplier: 0.125 }, inputSize: 32 };
  withModel(config, (model) => {
    manualSeed(9);
    // Stands in for torchvision's pretrained weights: 3 channels, 1000 classes.
    const imagenet = new ResNet({ depth: 18, widthMultiplier: 0.125 });
    const weights = imagenet.stateDict();
    const path = join(dir, 'imagenet.safetensors');
    saveSafetensors(path, weights);
    adaptPretrainedStem(model, path, { generator: new Generator(10) });
    const backbone = model.backbone as ResNet;
    assert.equal(maxAbsDiff(backbone.getParameter('layer2.0.conv2.weight'), weights.get('layer2.0.conv2.weight')!), 0);
    assert.equal(maxAbsDiff(backbone.getBuffer('layer4.1.bn2.running_var'), weights.get('layer4.1.bn2.running_var')!), 0);
    // nn.Conv2d(12, 8, 7) and nn.Linear(64, 5) defaults: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    for (const [name, fanIn] of [['conv1.weight', 12 * 49], ['fc.weight', 64]] as const) {
      const bound = 1 / Math.sqrt(fanIn);
      const largest = backbone.getParameter(name).abs().max().item();
      assert.ok(largest <= bound && largest > 0.95 * bound, `${name}: largest |w| ${largest}, bound ${bound}`);
    }
    const wrong = new ResNet({ depth: 34, widthMultiplier: 0.125 }).stateDict();
    const conv1Before = backbone.getParameter('conv1.weight').clone();
    assert.throws(() => adaptPretrainedStem(model, wrong), /do not fit this ResNet-18.*unexpected 'layer1\.2\.conv1\.weight'/);
    assert.equal(maxAbsDiff(conv1Before, backbone.getParameter('conv1.weight')), 0, 'a refused load changes nothing');
    disposeAll([weights, wrong]);
    imagenet.dispose();
  });
});
