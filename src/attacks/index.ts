// Adversarial attacks with one interface: new Attack(model, options).run(images, labels) → AttackResult.
export {
  Attack, AttackRun, GradientAttack, DEFAULT_EPS, checkAdversarial, checkAttackInputs, projectToThreatModel, perImageNorm,
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
