// The reports as a reader sees them: pages written into one folder (as `crossmax demo` does) opened in headless
// Chromium (Debian's `chromium` package), where every image must load and no table may be wider than the page.
// Skipped where Chromium is not installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Generator, rand, setNumThreads, tidy } from '../src/tensor/index.js';
import { HtmlReport, writeGenerateReport } from '../src/report/index.js';
import type { GeneratedImages } from '../src/generate/index.js';

setNumThreads(1);

const CHROMIUM = 'chromium';
const chromiumMissing = (() => {
  const probe = spawnSync(CHROMIUM, ['--version'], { encoding: 'utf8' });
  return probe.status === 0 ? null : `${CHROMIUM} is not installed (apt-get install chromium): ${probe.error?.message ?? probe.stderr.trim()}`;
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
    settings: { steps: 5, copies: 2, lr: 0.1, parametrisation: 'multires', perTarget: 1, canvas: 48, resolutions: 6, seed: 0 },
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
