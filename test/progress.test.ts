// The progress bar, with an injected stream and clock: terminal rendering (rate, ETA, bar, fields, throttling)
// and plain lines for logs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProgressBar, formatDuration, formatRate, type ProgressStream } from '../src/util/progress.js';

class FakeStream implements ProgressStream {
  readonly chunks: string[] = [];
  constructor(readonly isTTY: boolean, readonly columns?: number) {}
  write(text: string): boolean {
    this.chunks.push(text);
    return true;
  }
  get text(): string { return this.chunks.join(''); }
}

function fakeClock(): { now: number; clock: () => number } {
  const c = { now: 1000, clock: () => c.now };
  return c;
}

test('terminal: one line redrawn in place with bar, count, rate, ETA and fields', () => {
  const stream = new FakeStream(true, 100);
  const time = fakeClock();
  const bar = new ProgressBar({ total: 200, label: 'epoch 1/3', unit: 'img', stream, clock: time.clock });
  assert.equal(stream.chunks.length, 1, 'an empty bar is drawn at once');
  time.now += 2000;
  bar.tick(50, { loss: 0.123456, acc: 0.5 });
  const line = stream.chunks.at(-1)!;
  assert.ok(line.startsWith('\r') && line.endsWith('\x1b[K'), JSON.stringify(line));
  // 50 images in 2 s: 25 img/s; 150 left: 6 s.
  assert.match(line, /^\repoch 1\/3  25% \|█+░+\| 50\/200 \[00:02<00:06, 25\.0 img\/s\] loss=0\.1235 acc=0\.5\x1b\[K$/);
  const cells = line.slice(line.indexOf('|') + 1, line.lastIndexOf('|'));
  assert.ok(cells.length >= 10 && cells.length <= 40);
  assert.equal([...cells].filter((c) => c === '█').length, Math.floor(cells.length / 4));
  assert.ok(line.length - 4 <= 100, 'fits the terminal');
  assert.equal(bar.rate(), 25);
  assert.equal(bar.etaSeconds(), 6);
});

test('terminal: redraws are throttled; finish always draws and ends the line', () => {
  const stream = new FakeStream(true, 80);
  const time = fakeClock();
  const bar = new ProgressBar({ total: 10, stream, clock: time.clock, minIntervalMs: 100 });
  const draws = () => stream.chunks.length;
  const start = draws();
  time.now += 30;
  bar.tick();
  time.now += 30;
  bar.tick();
  assert.equal(draws(), start, 'redrawn within 100 ms');
  time.now += 50;
  bar.tick();
  assert.equal(draws(), start + 1);
  assert.match(stream.chunks.at(-1)!, /3\/10/);
  time.now += 10;
  bar.tick(7);
  bar.finish();
  assert.match(stream.chunks.at(-1)!, /100% .*10\/10.*\n$/);
  bar.finish();
  assert.equal(stream.chunks.filter((c) => c.endsWith('\n')).length, 1, 'finish is idempotent');
});

test('terminal: log() prints above the bar and redraws it; narrow terminals drop the bar', () => {
  const stream = new FakeStream(true, 40);
  const time = fakeClock();
  const bar = new ProgressBar({ total: 1000, label: 'train', stream, clock: time.clock });
  time.now += 1000;
  bar.tick(100, { loss: 1.5 });
  bar.log('epoch 1 done');
  const [message, redraw] = stream.chunks.slice(-2);
  assert.equal(message, '\r\x1b[Kepoch 1 done\n');
  assert.match(redraw!, /^\rtrain/);
  assert.ok(!redraw!.includes('|'), 'no room for a bar in 40 columns');
  assert.ok(redraw!.replace('\x1b[K', '').length - 1 <= 39);
});

test('not a terminal: a plain line every interval, no carriage returns', () => {
  const stream = new FakeStream(false);
  const time = fakeClock();
  const bar = new ProgressBar({ total: 100, label: 'eval', unit: 'img', stream, clock: time.clock, plainIntervalMs: 10_000 });
  for (let i = 0; i < 20; i++) {
    time.now += 1000;
    bar.tick(5, { acc: 0.75 });
  }
  bar.finish();
  const lines = stream.text.split('\n').filter(Boolean);
  assert.ok(!stream.text.includes('\r') && !stream.text.includes('\x1b'));
  // At 10 s and 20 s; the second already shows the final state, so finish() adds no duplicate.
  assert.equal(lines.length, 2, stream.text);
  assert.equal(lines[0], 'eval 50/100 (50%) [00:10<00:10, 5.00 img/s] acc=0.75');
  assert.equal(lines[1], 'eval 100/100 (100%) [00:20<00:00, 5.00 img/s] acc=0.75');

  // Work that ends between two lines gets its final line from finish().
  const again = new FakeStream(false);
  const short = new ProgressBar({ total: 4, stream: again, clock: time.clock, plainIntervalMs: 10_000 });
  time.now += 2000;
  short.tick(4);
  assert.equal(again.chunks.length, 0);
  short.finish();
  assert.deepEqual(again.chunks, ['4/4 (100%) [00:02<00:00, 2.00 it/s]\n']);
});

test('open-ended counts, resumed counts, silence, and formatting helpers', () => {
  const stream = new FakeStream(false);
  const time = fakeClock();
  const open = new ProgressBar({ stream, clock: time.clock });
  time.now += 4000;
  open.tick(8);
  open.finish();
  assert.equal(stream.text, '8 [00:04, 2.00 it/s]\n');
  assert.equal(open.etaSeconds(), null);

  const resumed = new ProgressBar({ total: 100, initial: 60, stream, clock: time.clock });
  time.now += 2000;
  resumed.tick(10);
  assert.equal(resumed.done, 70);
  assert.equal(resumed.rate(), 5, 'items done before the start do not count in the rate');
  assert.equal(resumed.etaSeconds(), 6);

  const quiet = new FakeStream(true);
  const silent = new ProgressBar({ total: 3, stream: quiet, silent: true });
  silent.tick(3);
  silent.log('x');
  silent.finish();
  assert.deepEqual(quiet.chunks, []);

  assert.equal(formatDuration(0), '00:00');
  assert.equal(formatDuration(75.4), '01:15');
  assert.equal(formatDuration(3 * 3600 + 62), '3:01:02');
  assert.equal(formatRate(1234.5), '1235');
  assert.equal(formatRate(12.34), '12.3');
  assert.equal(formatRate(0.5), '0.50');
  assert.throws(() => new ProgressBar({ total: -1, stream }), /total/);
});
