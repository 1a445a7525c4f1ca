// The rule for the PyTorch reference the parity tests compare with: skipped where it is missing, except in CI,
// where `scripts/test` installs it and a missing reference must fail the run instead of hiding that nothing was
// compared.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { pythonMissing, referenceRequired } from './helpers/python.js';

const BOGUS_PYTHON = '/nonexistent/crossmax-test/python3';

test('CI is on when set to anything but empty, false or 0', () => {
  for (const ci of ['true', '1', 'TRUE', 'yes']) assert.equal(referenceRequired({ CI: ci }), true, `CI=${ci}`);
  for (const ci of [undefined, '', 'false', 'False', '0']) assert.equal(referenceRequired({ CI: ci }), false, `CI=${ci}`);
});

test('a missing reference is a skip reason outside CI and an error naming the fix in CI', () => {
  const reason = pythonMissing('torch', { python: BOGUS_PYTHON, env: {} });
  assert.match(reason ?? '', /\/nonexistent\/crossmax-test\/python3 cannot import torch/);
  assert.equal(pythonMissing('torch', { python: BOGUS_PYTHON, env: { CI: 'false' } }), reason);
  assert.throws(() => pythonMissing('torch', { python: BOGUS_PYTHON, env: { CI: 'true' } }),
    /required in CI \(CI=true\).*cannot import torch.*scripts\/setup\.sh --tests/s);
});

test('the parity tests read CI from the environment: a module the reference lacks fails a child process under CI=true', () => {
  const helper = new URL('./helpers/python.js', import.meta.url).href;
  const script = `import(${JSON.stringify(helper)}).then((m) => console.log(m.pythonMissing('crossmax_no_such_module')))`;
  const run = (ci: string | undefined) => {
    const env = { ...process.env };
    delete env.CI;
    if (ci !== undefined) env.CI = ci;
    return spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env });
  };
  const outside = run(undefined);
  assert.equal(outside.status, 0, outside.stderr);
  assert.match(outside.stdout, /cannot import crossmax_no_such_module/);
  const inCi = run('true');
  assert.notEqual(inCi.status, 0, 'CI=true must fail, not skip');
  assert.match(inCi.stderr, /required in CI \(CI=true\).*cannot import crossmax_no_such_module/s);
});
