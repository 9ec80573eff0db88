/**
 * The memory governor's decision (node/runtime/memory.ts): collect when external memory grew past what
 * the last collection left by more than the allowance, not whenever it is above a fixed line. With the
 * fixed line, a node whose live buffers exceeded it (any upload) ran a major collection every tick.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CollectionPolicy } from '../node/runtime/index.ts';

const mib = 1024 * 1024;

test('garbage past the allowance is collected; below it nothing is', () => {
  const policy = new CollectionPolicy(16 * mib, mib);
  assert.not.ok(policy.due(10 * mib));
  assert.ok(policy.due(20 * mib));
  policy.collected(2 * mib);
  assert.not.ok(policy.due(12 * mib));
  assert.ok(policy.due(19 * mib));
});

test('live memory above the allowance costs one collection, not one per tick', () => {
  const policy = new CollectionPolicy(16 * mib, mib);
  // An upload holds 60 MiB of live buffers: the first look collects, and 60 MiB survive.
  assert.ok(policy.due(60 * mib));
  assert.ok(policy.over(60 * mib), 'a minor collection freed nothing: a major one is asked for');
  policy.collected(60 * mib);
  let collections = 0;
  for (let tick = 0; tick < 100; tick += 1) {
    if (!policy.due(60 * mib)) continue;
    collections += 1;
    policy.collected(60 * mib);
  }
  // What survived decays by 1 MiB a tick, so the same 60 MiB are looked at again every 17 ticks.
  assert.is(collections, 5);
});

test('growth on top of live memory is still collected', () => {
  const policy = new CollectionPolicy(16 * mib, mib);
  policy.due(60 * mib);
  policy.collected(60 * mib);
  assert.ok(policy.due(80 * mib), '20 MiB of new garbage over 60 MiB live');
  assert.not.ok(policy.over(62 * mib), 'a minor collection that brought it back needs no major one');
});

test('when live memory shrinks on its own, the base follows it down at once', () => {
  const policy = new CollectionPolicy(16 * mib, mib);
  policy.due(60 * mib);
  policy.collected(60 * mib);
  assert.not.ok(policy.due(5 * mib));
  assert.ok(policy.due(22 * mib), 'measured from 5 MiB now, not from 60');
});

test.run();
