// CLIP against a minimal PyTorch CLIP written here with HF modeling_clip's math and parameter names (no
// transformers on this machine): a small random model saved as safetensors with a HF config.json, then the same
// image embeddings, text embeddings (both pooling rules) and logits in crossmax to 1e-4. Also the loader's errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { liveTensorCount, disposeAll, grad, rand, tidy, type Tensor } from '../src/tensor/index.js';
import { loadSafetensors, saveSafetensors } from '../src/serialize/safetensors.js';
import { ClipModel, clipConfigFromHf, cosineSimilarityMatrix, loadClip } from '../src/models/clip.js';
import { ClipTokenizer } from '../src/models/clip-tokenizer.js';
import { PYTHON_DIR, pythonMissing, runPython } from './helpers/python.js';

const torchMissing = pythonMissing('torch');

const config = {
  text_config: {
    vocab_size: 50, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2,
    max_position_embeddings: 16, layer_norm_eps: 1e-5, hidden_act: 'quick_gelu', bos_token_id: 48, eos_token_id: 2,
  },
  vision_config: {
    hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, num_channels: 3,
    image_size: 32, patch_size: 8, layer_norm_eps: 1e-5, hidden_act: 'quick_gelu',
  },
  projection_dim: 24,
  logit_scale_init_value: 2.6592,
};

// A CLIPModel in plain PyTorch, module for module as HF's (so state_dict() has HF's names, position_ids included
// as older transformers saved them), its weights drawn at random with a spread that keeps every layer norm and
// activation away from the identity.
const referenceScript = String.raw`
import json, math, sys, torch
from torch import nn
sys.path.insert(0, sys.argv[2])
from crossmax_ref.safetensors_lite import save
torch.set_num_threads(1)
torch.manual_seed(0)
out = sys.argv[1]
cfg = json.loads(sys.argv[3])
tc, vc = cfg['text_config'], cfg['vision_config']

def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)

class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.scale = self.hd ** -0.5
        self.k_proj, self.v_proj, self.q_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))
    def forward(self, x, mask=None):
        b, t, d = x.shape
        shape = lambda y: y.view(b, t, self.heads, self.hd).transpose(1, 2)
        q = shape(self.q_proj(x) * self.scale)
        k, v = shape(self.k_proj(x)), shape(self.v_proj(x))
        w = q @ k.transpose(-1, -2)
        if mask is not None:
            w = w + mask
        o = (w.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        return self.out_proj(o)

class MLP(nn.Module):
    def __init__(self, d, i):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, i), nn.Linear(i, d)
    def forward(self, x):
        return self.fc2(quick_gelu(self.fc1(x)))

class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c['hidden_size'], c['num_attention_heads'])
        self.layer_norm1 = nn.LayerNorm(c['hidden_size'], eps=c['layer_norm_eps'])
        self.mlp = MLP(c['hidden_size'], c['intermediate_size'])
        self.layer_norm2 = nn.LayerNorm(c['hidden_size'], eps=c['layer_norm_eps'])
    def forward(self, x, mask=None):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))

class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList([Layer(c) for _ in range(c['num_hidden_layers'])])
    def forward(self, x, mask=None):
        for l in self.layers:
            x = l(x, mask)
        return x

class TextEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.token_embedding = nn.Embedding(c['vocab_size'], c['hidden_size'])
        self.position_embedding = nn.Embedding(c['max_position_embeddings'], c['hidden_size'])
        self.register_buffer('position_ids', torch.arange(c['max_position_embeddings']).expand((1, -1)))

class Text(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings, self.encoder = TextEmbeddings(c), Encoder(c)
        self.final_layer_norm = nn.LayerNorm(c['hidden_size'], eps=c['layer_norm_eps'])
    def forward(self, ids, eos_token_id):
        b, t = ids.shape
        e = self.embeddings
        h = e.token_embedding(ids) + e.position_embedding(e.position_ids[:, :t])
        mask = torch.full((t, t), torch.finfo(h.dtype).min).triu(1)[None, None]
        h = self.final_layer_norm(self.encoder(h, mask))
        if eos_token_id == 2:
            idx = ids.to(torch.int).argmax(dim=-1)
        else:
            idx = (ids.to(torch.int) == eos_token_id).int().argmax(dim=-1)
        return h[torch.arange(b), idx]

class VisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c['hidden_size']
        self.class_embedding = nn.Parameter(torch.randn(d))
        self.patch_embedding = nn.Conv2d(c['num_channels'], d, c['patch_size'], c['patch_size'], bias=False)
        n = (c['image_size'] // c['patch_size']) ** 2 + 1
        self.position_embedding = nn.Embedding(n, d)
        self.register_buffer('position_ids', torch.arange(n).expand((1, -1)))
    def forward(self, x):
        p = self.patch_embedding(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        return torch.cat([cls, p], 1) + self.position_embedding(self.position_ids)

class Vision(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = VisionEmbeddings(c)
        self.pre_layrnorm = nn.LayerNorm(c['hidden_size'], eps=c['layer_norm_eps'])
        self.encoder = Encoder(c)
        self.post_layernorm = nn.LayerNorm(c['hidden_size'], eps=c['layer_norm_eps'])
    def forward(self, x):
        h = self.encoder(self.pre_layrnorm(self.embeddings(x)))
        return self.post_layernorm(h[:, 0, :])

class CLIP(nn.Module):
    def __init__(self):
        super().__init__()
        self.text_model, self.vision_model = Text(tc), Vision(vc)
        self.visual_projection = nn.Linear(vc['hidden_size'], cfg['projection_dim'], bias=False)
        self.text_projection = nn.Linear(tc['hidden_size'], cfg['projection_dim'], bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(cfg['logit_scale_init_value']))

m = CLIP().eval()
with torch.no_grad():
    for name, p in m.named_parameters():
        if name == 'logit_scale':
            continue
        if name.endswith('norm1.weight') or name.endswith('norm2.weight') or 'layernorm' in name or 'layrnorm' in name or 'final_layer_norm' in name:
            if name.endswith('weight'):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.2)
        else:
            p.normal_(0, 0.3)

g = torch.Generator().manual_seed(1)
pixels = torch.randn(2, 3, 32, 32, generator=g)
images = torch.rand(2, 3, 40, 48, generator=g)
ids = torch.tensor([[48, 5, 45, 40, 49, 49, 49, 49, 49, 49, 49, 49],
                    [48, 12, 3, 7, 30, 49, 49, 49, 49, 49, 49, 49]])
mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
with torch.no_grad():
    image_embeds = m.visual_projection(m.vision_model(pixels))
    # Shorter side 40 -> 32 (longer int(32*48/40) = 38), bicubic with antialias, center crop 32, normalise.
    resized = torch.nn.functional.interpolate(images, size=(32, 38), mode='bicubic', align_corners=False, antialias=True)
    cropped = resized[:, :, 0:32, 3:35]
    image01_embeds = m.visual_projection(m.vision_model((cropped - mean) / std))
    text_argmax = m.text_projection(m.text_model(ids, 2))
    text_eos40 = m.text_projection(m.text_model(ids, 40))
    unit = lambda e: e / e.norm(dim=-1, keepdim=True)
    logits = m.logit_scale.exp() * unit(image_embeds) @ unit(text_argmax).t()
save(out + '/model/model.safetensors', m.state_dict())
save(out + '/io.safetensors', {'pixels': pixels, 'images': images, 'ids': ids, 'image_embeds': image_embeds,
     'image01_embeds': image01_embeds, 'text_argmax': text_argmax, 'text_eos40': text_eos40, 'logits': logits})
`;

let dir = '';
let io: Map<string, Tensor> = new Map();

before(() => {
  if (torchMissing) return;
  dir = mkdtempSync(join(tmpdir(), 'crossmax-clip-'));
  mkdirSync(join(dir, 'model'));
  writeFileSync(join(dir, 'model', 'config.json'), JSON.stringify(config));
  runPython(referenceScript, { args: [dir, PYTHON_DIR, JSON.stringify(config)] });
  io = loadSafetensors(join(dir, 'io.safetensors')).tensors;
});

after(() => {
  disposeAll(io);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function assertClose(actual: Tensor, expected: Tensor, what: string, atol = 1e-4): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const diff = tidy(() => actual.sub(expected).abs().max().item());
  assert.ok(diff < atol, `${what}: max |difference| ${diff} ≥ ${atol}`);
}

test('config.json is read into the config, with ViT-B/32 defaults for absent fields', () => {
  const c = clipConfigFromHf(config);
  assert.equal(c.text.vocabSize, 50);
  assert.equal(c.vision.patchSize, 8);
  assert.equal(c.projectionDim, 24);
  assert.equal(c.text.eosTokenId, 2);
  const partial = clipConfigFromHf({ vision_config_dict: { patch_size: 16 }, vision_config: { image_size: 64 } });
  assert.equal(partial.vision.patchSize, 16);
  assert.equal(partial.vision.imageSize, 64);
  assert.equal(partial.text.hiddenSize, 512);
  assert.throws(() => clipConfigFromHf({ vision_config: { hidden_size: 30, num_attention_heads: 4 } }), /not divisible/);
});

test('the state dict has HF CLIPModel names', () => {
  const before = liveTensorCount();
  const model = new ClipModel(clipConfigFromHf(config));
  try {
    const names = model.namedParameters().map(([n]) => n);
    for (const name of [
      'logit_scale', 'text_model.embeddings.token_embedding.weight', 'text_model.embeddings.position_embedding.weight',
      'text_model.encoder.layers.1.self_attn.q_proj.weight', 'text_model.encoder.layers.0.self_attn.out_proj.bias',
      'text_model.encoder.layers.0.layer_norm1.weight', 'text_model.encoder.layers.0.mlp.fc1.weight',
      'text_model.final_layer_norm.bias', 'vision_model.embeddings.class_embedding',
      'vision_model.embeddings.patch_embedding.weight', 'vision_model.pre_layrnorm.weight',
      'vision_model.post_layernorm.bias', 'visual_projection.weight', 'text_projection.weight',
    ]) assert.ok(names.includes(name), `missing ${name}`);
    assert.ok(!names.includes('visual_projection.bias'));
    assert.equal(names.length, 1 + 2 + 2 * 16 + 2 + 3 + 2 + 2 * 16 + 2 + 2);
  } finally {
    model.dispose();
  }
  assert.equal(liveTensorCount(), before);
});

test('image and text embeddings and logits match the PyTorch reference', (t) => {
  if (torchMissing) return t.skip(torchMissing);
  const before = liveTensorCount();
  const model = loadClip(join(dir, 'model'));
  try {
    tidy(() => {
      assertClose(model.imageFeatures(io.get('pixels')!), io.get('image_embeds')!, 'image features');
      assertClose(model.encodeImage(io.get('images')!), io.get('image01_embeds')!, 'encodeImage (resize, crop, normalise)');
      assertClose(model.textFeatures(io.get('ids')!), io.get('text_argmax')!, 'text features (argmax pooling)');
      assertClose(model.encodeText(io.get('ids')!), io.get('text_argmax')!, 'encodeText of ids');
      assertClose(model.forward(io.get('pixels')!, io.get('ids')!), io.get('logits')!, 'logits_per_image', 1e-3);
      const embeds = model.imageFeatures(io.get('pixels')!);
      const cos = cosineSimilarityMatrix(embeds, model.textFeatures(io.get('ids')!));
      assertClose(model.similarity(embeds, model.textFeatures(io.get('ids')!)), cos.mul(Math.exp(2.6592)), 'similarity', 1e-3);
    });
  } finally {
    model.dispose();
  }
  // The same weights with the post-#24773 rule: pool at the first position holding eos_token_id.
  const eos40 = loadClip(join(dir, 'model', 'model.safetensors'), { config: { ...config, text_config: { ...config.text_config, eos_token_id: 40 } } });
  try {
    tidy(() => assertClose(eos40.textFeatures(io.get('ids')!), io.get('text_eos40')!, 'text features (eos_token_id pooling)'));
  } finally {
    eos40.dispose();
  }
  assert.equal(liveTensorCount(), before);
});

test('gradients reach the pixels through encodeImage', (t) => {
  if (torchMissing) return t.skip(torchMissing);
  const model = loadClip(join(dir, 'model'));
  try {
    tidy(() => {
      const x = rand([1, 3, 40, 40]).setRequiresGrad(true);
      const [g] = grad(model.encodeImage(x).sum(), [x]);
      assert.ok(g!.abs().sum().item() > 0);
    });
  } finally {
    model.dispose();
  }
});

test('text goes through the tokenizer when the model has one', (t) => {
  if (torchMissing) return t.skip(torchMissing);
  const vocab: Record<string, number> = { 'a</w>': 5, 'cat</w>': 45, '<|startoftext|>': 48, '<|endoftext|>': 49 };
  const tokenizer = new ClipTokenizer({ vocab, merges: [], contextLength: 16 });
  const model = loadClip(join(dir, 'model'), { tokenizer });
  try {
    tidy(() => {
      // Every single-character word is its own symbol, so 'cat' is not in this vocab; "a" is.
      const fromText = model.encodeText(['a']);
      const fromIds = model.textFeatures(tokenizer.encodeToTensor(['a']));
      assertClose(fromText, fromIds, 'text via tokenizer', 1e-6);
    });
  } finally {
    model.dispose();
  }
  // A model folder with vocab.json and merges.txt brings its tokenizer along.
  writeFileSync(join(dir, 'model', 'vocab.json'), JSON.stringify(vocab));
  writeFileSync(join(dir, 'model', 'merges.txt'), '#version: 0.2\n');
  const withFiles = loadClip(join(dir, 'model'));
  try {
    assert.deepEqual(withFiles.tokenizer?.encode('a'), [48, 5, 49]);
    // Rows as long as the text tower's positions (16 here), not the published 77.
    assert.equal(withFiles.tokenizer?.contextLength, 16);
  } finally {
    withFiles.dispose();
    rmSync(join(dir, 'model', 'vocab.json'));
    rmSync(join(dir, 'model', 'merges.txt'));
  }
  const untokenized = new ClipModel(clipConfigFromHf(config));
  try {
    assert.throws(() => untokenized.encodeText('a cat'), /no tokenizer/);
  } finally {
    untokenized.dispose();
  }
});

test('loading names every missing, unexpected or mis-shaped tensor', (t) => {
  if (torchMissing) return t.skip(torchMissing);
  const before = liveTensorCount();
  const { tensors } = loadSafetensors(join(dir, 'model', 'model.safetensors'));
  try {
    const missing = new Map(tensors);
    missing.delete('text_projection.weight');
    missing.set('vision_model.extra.weight', tensors.get('logit_scale')!);
    saveSafetensors(join(dir, 'missing.safetensors'), missing);
    assert.throws(() => loadClip(join(dir, 'missing.safetensors'), { config }),
      (err: Error) => /Missing key\(s\): "text_projection.weight"/.test(err.message) && /Unexpected key\(s\): "vision_model.extra.weight"/.test(err.message)
        && /missing\.safetensors/.test(err.message));
    // A config that does not fit the weights: the mis-shaped tensors are named.
    assert.throws(() => loadClip(join(dir, 'model', 'model.safetensors'), { config: { ...config, projection_dim: 20 } }),
      /size mismatch for visual_projection\.weight: expected shape \[20, 32\], got \[24, 32\]/);
  } finally {
    disposeAll(tensors);
  }
  assert.throws(() => loadClip(join(dir, 'nothing-here.safetensors')), /no CLIP weights/);
  assert.equal(liveTensorCount(), before);
});
