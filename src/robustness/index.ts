/**
 * The robustness protocol: AutoAttack's `standard` and `rand` suites, the adaptive suite, evaluation of stochastic
 * defences over repeated passes (the accuracy definitions, worst case over attacks), gradient-masking checks,
 * resumable evaluation checkpoints and transfer tables.
 *
 * @module crossmax/robustness
 */
// The robustness protocol: AutoAttack's suites and runner, the adaptive suite, the evaluation of stochastic
// defences (re-evaluations, the accuracy definitions, worst case over attacks), gradient-masking checks,
// evaluation checkpoints and transfer tables. The attack algorithms are in ../attacks.
export {
  AutoAttack, autoAttackSuite, type AutoAttackOptions, type AutoAttackVersion, type SuiteResult, type SuiteSummary,
} from './autoattack.js';
export {
  ADAPTIVE_BUDGETS, BUDGET_NAMES, DEFAULT_ADAPTIVE_EOT, adaptiveSuite, type AdaptiveBudget, type AdaptiveSuiteOptions, type BudgetName,
} from './adaptive.js';
export {
  alignedBatchesOf, attackInBatches, batchesOf, checkImageOffset, seedStream, type BatchLayout, type BatchRunResult, type BatchRunSettings,
} from './runner.js';
export {
  SHARD_FORMAT, SHARD_JSON, SHARD_TENSORS, dataFingerprint, parseShardSpec, portableDataName, readShardFolder, shardRange, writeShardFolder, type EvaluationWorld, type ImageRange,
  type ShardRecord, type ShardSpec, type ShardTensors,
} from './shard.js';
export { differences, heldImageRanges, holdsImageZero, mergeShardRecords, type MergeOptions } from './merge.js';
export {
  ACCURACY_DEFINITIONS, HEADLINE_DEFINITION, repeatedAccuracy, robustUnderAllR, type AccuracyByDefinition, type AccuracyDefinition, type Passes,
} from './definitions.js';
export {
  evaluateRobustness, runMaskingChecks, withMaskingSeconds, type AttackEvaluation, type EvaluationProgress, type EvaluationSeconds, type MaskingResults, type MaskingRunOptions,
  type PartialCoverage, type PerImageResults, type PerImageRobustness, type RobustnessEvaluation, type RobustnessOptions, type RobustnessResults,
} from './evaluation.js';
export {
  DEFAULT_SWEEP_ATTACK, blackBoxCheck, budgetCheck, epsSweepCheck, formatEps, resolveMaskingPlan, type EpsCurvePoint,
  type MaskingCheck, type MaskingOptions, type MaskingPlan,
} from './masking.js';
export { estimatesOfPasses, robustnessIntervals, type EstimateByDefinition, type IntervalInput, type IntervalOptions, type RobustnessIntervals } from './intervals.js';
export { EvaluationCheckpoint, type BatchOutcome, type EvaluationCheckpointOptions, type CheckpointStats } from './checkpoint.js';
export { LogitEnsemble, sourceSets, transferMatrix, type NamedClassifier, type TransferMatrix, type TransferOptions, type TransferRow } from './transfer-matrix.js';
