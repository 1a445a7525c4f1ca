// Generate one image per class from a crossmax model through the multi-resolution parametrisation (Direct Ascent
// Synthesis: the image is a sum of tensors at every resolution, optimised through jittered, noisy views), and save
// them as one PNG grid.
//   node examples/generate-classes.mjs MODEL_FILE OUT_PNG [STEPS]
import { MultiResolutionImage, classObjective, generate, loadModel, saveImageGrid, cat } from 'crossmax';

const [modelFile, outPng, steps = '10'] = process.argv.slice(2);
if (!modelFile || !outPng) throw new Error('usage: node generate-classes.mjs MODEL_FILE OUT_PNG [STEPS]');
const model = loadModel(modelFile);
model.eval();
const classes = model.config.numClasses;
const images = [];
for (let classIndex = 0; classIndex < classes; classIndex++) {
  const image = new MultiResolutionImage({ size: 40, resolutions: [1, 2, 4, 8, 16, 32, 40], batch: 1 });
  const result = generate({
    parametrisation: image, objectives: [classObjective(model, { classIndex })], steps: Number(steps),
    optimizer: { kind: 'sgd', lr: 1 }, augment: { copies: 8, jitter: 4, cropSize: 32, noise: 0.1 }, seed: classIndex,
  });
  images.push(result.images);
  image.dispose();
}
saveImageGrid(outPng, cat(images, 0), { columns: classes });
console.log(JSON.stringify({ png: outPng, classes }));
