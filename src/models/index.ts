export * from './clip.js';
export * from './clip-tokenizer.js';
