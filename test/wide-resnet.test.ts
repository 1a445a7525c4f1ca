// WideResNet against the PyTorch implementation RobustBench's CIFAR models use (written out below): state-dict
// names, shapes and order for WRN-28-10, forward parity (eval and train mode, every block's activation) and the
// exact initial weights for WRN-16-2, and the feature interface the self-ensemble relies on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { disposeAll, manualSeed, noGrad, rand, tidy, type Tensor } from '../src/tensor/index.js';
import { WideResNet } from '../src/nn/index.js';
import { buildSelfEnsemble } from '../src/ensemble/index.js';
import { META_DEVICE_PY, pythonMissing, runPython } from './helpers/python.js';
import { assertSameWeights, readTensorDump, tensorDumpPython, weightChecksumsPython, type DumpEntry, type WeightChecksum } from './helpers/weights.js';

const torchMissing = pythonMissing('torch');
const INIT_SEED = 7;

const referenceScript = String.raw`
import json, math, sys, torch
import torch.nn as nn
import torch.nn.functional as F
torch.set_num_threads(1)
out_dir, init_seed = sys.argv[1], int(sys.argv[2])
${weightChecksumsPython}
${tensorDumpPython}

# robustbench/model_zoo/architectures/wide_resnet.py (as in TRADES and MART)
class BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, dropRate=0.0):
        super(BasicBlock, self).__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.droprate = dropRate
        self.equalInOut = (in_planes == out_planes)
        self.convShortcut = (not self.equalInOut) and nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False) or None

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equalInOut else x)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)

class NetworkBlock(nn.Module):
    def __init__(self, nb_layers, in_planes, out_planes, block, stride, dropRate=0.0):
        super(NetworkBlock, self).__init__()
        self.layer = nn.Sequential(*[block(i == 0 and in_planes or out_planes, out_planes, i == 0 and stride or 1, dropRate)
                                     for i in range(int(nb_layers))])

    def forward(self, x):
        return self.layer(x)

class WideResNet(nn.Module):
    def __init__(self, depth=34, num_classes=10, widen_factor=10, dropRate=0.0, bias_last=True):
        super(WideResNet, self).__init__()
        nChannels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        assert ((depth - 4) % 6 == 0)
        n = (depth - 4) / 6
        block = BasicBlock
        self.conv1 = nn.Conv2d(3, nChannels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, nChannels[0], nChannels[1], block, 1, dropRate)
        self.block2 = NetworkBlock(n, nChannels[1], nChannels[2], block, 2, dropRate)
        self.block3 = NetworkBlock(n, nChannels[2], nChannels[3], block, 2, dropRate)
        self.bn1 = nn.BatchNorm2d(nChannels[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(nChannels[3], num_classes, bias=bias_last)
        self.nChannels = nChannels[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / n))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear) and not m.bias is None:
                m.bias.data.zero_()

    def forward(self, x):
        out = self.conv1(x)
        out = self.block1(out)
        out = self.block2(out)
        out = self.block3(out)
        out = self.relu(self.bn1(out))
        out = F.avg_pool2d(out, 8)
        out = out.view(-1, self.nChannels)
        return self.fc(out)

def signature(m):
    return [[k, list(v.shape), str(v.dtype).replace('torch.', '')] for k, v in m.state_dict().items()]

# Only names, shapes and dtypes are compared, so WRN-28-10 (36.5 M parameters, ~3 s to initialise on one thread) is
# built on the meta device: no memory, no initialisation. torch 1.13 (Debian's) has no 'with torch.device("meta")'
# yet; a function mode that sends the factory functions there does the same.
${META_DEVICE_PY}

with MetaDevice():
    wrn28_10 = WideResNet(depth=28, widen_factor=10, num_classes=10)
assert all(v.is_meta for v in wrn28_10.state_dict().values())
report = {'wrn28_10': signature(wrn28_10)}

torch.manual_seed(init_seed)
small = WideResNet(depth=16, widen_factor=2, num_classes=10)
report['init'] = weight_checksums(small)

with torch.no_grad():
    for m in small.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.2)
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
features = {}
def tap(name):
    def hook(_module, _inputs, output):
        features[name] = output.clone()  # the next block's inplace ReLU would overwrite it
    return hook
small.conv1.register_forward_hook(tap('stem'))
for g in ['block1', 'block2', 'block3']:
    for i, block in enumerate(getattr(small, g).layer):
        block.register_forward_hook(tap('%s.layer.%d' % (g, i)))
small.relu.register_forward_hook(lambda _m, _i, out: features.__setitem__('avgpool', F.avg_pool2d(out, 8).flatten(1)))
x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
state = {k: v.clone() for k, v in small.state_dict().items()}
small.eval()
with torch.no_grad():
    logits = small(x)
eval_features = dict(features)
small.train()
with torch.no_grad():
    train_logits = small(x)

dump = TensorDump()
for k, v in state.items():
    dump.add('state', k, v)
dump.add('input', 'x', x)
dump.add('output', 'logits', logits)
dump.add('output', 'train_logits', train_logits)
dump.add('output', 'train_running_mean', small.block2.layer[0].bn1.running_mean)
for k, v in eval_features.items():
    dump.add('feature', k, v)
dump.write(out_dir + '/wrn16_2.bin')
report['entries'] = dump.entries
json.dump(report, open(out_dir + '/index.json', 'w'))
`;

type Signature = [string, number[], string][];
interface Report { wrn28_10: Signature; init: WeightChecksum[]; entries: DumpEntry[] }

let dir = '';
let report: Report | null = null;

before(() => {
  if (torchMissing) return;
  dir = mkdtempSync(join(tmpdir(), 'crossmax-wrn-'));
  runPython(referenceScript, { args: [dir, String(INIT_SEED)] });
  report = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as Report;
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** max |a - b| / max |b| */
function relativeError(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  return tidy(() => a.sub(b).abs().max().item() / b.abs().max().item());
}

test('WRN-28-10: state-dict names, shapes, dtypes and order equal the RobustBench implementation', (t) => {
  if (!report) return t.skip(torchMissing!);
  using model = new WideResNet({ depth: 28, widenFactor: 10, numClasses: 10 });
  const signature = tidy(() => [...model.stateDict()].map(([k, v]) => [k, v.shape, v.dtype]));
  assert.deepEqual(signature, report.wrn28_10);
  assert.equal(model.namedBlocks().length, 12);
});

test('WRN-16-2: the same weights give the reference logits and block activations, in eval and in train mode', (t) => {
  if (!report) return t.skip(torchMissing!);
  using model = new WideResNet({ depth: 16, widenFactor: 2, numClasses: 10 });
  const [state, input, outputs, features] = readTensorDump(join(dir, 'wrn16_2.bin'), report.entries, ['state', 'input', 'output', 'feature']);
  try {
    model.loadStateDict(state!);
    model.eval();
    const x = input!.get('x')!;
    const out = noGrad(() => model.forwardWithFeatures(x));
    assert.ok(relativeError(out.logits, outputs!.get('logits')!) < 1e-5, 'eval logits');
    assert.deepEqual([...out.features.keys()].sort(), [...features!.keys()].sort());
    for (const [name, expected] of features!) {
      assert.ok(relativeError(out.features.get(name)!, expected) < 1e-5, `activation '${name}'`);
    }
    disposeAll(out);
    model.train();
    const trainLogits = noGrad(() => model.forward(x));
    assert.ok(relativeError(trainLogits, outputs!.get('train_logits')!) < 1e-5, 'train-mode logits (batch statistics)');
    assert.ok(relativeError(model.getBuffer('block2.layer.0.bn1.running_mean'), outputs!.get('train_running_mean')!) < 1e-5, 'running statistics update');
    trainLogits.dispose();
  } finally {
    disposeAll([state, input, outputs, features]);
  }
});

test("WRN-16-2: the same seed gives the reference's initial weights", (t) => {
  if (!report) return t.skip(torchMissing!);
  manualSeed(INIT_SEED);
  using model = new WideResNet({ depth: 16, widenFactor: 2, numClasses: 10 });
  const state = model.stateDict();
  try {
    assertSameWeights(state, report.init);
  } finally {
    disposeAll(state);
  }
});

test('featureShapes equal the activations; dropout acts in training mode only; depths other than 6n + 4 are refused', () => {
  using model = new WideResNet({ depth: 10, widenFactor: 1, numClasses: 4, inChannels: 12, dropRate: 0.3 });
  tidy(() => {
    const x = rand([2, 12, 20, 20]);
    const shapes = model.featureShapes(20, 20);
    assert.deepEqual([...shapes.keys()], model.featureNames());
    assert.deepEqual(model.featureNames(), ['stem', 'block1.layer.0', 'block2.layer.0', 'block3.layer.0', 'avgpool']);
    const { features } = noGrad(() => model.eval().forwardWithFeatures(x));
    for (const [name, t] of features) assert.deepEqual(shapes.get(name), t.shape.slice(1), name);
    assert.equal(relativeError(noGrad(() => model.forward(x)), noGrad(() => model.forward(x))), 0, 'eval is deterministic');
    model.train();
    assert.ok(relativeError(noGrad(() => model.forward(x)), noGrad(() => model.forward(x))) > 0, 'dropout draws in training');
  });
  assert.throws(() => new WideResNet({ depth: 20 }), /6n \+ 4/);
});

test('a WideResNet backbone in a self-ensemble: heads on its blocks, 12-channel input from the prior', () => {
  manualSeed(3);
  using model = buildSelfEnsemble({
    backbone: { arch: 'wide-resnet', depth: 10, widenFactor: 1 },
    numClasses: 10,
    prior: { preset: 'paper' },
    heads: { features: ['block1.layer.0', 'block2.layer.0', 'avgpool'], kind: 'pooled' },
  });
  assert.equal(model.backbone.getParameter('conv1.weight').size(1), 12);
  assert.ok(tidy(() => model.stateDict().has('backbone.block2.layer.0.convShortcut.weight')));
  model.eval();
  tidy(() => assert.deepEqual(noGrad(() => model.memberLogits(rand([2, 3, 32, 32]))).shape, [2, 4, 10]));
});
