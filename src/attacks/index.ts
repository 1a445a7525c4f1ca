/**
 * Adversarial attacks with one interface (`new Attack(model, options).run(images, labels)`): FGSM, PGD, APGD-CE/DLR
 * and their targeted forms, FAB, Square, surrogate-gradient and transfer attacks, losses, threat models, and the
 * registry that builds attacks from data.
 *
 * @module crossmax/attacks
 */
// Adversarial attacks with one interface: new Attack(model, options).run(images, labels) → AttackResult; the
// registry builds them from data ({ name, attack, options }) under a threat model. The protocol is in ../robustness.
export {
  Attack, AttackRun, GradientAttack, checkAttackInputs, defaultEotImagesPerPass, EOT_IMAGES_PER_PASS_32PX,
  type AttackOptions, type AttackResult, type EotGradient, type GradientAttackOptions, type ProgressEvent,
} from './attack.js';
export {
  DEFAULT_EPS, checkAdversarial, perImageNorm, projectToThreatModel, threatModelProjector, type Norm, type ThreatModel,
} from './threat-model.js';
export { attackLoss, crossEntropyLoss, dlrLoss, kthLargestClass, marginLoss, targetedCrossEntropyLoss, targetedDlrLoss, type AttackLoss } from './losses.js';
export { FGSM, type FgsmOptions } from './fgsm.js';
export { PGD, type PgdOptions } from './pgd.js';
export { APGD, APGDT, apgdCheckpoints, type ApgdOptions } from './apgd.js';
export { FAB, FABT, projectionLinf, type FabOptions } from './fab.js';
export { Square, squareSchedule, squareWindowSide, type SquareOptions } from './square.js';
export {
  PerHeadAttack, SurrogateClassifier, SurrogateGradientAttack, isAggregator, isMemberEnsemble, surrogateName,
  type MemberEnsemble, type PerHeadAttackOptions, type Surrogate, type SurrogateBaseAttack, type SurrogateGradientAttackOptions,
  type SurrogateMode,
} from './surrogate.js';
export { PUBLISHED_TRANSFER_THEN_REFINE, RefinePGD, TransferThenRefine, type RefinePgdOptions, type TransferThenRefineOptions } from './transfer.js';
export {
  ATTACK_PRESETS, ATTACK_PRESET_NAMES, ATTACK_REGISTRY, buildAttack, describeAttack, resizeAttackBudget, scaleAttackBudget, withEot,
  type AttackBudget, type AttackDescription, type AttackEntry, type AttackKind, type AttackKinds, type AttackPresetName, type EntryOptions,
  type RunnableAttack,
} from './registry.js';
