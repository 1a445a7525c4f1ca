/**
 * Optimisers (SGD with momentum/Nesterov, Adam/AdamW), learning-rate schedules, and factories that build both
 * from plain JSON settings.
 *
 * @module crossmax/optim
 */
export * from './optimizer.js';
export * from './sgd.js';
export * from './adam.js';
export * from './schedules.js';
export * from './factory.js';
