// Train a tiny multi-resolution self-ensemble on the first training images of CIFAR-10 and save it as a model
// file (safetensors + its JSON config, torchvision parameter names).
//   node examples/train-tiny.mjs DATA_DIR OUT_DIR [IMAGES]
// DATA_DIR: the official CIFAR-10 binary release (cifar-10-batches-bin). Writes OUT_DIR/model.safetensors.
import { buildSelfEnsemble, manualSeed, presetConfig, readCifarBinary, train } from 'crossmax';

const [dataDir, outDir, count = '256'] = process.argv.slice(2);
if (!dataDir || !outDir) throw new Error('usage: node train-tiny.mjs DATA_DIR OUT_DIR [IMAGES]');
const all = readCifarBinary(dataDir, { name: 'cifar10', split: 'train' });
const trainSet = all.subset([...Array(Number(count)).keys()]);
const testSet = readCifarBinary(dataDir, { name: 'cifar10', split: 'test' }).subset([...Array(64).keys()]);

manualSeed(0); // seed before building: the weights are drawn from libtorch's default generator
const model = buildSelfEnsemble(presetConfig('cifar-small')); // ResNet-18 layout at 1/4 width, the paper's prior, CrossMax k=3
const result = await train({
  model, trainSet, testSet, outDir, epochs: 1, batchSize: 32, seed: 0,
  optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9, nesterov: true }, progress: false,
});
const test = result.summary.finalTest;
console.log(JSON.stringify({ model: result.modelPath, testAccuracy: test?.accuracy ?? null, testImages: test?.count ?? 0 }));
