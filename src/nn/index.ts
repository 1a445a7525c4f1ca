export * from './functional.js';
export * from './module.js';
export * from './layers.js';
export * from './init.js';
export * from './resnet.js';
export * from './wide-resnet.js';
export * from './resnet-surgery.js';
