// Process groups over c10d (Gloo, NCCL), data-parallel training, synchronised BatchNorm and sharding of an epoch across ranks.
export * from './environment.js';
export * from './process-group.js';
export * from './data-parallel.js';
export * from './sync-batchnorm.js';
