/**
 * Training: the training loop with its recipe settings, adversarial training, losses, evaluation of clean
 * accuracy per member, and resumable checkpoints.
 *
 * @module crossmax/train
 */
export * from './losses.js';
export * from './adversarial.js';
export * from './evaluate.js';
export * from './checkpoint.js';
export * from './trainer.js';
