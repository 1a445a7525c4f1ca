// crossmax as an npm package, tried as a new user would: `npm pack` here, `npm install` of the tarball into an
// empty project (its install hook builds the native addon against this machine's libtorch), then the package
// import, a subpath import, TypeScript's view of the types through the exports map, `npx crossmax info`, and the
// three scripts of examples/ run against the installed package.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function run(command: string, args: string[], cwd: string, timeoutMs = 600_000): string {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, NODE_TEST_CONTEXT: undefined } });
  assert.equal(r.status, 0, `${command} ${args.join(' ')} (in ${cwd}): exit ${r.status}\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-3000)}`);
  return r.stdout;
}

test('npm pack ships the library, its types, the native sources and the install hook, and no tests or benchmarks', () => {
  const [packed] = JSON.parse(run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], root)) as [{ files: { path: string }[]; size: number }];
  const paths = packed.files.map((f) => f.path);
  for (const required of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/index.js.map', 'dist/src/nn/index.d.ts', 'bin/crossmax.js',
    'native/binding.gyp', 'native/src/dispatch.cc', 'scripts/install.mjs', 'scripts/build-native.mjs', 'scripts/libtorch-paths.cjs', 'LICENSE', 'README.md']) {
    assert.ok(paths.includes(required), `the tarball holds ${required}`);
  }
  const stray = paths.filter((p) => /^(test|bench|dist\/test|dist\/bench|docs|recipes|python|runs)\//.test(p) || /\.(png|jpg|safetensors)$/.test(p));
  assert.deepEqual(stray, [], 'no tests, benchmarks, images or weights');
  assert.ok(packed.size < 2_000_000, `tarball ${packed.size} bytes`);
});

test('npm install of the tarball in an empty project: the addon is built on install, imports and npx crossmax work', { timeout: 900_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'crossmax-package-'));
  try {
    const [packed] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], root)) as [{ filename: string }];
    const project = join(dir, 'project');
    run('mkdir', ['-p', project], dir);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module' }));
    const installed = run('npm', ['install', join(dir, packed.filename), '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts'], project);
    assert.match(installed, /crossmax: building the native addon against/, 'the install hook builds the addon');
    assert.ok(existsSync(join(project, 'node_modules', 'crossmax', 'native', 'build', 'Release', 'crossmax_native.node')));

    writeFileSync(join(project, 'use.js'), [
      "import { tensor, resnet18, CrossMax } from 'crossmax';",
      "import { Linear } from 'crossmax/nn';",
      'const sum = tensor([1, 2, 3]).sum().item();',
      "const model = resnet18({ stem: 'cifar', inChannels: 12, numClasses: 10, widthMultiplier: 0.25 });",
      'const logits = new CrossMax({ k: 2 }).aggregate(tensor([[[1, 2], [3, 0], [0, 1]]]));',
      'console.log(JSON.stringify({ sum, parameters: model.parameters().length, linear: typeof Linear, logits: logits.shape }));',
    ].join('\n'));
    const used = JSON.parse(run('node', ['use.js'], project)) as { sum: number; parameters: number; linear: string; logits: number[] };
    assert.equal(used.sum, 6);
    assert.ok(used.parameters > 50);
    assert.equal(used.linear, 'function');
    assert.deepEqual(used.logits, [1, 2]);

    // The types resolve through the exports map, as a TypeScript user's compiler sees them.
    writeFileSync(join(project, 'typed.ts'), [
      "import { tensor, type Tensor } from 'crossmax';",
      "import { SGD } from 'crossmax/optim';",
      'const t: Tensor = tensor([1, 2]);',
      'const opt = new SGD([t.setRequiresGrad(true)], { lr: 0.1 });',
      '// @ts-expect-error: the types are real, so a wrong option is an error',
      'new SGD([t], { learningRate: 0.1 });',
      'void opt;',
    ].join('\n'));
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: [] },
      files: ['typed.ts'],
    }));
    run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], project);

    const info = JSON.parse(run('npx', ['--no-install', 'crossmax', 'info', '--json', '--no-benchmark'], project)) as { torchVersion: string; devices: string[] };
    assert.match(info.torchVersion, /^\d+\.\d+/);
    assert.ok(info.devices.includes('cpu'));

    // examples/, run against the installed package (they import 'crossmax' as a user's script would).
    const cifar = join(root, '..', 'shared', 'datasets', 'cifar-10-batches-bin');
    if (existsSync(cifar)) {
      for (const name of ['train-tiny.mjs', 'robust-eval.mjs', 'generate-classes.mjs']) copyFileSync(join(root, 'examples', name), join(project, name));
      const trained = JSON.parse(run('node', ['train-tiny.mjs', cifar, 'run'], project)) as { model: string; testImages: number };
      assert.equal(trained.testImages, 64);
      const robust = JSON.parse(run('node', ['robust-eval.mjs', trained.model, cifar], project)) as { images: number; robust: Record<string, number> };
      assert.equal(robust.images, 8);
      assert.ok(robust.robust['all-R']! >= 0 && robust.robust['all-R']! <= 1);
      const generated = JSON.parse(run('node', ['generate-classes.mjs', trained.model, 'classes.png'], project)) as { classes: number };
      assert.equal(generated.classes, 10);
      assert.ok(statSync(join(project, 'classes.png')).size > 1000, 'a PNG grid');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
