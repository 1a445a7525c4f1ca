// CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision") with the
// ViT image tower, in the layout and with the parameter names of HF transformers' CLIPModel
// (transformers/models/clip/modeling_clip.py), so the published openai/clip-vit-base-patch32 model.safetensors
// loads by name:
//   text_model.embeddings.{token_embedding,position_embedding}.weight
//   text_model.encoder.layers.<i>.{self_attn.{k,v,q,out}_proj, layer_norm1, mlp.{fc1,fc2}, layer_norm2}.{weight,bias}
//   text_model.final_layer_norm.{weight,bias}
//   vision_model.embeddings.{class_embedding, patch_embedding.weight, position_embedding.weight}
//   vision_model.pre_layrnorm (sic), vision_model.encoder.layers.<i>..., vision_model.post_layernorm
//   visual_projection.weight, text_projection.weight (no biases), logit_scale
// The math is HF's eager path: pre-norm encoder layers (x + attn(ln1(x)), then x + mlp(ln2(x))), queries scaled
// by head_dim^-0.5 before q·kᵀ, quick-GELU x·σ(1.702x) in the MLP, a causal mask on the text tower, the text
// pooled at the end token and the image at the class token after post_layernorm.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Module } from '../nn/module.js';
import { Conv2d, Embedding, LayerNorm, Linear } from '../nn/layers.js';
import { interpolate } from '../nn/functional.js';
import { normal_ } from '../nn/init.js';
import { loadSafetensors } from '../serialize/safetensors.js';
import {
  arange, cat, disposeAll, empty, full, isFloatingPoint, tensor, tidy,
  type Device, type DType, type Generator, type Tensor,
} from '../tensor/index.js';
import { ClipTokenizer } from './clip-tokenizer.js';

/**
 * The MLP activation named in a HF config: 'quick_gelu' (x·σ(1.702x), OpenAI's CLIP), exact 'gelu', the tanh
 * approximations 'gelu_new' / 'gelu_pytorch_tanh', or 'relu'.
 */
export type ClipActivation = 'quick_gelu' | 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh' | 'relu';

/** The text tower's architecture (HF's CLIPTextConfig, camelCase). */
export interface ClipTextConfig {
  /** Tokens in the vocabulary (49,408). */
  vocabSize: number;
  /** Width D of the transformer (512 for ViT-B/32). */
  hiddenSize: number;
  /** Hidden width of each MLP (2048 for ViT-B/32). */
  intermediateSize: number;
  /** Transformer blocks (12). */
  numHiddenLayers: number;
  /** Attention heads per block (hiddenSize must divide by it). */
  numAttentionHeads: number;
  /** Positions, i.e. the context length (77). */
  maxPositionEmbeddings: number;
  /** eps of every LayerNorm (1e-5). */
  layerNormEps: number;
  /** MLP activation. */
  hiddenAct: ClipActivation;
  /**
   * 2 in the published OpenAI configs, which HF reads as "pool at the argmax of the ids" (the end token has the
   * largest id of the original vocab; modeling_clip.py keeps this since PR #24773); any other value pools at the
   * first position holding that id.
   */
  eosTokenId: number;
}

/** The vision tower's architecture (HF's CLIPVisionConfig, camelCase). */
export interface ClipVisionConfig {
  /** Width D of the transformer (768 for ViT-B/32). */
  hiddenSize: number;
  /** Hidden width of each MLP (3072 for ViT-B/32). */
  intermediateSize: number;
  /** Transformer blocks (12). */
  numHiddenLayers: number;
  /** Attention heads per block (hiddenSize must divide by it). */
  numAttentionHeads: number;
  /** Input channels (3). */
  numChannels: number;
  /** Side of the square input image in pixels (224). */
  imageSize: number;
  /** Side of each square patch in pixels (32 for ViT-B/32); imageSize must divide by it. */
  patchSize: number;
  /** eps of every LayerNorm (1e-5). */
  layerNormEps: number;
  /** MLP activation. */
  hiddenAct: ClipActivation;
}

/** A whole CLIP model's architecture and preprocessing (HF's CLIPConfig plus CLIPImageProcessor's statistics). */
export interface ClipConfig {
  /** The text tower. */
  text: ClipTextConfig;
  /** The vision tower. */
  vision: ClipVisionConfig;
  /** Size of the joint embedding space. */
  projectionDim: number;
  /** Initial log of the similarity temperature, ln(1/0.07). */
  logitScaleInitValue: number;
  /** CLIPImageProcessor's per-channel mean and std (of pixels in [0, 1]). */
  imageMean: [number, number, number];
  /** Per-channel standard deviation, paired with imageMean. */
  imageStd: [number, number, number];
}

/** CLIP's image statistics (openai/CLIP's Normalize, HF's OPENAI_CLIP_MEAN / OPENAI_CLIP_STD). */
export const CLIP_IMAGE_MEAN: readonly [number, number, number] = Object.freeze([0.48145466, 0.4578275, 0.40821073]) as [number, number, number];
/** CLIP's per-channel image standard deviations, paired with {@link CLIP_IMAGE_MEAN}. */
export const CLIP_IMAGE_STD: readonly [number, number, number] = Object.freeze([0.26862954, 0.26130258, 0.27577711]) as [number, number, number];

/** openai/clip-vit-base-patch32 (its config.json). */
export const CLIP_VIT_B_32_CONFIG: Readonly<ClipConfig> = Object.freeze({
  text: Object.freeze({
    vocabSize: 49408, hiddenSize: 512, intermediateSize: 2048, numHiddenLayers: 12, numAttentionHeads: 8,
    maxPositionEmbeddings: 77, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', eosTokenId: 2,
  }),
  vision: Object.freeze({
    hiddenSize: 768, intermediateSize: 3072, numHiddenLayers: 12, numAttentionHeads: 12, numChannels: 3,
    imageSize: 224, patchSize: 32, layerNormEps: 1e-5, hiddenAct: 'quick_gelu',
  }),
  projectionDim: 512,
  logitScaleInitValue: 2.6592,
  imageMean: [...CLIP_IMAGE_MEAN] as [number, number, number],
  imageStd: [...CLIP_IMAGE_STD] as [number, number, number],
}) as Readonly<ClipConfig>;

/** A partial {@link ClipConfig}: what {@link clipConfig} fills in from openai/clip-vit-base-patch32's. */
export interface ClipConfigInput {
  /** Text-tower fields to change. */
  text?: Partial<ClipTextConfig>;
  /** Vision-tower fields to change. */
  vision?: Partial<ClipVisionConfig>;
  /** Size of the joint embedding space. */
  projectionDim?: number;
  /** Initial log of the similarity temperature. */
  logitScaleInitValue?: number;
  /** Per-channel image mean. */
  imageMean?: [number, number, number];
  /** Per-channel image standard deviation. */
  imageStd?: [number, number, number];
}

/** A full config: the given fields over openai/clip-vit-base-patch32's, checked. */
export function clipConfig(input: ClipConfigInput = {}): ClipConfig {
  const base = CLIP_VIT_B_32_CONFIG;
  const config: ClipConfig = {
    text: { ...base.text, ...definedOnly(input.text ?? {}) },
    vision: { ...base.vision, ...definedOnly(input.vision ?? {}) },
    projectionDim: input.projectionDim ?? base.projectionDim,
    logitScaleInitValue: input.logitScaleInitValue ?? base.logitScaleInitValue,
    imageMean: [...(input.imageMean ?? base.imageMean)] as [number, number, number],
    imageStd: [...(input.imageStd ?? base.imageStd)] as [number, number, number],
  };
  checkClipConfig(config);
  return config;
}

function checkClipConfig(c: ClipConfig): void {
  const positive = (what: string, v: number) => {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`CLIP config: ${what} must be a positive integer, got ${v}`);
  };
  for (const [tower, t] of [['text', c.text], ['vision', c.vision]] as const) {
    positive(`${tower}.hiddenSize`, t.hiddenSize);
    positive(`${tower}.intermediateSize`, t.intermediateSize);
    positive(`${tower}.numHiddenLayers`, t.numHiddenLayers);
    positive(`${tower}.numAttentionHeads`, t.numAttentionHeads);
    if (t.hiddenSize % t.numAttentionHeads !== 0) {
      throw new RangeError(`CLIP config: ${tower}.hiddenSize ${t.hiddenSize} is not divisible by its ${t.numAttentionHeads} heads`);
    }
    if (!(t.hiddenAct in activations)) throw new RangeError(`CLIP config: unknown ${tower}.hiddenAct '${t.hiddenAct}'`);
  }
  positive('text.vocabSize', c.text.vocabSize);
  positive('text.maxPositionEmbeddings', c.text.maxPositionEmbeddings);
  positive('vision.imageSize', c.vision.imageSize);
  positive('vision.patchSize', c.vision.patchSize);
  positive('projectionDim', c.projectionDim);
  if (c.vision.imageSize % c.vision.patchSize !== 0) {
    throw new RangeError(`CLIP config: imageSize ${c.vision.imageSize} is not a multiple of patchSize ${c.vision.patchSize}`);
  }
}

/** The fields of a HF config.json (CLIPConfig.to_dict()) that this implementation reads. */
export interface HfClipConfigJson {
  /** The text tower's fields (HF's names, snake_case). */
  text_config?: Record<string, unknown>;
  /** The vision tower's fields (HF's names, snake_case). */
  vision_config?: Record<string, unknown>;
  /** Older files also carry these; text_config / vision_config win where both give a field. */
  text_config_dict?: Record<string, unknown>;
  /** Older name of vision_config. */
  vision_config_dict?: Record<string, unknown>;
  /** Size of the joint embedding space. */
  projection_dim?: number;
  /** Initial log of the similarity temperature. */
  logit_scale_init_value?: number;
}

/** A config from HF's config.json (its object or its path). Fields it lacks take CLIPTextConfig/CLIPVisionConfig's defaults. */
export function clipConfigFromHf(json: HfClipConfigJson | string): ClipConfig {
  const raw = typeof json === 'string' ? JSON.parse(readFileSync(json, 'utf8')) as HfClipConfigJson : json;
  const text = { ...(raw.text_config_dict ?? {}), ...(raw.text_config ?? {}) };
  const vision = { ...(raw.vision_config_dict ?? {}), ...(raw.vision_config ?? {}) };
  const num = (o: Record<string, unknown>, key: string) => (typeof o[key] === 'number' ? o[key] as number : undefined);
  const str = (o: Record<string, unknown>, key: string) => (typeof o[key] === 'string' ? o[key] as ClipActivation : undefined);
  return clipConfig({
    text: {
      vocabSize: num(text, 'vocab_size'), hiddenSize: num(text, 'hidden_size'), intermediateSize: num(text, 'intermediate_size'),
      numHiddenLayers: num(text, 'num_hidden_layers'), numAttentionHeads: num(text, 'num_attention_heads'),
      maxPositionEmbeddings: num(text, 'max_position_embeddings'), layerNormEps: num(text, 'layer_norm_eps'),
      hiddenAct: str(text, 'hidden_act'), eosTokenId: num(text, 'eos_token_id'),
    },
    vision: {
      hiddenSize: num(vision, 'hidden_size'), intermediateSize: num(vision, 'intermediate_size'),
      numHiddenLayers: num(vision, 'num_hidden_layers'), numAttentionHeads: num(vision, 'num_attention_heads'),
      numChannels: num(vision, 'num_channels'), imageSize: num(vision, 'image_size'), patchSize: num(vision, 'patch_size'),
      layerNormEps: num(vision, 'layer_norm_eps'), hiddenAct: str(vision, 'hidden_act'),
    },
    projectionDim: raw.projection_dim, logitScaleInitValue: raw.logit_scale_init_value,
  });
}

// ---- layers -------------------------------------------------------------------------------------------------

const activations: Record<ClipActivation, (x: Tensor) => Tensor> = {
  // OpenAI's QuickGELU: x·σ(1.702·x), what the published CLIPs were trained with.
  quick_gelu: (x) => tidy(() => x.mul(x.mul(1.702).sigmoid())),
  gelu: (x) => x.gelu(),
  gelu_new: (x) => x.gelu({ approximate: 'tanh' }),
  gelu_pytorch_tanh: (x) => x.gelu({ approximate: 'tanh' }),
  relu: (x) => x.relu(),
};

/** How CLIP modules create their parameters. */
export interface ClipBuildOptions {
  /** dtype of the parameters. Default 'float32'. */
  dtype?: DType;
  /** Device of the parameters. Default 'cpu'. */
  device?: Device;
  /** Random stream for the initial weights. Default: libtorch's global generator. */
  generator?: Generator;
}

/** A LayerNorm over the hidden dimension, as HF's CLIP layers make it. */
function clipLayerNorm(config: ClipTextConfig | ClipVisionConfig, options: ClipBuildOptions): LayerNorm {
  return new LayerNorm(config.hiddenSize, { eps: config.layerNormEps, dtype: options.dtype, device: options.device });
}

/** An Embedding initialised as HF's CLIPPreTrainedModel does it: N(0, 0.02²). */
function clipEmbedding(count: number, dim: number, options: ClipBuildOptions): Embedding {
  return new Embedding(count, dim, { ...options, initStd: 0.02 });
}

/** Multi-head self-attention (CLIPAttention), registered in HF's order k, v, q, out. */
export class ClipAttention extends Module {
  /** Key projection, [D, D]. */
  readonly k_proj: Linear;
  /** Value projection, [D, D]. */
  readonly v_proj: Linear;
  /** Query projection, [D, D]. */
  readonly q_proj: Linear;
  /** Output projection, [D, D]. */
  readonly out_proj: Linear;
  /** Width of each head, hiddenSize / numHeads. */
  readonly headDim: number;
  /**
   * @param hiddenSize - Width D of the tokens.
   * @param numHeads - Attention heads (D must divide by it).
   * @param options - dtype, device and random stream of the parameters.
   */
  constructor(readonly hiddenSize: number, readonly numHeads: number, options: ClipBuildOptions = {}) {
    super();
    this.headDim = hiddenSize / numHeads;
    this.k_proj = this.registerModule('k_proj', new Linear(hiddenSize, hiddenSize, options));
    this.v_proj = this.registerModule('v_proj', new Linear(hiddenSize, hiddenSize, options));
    this.q_proj = this.registerModule('q_proj', new Linear(hiddenSize, hiddenSize, options));
    this.out_proj = this.registerModule('out_proj', new Linear(hiddenSize, hiddenSize, options));
  }

  /** x [B, T, D]; mask [1 or B, 1, T, T] added to the attention logits (0 to keep, a huge negative to drop). */
  forward(x: Tensor, mask: Tensor | null = null): Tensor {
    return tidy(() => {
      const [b, t] = [x.shape[0]!, x.shape[1]!];
      const heads = (y: Tensor) => y.view([b, t, this.numHeads, this.headDim]).transpose(1, 2);
      const q = heads(this.q_proj.forward(x).mul(this.headDim ** -0.5));
      const k = heads(this.k_proj.forward(x));
      const v = heads(this.v_proj.forward(x));
      let logits = q.matmul(k.transpose(-1, -2));
      if (mask) logits = logits.add(mask);
      const attended = logits.softmax(-1).matmul(v).transpose(1, 2).reshape([b, t, this.hiddenSize]);
      return this.out_proj.forward(attended);
    });
  }
}

export class ClipMlp extends Module {
  /** Up projection, [intermediate, D]. */
  readonly fc1: Linear;
  /** Down projection, [D, intermediate]. */
  readonly fc2: Linear;
  /**
   * @param hiddenSize - Width D of the tokens.
   * @param intermediateSize - Hidden width of the MLP.
   * @param activation - Activation between the projections.
   * @param options - dtype, device and random stream of the parameters.
   */
  constructor(hiddenSize: number, intermediateSize: number, readonly activation: ClipActivation, options: ClipBuildOptions = {}) {
    super();
    this.fc1 = this.registerModule('fc1', new Linear(hiddenSize, intermediateSize, options));
    this.fc2 = this.registerModule('fc2', new Linear(intermediateSize, hiddenSize, options));
  }
  /** [B, T, D] to [B, T, D]: fc2(activation(fc1(x))). */
  forward(x: Tensor): Tensor {
    return tidy(() => this.fc2.forward(activations[this.activation](this.fc1.forward(x))));
  }
}

/** One pre-norm transformer block (CLIPEncoderLayer). */
export class ClipEncoderLayer extends Module {
  /** Self-attention. */
  readonly self_attn: ClipAttention;
  /** LayerNorm before the attention (pre-norm). */
  readonly layer_norm1: LayerNorm;
  /** The MLP. */
  readonly mlp: ClipMlp;
  /** LayerNorm before the MLP. */
  readonly layer_norm2: LayerNorm;
  constructor(config: ClipTextConfig | ClipVisionConfig, options: ClipBuildOptions = {}) {
    super();
    this.self_attn = this.registerModule('self_attn', new ClipAttention(config.hiddenSize, config.numAttentionHeads, options));
    this.layer_norm1 = this.registerModule('layer_norm1', clipLayerNorm(config, options));
    this.mlp = this.registerModule('mlp', new ClipMlp(config.hiddenSize, config.intermediateSize, config.hiddenAct, options));
    this.layer_norm2 = this.registerModule('layer_norm2', clipLayerNorm(config, options));
  }
  /**
   * One pre-norm transformer block on [B, T, D]; `mask` is an additive attention mask (the text tower's causal one),
   * or null.
   */
  forward(x: Tensor, mask: Tensor | null = null): Tensor {
    return tidy(() => {
      const h = x.add(this.self_attn.forward(this.layer_norm1.forward(x), mask));
      return h.add(this.mlp.forward(this.layer_norm2.forward(h)));
    });
  }
}

/** The stack of blocks, children '0', '1', ... under `layers` (CLIPEncoder). */
export class ClipEncoder extends Module {
  /** The blocks, registered as "layers.0", "layers.1", ... as HF names them. */
  readonly layers: ClipEncoderLayer[] = [];
  private readonly container: Module;
  constructor(config: ClipTextConfig | ClipVisionConfig, options: ClipBuildOptions = {}) {
    super();
    this.container = this.registerModule('layers', new ModuleList());
    for (let i = 0; i < config.numHiddenLayers; i++) {
      this.layers.push(this.container.registerModule(String(i), new ClipEncoderLayer(config, options)));
    }
  }
  /** Applies every block in order to [B, T, D], with the same attention mask. */
  forward(x: Tensor, mask: Tensor | null = null): Tensor {
    let h = x;
    for (const layer of this.layers) {
      const next = layer.forward(h, mask);
      if (h !== x) h.dispose();
      h = next;
    }
    return h;
  }
}

class ModuleList extends Module {
  forward(): never {
    throw new Error('a module list has no forward of its own');
  }
}

/** What each CLIP tower returns. */
export interface ClipTowerOutput {
  /** [B, T, D] after the last block (and, for text, final_layer_norm). */
  lastHiddenState: Tensor;
  /** Shape [B, D]: the end token's state (text) or the class token's after post_layernorm (vision). */
  pooled: Tensor;
}

export class ClipTextEmbeddings extends Module {
  /** Token embeddings, [vocabSize, D]. */
  readonly token_embedding: Embedding;
  /** Learned position embeddings, [maxPositionEmbeddings, D]. */
  readonly position_embedding: Embedding;
  constructor(config: ClipTextConfig, options: ClipBuildOptions = {}) {
    super();
    this.token_embedding = this.registerModule('token_embedding', clipEmbedding(config.vocabSize, config.hiddenSize, options));
    this.position_embedding = this.registerModule('position_embedding', clipEmbedding(config.maxPositionEmbeddings, config.hiddenSize, options));
  }
  /** Token ids [B, T] (int64) to token plus position embeddings [B, T, D]. */
  forward(inputIds: Tensor): Tensor {
    return tidy(() => this.token_embedding.forward(inputIds).add(this.position_embedding.weight.narrow(0, 0, inputIds.shape[1]!)));
  }
}

/** CLIPTextTransformer: embeddings → causal encoder → final_layer_norm → the end token's state. */
export class ClipTextTransformer extends Module {
  /** Token and position embeddings. */
  readonly embeddings: ClipTextEmbeddings;
  /** The transformer (causal attention). */
  readonly encoder: ClipEncoder;
  /** LayerNorm after the last block. */
  readonly final_layer_norm: LayerNorm;
  /**
   * @param config - The text tower's architecture.
   * @param options - dtype, device and random stream of the parameters.
   */
  constructor(readonly config: ClipTextConfig, options: ClipBuildOptions = {}) {
    super();
    this.embeddings = this.registerModule('embeddings', new ClipTextEmbeddings(config, options));
    this.encoder = this.registerModule('encoder', new ClipEncoder(config, options));
    this.final_layer_norm = this.registerModule('final_layer_norm', clipLayerNorm(config, options));
  }

  /** inputIds [B, T] (int64, T ≤ maxPositionEmbeddings). */
  forward(inputIds: Tensor): ClipTowerOutput {
    if (inputIds.ndim !== 2) throw new Error(`CLIP text tower expects token ids [B, T], got [${inputIds.shape.join(', ')}]`);
    const [b, t] = [inputIds.shape[0]!, inputIds.shape[1]!];
    if (t > this.config.maxPositionEmbeddings) {
      throw new RangeError(`CLIP text tower: ${t} tokens is more than its ${this.config.maxPositionEmbeddings} positions`);
    }
    if (inputIds.dtype !== 'int64' && inputIds.dtype !== 'int32') throw new TypeError(`CLIP token ids must be integers, got ${inputIds.dtype}`);
    return tidy(() => {
      const h = this.embeddings.forward(inputIds);
      // HF's _create_4d_causal_attention_mask: the dtype's lowest value above the diagonal. No padding mask: the
      // pooled end token attends only to earlier positions, so what follows it cannot change the result.
      const causal = full([t, t], lowestValue(h.dtype), { dtype: h.dtype, device: h.device as Device }).triu(1).view([1, 1, t, t]);
      const last = this.final_layer_norm.forward(this.encoder.forward(h, causal));
      const ids = inputIds.to({ device: last.device as Device });
      const eosPosition = this.config.eosTokenId === 2 ? ids.argmax({ dim: -1 }) : ids.eq(this.config.eosTokenId).int().argmax({ dim: -1 });
      const pooled = last.index([arange(0, b, 1, { dtype: 'int64', device: last.device as Device }), eosPosition]);
      return { lastHiddenState: last, pooled };
    });
  }
}

export class ClipVisionEmbeddings extends Module {
  /** The class token's embedding, [D]. */
  readonly class_embedding: Tensor;
  /** Patch embedding: a patchSize × patchSize convolution with stride patchSize, no bias. */
  readonly patch_embedding: Conv2d;
  /** Learned position embeddings, [numPatches + 1, D]. */
  readonly position_embedding: Embedding;
  /** Patches per image, (imageSize / patchSize)². */
  readonly numPatches: number;
  /**
   * @param config - The vision tower's architecture.
   * @param options - dtype, device and random stream of the parameters.
   */
  constructor(readonly config: ClipVisionConfig, options: ClipBuildOptions = {}) {
    super();
    const factory = { dtype: options.dtype, device: options.device };
    this.class_embedding = normal_(this.registerParameter('class_embedding', empty([config.hiddenSize], factory)),
      { std: config.hiddenSize ** -0.5, generator: options.generator });
    this.patch_embedding = this.registerModule('patch_embedding', new Conv2d(config.numChannels, config.hiddenSize, config.patchSize,
      { ...options, stride: config.patchSize, bias: false }));
    this.numPatches = (config.imageSize / config.patchSize) ** 2;
    this.position_embedding = this.registerModule('position_embedding', clipEmbedding(this.numPatches + 1, config.hiddenSize, options));
  }
  /**
   * Normalised images [B, C, imageSize, imageSize] to the class token and patch embeddings plus positions, [B,
   * numPatches + 1, D].
   */
  forward(pixelValues: Tensor): Tensor {
    return tidy(() => {
      const b = pixelValues.shape[0]!;
      const d = this.config.hiddenSize;
      const patches = this.patch_embedding.forward(pixelValues).flatten(2).transpose(1, 2);
      const cls = this.class_embedding.view([1, 1, d]).expand([b, 1, d]);
      return cat([cls, patches], 1).add(this.position_embedding.weight.unsqueeze(0));
    });
  }
}

/** CLIPVisionTransformer: patch + class embeddings → pre_layrnorm → encoder → post_layernorm of the class token. */
export class ClipVisionTransformer extends Module {
  /** Patch, class and position embeddings. */
  readonly embeddings: ClipVisionEmbeddings;
  /** LayerNorm before the first block (HF's spelling of the name). */
  readonly pre_layrnorm: LayerNorm;
  /** The transformer. */
  readonly encoder: ClipEncoder;
  /** LayerNorm on the class token's output. */
  readonly post_layernorm: LayerNorm;
  /**
   * @param config - The vision tower's architecture.
   * @param options - dtype, device and random stream of the parameters.
   */
  constructor(readonly config: ClipVisionConfig, options: ClipBuildOptions = {}) {
    super();
    this.embeddings = this.registerModule('embeddings', new ClipVisionEmbeddings(config, options));
    // The misspelling is HF's parameter name.
    this.pre_layrnorm = this.registerModule('pre_layrnorm', clipLayerNorm(config, options));
    this.encoder = this.registerModule('encoder', new ClipEncoder(config, options));
    this.post_layernorm = this.registerModule('post_layernorm', clipLayerNorm(config, options));
  }

  /** pixelValues [B, C, imageSize, imageSize], already normalised (see ClipModel.preprocess). */
  forward(pixelValues: Tensor): ClipTowerOutput {
    const { numChannels: c, imageSize: s } = this.config;
    if (pixelValues.ndim !== 4 || pixelValues.shape[1] !== c || pixelValues.shape[2] !== s || pixelValues.shape[3] !== s) {
      throw new Error(`CLIP vision tower expects pixel values [B, ${c}, ${s}, ${s}], got [${pixelValues.shape.join(', ')}] (ClipModel.preprocess resizes and crops)`);
    }
    return tidy(() => {
      const last = this.encoder.forward(this.pre_layrnorm.forward(this.embeddings.forward(pixelValues)));
      return { lastHiddenState: last, pooled: this.post_layernorm.forward(last.select(1, 0)) };
    });
  }
}

/** How {@link ClipModel.preprocess} prepares images for the vision tower. */
export interface ClipPreprocessOptions {
  /**
   * Resize the shorter side to the model's image size (bicubic) and center-crop a square, as CLIPImageProcessor
   * does; images already of that size only get normalised. Default true. With false, images must already be of
   * the model's size.
   */
  resize?: boolean;
  /** Low-pass filter when shrinking (PIL's bicubic resize does). Default true. */
  antialias?: boolean;
}

/** How a {@link ClipModel} is built. */
export interface ClipModelOptions extends ClipBuildOptions {
  /** Needed to encode text given as strings. */
  tokenizer?: ClipTokenizer;
}

/**
 * CLIP (CLIPModel): two towers and their projections into one embedding space. Images go in as [N, 3, H, W] with
 * values in [0, 1] (encodeImage preprocesses them), text as strings (with a tokenizer) or token ids.
 */
export class ClipModel extends Module {
  /** Log of the similarity temperature (learned), a 0-d parameter. */
  readonly logit_scale: Tensor;
  /** The text tower. */
  readonly text_model: ClipTextTransformer;
  /** The vision tower. */
  readonly vision_model: ClipVisionTransformer;
  /** Projection of the vision tower's pooled output to the joint space, [projectionDim, D], no bias. */
  readonly visual_projection: Linear;
  /** Projection of the text tower's pooled output to the joint space, [projectionDim, D], no bias. */
  readonly text_projection: Linear;
  /** The full configuration. */
  readonly config: ClipConfig;
  /** Encodes text given as strings; null when the model was built without one. */
  tokenizer: ClipTokenizer | null;
  private readonly mean: Tensor;
  private readonly std: Tensor;

  constructor(config: ClipConfigInput | ClipConfig = {}, options: ClipModelOptions = {}) {
    super();
    this.config = clipConfig(config);
    this.tokenizer = options.tokenizer ?? null;
    const factory = { dtype: options.dtype, device: options.device };
    this.logit_scale = this.registerParameter('logit_scale', full([], this.config.logitScaleInitValue, factory));
    this.text_model = this.registerModule('text_model', new ClipTextTransformer(this.config.text, options));
    this.vision_model = this.registerModule('vision_model', new ClipVisionTransformer(this.config.vision, options));
    this.visual_projection = this.registerModule('visual_projection',
      new Linear(this.config.vision.hiddenSize, this.config.projectionDim, { ...options, bias: false }));
    this.text_projection = this.registerModule('text_projection',
      new Linear(this.config.text.hiddenSize, this.config.projectionDim, { ...options, bias: false }));
    const channels = this.config.vision.numChannels;
    const stat = (values: number[]) => tensor(Array.from({ length: channels }, (_, i) => values[i % values.length]!),
      { shape: [1, channels, 1, 1], ...factory });
    this.mean = this.registerBuffer('image_mean', stat(this.config.imageMean), { persistent: false });
    this.std = this.registerBuffer('image_std', stat(this.config.imageStd), { persistent: false });
  }

  /** Side of the square image the vision tower takes (224 for ViT-B/32). */
  get imageSize(): number {
    return this.config.vision.imageSize;
  }

  /**
   * Images [N, C, H, W] in [0, 1] → the vision tower's input: shorter side resized to imageSize, center crop,
   * then (x − mean) / std. Differentiable, so generation can go through it.
   */
  preprocess(images: Tensor, options: ClipPreprocessOptions = {}): Tensor {
    if (images.ndim !== 4) throw new Error(`CLIP expects images [N, C, H, W], got [${images.shape.join(', ')}]`);
    const s = this.imageSize;
    return tidy(() => {
      let x = images;
      const [h, w] = [images.shape[2]!, images.shape[3]!];
      if ((h !== s || w !== s) && (options.resize ?? true)) {
        // HF's get_resize_output_image_size with shortest_edge: the longer side int()-truncated.
        const [rh, rw] = h <= w ? [s, Math.max(s, Math.trunc((s * w) / h))] : [Math.max(s, Math.trunc((s * h) / w)), s];
        if (rh !== h || rw !== w) {
          const shrinking = rh < h || rw < w;
          x = interpolate(x, { size: [rh, rw], mode: 'bicubic', antialias: shrinking && (options.antialias ?? true) ? true : undefined });
        }
        x = x.narrow(2, Math.trunc((rh - s) / 2), s).narrow(3, Math.trunc((rw - s) / 2), s);
      }
      const [mean, std] = x.dtype === this.mean.dtype ? [this.mean, this.std] : [this.mean.to(x.dtype), this.std.to(x.dtype)];
      return x.sub(mean).div(std);
    });
  }

  /** Projected image embeddings [N, projectionDim] of preprocessed pixel values (HF's get_image_features). */
  imageFeatures(pixelValues: Tensor): Tensor {
    return tidy(() => this.visual_projection.forward(this.vision_model.forward(pixelValues).pooled));
  }

  /** Projected text embeddings [B, projectionDim] of token ids [B, T] (HF's get_text_features). */
  textFeatures(inputIds: Tensor): Tensor {
    return tidy(() => this.text_projection.forward(this.text_model.forward(inputIds).pooled));
  }

  /** Embeddings [N, projectionDim] (not normalised) of images [N, C, H, W] in [0, 1]. */
  encodeImage(images: Tensor, options: ClipPreprocessOptions = {}): Tensor {
    return tidy(() => this.imageFeatures(this.preprocess(images, options)));
  }

  /** Embeddings [B, projectionDim] (not normalised) of texts (tokenised with this model's tokenizer) or token ids. */
  encodeText(texts: string | readonly string[] | Tensor): Tensor {
    if (typeof texts !== 'string' && !Array.isArray(texts)) return this.textFeatures(texts as Tensor);
    if (!this.tokenizer) throw new Error('this CLIP model has no tokenizer: pass token ids, or load vocab.json and merges.txt');
    const device = this.logit_scale.device as Device;
    return tidy(() => this.textFeatures(this.tokenizer!.encodeToTensor(texts as string | string[], { device })));
  }

  /**
   * CLIP's logits: exp(logit_scale) · cosine similarity, [images, texts] (HF's logits_per_image; its transpose is
   * logits_per_text).
   */
  similarity(imageEmbeddings: Tensor, textEmbeddings: Tensor): Tensor {
    return tidy(() => cosineSimilarityMatrix(imageEmbeddings, textEmbeddings).mul(this.logit_scale.exp()));
  }

  /** logits_per_image [N, B] for preprocessed pixel values and token ids. */
  forward(pixelValues: Tensor, inputIds: Tensor): Tensor {
    return tidy(() => this.similarity(this.imageFeatures(pixelValues), this.textFeatures(inputIds)));
  }
}

/** cos(aᵢ, bⱼ) for every pair: [N, D] × [M, D] → [N, M]. */
export function cosineSimilarityMatrix(a: Tensor, b: Tensor): Tensor {
  return tidy(() => {
    const unit = (x: Tensor) => x.div(x.norm({ dim: -1, keepdim: true }));
    return unit(a).matmul(unit(b).transpose(0, 1));
  });
}

// ---- loading ------------------------------------------------------------------------------------------------

/** Where {@link loadClip} takes the configuration, tokenizer, device and dtype from. */
export interface LoadClipOptions {
  /** A config, HF config.json's object, or its path. Default: the directory's config.json, else ViT-B/32's. */
  config?: ClipConfigInput | ClipConfig | HfClipConfigJson | string;
  /** The tokenizer, or its files. Default: the directory's vocab.json and merges.txt when both exist; null for none. */
  tokenizer?: ClipTokenizer | { vocab: string; merges: string } | null;
  /** Where the model is loaded. Default 'cpu'. */
  device?: Device;
  /** The model's dtype; stored floating-point tensors are converted to it. Default float32. */
  dtype?: DType;
}

/** What the checkpoint holds that a CLIPModel built by transformers may add and this model does not keep. */
const IGNORED_CHECKPOINT_KEYS = /(^|\.)position_ids$/u;

/**
 * A CLIP model from HF-named safetensors weights: a model.safetensors file, or a directory holding
 * model.safetensors (+ config.json, vocab.json, merges.txt). Throws, naming every missing, unexpected or
 * mis-shaped tensor, when the weights do not fit the config.
 */
export function loadClip(path: string, options: LoadClipOptions = {}): ClipModel {
  const isDirectory = existsSync(path) && statSync(path).isDirectory();
  const weights = isDirectory ? join(path, 'model.safetensors') : path;
  if (!existsSync(weights)) throw new Error(`no CLIP weights at '${weights}'`);

  // A directory is read as a HF model folder; a single file takes its config and tokenizer from the options.
  const config = resolveLoadConfig(options.config, isDirectory ? join(path, 'config.json') : null);
  let tokenizer: ClipTokenizer | null = null;
  // Token rows as long as the text tower's positions (77 for the published models): a smaller model needs shorter rows.
  const contextLength = config.text.maxPositionEmbeddings;
  if (options.tokenizer instanceof ClipTokenizer) tokenizer = options.tokenizer;
  else if (options.tokenizer) tokenizer = ClipTokenizer.fromFiles(options.tokenizer.vocab, options.tokenizer.merges, { contextLength });
  else if (options.tokenizer === undefined && isDirectory && existsSync(join(path, 'vocab.json')) && existsSync(join(path, 'merges.txt'))) {
    tokenizer = ClipTokenizer.fromFiles(join(path, 'vocab.json'), join(path, 'merges.txt'), { contextLength });
  }

  const dtype = options.dtype ?? 'float32';
  const model = new ClipModel(config, { dtype, device: options.device, tokenizer: tokenizer ?? undefined });
  const { tensors } = loadSafetensors(weights, { device: options.device });
  const converted: Tensor[] = [];
  try {
    const state = new Map<string, Tensor>();
    for (const [name, t] of tensors) {
      if (IGNORED_CHECKPOINT_KEYS.test(name)) continue;
      if (isFloatingPoint(t.dtype) && t.dtype !== dtype) {
        const c = t.to(dtype);
        converted.push(c);
        state.set(name, c);
      } else {
        state.set(name, t);
      }
    }
    model.loadStateDict(state);
  } catch (err) {
    model.dispose();
    const hint = [...tensors.keys()].some((k) => k.startsWith('visual.') || k.startsWith('transformer.'))
      ? '\n  (these look like openai/CLIP names; this loader reads HF transformers CLIPModel names)'
      : '';
    throw new Error(`CLIP weights '${weights}' do not fit a CLIP with ${describeConfig(config)}:\n  ${(err as Error).message}${hint}`);
  } finally {
    disposeAll(converted);
    disposeAll(tensors);
  }
  return model.eval();
}

function resolveLoadConfig(config: LoadClipOptions['config'], besideWeights: string | null): ClipConfig {
  if (config === undefined) return besideWeights && existsSync(besideWeights) ? clipConfigFromHf(besideWeights) : clipConfig();
  if (typeof config === 'string') return clipConfigFromHf(config);
  if ('text_config' in config || 'vision_config' in config || 'text_config_dict' in config || 'projection_dim' in config) {
    return clipConfigFromHf(config as HfClipConfigJson);
  }
  return clipConfig(config as ClipConfigInput);
}

function describeConfig(c: ClipConfig): string {
  const v = c.vision;
  const t = c.text;
  return `vision ${v.numHiddenLayers}×${v.hiddenSize} (patch ${v.patchSize}, image ${v.imageSize}), `
    + `text ${t.numHiddenLayers}×${t.hiddenSize} (vocab ${t.vocabSize}, ${t.maxPositionEmbeddings} positions), projection ${c.projectionDim}`;
}

function lowestValue(dtype: DType): number {
  switch (dtype) {
    case 'float64': return -Number.MAX_VALUE;
    case 'float16': return -65504;
    case 'bfloat16': return -3.3895313892515355e38;
    default: return -3.4028234663852886e38;
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
