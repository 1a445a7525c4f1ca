// Load a crossmax model file and measure its robust accuracy on the first test images: AutoAttack 'rand' (APGD-CE
// and APGD-DLR with EOT) at a small budget, every point re-evaluated R times (all-R: robust only if every pass is
// right). A smoke-sized budget: use `crossmax eval --robust` for the published one.
//   node examples/robust-eval.mjs MODEL_FILE DATA_DIR [IMAGES]
import { autoAttackSuite, evaluateRobustness, loadModel, readCifarBinary, resizeAttackBudget } from 'crossmax';

const [modelFile, dataDir, count = '8'] = process.argv.slice(2);
if (!modelFile || !dataDir) throw new Error('usage: node robust-eval.mjs MODEL_FILE DATA_DIR [IMAGES]');
const model = loadModel(modelFile);
model.eval();
const test = readCifarBinary(dataDir, { name: 'cifar10', split: 'test' });
const { images, labels } = test.batch([...Array(Number(count)).keys()]);
const attacks = autoAttackSuite('rand').map((entry) => resizeAttackBudget(entry, { steps: 5, eot: 2 }));
const { results } = evaluateRobustness(model, images, labels, {
  attacks, eps: 8 / 255, reEvaluations: 3, masking: false, dataSource: `CIFAR-10 test, first ${count}`,
});
console.log(JSON.stringify({ images: Number(count), clean: results.cleanAccuracy, robust: results.worstCase }));
