// Adversarial attacks with one interface: new Attack(model, options).run(images, labels) → AttackResult.
export {
  Attack, AttackRun, GradientAttack, DEFAULT_EPS, checkAdversarial, checkAttackInputs, projectToThreatModel, threatModelProjector, perImageNorm,
  type AttackOptions, type AttackResult, type Classifier, type GradientAttackOptions, type Norm, type ProgressEvent,
} from './attack.js';
export { attackLoss, crossEntropyLoss, dlrLoss, kthLargestClass, marginLoss, targetedCrossEntropyLoss, targetedDlrLoss, type AttackLoss } from './losses.js';
export { FGSM, type FgsmOptions } from './fgsm.js';
export { PGD, type PgdOptions } from './pgd.js';
export { APGD, APGDT, apgdCheckpoints, type ApgdOptions } from './apgd.js';
export { FAB, FABT, projectionLinf, type FabOptions } from './fab.js';
export { Square, squareSchedule, type SquareOptions } from './square.js';
export {
  AutoAttack, autoAttackSuite, type AutoAttackOptions, type AutoAttackVersion, type RunnableAttack, type SuiteEntry,
  type SuiteResult, type SuiteSettings, type SuiteSummary,
} from './suites.js';
export {
  PerHeadAttack, SurrogateClassifier, SurrogateGradientAttack, isAggregator, isMemberEnsemble, surrogateName,
  type MemberEnsemble, type PerHeadAttackOptions, type Surrogate, type SurrogateBaseAttack, type SurrogateGradientAttackOptions,
  type SurrogateMode,
} from './surrogate.js';
export { PUBLISHED_TRANSFER_THEN_REFINE, RefinePGD, TransferThenRefine, type RefinePgdOptions, type TransferThenRefineOptions } from './transfer.js';
export {
  ADAPTIVE_BUDGETS, BUDGET_NAMES, DEFAULT_ADAPTIVE_EOT, adaptiveSuite, buildAdaptiveAttack, describeSuiteEntry, scaleAttackBudget, withEot,
  withThreatModel, type AdaptiveBudget, type AdaptiveSuiteEntry, type BudgetName, type AdaptiveSuiteOptions,
} from './adaptive.js';
export {
  DEFAULT_SWEEP_ATTACK, blackBoxCheck, budgetCheck, epsSweepCheck, formatEps, resolveMaskingPlan, type EpsCurvePoint,
  type MaskingCheck, type MaskingOptions, type MaskingPlan,
} from './masking.js';
export {
  ACCURACY_DEFINITIONS, HEADLINE_DEFINITION, evaluateRobustness, runMaskingChecks, type AccuracyByDefinition,
  type AccuracyDefinition, type AttackEvaluation, type EvaluationProgress, type MaskingResults, type MaskingRunOptions,
  type PerImageResults, type RobustnessEvaluation, type RobustnessOptions, type RobustnessResults,
} from './evaluation.js';
export { EvaluationCheckpoint, type BatchOutcome, type EvaluationCheckpointOptions } from './checkpoint.js';
export { LogitEnsemble, sourceSets, transferMatrix, type NamedClassifier, type TransferMatrix, type TransferOptions, type TransferRow } from './transfer-matrix.js';
