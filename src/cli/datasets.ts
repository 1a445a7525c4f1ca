// Which data a command runs on: `--data cifar10` (the default copy for this machine) or a directory holding the
// official CIFAR-10/100 binary or python release, or an image folder with train/ and test/ class folders.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  CIFAR10_CLASSES, loadCifar, loadDefaultCifar10, loadImageFolder, readCifarBinary, readCifarPython,
  type ImageClassificationDataset, type Split,
} from '../data/index.js';
import { UsageError } from './args.js';

export const DATA_HELP = 'cifar10 (default: ../shared/datasets binary copy, else the JPEG copy, else download), ' +
  'cifar100 (download), or a directory: an official CIFAR-10/100 binary or python release, or an image folder with train/ and test/';

export async function loadData(spec: string, split: Split): Promise<ImageClassificationDataset> {
  if (spec === 'cifar10') return loadDefaultCifar10({ split });
  if (spec === 'cifar100') return loadCifar({ name: 'cifar100', format: 'binary', split });
  if (!existsSync(spec) || !statSync(spec).isDirectory()) {
    throw new UsageError(`--data ${spec}: no such directory (expected ${DATA_HELP})`);
  }
  if (existsSync(join(spec, 'data_batch_1.bin'))) return readCifarBinary(spec, { name: 'cifar10', split });
  if (existsSync(join(spec, 'train.bin'))) return readCifarBinary(spec, { name: 'cifar100', split });
  if (existsSync(join(spec, 'data_batch_1'))) return readCifarPython(spec, { name: 'cifar10', split });
  if (existsSync(join(spec, 'train')) && existsSync(join(spec, 'meta'))) return readCifarPython(spec, { name: 'cifar100', split });
  const folder = join(spec, split);
  if (existsSync(folder)) {
    const classes = isCifar10Folder(folder) ? [...CIFAR10_CLASSES] : undefined;
    return loadImageFolder(folder, { classes, name: `${spec}/${split}` });
  }
  throw new UsageError(`--data ${spec}: not a CIFAR release and has no ${split}/ folder (expected ${DATA_HELP})`);
}

function isCifar10Folder(dir: string): boolean {
  return CIFAR10_CLASSES.every((c) => existsSync(join(dir, c)));
}
