// Progress display for long work (training epochs, evaluation, attacks). On a terminal it redraws one line in
// place (bar, count/total, rate, ETA, custom fields); elsewhere (CI logs, pipes, files) carriage returns would
// pile up into one unreadable line, so it prints a plain line every `plainIntervalMs` instead. The stream and
// the clock are injectable so that the rendering is testable.

/** Where the progress goes: process.stderr, or anything with write() (isTTY and columns as on a tty stream). */
export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export type ProgressFieldValue = number | string;

export interface ProgressOptions {
  /** Items to do; omitted or 0 for an open-ended count (no bar, no ETA). */
  total?: number;
  /** Items already done when the bar starts (a resumed epoch): counted in done, not in the rate. Default 0. */
  initial?: number;
  /** Text before the bar, e.g. 'epoch 3/10'. Default ''. */
  label?: string;
  /** Unit of the rate, e.g. 'img' gives 'img/s'. Default 'it'. */
  unit?: string;
  /** Default process.stderr. */
  stream?: ProgressStream;
  /** Milliseconds since some fixed origin. Default performance.now. */
  clock?: () => number;
  /** Redraw in place (true) or print plain lines (false). Default: the stream's isTTY. */
  tty?: boolean;
  /** Least time between two redraws on a terminal, in ms. Default 100. */
  minIntervalMs?: number;
  /** Time between two plain lines when not on a terminal, in ms. Default 10000. */
  plainIntervalMs?: number;
  /** Line width on a terminal when the stream does not say. Default 100. */
  width?: number;
  /** Digits after the point for numeric fields. Default 4 significant digits. */
  fieldDigits?: number;
  /** Print nothing at all (tick() still counts). Default false. */
  silent?: boolean;
}

/**
 * One progress line. `tick(n)` after each unit of work; `finish()` at the end (draws the final state and, on a
 * terminal, moves to a new line). `log(text)` prints a line without tearing the bar.
 */
export class ProgressBar {
  readonly total: number;
  readonly label: string;
  readonly unit: string;
  readonly tty: boolean;
  private readonly stream: ProgressStream;
  private readonly clock: () => number;
  private readonly minIntervalMs: number;
  private readonly plainIntervalMs: number;
  private readonly width: number;
  private readonly fieldDigits: number | undefined;
  private readonly silent: boolean;
  private readonly startTime: number;
  private readonly initial: number;
  private doneCount: number;
  private fieldValues: Record<string, ProgressFieldValue> = {};
  private lastDraw = -Infinity;
  private drawnLength = 0;
  private finished = false;
  /** Something changed since the last draw. */
  private dirty = false;

  constructor(options: ProgressOptions = {}) {
    this.total = options.total ?? 0;
    if (!(Number.isFinite(this.total) && this.total >= 0)) throw new RangeError(`progress total must be a number >= 0, got ${options.total}`);
    this.initial = options.initial ?? 0;
    this.doneCount = this.initial;
    this.label = options.label ?? '';
    this.unit = options.unit ?? 'it';
    this.stream = options.stream ?? process.stderr;
    this.clock = options.clock ?? (() => performance.now());
    this.tty = options.tty ?? this.stream.isTTY === true;
    this.minIntervalMs = options.minIntervalMs ?? 100;
    this.plainIntervalMs = options.plainIntervalMs ?? 10_000;
    this.width = this.stream.columns ?? options.width ?? 100;
    this.fieldDigits = options.fieldDigits;
    this.silent = options.silent ?? false;
    this.startTime = this.clock();
    // A plain log starts with nothing and prints its first line after one interval, so short work stays quiet
    // until finish(); a terminal shows the empty bar at once.
    if (!this.tty) this.lastDraw = this.startTime;
    else this.draw(this.startTime);
  }

  get done(): number { return this.doneCount; }
  get fields(): Readonly<Record<string, ProgressFieldValue>> { return this.fieldValues; }

  /** Seconds since the bar was made. */
  elapsedSeconds(now = this.clock()): number {
    return Math.max(0, (now - this.startTime) / 1000);
  }

  /** Items per second since the bar was made (0 before any time has passed). */
  rate(now = this.clock()): number {
    const seconds = this.elapsedSeconds(now);
    return seconds > 0 ? (this.doneCount - this.initial) / seconds : 0;
  }

  /** Seconds left at the current rate; null without a total or a rate. */
  etaSeconds(now = this.clock()): number | null {
    const rate = this.rate(now);
    if (this.total <= 0 || rate <= 0) return null;
    return Math.max(0, this.total - this.doneCount) / rate;
  }

  /** Counts `n` more items done and merges `fields` (shown as name=value); redraws if it is time. */
  tick(n = 1, fields?: Record<string, ProgressFieldValue>): void {
    this.update(this.doneCount + n, fields);
  }

  /** Sets the count done and merges `fields`; redraws if it is time. */
  update(done: number, fields?: Record<string, ProgressFieldValue>): void {
    this.doneCount = done;
    this.dirty = true;
    if (fields) this.setFields(fields);
    const now = this.clock();
    const interval = this.tty ? this.minIntervalMs : this.plainIntervalMs;
    if (now - this.lastDraw >= interval) this.draw(now);
  }

  setFields(fields: Record<string, ProgressFieldValue>): void {
    this.fieldValues = { ...this.fieldValues, ...fields };
    this.dirty = true;
  }

  /** Prints `text` on its own line; on a terminal the bar is cleared first and redrawn below it. */
  log(text: string): void {
    if (this.silent) return;
    if (this.tty && this.drawnLength > 0 && !this.finished) {
      this.stream.write(`\r\x1b[K${text}\n`);
      this.draw(this.clock());
    } else {
      this.stream.write(`${text}\n`);
    }
  }

  /** Draws the final state (always, whatever the throttle) and ends the line. Idempotent. */
  finish(fields?: Record<string, ProgressFieldValue>): void {
    if (this.finished) return;
    if (fields) this.setFields(fields);
    // A plain log already showing the final state gets no duplicate line; a terminal needs its newline.
    if (this.tty || this.dirty) this.draw(this.clock(), true);
    this.finished = true;
  }

  /** The text of the line as it would be drawn now (without control characters). */
  render(now = this.clock()): string {
    return this.tty ? this.renderTty(now) : this.renderPlain(now);
  }

  private draw(now: number, final = false): void {
    this.lastDraw = now;
    this.dirty = false;
    if (this.silent) return;
    if (this.tty) {
      const line = this.renderTty(now);
      this.drawnLength = line.length;
      // \x1b[K clears what a longer previous line left behind.
      this.stream.write(`\r${line}\x1b[K${final ? '\n' : ''}`);
    } else {
      this.stream.write(`${this.renderPlain(now)}\n`);
    }
  }

  private renderTty(now: number): string {
    const stats = this.statsText(now);
    const fields = this.fieldsText();
    const left = this.label ? `${this.label} ` : '';
    if (this.total <= 0) return truncate(`${left}${this.doneCount} ${stats}${fields}`, this.width - 1);
    const fraction = Math.min(1, this.doneCount / this.total);
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    const count = `${this.doneCount}/${this.total}`;
    const fixed = `${left}${percent} || ${count} ${stats}${fields}`;
    // The bar takes what the text leaves, within [10, 40] cells; no bar at all when even 10 do not fit.
    const barWidth = Math.min(40, this.width - 1 - fixed.length);
    if (barWidth < 10) return truncate(`${left}${percent} ${count} ${stats}${fields}`, this.width - 1);
    const filled = Math.floor(fraction * barWidth);
    const bar = '█'.repeat(filled) + '░'.repeat(barWidth - filled);
    return `${left}${percent} |${bar}| ${count} ${stats}${fields}`;
  }

  private renderPlain(now: number): string {
    const left = this.label ? `${this.label} ` : '';
    const count = this.total > 0
      ? `${this.doneCount}/${this.total} (${Math.floor(Math.min(1, this.doneCount / this.total) * 100)}%)`
      : `${this.doneCount}`;
    return `${left}${count} ${this.statsText(now)}${this.fieldsText()}`;
  }

  /** '[elapsed<eta, rate unit/s]' as tqdm writes it. */
  private statsText(now: number): string {
    const eta = this.etaSeconds(now);
    const time = formatDuration(this.elapsedSeconds(now)) + (this.total > 0 ? `<${eta === null ? '?' : formatDuration(eta)}` : '');
    return `[${time}, ${formatRate(this.rate(now))} ${this.unit}/s]`;
  }

  private fieldsText(): string {
    const entries = Object.entries(this.fieldValues);
    if (entries.length === 0) return '';
    return ' ' + entries.map(([k, v]) => `${k}=${typeof v === 'number' ? formatNumber(v, this.fieldDigits) : v}`).join(' ');
  }
}

/** mm:ss, or h:mm:ss from one hour. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${String(m).padStart(2, '0')}:${ss}`;
}

/** Rates with about three significant digits: 1234, 123, 12.3, 1.23, 0.123. */
export function formatRate(rate: number): string {
  if (!Number.isFinite(rate) || rate <= 0) return '0.00';
  if (rate >= 100) return rate.toFixed(0);
  if (rate >= 10) return rate.toFixed(1);
  return rate.toFixed(2);
}

function formatNumber(v: number, digits: number | undefined): string {
  if (Number.isInteger(v)) return String(v);
  if (digits !== undefined) return v.toFixed(digits);
  return Number(v.toPrecision(4)).toString();
}

function truncate(text: string, width: number): string {
  return text.length <= width ? text : text.slice(0, Math.max(0, width));
}
