// A small seeded random stream for data order and augmentation. It lives in JS rather than in libtorch's
// Generator so that an epoch's order is a pure function of (seed, epoch, ...) on every machine and device,
// and so that batch b of epoch e can be reproduced without replaying batches 0..b-1 (resumed runs).

/** Mixes 32-bit words into one (MurmurHash3's finaliser, applied per word). */
function mix(h: number, word: number): number {
  let k = Math.imul(word >>> 0, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finalize(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function checkKey(key: number): void {
  if (!Number.isSafeInteger(key) || key < 0) throw new RangeError(`random stream keys must be non-negative integers, got ${key}`);
}

/**
 * xoshiro128** (Blackman & Vigna), seeded from a list of non-negative integer keys, e.g.
 * `new RandomStream(seed, epoch, STREAM_ORDER)`. Equal keys give equal streams.
 */
export class RandomStream {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(...keys: number[]) {
    let h = 0x9e3779b9;
    for (const key of keys) {
      checkKey(key);
      // Both halves of keys above 2^32 (seeds are often 64-bit-ish timestamps).
      h = mix(h, key % 0x100000000);
      h = mix(h, Math.floor(key / 0x100000000));
    }
    h = mix(h, keys.length);
    // SplitMix-style expansion of one hash into four state words; the state must not be all zero.
    const words: number[] = [];
    let x = finalize(h);
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) | 0;
      words.push(finalize(mix(x, i)));
    }
    if (!words.some((w) => w !== 0)) words[0] = 1;
    [this.s0, this.s1, this.s2, this.s3] = words as [number, number, number, number];
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A uniform integer in [0, n), without modulo bias (n ≤ 2^32). */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 0x100000000) throw new RangeError(`nextInt needs an integer n in [1, 2^32], got ${n}`);
    // Rejection of the top partial range keeps every value exactly equally likely.
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const r = this.nextUint32();
      if (r < limit) return r % n;
    }
  }

  /** A uniform float in [0, 1) with 32 random bits. */
  nextFloat(): number {
    return this.nextUint32() / 0x100000000;
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T extends { length: number; [i: number]: number }>(values: T): T {
    for (let i = values.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = values[i]!;
      values[i] = values[j]!;
      values[j] = tmp;
    }
    return values;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
