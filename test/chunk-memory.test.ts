/**
 * A node's chunk memory (node/jobs/upload-chunks.ts): the chunk buffers of all its uploads, bounded
 * together, handed out first come first served, reused when given back, and a wait that can be given up.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ChunkMemory } from '../node/jobs/index.ts';

const chunk = 1024;

/** Whether `promise` settles within a few turns of the event loop. */
async function settlesSoon(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((resolve) => setTimeout(resolve, 10));
  return settled;
}

test('takes wait once the budget is out, and are granted first come first served as room comes back', async () => {
  const memory = new ChunkMemory(2 * chunk);
  const first = await memory.take(chunk);
  await memory.take(chunk);
  assert.is(memory.bytesOut, 2 * chunk);
  const order: string[] = [];
  const third = memory.take(chunk).then((buffer) => (order.push('third'), buffer));
  const fourth = memory.take(chunk).then((buffer) => (order.push('fourth'), buffer));
  assert.not.ok(await settlesSoon(third), 'a take past the budget did not wait');
  memory.give(first, chunk);
  const reused = await third;
  assert.is(reused.buffer, first.buffer, 'a buffer given back is handed out again');
  assert.not.ok(await settlesSoon(fourth));
  memory.release(chunk);
  await fourth;
  assert.equal(order, ['third', 'fourth']);
  assert.is(memory.bytesOut, 2 * chunk);
});

test('one buffer is granted when none is out, whatever its size', async () => {
  const memory = new ChunkMemory(chunk);
  const big = await memory.take(8 * chunk);
  assert.is(big.length, 8 * chunk);
  assert.not.ok(await settlesSoon(memory.take(chunk)), 'a second take past the budget did not wait');
});

test('a wait given up with its signal ends in an error and takes nothing', async () => {
  const memory = new ChunkMemory(chunk);
  await memory.take(chunk);
  const controller = new AbortController();
  const waiting = memory.take(chunk, controller.signal);
  controller.abort(new Error('upload ended'));
  try {
    await waiting;
    assert.unreachable('the abandoned take resolved');
  } catch (error) {
    assert.match((error as Error).message, /upload ended/);
  }
  memory.release(chunk);
  assert.is(memory.bytesOut, 0, 'the abandoned take was granted room');
});

test.run();
