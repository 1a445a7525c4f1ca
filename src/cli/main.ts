// The `crossmax` command: argument parsing and wiring only; the work lives in the library.
import { INFO_USAGE, infoCommand } from './info.js';
import { UsageError } from './args.js';
import { DEMO_USAGE, demoCommand } from './demo-command.js';
import { EVAL_USAGE, evalCommand } from './eval-command.js';
import { PREDICT_USAGE, predictCommand } from './predict-command.js';
import { TRAIN_USAGE, trainCommand } from './train-command.js';
import { LAUNCH_USAGE, launchCommand } from './launch-command.js';
import { ATTACK_USAGE, ROBUST_OPTIONS, attackCommand } from './robust-command.js';
import { parseCommandArgs } from './args.js';
import { GENERATE_USAGE, generateCommand } from './generate-command.js';
import { GALLERY_USAGE, galleryCommand } from './gallery-command.js';
import { TRANSFER_USAGE, transferCommand } from './transfer-command.js';
import { MERGE_USAGE, mergeCommand } from './merge-command.js';
import { COMPARE_USAGE, compareCommand } from './compare-command.js';

interface Command {
  summary: string;
  usage: string;
  run(args: string[]): Promise<number> | number;
}

const commands: Record<string, Command> = {
  demo: {
    summary: 'train a small multi-resolution self-ensemble on CIFAR-10 and write report/index.html (about 5-10 min on 2 cores)',
    usage: DEMO_USAGE,
    run: demoCommand,
  },
  train: {
    summary: 'train a self-ensemble (presets: cifar-small, cifar-fast, cifar-resnet18, paper), evaluate it, write model and report',
    usage: TRAIN_USAGE,
    run: trainCommand,
  },
  eval: {
    summary: 'clean accuracy of every head and aggregator (confusion matrix); with --robust, robust accuracy (worst case over attacks)',
    usage: EVAL_USAGE,
    run: evalCommand,
  },
  attack: {
    summary: 'run one attack or suite on a model file, save the adversarial images, write report/robust.html',
    usage: ATTACK_USAGE,
    run: (args) => attackCommand(args, (a) => parseCommandArgs(a, ROBUST_OPTIONS)),
  },
  merge: {
    summary: 'combine the shards of a robust evaluation (eval --robust / attack with --shard I/N) into one report',
    usage: MERGE_USAGE,
    run: mergeCommand,
  },
  generate: {
    summary: 'optimise images to be each class of a model, through the multi-resolution parametrisation (or pixels)',
    usage: GENERATE_USAGE,
    run: generateCommand,
  },
  gallery: {
    summary: 'push test images toward every class on one or more models side by side: the interpretable-perturbation gallery',
    usage: GALLERY_USAGE,
    run: galleryCommand,
  },
  transfer: {
    summary: 'craft adversarial images on source models and measure target models on them (a transfer table)',
    usage: TRANSFER_USAGE,
    run: transferCommand,
  },
  compare: {
    summary: 'compare two results files on the same images, image by image (paired difference, McNemar\'s test)',
    usage: COMPARE_USAGE,
    run: compareCommand,
  },
  predict: {
    summary: 'classify images or folders with a model file, with every head\'s vote',
    usage: PREDICT_USAGE,
    run: predictCommand,
  },
  launch: {
    summary: 'start N local ranks of a command with the torchrun variables (distributed training on one machine)',
    usage: LAUNCH_USAGE,
    run: launchCommand,
  },
  info: {
    summary: 'libtorch version, build options, BLAS, threads, devices and measured matmul speed; with --model, a model file\'s configuration',
    usage: INFO_USAGE,
    run: infoCommand,
  },
};

function help(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    'crossmax — adversarially robust image classification (multi-resolution self-ensembles, CrossMax) on libtorch',
    '',
    'usage: crossmax <command> [options]      (crossmax <command> --help for its options)',
    '',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
  ].join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name === undefined ? 1 : 0;
  }
  const command = commands[name];
  if (!command) {
    console.error(`crossmax: unknown command '${name}'\n\n${help()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.usage.includes('\n') ? command.usage : `usage: ${command.usage}\n\n${command.summary}`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    const e = err as Error & { code?: string };
    // parseArgs errors (unknown flag, missing value) are the user's to fix: show the usage.
    if (e.code?.startsWith('ERR_PARSE_ARGS') || e instanceof UsageError) {
      console.error(`crossmax ${name}: ${e.message}\n(see crossmax ${name} --help)`);
      return 2;
    }
    console.error(`crossmax ${name}: ${e.message}`);
    if (process.env.CROSSMAX_DEBUG) console.error(e.stack);
    return 1;
  }
}
