export * from './losses.js';
export * from './adversarial.js';
export * from './evaluate.js';
export * from './checkpoint.js';
export * from './trainer.js';
