export * from './clip.js';
export * from './clip-tokenizer.js';
export * from './torchvision-resnet.js';
