// ResNets against torchvision 0.14: state-dict names and shapes, logits and block activations with the same
// weights, and the exact initial weights for the same seed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { liveTensorCount, manualSeed, randn, tensor, tidy, disposeAll, Tensor } from '../src/tensor/index.js';
import { BatchNorm2d, crossEntropy, resnet18, resnet50, ResNet, type ResNetOptions } from '../src/nn/index.js';
import { loadTorchvisionResNet, resnetArchitecture } from '../src/models/index.js';
import { saveSafetensors } from '../src/serialize/safetensors.js';
import { pythonMissing, runPython } from './helpers/python.js';
import { assertSameWeights, readTensorDump, tensorDumpPython, weightChecksumsPython, type DumpEntry, type WeightChecksum } from './helpers/weights.js';

const torchMissing = pythonMissing('torch, torchvision');

interface Config extends ResNetOptions {
  tag: string;
  size: number;
}
const configs: Config[] = [
  { tag: 'resnet18', depth: 18, numClasses: 1000, inChannels: 3, stem: 'imagenet', size: 64 },
  { tag: 'resnet50', depth: 50, numClasses: 1000, inChannels: 3, stem: 'imagenet', size: 64 },
  { tag: 'resnet18-cifar', depth: 18, numClasses: 10, inChannels: 12, stem: 'cifar', size: 32 },
];
const initSeed = 7;
const initDepths = [18, 50];

// For each config: the state dict's (name, shape, dtype) list; then, with random BatchNorm statistics so that
// eval mode is not near the identity, the weights, an input, the logits and every block's activation, as raw
// little-endian bytes plus a JSON index. And the initial weights' checksums for the same seed.
const referenceScript = String.raw`
import json, sys, torch, torchvision
torch.set_num_threads(1)
out_dir, configs, init_seed, init_depths = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
${weightChecksumsPython}
${tensorDumpPython}

def build(c):
    m = getattr(torchvision.models, 'resnet%d' % c['depth'])(num_classes=c['numClasses'])
    if c['stem'] == 'cifar':
        m.conv1 = torch.nn.Conv2d(c['inChannels'], 64, 3, 1, 1, bias=False)
        m.maxpool = torch.nn.Identity()
    elif c['inChannels'] != 3:
        m.conv1 = torch.nn.Conv2d(c['inChannels'], 64, 7, 2, 3, bias=False)
    return m

report = {'configs': {}, 'init': {}}
for c in configs:
    torch.manual_seed(0)
    m = build(c)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.2)
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.num_batches_tracked.fill_(3)
    m.eval()
    features = {}
    def tap(name, flatten=False):
        def hook(_module, _inputs, output):
            features[name] = output.flatten(1) if flatten else output
        return hook
    m.maxpool.register_forward_hook(tap('stem'))
    for layer in ['layer1', 'layer2', 'layer3', 'layer4']:
        for i, block in enumerate(getattr(m, layer)):
            block.register_forward_hook(tap('%s.%d' % (layer, i)))
    m.avgpool.register_forward_hook(tap('avgpool', True))
    x = torch.randn(2, c['inChannels'], c['size'], c['size'], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = m(x)
    dump = TensorDump()
    for k, v in m.state_dict().items():
        dump.add('state', k, v)
    dump.add('input', 'x', x)
    dump.add('logits', 'logits', logits)
    for k, v in features.items():
        dump.add('feature', k, v)
    dump.write('%s/%s.bin' % (out_dir, c['tag']))
    report['configs'][c['tag']] = dump.entries

for depth in init_depths:
    torch.manual_seed(init_seed)
    m = getattr(torchvision.models, 'resnet%d' % depth)()
    report['init'][str(depth)] = weight_checksums(m)
json.dump(report, open(out_dir + '/index.json', 'w'))
`;

interface Report {
  configs: Record<string, DumpEntry[]>;
  init: Record<string, WeightChecksum[]>;
}

let dir = '';
let report: Report | null = null;

before(() => {
  if (torchMissing) return;
  dir = mkdtempSync(join(tmpdir(), 'crossmax-resnet-'));
  runPython(referenceScript, { args: [dir, JSON.stringify(configs), String(initSeed), JSON.stringify(initDepths)] });
  report = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as Report;
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function readTensors(tag: string): Map<string, Tensor>[] {
  return readTensorDump(join(dir, `${tag}.bin`), report!.configs[tag]!, ['state', 'input', 'logits', 'feature']);
}

/** max |a - b| relative to max |b|. */
function relativeError(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  const x = a.toTypedArray() as Float32Array;
  const y = b.toTypedArray() as Float32Array;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < y.length; i++) {
    diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
    scale = Math.max(scale, Math.abs(y[i]!));
  }
  return diff / scale;
}

function stateSignature(model: ResNet): [string, number[], string][] {
  return tidy(() => [...model.stateDict()].map(([name, t]) => [name, t.shape, t.dtype] as [string, number[], string]));
}

for (const config of configs) {
  test(`${config.tag}: state dict names, shapes and dtypes equal torchvision's, in order`, (t) => {
    if (!report) return t.skip(torchMissing!);
    using model = new ResNet(config);
    const expected = report.configs[config.tag]!.filter((e) => e.kind === 'state').map((e) => [e.name, e.shape, e.dtype]);
    assert.deepEqual(stateSignature(model), expected);
  });

  test(`${config.tag}: torchvision weights load by name; logits and block activations match`, (t) => {
    if (!report) return t.skip(torchMissing!);
    using model = new ResNet(config);
    const [state, input, logits, features] = readTensors(config.tag);
    try {
      model.loadStateDict(state!);
      assert.equal(model.getBuffer('layer1.0.bn1.num_batches_tracked').item(), 3);
      model.eval();
      const out = model.forwardWithFeatures(input!.get('x')!);
      assert.ok(relativeError(out.logits, logits!.get('logits')!) < 1e-4, 'logits differ from torchvision');
      assert.deepEqual([...out.features.keys()], model.featureNames());
      assert.deepEqual([...features!.keys()].sort(), model.featureNames().sort());
      for (const [name, reference] of features!) {
        const err = relativeError(out.features.get(name)!, reference);
        assert.ok(err < 1e-4, `activation '${name}' differs from torchvision (relative error ${err})`);
      }
      disposeAll(out);
      // The same weights as a safetensors file, architecture read from the file (crossmax generate --resnet).
      const file = join(dir, `${config.tag}.safetensors`);
      saveSafetensors(file, state!);
      assert.deepEqual(resnetArchitecture(file), { depth: config.depth, numClasses: config.numClasses, inChannels: config.inChannels, widthMultiplier: 1, stem: config.stem });
      using loaded = loadTorchvisionResNet(file);
      tidy(() => assert.ok(relativeError(loaded.forward(input!.get('x')!), logits!.get('logits')!) < 1e-4, 'logits of the loaded file differ from torchvision'));
    } finally {
      disposeAll([state, input, logits, features]);
    }
  });
}

for (const depth of initDepths) {
  test(`resnet${depth}: the same seed gives torchvision's initial weights`, (t) => {
    if (!report) return t.skip(torchMissing!);
    manualSeed(initSeed);
    using model = depth === 18 ? resnet18() : resnet50();
    const state = model.stateDict();
    try {
      assertSameWeights(state, report.init[String(depth)]!);
    } finally {
      disposeAll(state);
    }
  });
}

test('featureNames lists the stem, every residual block and avgpool', () => {
  using r18 = resnet18({ numClasses: 10 });
  assert.deepEqual(r18.featureNames(), ['stem', 'layer1.0', 'layer1.1', 'layer2.0', 'layer2.1', 'layer3.0', 'layer3.1',
    'layer4.0', 'layer4.1', 'avgpool']);
  using r50 = resnet50({ numClasses: 10 });
  const names = r50.featureNames();
  assert.equal(names.length, 1 + 3 + 4 + 6 + 3 + 1);
  assert.equal(names[16], 'layer4.2');
});

test('forwardWithFeatures returns the requested activations only and frees the others', () => {
  using model = resnet18({ stem: 'cifar', numClasses: 10 }).eval();
  using x = randn([2, 3, 32, 32]);
  const before = liveTensorCount();
  const out = model.forwardWithFeatures(x, ['layer2.1', 'avgpool']);
  assert.deepEqual([...out.features.keys()], ['layer2.1', 'avgpool']);
  assert.deepEqual(out.features.get('layer2.1')!.shape, [2, 128, 16, 16]);
  assert.deepEqual(out.features.get('avgpool')!.shape, [2, 512]);
  assert.deepEqual(out.logits.shape, [2, 10]);
  assert.equal(liveTensorCount(), before + 3);
  disposeAll(out);
  const logits = model.forward(x);
  assert.equal(liveTensorCount(), before + 1);
  logits.dispose();
  assert.throws(() => model.forwardWithFeatures(x, ['layer5.0']), /no feature 'layer5.0'/);
});

test('imagenet stem halves twice, cifar stem keeps the resolution', () => {
  using imagenet = resnet18({ numClasses: 10 }).eval();
  using cifar = resnet18({ numClasses: 10, stem: 'cifar' }).eval();
  using x = randn([1, 3, 64, 64]);
  const a = imagenet.forwardWithFeatures(x, ['stem']);
  const b = cifar.forwardWithFeatures(x, ['stem']);
  assert.deepEqual(a.features.get('stem')!.shape, [1, 64, 16, 16]);
  assert.deepEqual(b.features.get('stem')!.shape, [1, 64, 64, 64]);
  disposeAll([a, b]);
});

test('zeroInitResidual starts every block\'s last BatchNorm at weight 0', () => {
  using r18 = resnet18({ numClasses: 10, zeroInitResidual: true });
  for (const [name, t] of r18.namedParameters()) {
    const zero = /^layer\d\.\d\.bn2\.weight$/.test(name);
    if (name.endsWith('bn1.weight') || name.endsWith('bn2.weight')) assert.equal(t.abs().sum().item() === 0, zero, name);
  }
  using r50 = resnet50({ numClasses: 10, zeroInitResidual: true });
  assert.equal(r50.getParameter('layer3.5.bn3.weight').abs().sum().item(), 0);
  assert.equal(r50.getParameter('layer3.5.bn2.weight').sum().item(), 256);
});

test('a training step reaches every parameter and counts the batch in every BatchNorm', () => {
  manualSeed(3);
  using model = resnet18({ stem: 'cifar', numClasses: 10, inChannels: 12 });
  using x = randn([2, 12, 16, 16]);
  using labels = tensor(new BigInt64Array([1n, 7n]));
  const before = liveTensorCount();
  tidy(() => crossEntropy(model.forward(x), labels).backward());
  for (const [name, p] of model.namedParameters()) {
    const g = p.grad;
    assert.ok(g && tidy(() => g.abs().sum().item()) > 0, `no gradient for ${name}`);
    g!.dispose();
  }
  for (const m of model.modules()) if (m instanceof BatchNorm2d) assert.equal(m.numBatchesTracked!.item(), 1);
  model.zeroGrad();
  assert.equal(liveTensorCount(), before);
});
