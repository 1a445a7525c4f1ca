// WebDataset shards as a data source: samples grouped by key across shards in order, labels from .cls / .json /
// .txt, the decoded cache (miss, hit, invalidated by a changed shard), errors that name the shard and the sample,
// and the --data registry (wds:DIR, detection of a bare directory, class names from classes.txt or the labels).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DataSpecError, WebDatasetDataset, listShards, loadDataSpec, loadWebDataset, parseDataSpec, scanWebDatasetLabels, splitSampleName,
} from '../src/data/index.js';
import { jpegBytes, planar, pngBytes, rgbPixels, sampleEntries, writeShard } from './helpers/shards.js';

const work = mkdtempSync(join(tmpdir(), 'crossmax-webdataset-test-'));
after(() => rmSync(work, { recursive: true, force: true }));
let count = 0;
const fresh = (name: string) => {
  const dir = join(work, `${name}-${count++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
};

test('splitSampleName: the key is the path up to the first dot of the file name', () => {
  assert.deepEqual(splitSampleName('00042.jpg'), { key: '00042', field: 'jpg' });
  assert.deepEqual(splitSampleName('./a/b/x.seg.PNG'), { key: 'a/b/x', field: 'seg.png' });
  assert.deepEqual(splitSampleName('dir.v2/x.cls'), { key: 'dir.v2/x', field: 'cls' });
  assert.equal(splitSampleName('README'), null);
  assert.equal(splitSampleName('.hidden'), null);
});

test('loadWebDataset: samples in shard order (natural order of names), exact PNG pixels, JPEG close, labels from .cls', () => {
  const dir = fresh('read');
  // train-10 after train-2: natural order, not string order.
  writeShard(join(dir, 'train-10.tar'), sampleEntries([['00003', 4, 3]]));
  writeShard(join(dir, 'train-2.tar'), [...sampleEntries([['00000', 2, 0], ['00001', 0, 1]]), ...sampleEntries([['00002', 1, 2]], { format: 'jpg' })]);
  writeFileSync(join(dir, 'notes.txt'), 'not a shard');
  assert.deepEqual(listShards(dir).map((s) => s.slice(dir.length + 1)), ['train-2.tar', 'train-10.tar']);
  const data = loadWebDataset(dir, { cacheDir: null });
  assert.ok(data instanceof WebDatasetDataset);
  assert.equal(data.length, 4);
  assert.deepEqual([data.height, data.width], [8, 8]);
  assert.deepEqual([...data.labels], [2, 0, 1, 4]);
  // Index labels without names: classes '0' .. the largest label.
  assert.deepEqual(data.classes, ['0', '1', '2', '3', '4']);
  const size = 3 * 64;
  assert.deepEqual([...data.images.subarray(0, size)], [...planar(rgbPixels(8, 8, 0), 8, 8)]);
  assert.deepEqual([...data.images.subarray(3 * size, 4 * size)], [...planar(rgbPixels(8, 8, 3), 8, 8)]);
  const jpegError = data.images.subarray(2 * size, 3 * size).reduce((a, v, i) => a + Math.abs(v - planar(rgbPixels(8, 8, 2), 8, 8)[i]!), 0) / size;
  assert.ok(jpegError < 20, `JPEG mean abs error ${jpegError}`);
  assert.equal(data.cache.status, 'disabled');
  assert.match(data.source, /WebDataset shards: 2 files/);

  // Given class names and a label map (e.g. fine to coarse labels).
  const named = loadWebDataset(dir, { cacheDir: null, classes: ['a', 'b', 'c', 'd', 'e', 'f'] });
  assert.deepEqual(named.classes, ['a', 'b', 'c', 'd', 'e', 'f']);
  const mapped = loadWebDataset(dir, { cacheDir: null, labelMap: [1, 1, 0, 0, 1], classes: ['even', 'odd'] });
  assert.deepEqual([...mapped.labels], [0, 1, 1, 1]);
  assert.throws(() => loadWebDataset(dir, { cacheDir: null, classes: ['a', 'b'] }), /train-2\.tar: sample '00000': label 2 out of range for 2 classes/);
  // A single shard file.
  assert.equal(loadWebDataset(join(dir, 'train-10.tar'), { cacheDir: null }).length, 1);
});

test('loadWebDataset: the decoded cache is written once, read back identically, and rebuilt when a shard changes', () => {
  const dir = fresh('cache');
  const cacheDir = join(dir, 'cache');
  const shard = writeShard(join(dir, 'shards', 'a.tar'), sampleEntries([['x0', 1, 5], ['x1', 0, 6], ['x2', 2, 7]]));
  const first = loadWebDataset(join(dir, 'shards'), { cacheDir });
  assert.equal(first.cache.status, 'miss');
  const second = loadWebDataset(join(dir, 'shards'), { cacheDir });
  assert.equal(second.cache.status, 'hit');
  assert.equal(second.cache.path, first.cache.path);
  assert.deepEqual([...second.images], [...first.images]);
  assert.deepEqual([...second.labels], [...first.labels]);
  assert.deepEqual(second.classes, first.classes);
  // Other options, another cache file (the label map changes the labels).
  assert.equal(loadWebDataset(join(dir, 'shards'), { cacheDir, labelMap: [0, 0, 1] }).cache.status, 'miss');
  // The shard rewritten with other labels: the old cache is not used.
  writeShard(shard, sampleEntries([['x0', 0, 5], ['x1', 0, 6], ['x2', 0, 7]]));
  utimesSync(shard, new Date(), new Date(Date.now() + 5000));
  const third = loadWebDataset(join(dir, 'shards'), { cacheDir });
  assert.equal(third.cache.status, 'invalidated');
  assert.deepEqual([...third.labels], [0, 0, 0]);
  assert.equal(loadWebDataset(join(dir, 'shards'), { cacheDir }).cache.status, 'hit');
});

test('loadWebDataset: labels from .json and .txt (class names, sorted) and the label field chosen', () => {
  const dir = fresh('labels');
  const img = (seed: number) => pngBytes(rgbPixels(4, 4, seed), 4, 4);
  writeShard(join(dir, 'a.tar'), [['s0.png', img(0)], ['s0.txt', 'zebra\n'], ['s1.png', img(1)], ['s1.txt', 'bee'], ['s1.cls', '7']]);
  // 'auto' prefers .cls: s1 is index 7 while s0 is a name — a mix, refused.
  assert.throws(() => loadWebDataset(dir, { cacheDir: null }), /mix class names \(.*sample 's0': 'zebra'\) and class indices \(.*sample 's1': 7\)/);
  const names = loadWebDataset(dir, { cacheDir: null, labelField: 'txt', classes: ['ant', 'bee', 'zebra'] });
  assert.deepEqual([...names.labels], [2, 1]);
  assert.throws(() => loadWebDataset(dir, { cacheDir: null, labelField: 'cls' }), /a\.tar: sample 's0' has no label \(a \.cls file; it has \.png, \.txt\)/);
  const dir2 = fresh('labels2');
  writeShard(join(dir2, 'a.tar'), [['s0.png', img(0)], ['s0.txt', 'zebra'], ['s1.png', img(1)], ['s1.json', '{"label": "ant"}'], ['s2.png', img(2)], ['s2.json', '"bee"']]);
  const sorted = loadWebDataset(dir2, { cacheDir: null });
  assert.deepEqual(sorted.classes, ['ant', 'bee', 'zebra']);
  assert.deepEqual([...sorted.labels], [2, 0, 1]);
  assert.deepEqual(scanWebDatasetLabels(listShards(dir2)), ['zebra', 'ant', 'bee']);
  assert.throws(() => loadWebDataset(dir2, { cacheDir: null, classes: ['ant', 'bee'] }), /sample 's0': class 'zebra' is not one of the 2 classes/);
});

test('loadWebDataset: errors name the shard and the sample', () => {
  const dir = fresh('errors');
  const img = pngBytes(rgbPixels(8, 8, 1), 8, 8);
  const cases: [string, [string, Uint8Array | string][], RegExp][] = [
    ['nolabel', [['k0.png', img], ['k0.cls', '1'], ['k1.png', img]], /nolabel\.tar: sample 'k1' has no label \(a \.cls, \.json or \.txt file; it has \.png\)/],
    ['noimage', [['k0.cls', '1']], /noimage\.tar: sample 'k0' has no image \(a \.jpg, \.jpeg or \.png file; it has \.cls\)/],
    ['twoimages', [['k0.png', img], ['k0.jpg', jpegBytes(rgbPixels(8, 8, 1), 8, 8)], ['k0.cls', '1']], /sample 'k0' has 2 images \(\.jpg, \.png\)/],
    ['badcls', [['k0.png', img], ['k0.cls', 'cat']], /sample 'k0': \.cls must hold a class index .*got 'cat'/],
    ['corrupt', [['k0.png', img], ['k0.cls', '0'], ['k1.jpg', Buffer.concat([jpegBytes(rgbPixels(8, 8, 2), 8, 8).subarray(0, 300), Buffer.alloc(40, 0x11)])], ['k1.cls', '0']],
      /corrupt\.tar: sample 'k1' \(k1\.jpg\): cannot decode image/],
    ['notimage', [['k0.png', 'hello'], ['k0.cls', '0']], /notimage\.tar: sample 'k0' \(k0\.png\): neither PNG nor JPEG/],
    ['sizes', [['k0.png', img], ['k0.cls', '0'], ['k1.png', pngBytes(rgbPixels(6, 8, 1), 6, 8)], ['k1.cls', '0']],
      /sizes\.tar: sample 'k1' \(k1\.png\): 6×8 pixels, but .*sizes\.tar: sample 'k0' \(k0\.png\) .* are 8×8/],
    ['apart', [['k0.png', img], ['k1.cls', '0'], ['k0.cls', '0']], /apart\.tar: sample 'k0' appears twice, apart/],
    ['nofield', [['k0.png', img], ['k0.cls', '0'], ['README', 'x']], /nofield\.tar: entry 'README' has no field/],
  ];
  for (const [name, entries, message] of cases) {
    const shard = writeShard(join(dir, name, `${name}.tar`), entries);
    assert.throws(() => loadWebDataset(shard, { cacheDir: null }), message, name);
  }
  // A shard cut short, bytes that are not a tar, a damaged header.
  const good = readFileSync(writeShard(join(dir, 'good', 'good.tar'), sampleEntries([['k0', 0, 0], ['k1', 1, 1]])));
  const write = (name: string, bytes: Uint8Array) => {
    const path = join(dir, `${name}.tar`);
    writeFileSync(path, bytes);
    return path;
  };
  assert.throws(() => loadWebDataset(write('cut', good.subarray(0, 1300)), { cacheDir: null }), /cut\.tar: 1300 bytes is not a whole number of 512-byte tar blocks \(truncated shard\?\)/);
  assert.throws(() => loadWebDataset(write('cut-entry', good.subarray(0, 1024)), { cacheDir: null }), /cut-entry\.tar: .*truncated/);
  assert.throws(() => loadWebDataset(write('garbage', Buffer.alloc(2048, 7)), { cacheDir: null }), /garbage\.tar: not a valid tar shard/);
  const damaged = Buffer.from(good);
  damaged[3] ^= 0x40;
  assert.throws(() => loadWebDataset(write('damaged', damaged), { cacheDir: null }), /damaged\.tar: not a valid tar shard \(bad tar header checksum/);
  // The same shard given twice.
  const shard = join(dir, 'good', 'good.tar');
  assert.throws(() => loadWebDataset([shard, shard], { cacheDir: null }), /sample 'k0': the key is also a sample of .*good\.tar/);
  assert.throws(() => listShards(join(dir, 'missing')), /no such shard or directory/);
  assert.throws(() => listShards(fresh('no-shards')), /no \.tar shards in this directory/);
});

test('--data wds:DIR and a bare directory: splits from DIR/train/ or train-*.tar, names from classes.txt or both splits', async () => {
  const options = { cacheDir: null };
  // Folders per split, class names given.
  const a = fresh('wds-a');
  writeShard(join(a, 'train', '000.tar'), sampleEntries([['t0', 0, 0], ['t1', 2, 1]]));
  writeShard(join(a, 'test', '000.tar'), sampleEntries([['v0', 1, 2]]));
  writeFileSync(join(a, 'classes.txt'), 'cat\ndog\nemu\n');
  const train = await loadDataSpec(`wds:${a}`, 'train', options);
  assert.deepEqual(train.classes, ['cat', 'dog', 'emu']);
  assert.deepEqual([...train.labels], [0, 2]);
  assert.match(train.name, /\/train$/);
  const test = await loadDataSpec(a, 'test', options);
  assert.deepEqual([test.length, test.labels[0]], [1, 1]);
  assert.equal(parseDataSpec(a, 'test').source.name, 'wds');
  // Shards named after the split, no class names: the class list covers both splits' labels (test lacks class 3).
  const b = fresh('wds-b');
  writeShard(join(b, 'train-0.tar'), sampleEntries([['t0', 3, 0]]));
  writeShard(join(b, 'train-1.tar'), sampleEntries([['t1', 1, 1]]));
  writeShard(join(b, 'test-0.tar'), sampleEntries([['v0', 0, 2]]));
  const bTest = await loadDataSpec(`wds:${b}`, 'test', options);
  assert.deepEqual(bTest.classes, ['0', '1', '2', '3']);
  assert.equal((await loadDataSpec(`wds:${b}`, 'train', options)).length, 2);
  // Problems with the spec are DataSpecErrors naming what is wrong.
  await assert.rejects(loadDataSpec(`wds:${join(b, 'nope')}`, 'train'), (e) => e instanceof DataSpecError && /does not exist/.test(e.message));
  await assert.rejects(loadDataSpec('wds', 'train'), /give a path, wds:DIR/);
  await assert.rejects(loadDataSpec('imagenet', 'train'), /neither a data source \(cifar10, cifar100, cifar100-coarse, wds, folder\) nor a directory/);
  const empty = fresh('empty');
  await assert.rejects(loadDataSpec(empty, 'train'), /not a layout crossmax reads/);
  await assert.rejects(loadDataSpec(`wds:${empty}`, 'train'), /no train shards/);
});
