// CLIP's byte-level BPE on hand-worked cases: bytes_to_unicode, the clean-up and pre-tokenisation regex, merge
// ranks, '</w>', special tokens, truncation and padding, and reading vocab.json + merges.txt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bytesToUnicode, cleanText, ClipTokenizer, preTokenize, CLIP_MAX_MERGES } from '../src/models/clip-tokenizer.js';

const BOS = 98;
const EOS = 99;
const vocab: Record<string, number> = {
  h: 0, e: 1, l: 2, o: 3, 'l</w>': 4, 'o</w>': 5, ll: 6, he: 7, hell: 8, 'hello</w>': 9, ',</w>': 10, el: 11,
  'Ã': 12, '©</w>': 13, '<|startoftext|>': BOS, '<|endoftext|>': EOS,
};
const merges = ['#version: 0.2', 'l l', 'h e', 'he ll', 'hell o</w>'].join('\n');
const tokenizer = () => new ClipTokenizer({ vocab, merges, contextLength: 6 });

test('bytes_to_unicode: 256 distinct printable characters, printable Latin-1 unchanged, the rest from U+0100 in byte order', () => {
  const table = bytesToUnicode();
  assert.equal(table.length, 256);
  assert.equal(new Set(table).size, 256);
  for (const b of [0x21, 0x41, 0x7e, 0xa1, 0xac, 0xae, 0xff]) assert.equal(table[b], String.fromCharCode(b));
  // The 68 others: 0..32 → U+0100..U+0120, 127..160 → U+0121..U+0142, 173 → U+0143.
  assert.equal(table[0], 'Ā');
  assert.equal(table[32], 'Ġ');
  assert.equal(table[127], 'ġ');
  assert.equal(table[160], '\u0142');
  assert.equal(table[173], 'Ń');
  for (const ch of table) assert.doesNotMatch(ch, /[\s\p{C}]/u);
});

test('clean-up collapses whitespace, drops control characters and lower-cases', () => {
  assert.equal(cleanText('  A\tb\n\n C\u0000d \u200b'), 'a b cd');
  assert.equal(cleanText('ÉCOLE'), 'école');
});

test('pre-tokenisation: letters runs, single digits, contractions, punctuation runs, special tokens', () => {
  assert.deepEqual(preTokenize("Hello,  WORLD's   42!!"), ['hello', ',', 'world', "'s", '4', '2', '!!']);
  assert.deepEqual(preTokenize("<|startoftext|>it'll do"), ['<|startoftext|>', 'it', "'ll", 'do']);
  assert.deepEqual(preTokenize('naïve café'), ['naïve', 'café']);
});

test('BPE applies the lowest-ranked pair first, every occurrence left to right, with </w> on the last symbol', () => {
  const t = tokenizer();
  // hello: [h e l l o</w>] → (l l) rank 0 → [h e ll o</w>] → (h e) 1 → [he ll o</w>] → (he ll) 2 → (hell o</w>) 3.
  assert.deepEqual(t.bpe('hello'), ['hello</w>']);
  // hell: [h e l l</w>]: (l l</w>) is no merge, so only (h e) applies.
  assert.deepEqual(t.bpe('hell'), ['he', 'l', 'l</w>']);
  // lll: (l l) merges at the first place it fits, leaving the word-final l alone.
  assert.deepEqual(t.bpe('lll'), ['ll', 'l</w>']);
  assert.deepEqual(t.bpe('o'), ['o</w>']);
  // Ranks decide: with 'e l' before 'h e', "hell" becomes h + el + l</w>; the other order gives he + l + l</w>.
  const elFirst = new ClipTokenizer({ vocab, merges: ['e l', 'h e'] });
  const heFirst = new ClipTokenizer({ vocab, merges: ['h e', 'e l'] });
  assert.deepEqual(elFirst.bpe('hell'), ['h', 'el', 'l</w>']);
  assert.deepEqual(heFirst.bpe('hell'), ['he', 'l', 'l</w>']);
});

test('bytes beyond ASCII are BPE symbols of their UTF-8 bytes', () => {
  // é is C3 A9: 'Ã' and '©', the last closing the word.
  assert.deepEqual(tokenizer().tokenize('é'), ['Ã', '©</w>']);
  assert.deepEqual(tokenizer().encode('É', { addSpecialTokens: false }), [12, 13]);
});

test('encode frames with start/end tokens and maps unknown tokens to <|endoftext|>', () => {
  const t = tokenizer();
  assert.equal(t.bosTokenId, BOS);
  assert.equal(t.eosTokenId, EOS);
  assert.deepEqual(t.encode('Hello, hello'), [BOS, 9, 10, 9, EOS]);
  assert.deepEqual(t.encode('hell'), [BOS, 7, 2, 4, EOS]);
  assert.deepEqual(t.encode('x'), [BOS, EOS, EOS], 'x</w> is not in the vocab: the unknown token is <|endoftext|>');
  assert.deepEqual(t.encode('<|startoftext|>hello'), [BOS, BOS, 9, EOS]);
});

test('batches are truncated keeping the end token, and padded to the context length', () => {
  const t = tokenizer();
  const { ids, attentionMask } = t.encodeBatch(['hello hello hello hello hello', 'hello']);
  assert.deepEqual(ids, [[BOS, 9, 9, 9, 9, EOS], [BOS, 9, EOS, EOS, EOS, EOS]]);
  assert.deepEqual(attentionMask, [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]);
  assert.deepEqual(t.encodeBatch(['hello', 'hello hello'], { padding: 'longest' }).ids, [[BOS, 9, EOS, EOS], [BOS, 9, 9, EOS]]);
  assert.throws(() => t.encodeBatch(['hello hello hello hello hello'], { truncation: false }), /more than the 4/);
  const padded = new ClipTokenizer({ vocab, merges, contextLength: 5, padToken: 'h' });
  assert.deepEqual(padded.encodeBatch(['hello']).ids, [[BOS, 9, EOS, 0, 0]]);
  const ids2 = t.encodeToTensor(['hello', 'hell']);
  try {
    assert.deepEqual(ids2.shape, [2, 6]);
    assert.equal(ids2.dtype, 'int64');
    assert.deepEqual(ids2.toArray(), [BOS, 9, EOS, EOS, EOS, EOS, BOS, 7, 2, 4, EOS, EOS]);
  } finally {
    ids2.dispose();
  }
});

test('decode reads </w> as a space and drops special tokens', () => {
  const t = tokenizer();
  assert.equal(t.decode(t.encode('Hello, hello')), 'hello , hello');
  assert.equal(t.decode(t.encode('é')), 'é');
});

test('vocab.json and merges.txt are read from files; malformed inputs are refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-clip-tok-'));
  try {
    writeFileSync(join(dir, 'vocab.json'), JSON.stringify(vocab));
    writeFileSync(join(dir, 'merges.txt'), `${merges}\n`);
    const t = ClipTokenizer.fromFiles(join(dir, 'vocab.json'), join(dir, 'merges.txt'));
    assert.equal(t.contextLength, 77);
    assert.equal(t.vocabSize, Object.keys(vocab).length);
    assert.deepEqual(t.encode('hello'), [BOS, 9, EOS]);
    assert.equal(t.encodeBatch(['hello']).ids[0]!.length, 77);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => new ClipTokenizer({ vocab: { a: 0 }, merges: '' }), /no start token/);
  assert.throws(() => new ClipTokenizer({ vocab, merges: 'a b c' }), /not two symbols/);
  // The reference reads at most 48894 merges (49152 − 256 − 2).
  assert.equal(CLIP_MAX_MERGES, 48894);
  assert.deepEqual(new ClipTokenizer({ vocab, merges, maxMerges: 2 }).bpe('hello'), ['he', 'll', 'o</w>']);
});
