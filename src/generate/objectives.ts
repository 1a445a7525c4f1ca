// What generation maximises: per-image scores of augmented views, combined as weighted terms
//   loss = − Σ_terms weight · Σ_images mean_copies score(view)
// A negative weight minimises its term (DAS's negative prompts: target_texts_and_values with weight −0.3).
import { interpolate } from '../nn/functional.js';
import type { Classifier } from '../nn/classifier.js';
import type { ClipModel, ClipPreprocessOptions } from '../models/clip.js';
import { keep, noGrad, stack, tensor, tidy, type Device, type Tensor } from '../tensor/index.js';

/** A differentiable score of images that generation maximises (a class's logit, a CLIP similarity). */
export interface Objective {
  /** Name for progress and results. */
  readonly name: string;
  /** Scores [N] to maximise for images [N, 3, h, w] in [0, 1] (augmented views of the generated images). */
  score(images: Tensor): Tensor;
  /** Frees the tensors the objective holds (target embeddings). */
  dispose?(): void;
}

/** An objective with a weight: positive maximises it, negative minimises it. */
export interface ObjectiveTerm {
  /** The objective. */
  objective: Objective;
  /** Positive maximises the score, negative minimises it. */
  weight: number;
}

/** The objective to maximise with weight |weight|. */
export function maximise(objective: Objective, weight = 1): ObjectiveTerm {
  return { objective, weight: Math.abs(weight) };
}

/** The objective to minimise with weight |weight| (a negative prompt). */
export function minimise(objective: Objective, weight = 1): ObjectiveTerm {
  return { objective, weight: -Math.abs(weight) };
}

/** An Objective alone counts as maximise(objective). */
export function asTerm(entry: Objective | ObjectiveTerm): ObjectiveTerm {
  return 'objective' in entry ? entry : { objective: entry, weight: 1 };
}

// ---- classifiers ----------------------------------------------------------------------------------------------

/** A classifier whose members can be read one by one (a SelfEnsemble, or one seen through another aggregator). */
export interface MemberClassifier extends Classifier {
  /** [N, members, classes]. */
  memberLogits(x: Tensor): Tensor;
  /** One name per member, in memberLogits' order, when the model has them. */
  memberNames?(): string[];
}

/** What a class objective scores: the class's logit, its log-probability or its probability. */
export type ClassQuantity = 'logit' | 'log-prob' | 'prob';

/** Settings of {@link classObjective}. */
export interface ClassObjectiveOptions {
  /** The class to make the images into. */
  classIndex: number;
  /**
   * Which number of that class: 'logit' (default; DAS's classifier example maximises the logit,
   * loss = −model(normalize(images))[:, class].mean()), 'log-prob' (log-softmax), or 'prob'.
   */
  quantity?: ClassQuantity;
  /**
   * Read one member of a self-ensemble (its index in memberLogits, or its name from memberNames(), e.g. 'fc' or
   * 'layer3.5') instead of the aggregated output.
   */
  member?: number | string;
  /**
   * Per-channel normalisation before the classifier, e.g. IMAGENET_NORMALIZATION for a torchvision ResNet. Default
   * null: the classifier takes [0, 1] images (a SelfEnsemble normalises inside when built so).
   */
  normalize?: { readonly mean: readonly number[]; readonly std: readonly number[] } | null;
  /** Resize the views (bicubic) to the classifier's input size first. Default null: as they are. */
  inputSize?: number | [number, number] | null;
  /** Default 'class <index>' (+ the member). */
  name?: string;
}

/** The score of one class under any classifier (forward(x) → logits), or under one member of a self-ensemble. */
export function classObjective(classifier: Classifier | MemberClassifier, options: ClassObjectiveOptions): Objective {
  const { classIndex } = options;
  if (!Number.isInteger(classIndex) || classIndex < 0) throw new RangeError(`classIndex must be a non-negative integer, got ${classIndex}`);
  const quantity = options.quantity ?? 'logit';
  if (!['logit', 'log-prob', 'prob'].includes(quantity)) throw new RangeError(`unknown quantity '${quantity}'`);
  const member = options.member === undefined ? null : resolveMember(classifier, options.member);
  const normalize = options.normalize ?? null;
  if (normalize && (normalize.mean.length !== normalize.std.length || normalize.mean.length === 0)) {
    throw new Error('normalize needs a mean and a std per channel');
  }
  const name = options.name ?? `class ${classIndex}${options.member !== undefined ? ` (member ${String(options.member)})` : ''}`;
  return {
    name,
    score(images: Tensor): Tensor {
      return tidy(() => {
        let x = images;
        if (options.inputSize) x = interpolate(x, { size: options.inputSize, mode: 'bicubic' });
        if (normalize) {
          const shape = [1, normalize.mean.length, 1, 1];
          const device = x.device as Device;
          x = x.sub(tensor([...normalize.mean], { shape, dtype: x.dtype, device })).div(tensor([...normalize.std], { shape, dtype: x.dtype, device }));
        }
        const logits = member === null ? classifier.forward(x) : (classifier as MemberClassifier).memberLogits(x).select(1, member);
        if (logits.ndim !== 2 || classIndex >= logits.shape[1]!) {
          throw new Error(`${name}: the classifier gave logits [${logits.shape.join(', ')}], which have no class ${classIndex}`);
        }
        const values = quantity === 'logit' ? logits : quantity === 'log-prob' ? logits.logSoftmax(1) : logits.softmax(1);
        return values.select(1, classIndex);
      });
    },
  };
}

function resolveMember(classifier: Classifier | MemberClassifier, member: number | string): number {
  const c = classifier as MemberClassifier;
  if (typeof c.memberLogits !== 'function') throw new Error('member was given but the classifier has no memberLogits (not a self-ensemble)');
  if (typeof member === 'number') {
    if (!Number.isInteger(member) || member < 0) throw new RangeError(`member must be a non-negative integer, got ${member}`);
    return member;
  }
  const names = c.memberNames?.() ?? [];
  const index = names.indexOf(member);
  if (index < 0) throw new Error(`no member '${member}' (members: ${names.join(', ') || 'unnamed'})`);
  return index;
}

// ---- CLIP ----------------------------------------------------------------------------------------------------

/** One thing the image should (weight > 0) or should not (weight < 0) look like to CLIP. Exactly one source. */
export interface ClipTarget {
  /** A prompt (needs the model's tokenizer). */
  text?: string;
  /** Token ids [T] or [1, T]. */
  tokens?: Tensor;
  /** An embedding [D] or [1, D] (e.g. of another image, for reconstruction from an embedding). */
  embedding?: Tensor;
  /** An image [3, H, W] or [1, 3, H, W] in [0, 1], embedded once (DAS's guiding_images / style transfer). */
  image?: Tensor;
  /** Default 1; DAS's negative prompts use −0.3. */
  weight?: number;
}

/** Settings of {@link clipObjective}. */
export interface ClipObjectiveOptions {
  /** Default 'clip' + the first prompt. */
  name?: string;
  /**
   * 'mean' (default, DAS's loss_between_images_and_text: torch.mean(scores · target_values, axis=1)) or 'sum' of
   * the weighted cosine similarities over the targets.
   */
  reduction?: 'mean' | 'sum';
  /** How the views are brought to CLIP's input (see ClipModel.preprocess). */
  preprocess?: ClipPreprocessOptions;
}

/**
 * CLIP's weighted cosine similarity between the views and every target, score = reduce_t(w_t · cos(view, t)).
 * The targets are embedded once, without gradient. Dispose the objective to free them.
 */
export function clipObjective(model: ClipModel, targets: string | ClipTarget | readonly ClipTarget[], options: ClipObjectiveOptions = {}): Objective {
  const list: ClipTarget[] = typeof targets === 'string' ? [{ text: targets }] : Array.isArray(targets) ? [...targets] : [targets as ClipTarget];
  if (list.length === 0) throw new Error('clipObjective needs at least one target');
  const device = model.logit_scale.device as Device;
  const dtype = model.logit_scale.dtype;
  const { embeddings, weights } = keep(noGrad(() => tidy(() => {
    const rows = list.map((t, i) => {
      const sources = [t.text, t.tokens, t.embedding, t.image].filter((s) => s !== undefined).length;
      if (sources !== 1) throw new Error(`CLIP target ${i} must have exactly one of text, tokens, embedding, image`);
      let e: Tensor;
      if (t.text !== undefined) e = model.encodeText([t.text]);
      else if (t.tokens) e = model.encodeText(t.tokens.ndim === 1 ? t.tokens.unsqueeze(0) : t.tokens);
      else if (t.embedding) e = t.embedding.reshape([1, -1]).to({ dtype, device });
      else e = model.encodeImage((t.image!.ndim === 3 ? t.image!.unsqueeze(0) : t.image!).to({ dtype, device }), options.preprocess);
      if (e.shape[0] !== 1 || e.shape[1] !== model.config.projectionDim) {
        throw new Error(`CLIP target ${i} gives an embedding of shape [${e.shape.join(', ')}], expected [1, ${model.config.projectionDim}]`);
      }
      return e.div(e.norm({ dim: 1, keepdim: true })).squeeze(0);
    });
    return { embeddings: stack(rows, 0), weights: tensor(list.map((t) => t.weight ?? 1), { dtype, device }) };
  })));
  const reduction = options.reduction ?? 'mean';
  const first = list[0]!;
  const name = options.name ?? `clip ${first.text !== undefined ? JSON.stringify(first.text) : 'target'}${list.length > 1 ? ` +${list.length - 1}` : ''}`;
  return {
    name,
    score(images: Tensor): Tensor {
      return tidy(() => {
        const e = model.encodeImage(images, options.preprocess);
        const weighted = e.div(e.norm({ dim: 1, keepdim: true })).matmul(embeddings.transpose(0, 1)).mul(weights);
        return reduction === 'mean' ? weighted.mean({ dim: 1 }) : weighted.sum({ dim: 1 });
      });
    },
    dispose(): void {
      embeddings.dispose();
      weights.dispose();
    },
  };
}
