/**
 * Neural-network building blocks after torch.nn: the `Module` tree (state dicts keyed by PyTorch's dotted names),
 * layers, functional ops, initialisers, ResNets (torchvision's layout and the CIFAR variants), wide ResNets and
 * stem/head surgery.
 *
 * @module crossmax/nn
 */
export * from './functional.js';
export * from './module.js';
export * from './layers.js';
export * from './init.js';
export * from './resnet.js';
export * from './wide-resnet.js';
export * from './resnet-surgery.js';
