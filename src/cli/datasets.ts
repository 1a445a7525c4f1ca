// Which data a command runs on: `--data SPEC`, read through the data-source registry (src/data/sources.ts): a
// source's name (cifar10, cifar100, cifar100-coarse), a name and a path (wds:DIR, folder:DIR, cifar100:DIR), or a
// bare directory whose layout names the source. Problems with the spec are usage errors.
import { DataSpecError, loadDataSpec, type ImageClassificationDataset, type Split } from '../data/index.js';
import { UsageError } from './args.js';

/** What `--data` accepts, for each command's usage text. */
export const DATA_HELP = 'cifar10 | cifar100 | cifar100-coarse (20 superclasses) | wds:DIR (WebDataset shards: DIR/train/*.tar, '
  + "DIR/test/*.tar, samples KEY.jpg + KEY.cls) | folder:DIR (DIR/train/<class>/*.png) | a directory holding any of these or "
  + "an official CIFAR release; cifar10 and cifar100 use ../shared/datasets, else a release on disk, else download";

/** Reads the `split` of the data `spec` names; a spec that names nothing readable is a UsageError. */
export async function loadData(spec: string, split: Split): Promise<ImageClassificationDataset> {
  try {
    return await loadDataSpec(spec, split);
  } catch (err) {
    if (err instanceof DataSpecError) throw new UsageError(err.message);
    throw err;
  }
}
