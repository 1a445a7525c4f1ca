import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, linkSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { Generator, liveTensorCount, rand, setNumThreads, tensor, zeros, type Tensor } from '../src/tensor/index.js';
import {
  encodePng, savePng, perturbationToImage, autoAmplification, imageGrid, saveImageGrid, gridLayout,
  lineChartSvg, lineChartPng, saveChart, linearTicks, logTicks, niceStep, formatCompact,
  HtmlReport, writeJsonAtomic, type LineChartSpec,
} from '../src/report/index.js';
import { toJson, JsonLinesWriter, readJsonLines } from '../src/util/json.js';

setNumThreads(1);

const dir = mkdtempSync(join(tmpdir(), 'crossmax-report-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
let counter = 0;
const fresh = (name: string) => join(dir, `${counter++}-${name}`);

function decode(bytes: Uint8Array): PNG {
  return PNG.sync.read(Buffer.from(bytes));
}
/** [r, g, b] of pixel (x, y) of a decoded PNG (pngjs always decodes to RGBA). */
function pixel(png: PNG, x: number, y: number): [number, number, number] {
  const i = (y * png.width + x) * 4;
  return [png.data[i]!, png.data[i + 1]!, png.data[i + 2]!];
}
/** torchvision.utils.save_image's conversion of one value. */
const toByte = (v: number) => Math.min(255, Math.max(0, Math.floor(v * 255 + 0.5)));

describe('PNG', () => {
  test('float [3, H, W] round trip matches save_image conversion, with clipping', () => {
    const values = [0, 0.25, 0.5, 1, -0.3, 1.7, 0.1, 0.9, 0.002, 0.998, 0.5, 0.75];
    using image = tensor(values, { shape: [3, 2, 2] });
    const png = decode(encodePng(image));
    assert.equal(png.width, 2);
    assert.equal(png.height, 2);
    for (let y = 0; y < 2; y++) {
      for (let x = 0; x < 2; x++) {
        const expected = [0, 1, 2].map((c) => toByte(values[c * 4 + y * 2 + x]!));
        assert.deepEqual(pixel(png, x, y), expected, `pixel (${x}, ${y})`);
      }
    }
    assert.deepEqual(pixel(png, 0, 0), [0, 0, 1]); // -0.3 clipped to 0; 0.002·255 + 0.5 = 1.01
    assert.deepEqual(pixel(png, 1, 0), [64, 255, 254]); // 0.25 → 64; 1.7 clipped to 255; 0.998 → 254.99
    assert.deepEqual(pixel(png, 0, 1), [128, 26, 128]);
  });

  test('infinities clip, NaN is an error naming the problem and its place', () => {
    using image = tensor([Infinity, -Infinity, 0.5, NaN], { shape: [2, 2] });
    assert.throws(() => encodePng(image), /1 NaN value \(first at channel 0, row 1, column 1\)/);
    using finite = tensor([Infinity, -Infinity, 0.5, 0], { shape: [2, 2] });
    const png = decode(encodePng(finite));
    assert.deepEqual([pixel(png, 0, 0)[0], pixel(png, 1, 0)[0], pixel(png, 0, 1)[0]], [255, 0, 128]);
  });

  test('uint8 and grey images keep their values exactly', () => {
    const bytes = Uint8Array.from({ length: 3 * 4 * 5 }, (_, i) => (i * 37) % 256);
    using rgb = tensor(bytes, { shape: [3, 4, 5] });
    const png = decode(encodePng(rgb));
    for (let y = 0; y < 4; y++) for (let x = 0; x < 5; x++) {
      assert.deepEqual(pixel(png, x, y), [0, 1, 2].map((c) => bytes[c * 20 + y * 5 + x]!));
    }
    using grey = tensor([0, 0.5, 1, 0.2, 0.4, 0.6], { shape: [2, 3] });
    const decoded = decode(encodePng(grey));
    assert.deepEqual(pixel(decoded, 1, 0), [128, 128, 128]);
    assert.deepEqual(pixel(decoded, 2, 1), [153, 153, 153]);
  });

  test('integer scaling repeats each pixel into a block', () => {
    using image = rand([3, 3, 4], { generator: new Generator(1) });
    const small = decode(encodePng(image));
    const big = decode(encodePng(image, { scale: 3 }));
    assert.equal(big.width, 12);
    assert.equal(big.height, 9);
    for (let y = 0; y < 9; y++) for (let x = 0; x < 12; x++) {
      assert.deepEqual(pixel(big, x, y), pixel(small, Math.floor(x / 3), Math.floor(y / 3)));
    }
    assert.throws(() => encodePng(image, { scale: 1.5 }), /scale must be a positive integer/);
  });

  test('shape and dtype errors; savePng writes a decodable file; no tensor leaks', () => {
    using batch = zeros([2, 3, 4, 4]);
    assert.throws(() => encodePng(batch), /batch.*imageGrid/);
    using wrongChannels = zeros([2, 4, 4]);
    assert.throws(() => encodePng(wrongChannels), /expected an image/);
    using ints = zeros([4, 4], { dtype: 'int64' });
    assert.throws(() => encodePng(ints), /dtype/);
    using image = rand([3, 5, 6]);
    const before = liveTensorCount();
    const path = fresh('image.png');
    savePng(path, image, { scale: 2 });
    assert.equal(liveTensorCount(), before);
    const png = decode(readFileSync(path));
    assert.equal(png.width, 12);
    assert.equal(png.height, 10);
  });
});

describe('perturbation images', () => {
  test('0.5 + amplify·δ, clipped', () => {
    using clean = tensor([0.2, 0.5, 0.9, 0.0], { shape: [1, 2, 2] });
    using adv = tensor([0.21, 0.48, 0.9, 0.1], { shape: [1, 2, 2] });
    using image = perturbationToImage(adv, clean, { amplify: 10 });
    const v = image.toArray();
    [0.6, 0.3, 0.5, 1].forEach((e, i) => assert.ok(Math.abs(v[i]! - e) < 1e-5, `value ${i}: ${v[i]} vs ${e}`));
  });

  test("'auto' maps the largest |δ| to 0 or 1 and reports its factor", () => {
    using clean = tensor([0.5, 0.5, 0.5, 0.5], { shape: [1, 2, 2] });
    using adv = tensor([0.5 + 4 / 255, 0.5 - 8 / 255, 0.5, 0.5 + 2 / 255], { shape: [1, 2, 2] });
    using image = perturbationToImage(adv, clean);
    const v = image.toArray();
    [0.75, 0, 0.5, 0.625].forEach((e, i) => assert.ok(Math.abs(v[i]! - e) < 1e-5, `value ${i}: ${v[i]} vs ${e}`));
    assert.ok(Math.abs(autoAmplification(adv, clean) - 0.5 / (8 / 255)) < 1e-3);
    using same = perturbationToImage(clean, clean);
    assert.deepEqual(same.toArray(), [0.5, 0.5, 0.5, 0.5]);
    using other = zeros([1, 2, 3]);
    assert.throws(() => perturbationToImage(other, clean), /differ in shape/);
    assert.throws(() => perturbationToImage(adv, clean, { amplify: -1 }), /amplify/);
  });
});

describe('image grid', () => {
  test('geometry: padding around and between cells, scale, incomplete last row', () => {
    const layout = gridLayout(5, 8, 12, { columns: 3, padding: 2 });
    assert.equal(layout.width, 2 + 3 * (12 + 2));
    assert.equal(layout.height, 2 + 2 * (8 + 2));
    assert.equal(layout.rows, 2);
    assert.deepEqual(layout.cells[4], { index: 4, row: 1, column: 1, x: 16, y: 12, width: 12, height: 8 });
    assert.equal(gridLayout(3, 4, 4).columns, 3); // fewer images than the default 8 columns
  });

  test('pixels land in their cells, background elsewhere; grey images become RGB', () => {
    using images = rand([5, 3, 4, 6], { generator: new Generator(2) });
    const before = liveTensorCount();
    const grid = imageGrid(images, { columns: 3, padding: 2, scale: 2, background: [1, 0, 0] });
    assert.equal(liveTensorCount(), before + 1);
    assert.deepEqual(grid.image.shape, [3, grid.height, grid.width]);
    const g = grid.image.toArray();
    const src = images.toArray();
    const at = (c: number, y: number, x: number) => g[(c * grid.height + y) * grid.width + x]!;
    for (const cell of grid.cells) {
      for (const [dy, dx] of [[0, 0], [7, 11], [3, 5]] as const) {
        for (let c = 0; c < 3; c++) {
          const expected = src[((cell.index * 3 + c) * 4 + Math.floor(dy / 2)) * 6 + Math.floor(dx / 2)]!;
          assert.equal(at(c, cell.y + dy, cell.x + dx), expected, `cell ${cell.index} (${dy}, ${dx}) channel ${c}`);
        }
      }
    }
    assert.deepEqual([0, 1, 2].map((c) => at(c, 0, 0)), [1, 0, 0]); // top-left padding
    const empty = { x: grid.width - 5, y: grid.height - 5 }; // where the sixth cell would be
    assert.deepEqual([0, 1, 2].map((c) => at(c, empty.y, empty.x)), [1, 0, 0]);
    grid.image.dispose();

    using grey = tensor(Uint8Array.from([0, 255, 51, 102]), { shape: [2, 1, 1, 2] });
    const greyGrid = imageGrid(grey, { padding: 0 });
    assert.deepEqual(greyGrid.image.toArray(), Array.from(Float32Array.from([0, 1, 0.2, 0.4, 0, 1, 0.2, 0.4, 0, 1, 0.2, 0.4])));
    greyGrid.image.dispose();
    assert.throws(() => imageGrid(grey.reshape([2, 2])), /\[N, 3, H, W\]/);
  });

  test('saveImageGrid writes a PNG of the grid size', () => {
    using images = rand([10, 3, 8, 8]);
    const path = fresh('grid.png');
    const layout = saveImageGrid(path, images, { columns: 4, scale: 2 });
    const png = decode(readFileSync(path));
    assert.deepEqual([png.width, png.height], [layout.width, layout.height]);
    assert.deepEqual([layout.width, layout.height], [2 + 4 * 18, 2 + 3 * 18]);
    assert.deepEqual(pixel(png, 0, 0), [255, 255, 255]);
  });
});

/** Checks that every tag is closed in order (a minimal XML well-formedness check) and counts elements by name. */
function parseTags(xml: string): Map<string, number> {
  const counts = new Map<string, number>();
  const stack: string[] = [];
  for (const m of xml.matchAll(/<(\/?)([a-zA-Z][\w:-]*)((?:[^>"']|"[^"]*"|'[^']*')*?)(\/?)>/g)) {
    const [, closing, name, attributes, selfClosing] = m;
    assert.doesNotMatch(attributes!, /<|&(?!amp;|lt;|gt;|quot;|#39;)/, `unescaped markup in <${name}${attributes}>`);
    if (closing) {
      assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    } else {
      counts.set(name!, (counts.get(name!) ?? 0) + 1);
      if (!selfClosing) stack.push(name!);
    }
  }
  assert.deepEqual(stack, [], 'unclosed elements');
  // Text between tags must not hold raw '<' or unescaped '&'.
  const text = xml.replace(/<(?:[^>"']|"[^"]*"|'[^']*')*>/g, '');
  assert.doesNotMatch(text, /[<>]|&(?!amp;|lt;|gt;|quot;|#39;)/);
  return counts;
}

const trainingSpec: LineChartSpec = {
  title: 'Loss <script>alert("x")</script> & accuracy',
  xLabel: 'epoch',
  yLabel: 'value',
  series: [
    { name: 'train loss', x: [1, 2, 3, 4, 5], y: [2.3, 1.5, 1.1, 0.9, 0.8] },
    { name: 'test <acc>', x: [1, 2, 3, 4, 5], y: [0.1, 0.4, null, 0.6, 0.65] },
    { name: 'adv acc', x: [1, 3, 5], y: [0.05, 0.2, 0.3], color: '#000' },
  ],
};

describe('charts', () => {
  test('nice linear ticks', () => {
    assert.equal(niceStep(0, 1, 5), 0.2);
    assert.equal(niceStep(0, 37, 8), 5);
    assert.equal(niceStep(0, 37, 4), 10);
    assert.deepEqual(linearTicks(0, 1, 5).ticks, [0, 0.2, 0.4, 0.6, 0.8, 1]);
    const t = linearTicks(0.13, 0.87, 4);
    assert.deepEqual(t.ticks, [0.2, 0.4, 0.6, 0.8]);
    assert.deepEqual([t.niceLo, t.niceHi], [0, 1]);
    assert.deepEqual(linearTicks(-3, 3, 6).ticks, [-3, -2, -1, 0, 1, 2, 3]);
  });

  test('log ticks: decades, 1-2-5 within a decade or two, thinned over many decades', () => {
    assert.deepEqual(logTicks(1e-3, 1, 5), [0.001, 0.01, 0.1, 1]);
    assert.deepEqual(logTicks(0.0019, 0.07, 6), [0.002, 0.005, 0.01, 0.02, 0.05]);
    assert.deepEqual(logTicks(1e-9, 1e3, 4), [1e-9, 1e-6, 0.001, 1, 1000]);
    assert.deepEqual(logTicks(3, 7, 5), [3, 4, 5, 6, 7]);
    assert.equal(formatCompact(1e-7), '1e-7');
    assert.equal(formatCompact(0.002), '0.002');
    assert.equal(formatCompact(2500000), '2.5e6');
  });

  test('SVG is well formed: one path per series, ticks, escaped text', () => {
    const svg = lineChartSvg(trainingSpec);
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    const tags = parseTags(svg);
    assert.equal(tags.get('svg'), 1);
    assert.equal([...svg.matchAll(/<path class="series"/g)].length, 3);
    const xLabels = [...svg.matchAll(/class="tick x-tick"[^>]*>([^<]*)</g)].map((m) => m[1]!);
    assert.ok(xLabels.length >= 3);
    assert.ok(xLabels.every((l) => /^\d+$/.test(l)), `whole-number x data (epochs) gets whole-number ticks: ${xLabels}`);
    assert.ok([...svg.matchAll(/class="tick y-tick"/g)].length >= 3);
    assert.doesNotMatch(svg, /<script/);
    assert.match(svg, /Loss &lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt; &amp; accuracy/);
    assert.match(svg, /data-series="test &lt;acc&gt;"/);
    // The gap (null) splits the second series into two sub-paths.
    const d = /data-series="test &lt;acc&gt;" d="([^"]+)"/.exec(svg)![1]!;
    assert.equal([...d.matchAll(/M/g)].length, 2);
    assert.match(svg, /class="legend-label"[^>]*>train loss</);
  });

  test('log-scale x axis labels decades and refuses non-positive x', () => {
    const spec: LineChartSpec = {
      xScale: 'log', yRange: [0, 1],
      series: [{ name: 'APGD', x: [0.001, 0.01, 0.1, 1], y: [0.9, 0.7, 0.3, 0.01] }],
    };
    const svg = lineChartSvg(spec);
    const labels = [...svg.matchAll(/class="tick x-tick"[^>]*>([^<]*)</g)].map((m) => m[1]);
    assert.deepEqual(labels, ['0.001', '0.01', '0.1', '1']);
    const xs = [...svg.matchAll(/class="grid" x1="([\d.]+)"/g)].map((m) => Number(m[1]));
    // Equal spacing per decade.
    assert.ok(Math.abs((xs[1]! - xs[0]!) - (xs[3]! - xs[2]!)) <= 1, `decade spacing ${xs}`);
    assert.throws(() => lineChartSvg({ ...spec, series: [{ name: 'clean', x: [0, 0.01], y: [0.9, 0.7] }] }), /x\[0\] = 0 cannot be shown on a log-scale/);
  });

  test('PNG chart: size, and series colours exactly where the SVG draws the lines', () => {
    const spec: LineChartSpec = {
      title: 'Test chart', xLabel: 'eps', yLabel: 'accuracy', width: 400, height: 300, markers: false,
      series: [
        { name: 'red', x: [0, 1, 2, 3], y: [0.1, 0.9, 0.2, 0.8], color: '#ff0000' },
        { name: 'blue', x: [0, 3], y: [0.5, 0.5], color: '#0000ff' },
      ],
    };
    const png = decode(lineChartPng(spec, { pixelRatio: 2 }));
    assert.deepEqual([png.width, png.height], [800, 600]);
    const svg = lineChartSvg(spec);
    for (const [name, color] of [['red', [255, 0, 0]], ['blue', [0, 0, 255]]] as const) {
      const d = new RegExp(`data-series="${name}" d="([^"]+)"`).exec(svg)![1]!;
      const points = [...d.matchAll(/[ML]([\d.]+) ([\d.]+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
      for (let i = 1; i < points.length; i++) {
        // Midpoint of each segment, away from crossings with the other series.
        for (const t of [0.3, 0.7]) {
          const x = Math.floor((points[i - 1]![0]! * (1 - t) + points[i]![0]! * t) * 2);
          const y = Math.floor((points[i - 1]![1]! * (1 - t) + points[i]![1]! * t) * 2);
          assert.deepEqual(pixel(png, x, y), color, `${name} segment ${i} at (${x}, ${y})`);
        }
      }
    }
    // The title's text is drawn (dark pixels in the top band), the corner is background.
    let dark = 0;
    for (let y = 0; y < 60; y++) for (let x = 300; x < 500; x++) if (pixel(png, x, y)[0] < 100) dark++;
    assert.ok(dark > 50, `title pixels: ${dark}`);
    assert.deepEqual(pixel(png, 0, 0), [255, 255, 255]);
    // Anti-aliasing: some pixels are between the line colour and the background.
    const small = decode(lineChartPng(spec, { pixelRatio: 1 }));
    let partial = 0;
    for (let i = 0; i < small.data.length; i += 4) {
      if (small.data[i] === 255 && small.data[i + 1]! > 20 && small.data[i + 1]! < 235 && small.data[i + 1] === small.data[i + 2]) partial++;
    }
    assert.ok(partial > 20, `anti-aliased red pixels: ${partial}`);
  });

  test('saveChart picks the format from the extension; bad colours and lengths are errors', () => {
    const svgPath = fresh('chart.svg');
    const pngPath = fresh('chart.png');
    saveChart(svgPath, trainingSpec);
    saveChart(pngPath, trainingSpec, { pixelRatio: 1 });
    assert.match(readFileSync(svgPath, 'utf8'), /^<svg/);
    assert.deepEqual([...readFileSync(pngPath).subarray(1, 4)], [0x50, 0x4e, 0x47]);
    assert.throws(() => lineChartSvg({ series: [{ name: 'a', x: [1], y: [1], color: 'red' }] }), /'#rgb' or '#rrggbb'/);
    assert.throws(() => lineChartSvg({ series: [{ name: 'a', x: [1, 2], y: [1] }] }), /x has 2 values, y has 1/);
  });
});

describe('HTML report', () => {
  function sampleReport(): HtmlReport {
    using image = rand([3, 8, 8], { generator: new Generator(3) });
    return new HtmlReport({ title: 'Run <1>', subtitle: 'a & b' })
      .heading('Results')
      .paragraph('Accuracy of <b>everything</b>')
      .keyValues({ model: 'resnet18', eps: 8 / 255, '<k>': '<v>' })
      .table({
        caption: 'per attack',
        columns: [{ key: 'attack' }, { key: 'acc', percent: true, best: 'max' }, { key: 'loss', decimals: 3, best: 'min' }],
        rows: [{ attack: 'PGD', acc: 0.5, loss: 1.23456 }, { attack: '<Square>', acc: 0.723, loss: 0.5 }, { attack: 'FGSM', acc: 0.723, loss: 2 }],
      })
      .chart(trainingSpec, { caption: 'curves' })
      .gallery([
        { image, caption: '<script>alert(1)</script>', highlight: 'wrong' },
        { image: 'other.png', caption: 'true: cat\npred: cat', highlight: 'correct' },
      ])
      .image('grid.png', { caption: 'a grid' })
      .json({ b: [1, NaN], a: '</pre>' }, { sortKeys: true })
      .warnings(['gradient <masking>?'])
      .warnings([]);
  }

  test('everything the caller gives is escaped; the markup is well formed', () => {
    const html = sampleReport().toHtml();
    assert.doesNotMatch(html, /<script/i);
    assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(html, /<title>Run &lt;1&gt;<\/title>/);
    assert.match(html, /Accuracy of &lt;b&gt;everything&lt;\/b&gt;/);
    assert.match(html, /gradient &lt;masking&gt;\?/);
    assert.match(html, /&quot;a&quot;: &quot;&lt;\/pre&gt;&quot;,\n {2}&quot;b&quot;: \[\n {4}1,\n {4}null/);
    assert.match(html, /true: cat<br>pred: cat/);
    assert.equal([...html.matchAll(/class="warnings"/g)].length, 1);
    assert.doesNotMatch(html, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'nothing fetched from the network');
    const body = html.slice(html.indexOf('<html'));
    const tags = parseTags(body.replace(/<(meta|img|br)\b[^>]*>/g, '<$1/>'));
    assert.equal(tags.get('svg'), 1);
  });

  test('table: numbers formatted, the best value per column marked (ties too)', () => {
    const html = sampleReport().toHtml();
    assert.match(html, /<td class="num">50\.0%<\/td>/);
    assert.equal([...html.matchAll(/<td class="num best">72\.3%<\/td>/g)].length, 2);
    assert.match(html, /<td class="num">1\.235<\/td>/);
    assert.match(html, /<td class="num best">0\.500<\/td>/);
    assert.match(html, /<td>&lt;Square&gt;<\/td>/);
  });

  test('save writes images and page atomically and replaces, not overwrites, an old page', () => {
    const out = fresh('report');
    const report = sampleReport();
    const first = report.save(out);
    assert.equal(first, join(out, 'index.html'));
    const html = readFileSync(first, 'utf8');
    const srcs = [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);
    assert.deepEqual(srcs.slice(1), ['other.png', 'grid.png']);
    assert.match(srcs[0]!, /^assets\/[0-9a-f]{20}\.png$/);
    const png = decode(readFileSync(join(out, srcs[0]!)));
    assert.deepEqual([png.width, png.height], [8, 8]);
    // A hard link to the old page keeps the old bytes: the new page was renamed into place, not written into it.
    const link = join(out, 'old.html');
    linkSync(first, link);
    new HtmlReport({ title: 'second' }).paragraph('new').save(out);
    assert.match(readFileSync(first, 'utf8'), /<title>second<\/title>/);
    assert.equal(readFileSync(link, 'utf8'), html);
    assert.deepEqual(readdirSync(out).filter((f) => f.endsWith('.tmp')), []);
  });
});

describe('reports sharing one folder', () => {
  /** The <img> sources of a saved page, in page order. */
  const imageSources = (page: string) => [...readFileSync(page, 'utf8').matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);

  test('every <img> of each report shows the bytes that report encoded, whatever was saved after it', () => {
    // What `crossmax demo` does: index.html, robust.html and generate.html in one folder, all with image
    // galleries (numbered asset names once made the last page saved replace the others' pictures).
    const out = fresh('shared');
    const generator = new Generator(7);
    const pages = [
      { fileName: 'index.html', images: [rand([3, 8, 8], { generator }), rand([3, 8, 8], { generator })] },
      { fileName: 'robust.html', images: [rand([3, 8, 8], { generator }), rand([3, 4, 4], { generator }), rand([3, 8, 8], { generator })] },
      { fileName: 'generate.html', images: [rand([3, 6, 6], { generator })] },
    ];
    // An image two reports both show (a test photo in index.html and robust.html) may share its file.
    pages[1]!.images.push(pages[0]!.images[0]!.clone());
    const expected = pages.map((p) => p.images.map((image) => encodePng(image, { scale: 2 })));
    const saved = pages.map((p) => {
      const report = new HtmlReport({ title: p.fileName }).gallery(p.images.map((image) => ({ image })), { scale: 2 });
      for (const image of p.images) image.dispose();
      return report.save(out, p.fileName);
    });
    saved.forEach((page, k) => {
      const srcs = imageSources(page);
      assert.equal(srcs.length, expected[k]!.length, page);
      srcs.forEach((src, i) => assert.deepEqual(new Uint8Array(readFileSync(join(out, src))), expected[k]![i], `${pages[k]!.fileName}: image ${i + 1} (${src})`));
    });
    const all = saved.flatMap(imageSources);
    assert.equal(new Set(all).size, all.length - 1, 'one file per distinct image');
    assert.equal(readdirSync(join(out, 'assets')).length, all.length - 1);
  });
});

describe('JSON', () => {
  test('writeJsonAtomic: sorted keys, non-finite numbers, typed arrays; tensors refused', () => {
    const path = fresh('result.json');
    writeJsonAtomic(path, { b: 1, a: { d: [3, Infinity], c: new Float32Array([0.5]) }, n: NaN, big: 12n }, { sortKeys: true });
    assert.equal(readFileSync(path, 'utf8'), '{\n  "a": {\n    "c": [\n      0.5\n    ],\n    "d": [\n      3,\n      null\n    ]\n  },\n  "b": 1,\n  "big": 12,\n  "n": null\n}\n');
    assert.equal(toJson({ loss: -Infinity }, { nonFinite: 'string', indent: 0 }), '{"loss":"-Infinity"}');
    assert.throws(() => toJson({ epochs: [{ loss: NaN }] }, { nonFinite: 'error' }), /\$\.epochs\[0\]\.loss is NaN/);
    using t = zeros([2]);
    assert.throws(() => toJson({ acc: t as Tensor }), /\$\.acc is a tensor/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => toJson(cyclic), /circular/);
  });

  test('JSON Lines: a cut-off last line is skipped on read and removed on reopen', () => {
    const path = fresh('metrics.jsonl');
    {
      using log = new JsonLinesWriter(path);
      log.write({ epoch: 1, loss: 2.1 });
      log.write({ epoch: 2, loss: 1.5, note: 'line\nbreak' });
      log.write({ epoch: 3, loss: NaN });
    }
    // What a process killed in the middle of a write leaves behind.
    appendFileSync(path, '{"epoch": 4, "lo');
    assert.deepEqual(readJsonLines(path), [{ epoch: 1, loss: 2.1 }, { epoch: 2, loss: 1.5, note: 'line\nbreak' }, { epoch: 3, loss: null }]);
    assert.throws(() => readJsonLines(path, { strict: true }), /:4: not a JSON line/);
    const log = new JsonLinesWriter(path);
    log.write({ epoch: 4, loss: 1.2 });
    log.close();
    assert.throws(() => log.write({}), /closed/);
    assert.deepEqual(readJsonLines<{ epoch: number }>(path).map((r) => r.epoch), [1, 2, 3, 4]);
    assert.ok(readFileSync(path, 'utf8').endsWith('{"epoch":4,"loss":1.2}\n'));
    // A complete last line without its newline is kept; a bad line in the middle is an error.
    const other = fresh('other.jsonl');
    writeFileSync(other, '{"a":1}\n\n{"a":2}');
    assert.deepEqual(readJsonLines(other), [{ a: 1 }, { a: 2 }]);
    writeFileSync(other, '{"a":1}\n{"a":\n{"a":3}\n');
    assert.throws(() => readJsonLines(other), /:2: not a JSON line/);
    // A log that is only a partial line is emptied when reopened.
    const partial = fresh('partial.jsonl');
    writeFileSync(partial, '{"a":');
    new JsonLinesWriter(partial).close();
    assert.equal(readFileSync(partial, 'utf8'), '');
    assert.ok(existsSync(partial));
  });

  test('JSON Lines: replace starts the log afresh with given records (a resumed run), then appends', () => {
    const path = fresh('replaced.jsonl');
    writeFileSync(path, '{"old":1}\n{"old":2}\n{"cut');
    const log = new JsonLinesWriter(path, { replace: [{ step: 1, loss: 0.5 }, { step: 2, loss: NaN }] });
    log.write({ step: 3, note: undefined });
    log.close();
    assert.equal(readFileSync(path, 'utf8'), '{"step":1,"loss":0.5}\n{"step":2,"loss":null}\n{"step":3}\n');
    new JsonLinesWriter(path, { replace: [] }).close();
    assert.equal(readFileSync(path, 'utf8'), '');
  });
});
