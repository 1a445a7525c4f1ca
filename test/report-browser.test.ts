// The reports as a reader sees them: pages written into one folder (as `crossmax demo` does) opened in headless
// Chromium (Debian's `chromium` package), where every image must load and no table may be wider than the page.
// Skipped where Chromium is not installed, except in CI (CI=true), where scripts/setup.sh --tests installs it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Generator, rand, setNumThreads, tidy } from '../src/tensor/index.js';
import { HtmlReport, writeGenerateReport, writeRobustReport, writeTrainingReport } from '../src/report/index.js';
import type { GeneratedImages } from '../src/generate/index.js';
import { referenceRequired } from './helpers/python.js';
import { CIFAR10_CLASSES, InMemoryImageDataset } from '../src/data/index.js';
import type { EvaluationResult } from '../src/train/index.js';
import { evaluateRobustness } from '../src/robustness/index.js';
import { proportionEstimate } from '../src/util/statistics.js';
import { Linear, NoisyLinear } from './helpers/linear.js';

setNumThreads(1);

const CHROMIUM = 'chromium';
const chromiumMissing = (() => {
  const probe = spawnSync(CHROMIUM, ['--version'], { encoding: 'utf8' });
  if (probe.status === 0) return null;
  const reason = `${CHROMIUM} is not installed (apt-get install chromium): ${probe.error?.message ?? probe.stderr.trim()}`;
  // In CI the test command has installed it (scripts/setup.sh --tests): a skip there would hide that nothing was looked at.
  if (referenceRequired()) throw new Error(`${reason}; CI needs it: run bash scripts/setup.sh --tests`);
  return reason;
})();

interface Probe {
  /** The page's width and how far its content reaches: equal unless something overflows the page. */
  page: number;
  scroll: number;
  images: { src: string; loaded: boolean }[];
  /** Each table's width and that of the box it sits in (its .table-wrap, which would scroll). */
  tables: { caption: string; width: number; box: number }[];
}

// Appended to a copy of the page next to it (so its relative image paths resolve) and run once everything loaded.
const PROBE_SCRIPT = `<script>
addEventListener('load', () => {
  const images = [...document.images].map((i) => ({ src: i.getAttribute('src'), loaded: i.complete && i.naturalWidth > 0 }));
  const tables = [...document.querySelectorAll('table')].map((t) => ({
    caption: t.caption ? t.caption.textContent : '', width: Math.ceil(t.getBoundingClientRect().width), box: t.parentElement.clientWidth }));
  const probe = { page: document.documentElement.clientWidth, scroll: document.documentElement.scrollWidth, images, tables };
  const out = document.createElement('pre');
  out.id = 'crossmax-probe';
  out.textContent = JSON.stringify(probe);
  document.body.append(out);
});
</script>`;

/** Opens `page` in headless Chromium at 1280 px wide and returns what the probe measured. */
function probePage(page: string): Probe {
  const copy = page.replace(/\.html$/, '.probe.html');
  writeFileSync(copy, readFileSync(page, 'utf8').replace('</body>', `${PROBE_SCRIPT}</body>`));
  const profile = mkdtempSync(join(tmpdir(), 'crossmax-chromium-'));
  try {
    const run = spawnSync(CHROMIUM, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run', `--user-data-dir=${profile}`, '--window-size=1280,2000', '--dump-dom', pathToFileURL(copy).href,
    ], { encoding: 'utf8', timeout: 60_000, maxBuffer: 1 << 26 });
    const dom = /<pre id="crossmax-probe">(.*?)<\/pre>/s.exec(run.stdout ?? '');
    assert.ok(dom, `chromium gave no probe for ${page} (status ${run.status}):\n${run.stderr}`);
    return JSON.parse(dom[1]!.replaceAll('&quot;', '"').replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&')) as Probe;
  } finally {
    rmSync(profile, { recursive: true, force: true });
    rmSync(copy, { force: true });
  }
}

/** A generation run of ten CIFAR classes (random pixels), as `crossmax demo` hands it to writeGenerateReport. */
function generationRun(): GeneratedImages {
  const targets = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
  return {
    images: rand([10, 3, 32, 32], { generator: new Generator(1) }), targets, targetOfImage: targets.map((_, i) => i),
    losses: targets.map((_, i) => Array.from({ length: 5 }, (_, s) => -s * (i + 1))), finalScores: targets.map(() => 0.5), seconds: 1,
    settings: { steps: 5, copies: 2, lr: 0.1, parametrisation: 'multires', perTarget: 1, canvas: 48, resolutions: 6, seed: 0,
      resolutionSizes: [1, 2, 4, 8, 16, 48], squash: 'tanh', optimizer: 'sgd', jitter: 8, noise: 0.2, flip: false, scale: null,
    },
  };
}

test('pages written into one folder show their own images in Chromium, and no table is wider than the page', { skip: chromiumMissing ?? false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-browser-'));
  try {
    const run = generationRun();
    const judges = ['the demo model (generator)', 'runs/cifar-fast/model.safetensors'].map((judge) => ({
      judge, path: judge, agreement: 0.9, allPasses: 0.8, perClass: Object.fromEntries(run.targets.map((c) => [c, 0.9])),
    }));
    const generate = writeGenerateReport(dir, run, { model: 'the demo model', steps: 5 }, judges);
    // Saved after generate.html into the same folder, with images of its own (robust.html in the demo).
    const other = tidy(() => new HtmlReport({ title: 'robust' })
      .gallery([0, 1, 2].map((i) => ({ image: rand([3, 32, 32], { generator: new Generator(100 + i) }), caption: `#${i}` })), { columns: 3 }))
      .save(dir, 'robust.html');
    run.images.dispose();
    for (const page of [generate, other]) {
      const probe = probePage(page);
      assert.ok(probe.images.length > 0, page);
      for (const image of probe.images) assert.ok(image.loaded, `${page}: ${image.src} did not load`);
      for (const table of probe.tables) assert.ok(table.width <= table.box, `${page}: table '${table.caption}' is ${table.width} px wide in a ${table.box} px page`);
      assert.ok(probe.scroll <= probe.page, `${page}: the page scrolls sideways (${probe.scroll} px in ${probe.page} px)`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A clean evaluation of 10,000 CIFAR-10 images as the demo makes it: 6 aggregators, 9 members, 4-digit confusion counts. */
function tenThousandImages(): EvaluationResult {
  const aggregators = ['crossmax', 'mean-logits', 'mean-probabilities', 'median', 'crossmax-median', 'single'].map((name, i) => ({ name, correct: 4700 + 37 * i }));
  const members = [3820, 3950, 4410, 4720, 4890, 4920, 4950, 4940, 4780];
  const confusion = Array.from({ length: 10 }, (_, i) => Array.from({ length: 10 }, (_, j) => (i === j ? 473 : 59 - (j % 3))));
  const bits = (k: number) => '1'.repeat(k) + '0'.repeat(10000 - k);
  return {
    dataset: 'cifar10/test', count: 10000, accuracy: 0.4733, correct: 4733, memberAccuracies: members.map((k) => k / 10000),
    aggregators: aggregators.map((a) => ({ ...a, accuracy: a.correct / 10000 })), confusion,
    perClassAccuracy: confusion.map((row, i) => row[i]! / row.reduce((x, y) => x + y, 0)), samples: [{ index: 0, predicted: 3, label: 3, memberVotes: [3, 3, 5] }],
    outputSource: 'shared-pass',
    intervals: { output: proportionEstimate(4733, 10000), members: members.map((k) => proportionEstimate(k, 10000)), aggregators: aggregators.map((a) => proportionEstimate(a.correct, 10000)) },
    perImageCorrect: { output: bits(4733), aggregators: aggregators.map((a) => bits(a.correct)) }, seconds: 1,
  };
}

test('the reports with 95% intervals in every accuracy cell still fit the page in Chromium', { skip: chromiumMissing ?? false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-browser-'));
  try {
    const testSet = new InMemoryImageDataset({
      name: 'cifar10/test', classes: [...CIFAR10_CLASSES], images: new Uint8Array(3 * 32 * 32).fill(128), labels: new Uint8Array([3]), height: 32, width: 32, source: 'test',
    });
    const training = writeTrainingReport(dir, {
      title: 'crossmax demo', facts: { model: 'tiny' }, metrics: [], evaluation: tenThousandImages(),
      memberNames: ['layer1.0', 'layer1.1', 'layer2.0', 'layer2.1', 'layer3.0', 'layer3.1', 'layer4.0', 'layer4.1', 'fc'], testSet,
    }).html;
    const robust = tidy(() => {
      const images = rand([40, 3, 4, 4], { generator: new Generator(4) });
      const labels = new Linear(3).forward(images).argmax({ dim: 1 });
      const attacks = ['aa-rand/apgd-ce', 'aa-rand/apgd-dlr', 'transfer-mean-logits', 'soft-crossmax', 'square'].map((name) => ({ name, attack: 'fgsm' as const, options: {} }));
      const evaluation = evaluateRobustness(new NoisyLinear(3, 0.6), images, labels, { attacks, eps: 0.03, reEvaluations: 4, masking: false, independent: true });
      return writeRobustReport(evaluation, images, { dir }).html;
    });
    if (process.env.CROSSMAX_KEEP_REPORTS) spawnSync('cp', ['-r', dir, process.env.CROSSMAX_KEEP_REPORTS]);
    for (const page of [training, robust]) {
      const html = readFileSync(page, 'utf8');
      assert.match(html, /\d+\.\d% \[\d+\.\d, \d+\.\d\]/, `${page}: no interval shown`);
      const probe = probePage(page);
      for (const table of probe.tables) assert.ok(table.width <= table.box, `${page}: table '${table.caption}' is ${table.width} px wide in a ${table.box} px page`);
      assert.ok(probe.scroll <= probe.page, `${page}: the page scrolls sideways (${probe.scroll} px in ${probe.page} px)`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
