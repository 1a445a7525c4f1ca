/**
 * Datasets and loading: CIFAR-10/100 (binary and Python archives), image folders, tar.gz reading, checksummed
 * downloads, batched loaders with seeded shuffling, and the training augmentations.
 *
 * @module crossmax/data
 */
export * from './dataset.js';
export * from './cifar-common.js';
export * from './cifar-binary.js';
export * from './cifar-python.js';
export * from './cifar.js';
export * from './pickle.js';
export * from './image-folder.js';
export * from './tar.js';
export * from './download.js';
export * from './loader.js';
export * from './augment.js';
export * from './random.js';
export * from './paths.js';
export * from './decoded-cache.js';
export * from './webdataset.js';
export * from './cifar100.js';
export * from './sources.js';
