// The demo's own sentences about its figures: each share printed with its interval and number of images.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { demoAgreement } from '../src/cli/demo-command.js';
import { bootstrapMeanEstimate, proportionEstimate } from '../src/util/statistics.js';

test('demo report: the generator\'s agreement with its own images carries a bootstrap and a Wilson interval over the images', () => {
  // 10 images judged over 10 passes: 4 right on every pass, 3 on half of them, 3 never.
  const shares = [1, 1, 1, 1, 0.5, 0.5, 0.5, 0, 0, 0];
  const agreement = bootstrapMeanEstimate(shares);
  const allPasses = proportionEstimate(4, 10);
  const text = demoAgreement({ agreement: agreement.value, intervals: { agreement, allPasses } });
  const pct = (v: number) => (100 * v).toFixed(0);
  assert.ok(text.startsWith(`55% [${pct(agreement.low)}, ${pct(agreement.high)}] of 10 forward passes (mean over the 10 images, 95% bootstrap`), text);
  assert.ok(text.includes(`40% [${pct(allPasses.low)}, ${pct(allPasses.high)}] of the images (95% Wilson)`), text);
  // Without images there is no interval to give, and the sentence says so.
  assert.match(demoAgreement({ agreement: 0 }), /no images/);
});
