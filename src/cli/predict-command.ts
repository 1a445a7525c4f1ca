// `crossmax predict`: classes of image files (or folders of them) with every member's vote.
import { readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { decodeImage } from '../data/index.js';
import { loadModel } from '../ensemble/index.js';
import { inferenceMode, tensor, tidy } from '../tensor/index.js';
import { interpolate } from '../nn/index.js';
import { UsageError, deviceFlag, numberFlag, parseCommandArgs, stringFlag } from './args.js';

export const PREDICT_USAGE = `crossmax predict --model FILE IMAGE|FOLDER... [options]

Classifies PNG/JPEG images (folders are searched recursively) and shows every member's vote.
  --model FILE     a crossmax model file
  --top N          classes listed per image with their probability (default 3)
  --device DEV     cpu (default) | cuda | cuda:N
  --json           print the predictions as JSON`;

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);

function collectImages(paths: string[]): string[] {
  const out: string[] = [];
  const visit = (p: string) => {
    let st;
    try { st = statSync(p); } catch { throw new UsageError(`${p}: no such file or folder`); }
    if (st.isDirectory()) {
      for (const name of readdirSync(p).sort()) visit(join(p, name));
    } else if (IMAGE_EXTENSIONS.has(extname(p).toLowerCase())) {
      out.push(p);
    } else if (paths.includes(p)) {
      throw new UsageError(`${p}: not a PNG or JPEG image`);
    }
  };
  for (const p of paths) visit(p);
  return out;
}

export async function predictCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    model: { type: 'string' }, top: { type: 'string' }, device: { type: 'string' }, json: { type: 'boolean' },
  }, true);
  const modelPath = stringFlag(values, 'model');
  if (!modelPath) throw new UsageError('--model FILE is required');
  if (positionals.length === 0) throw new UsageError('give at least one image or folder');
  const top = numberFlag(values, 'top', { integer: true, min: 1 }) ?? 3;
  const files = collectImages(positionals);
  if (files.length === 0) throw new UsageError('no PNG or JPEG images found');
  const device = deviceFlag(values);
  const model = loadModel(modelPath, { device });
  const classes = model.config?.classes ?? Array.from({ length: model.config?.numClasses ?? 0 }, (_, i) => String(i));
  const members = model.memberNames();
  const [h, w] = model.inputSize;
  const results = [];
  try {
    model.eval();
    for (const file of files) {
      const img = decodeImage(file);
      const prediction = tidy(() => inferenceMode(() => {
        // HWC (RGB or RGBA) bytes -> [1, 3, H, W] in [0, 1], resized to what the model was trained on.
        const hwc = tensor(img.rgb, { shape: [img.height, img.width, img.channelsPerPixel], dtype: 'uint8', device });
        let x = hwc.slice(2, 0, 3).permute([2, 0, 1]).unsqueeze(0).float().div(255);
        if (img.height !== h || img.width !== w) x = interpolate(x, { size: [h, w], mode: 'bilinear', antialias: img.height > h }).clamp(0, 1);
        const memberLogits = model.memberLogits(x);
        const probs = model.aggregator.aggregate(memberLogits).softmax(1).select(0, 0);
        const best = probs.topk(Math.min(top, probs.numel));
        const votes = memberLogits.argmax({ dim: 2 }).select(0, 0).toArray();
        return { top: best.indices.toArray().map((c, i) => ({ class: classes[c]!, probability: best.values.toArray()[i]! })), votes };
      }));
      results.push({ file, prediction: prediction.top[0]!.class, top: prediction.top,
        memberVotes: Object.fromEntries(members.map((m, i) => [m, classes[prediction.votes[i]!]!])) });
    }
  } finally {
    model.dispose();
  }
  if (values.json) {
    console.log(JSON.stringify(results, null, 2));
  } else {
    for (const r of results) {
      const agree = Object.values(r.memberVotes).filter((v) => v === r.prediction).length;
      console.log(`${r.file}: ${r.prediction}  (${r.top.map((t) => `${t.class} ${(100 * t.probability).toFixed(1)}%`).join(', ')}; ` +
        `${agree}/${members.length} members agree)`);
      console.log('  votes: ' + Object.entries(r.memberVotes).map(([m, c]) => `${m}=${c}`).join(' '));
    }
  }
  return 0;
}
