/**
 * Models from elsewhere: CLIP (image and text towers, its BPE tokenizer) and torchvision ResNet files loaded by
 * name into crossmax modules.
 *
 * @module crossmax/models
 */
export * from './clip.js';
export * from './clip-tokenizer.js';
export * from './torchvision-resnet.js';
