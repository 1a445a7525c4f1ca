// CLIP's byte-level BPE tokenizer (Radford et al. 2021, openai/CLIP simple_tokenizer.py), as HF's CLIPTokenizer
// (transformers/models/clip/tokenization_clip.py) runs it over the published vocab.json + merges.txt:
//   1. clean-up: NFC, control characters dropped, runs of whitespace collapsed to one space, trimmed, lower-cased
//      (HF: whitespace_clean(ftfy.fix_text(text)).lower(); ftfy's mojibake repair is not reproduced);
//   2. pre-tokenisation with the regex below (the two special tokens, English contractions, runs of letters,
//      single digits, runs of other non-space characters);
//   3. each piece's UTF-8 bytes mapped to printable characters (bytes_to_unicode), '</w>' appended to its last
//      character, then BPE: repeatedly merge the adjacent pair with the lowest rank in merges.txt;
//   4. ids from vocab.json (unknown pieces become <|endoftext|>, HF's unk_token), framed by <|startoftext|> and
//      <|endoftext|>, truncated and padded to the context length (77).
import { readFileSync } from 'node:fs';
import { tensor, type Device, type Tensor } from '../tensor/index.js';

/** CLIP's start token, put before every encoded text. */
export const START_OF_TEXT = '<|startoftext|>';
/** CLIP's end token, put after every encoded text (and HF's padding and unknown token). */
export const END_OF_TEXT = '<|endoftext|>';
/** CLIP's text context: 77 positions, start and end tokens included. */
export const CLIP_CONTEXT_LENGTH = 77;
/** End-of-word marker appended to the last symbol of every pre-token. */
export const END_OF_WORD = '</w>';
/**
 * How many merges HF and openai/CLIP read from merges.txt (`merges[1:49152-256-2+1]`): the 49408-token vocabulary
 * minus its 512 byte symbols (with and without '</w>') and its 2 special tokens. Later lines are ignored, as there.
 */
export const CLIP_MAX_MERGES = 49152 - 256 - 2;

/** The pre-tokenisation pattern of openai/CLIP and HF (re.IGNORECASE; the text is lower-cased before anyway). */
export const CLIP_PRE_TOKENIZE_PATTERN =
  /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

let byteTable: readonly string[] | null = null;

/**
 * GPT-2's bytes_to_unicode: byte b → one printable character. Bytes that are printable Latin-1 ('!'..'~',
 * '¡'..'¬', '®'..'ÿ') map to themselves; the other 68 map, in byte order, to U+0100, U+0101, ... so that BPE
 * never sees whitespace or control characters (space, byte 32, becomes 'Ġ').
 */
export function bytesToUnicode(): readonly string[] {
  if (byteTable) return byteTable;
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable(b) ? b : 256 + n++);
  byteTable = Object.freeze(table);
  return byteTable;
}

/** Step 1: the clean-up before pre-tokenisation (see the file header). */
export function cleanText(text: string): string {
  // Control characters (Cc, Cf) other than whitespace go, as in HF's BasicTokenizer._clean_text.
  const noControls = text.normalize('NFC').replace(/[\p{Cc}\p{Cf}]/gu, (c) => (/\s/u.test(c) ? ' ' : ''));
  return noControls.replace(/\s+/gu, ' ').trim().toLowerCase();
}

/** Steps 1 and 2: the pieces BPE runs on, as strings of the original characters. */
export function preTokenize(text: string): string[] {
  return cleanText(text).match(CLIP_PRE_TOKENIZE_PATTERN) ?? [];
}

/** What a {@link ClipTokenizer} is built from: the published vocab.json and merges.txt, and the framing. */
export interface ClipTokenizerOptions {
  /** Token → id (vocab.json). */
  vocab: Record<string, number> | Map<string, number>;
  /** merges.txt's text, or its lines; a first line starting with '#version' is skipped. */
  merges: string | readonly string[];
  /** Positions per encoded text, start and end tokens included. Default 77. */
  contextLength?: number;
  /**
   * The padding token. Default '<|endoftext|>' (HF's openai/clip-vit-base-patch32 tokenizer; openai/CLIP's
   * clip.tokenize pads with id 0 instead). Either way the text tower reads only the end token's position, and
   * causal attention keeps padding from reaching it.
   */
  padToken?: string;
  /** Merges read at most. Default CLIP_MAX_MERGES, as the reference. */
  maxMerges?: number;
}

/** Settings of {@link ClipTokenizer.encode}. */
export interface EncodeOptions {
  /** Frame with <|startoftext|> … <|endoftext|>. Default true. */
  addSpecialTokens?: boolean;
}

/** Settings of {@link ClipTokenizer.encodeBatch}: padding and truncation to the context length. */
export interface EncodeBatchOptions extends EncodeOptions {
  /**
   * 'max_length' (default): every row padded to the context length, CLIP's fixed input. 'longest': to the longest
   * row. 'none': rows keep their lengths.
   */
  padding?: 'max_length' | 'longest' | 'none';
  /**
   * Cut texts longer than the context length, keeping the end token last (HF's truncation=True, openai/CLIP's
   * truncate=True). Default true; false throws on a text that is too long (clip.tokenize's default).
   */
  truncation?: boolean;
}

/** Token ids of several texts with their attention masks. */
export interface EncodedBatch {
  /** One row of token ids per text. */
  ids: number[][];
  /** 1 for real tokens, 0 for padding. */
  attentionMask: number[][];
}

/** CLIP's tokenizer over a vocab and merge list (from the published vocab.json and merges.txt, or made by hand). */
export class ClipTokenizer {
  /** Positions per encoded text, start and end tokens included (77 for CLIP). */
  readonly contextLength: number;
  /** Id of <|startoftext|>. */
  readonly bosTokenId: number;
  /** Id of <|endoftext|>. */
  readonly eosTokenId: number;
  /** Id that pads rows to the context length. */
  readonly padTokenId: number;
  /** <|endoftext|>, as HF's unk_token. */
  readonly unkTokenId: number;
  private readonly encoder: Map<string, number>;
  private readonly decoder = new Map<number, string>();
  private readonly ranks = new Map<string, number>();
  private readonly byteDecoder = new Map<string, number>();
  private readonly cache = new Map<string, string[]>([[START_OF_TEXT, [START_OF_TEXT]], [END_OF_TEXT, [END_OF_TEXT]]]);

  constructor(options: ClipTokenizerOptions) {
    this.encoder = options.vocab instanceof Map ? new Map(options.vocab) : new Map(Object.entries(options.vocab));
    for (const [token, id] of this.encoder) {
      if (!Number.isInteger(id) || id < 0) throw new Error(`CLIP vocab: token ${JSON.stringify(token)} has invalid id ${String(id)}`);
      this.decoder.set(id, token);
    }
    const lookup = (token: string, what: string) => {
      const id = this.encoder.get(token);
      if (id === undefined) throw new Error(`CLIP vocab has no ${what} token ${token}`);
      return id;
    };
    this.bosTokenId = lookup(START_OF_TEXT, 'start');
    this.eosTokenId = lookup(END_OF_TEXT, 'end');
    this.unkTokenId = this.eosTokenId;
    this.padTokenId = lookup(options.padToken ?? END_OF_TEXT, 'padding');
    this.contextLength = options.contextLength ?? CLIP_CONTEXT_LENGTH;
    if (!Number.isInteger(this.contextLength) || this.contextLength < 2) {
      throw new RangeError(`contextLength must be an integer ≥ 2 (room for the start and end tokens), got ${this.contextLength}`);
    }

    let lines = typeof options.merges === 'string' ? options.merges.trim().split('\n') : [...options.merges];
    if (lines[0]?.startsWith('#version')) lines = lines.slice(1);
    lines = lines.slice(0, options.maxMerges ?? CLIP_MAX_MERGES);
    lines.forEach((line, rank) => {
      const parts = line.trim().split(/\s+/u);
      if (parts.length !== 2) throw new Error(`CLIP merges line ${rank + 1} is not two symbols: ${JSON.stringify(line)}`);
      const key = pairKey(parts[0]!, parts[1]!);
      // The reference builds dict(zip(merges, range(...))): a repeated pair keeps its last rank.
      this.ranks.set(key, rank);
    });
    bytesToUnicode().forEach((ch, b) => this.byteDecoder.set(ch, b));
  }

  /** Reads vocab.json and merges.txt. */
  static fromFiles(vocabPath: string, mergesPath: string, options: Omit<ClipTokenizerOptions, 'vocab' | 'merges'> = {}): ClipTokenizer {
    const vocab = JSON.parse(readFileSync(vocabPath, 'utf8')) as Record<string, number>;
    return new ClipTokenizer({ ...options, vocab, merges: readFileSync(mergesPath, 'utf8') });
  }

  /** Number of tokens in the vocabulary (49,408 for the published CLIP). */
  get vocabSize(): number {
    return this.encoder.size;
  }

  /** Steps 1–3: the BPE tokens of a text (byte-encoded strings, '</w>' closing each word), without special tokens. */
  tokenize(text: string): string[] {
    const byteEncoder = bytesToUnicode();
    const out: string[] = [];
    for (const piece of preTokenize(text)) {
      const encoded = Array.from(new TextEncoder().encode(piece), (b) => byteEncoder[b]!).join('');
      out.push(...this.bpe(encoded));
    }
    return out;
  }

  /** The ids of one text, framed by the start and end tokens unless addSpecialTokens is false; no padding or truncation. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids = this.tokenize(text).map((t) => this.encoder.get(t) ?? this.unkTokenId);
    return (options.addSpecialTokens ?? true) ? [this.bosTokenId, ...ids, this.eosTokenId] : ids;
  }

  /** Several texts, truncated and padded (see EncodeBatchOptions). */
  encodeBatch(texts: readonly string[], options: EncodeBatchOptions = {}): EncodedBatch {
    const special = options.addSpecialTokens ?? true;
    const truncation = options.truncation ?? true;
    const rows = texts.map((text) => {
      let ids = this.encode(text, { addSpecialTokens: false });
      const room = this.contextLength - (special ? 2 : 0);
      if (ids.length > room) {
        if (!truncation) throw new RangeError(`text ${JSON.stringify(text)} has ${ids.length} tokens, more than the ${room} that fit in the context of ${this.contextLength}`);
        ids = ids.slice(0, room);
      }
      return special ? [this.bosTokenId, ...ids, this.eosTokenId] : ids;
    });
    const padding = options.padding ?? 'max_length';
    const target = padding === 'max_length' ? this.contextLength : padding === 'longest' ? Math.max(0, ...rows.map((r) => r.length)) : 0;
    return {
      ids: rows.map((r) => [...r, ...Array<number>(Math.max(0, target - r.length)).fill(this.padTokenId)]),
      attentionMask: rows.map((r) => [...Array<number>(r.length).fill(1), ...Array<number>(Math.max(0, target - r.length)).fill(0)]),
    };
  }

  /** Texts as int64 ids [texts, contextLength] (clip.tokenize), ready for the text tower. */
  encodeToTensor(texts: string | readonly string[], options: Omit<EncodeBatchOptions, 'padding'> & { device?: Device } = {}): Tensor {
    const list = typeof texts === 'string' ? [texts] : texts;
    const { ids } = this.encodeBatch(list, { ...options, padding: 'max_length' });
    return tensor(ids, { dtype: 'int64', device: options.device });
  }

  /** Ids back to text: special and padding tokens dropped, '</w>' read as a space, bytes decoded as UTF-8. */
  decode(ids: readonly number[]): string {
    const text = ids
      .filter((id) => id !== this.bosTokenId && id !== this.eosTokenId && id !== this.padTokenId)
      .map((id) => this.decoder.get(id) ?? '')
      .join('');
    const bytes = Array.from(text.replaceAll(END_OF_WORD, ' '), (ch) => (ch === ' ' ? 0x20 : this.byteDecoder.get(ch) ?? 0x3f));
    return new TextDecoder().decode(Uint8Array.from(bytes)).trim();
  }

  /** BPE of one byte-encoded piece (simple_tokenizer.py's bpe()), cached. */
  bpe(token: string): string[] {
    const cached = this.cache.get(token);
    if (cached) return cached;
    const symbols = Array.from(token);
    let word = [...symbols.slice(0, -1), symbols[symbols.length - 1]! + END_OF_WORD];
    while (word.length > 1) {
      let best: [string, string] | null = null;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < word.length; i++) {
        const rank = this.ranks.get(pairKey(word[i]!, word[i + 1]!));
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = [word[i]!, word[i + 1]!];
        }
      }
      if (!best) break;
      const [first, second] = best;
      // Merge every occurrence of the pair, scanning left to right without overlaps (the reference's inner loop).
      const merged: string[] = [];
      for (let i = 0; i < word.length;) {
        if (word[i] === first && i + 1 < word.length && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(word[i]!);
          i += 1;
        }
      }
      word = merged;
    }
    this.cache.set(token, word);
    return word;
  }
}

// Symbols never contain a space (bytes_to_unicode maps it away), so a space separates a pair unambiguously.
function pairKey(first: string, second: string): string {
  return `${first} ${second}`;
}
