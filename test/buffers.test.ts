/**
 * Freeing chunk buffers at once (codec/buffers.ts): a buffer viewed whole is detached and its memory
 * leaves V8's external count at once; a view of part of a buffer, or of a shared one, is left intact.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getHeapStatistics } from 'node:v8';
import { freeBuffer, freedAfterUse } from '../node/codec/index.ts';

const mebibyte = 1024 * 1024;

test('freeBuffer detaches a buffer it views whole, and V8 counts its memory gone at once', () => {
  const bytes = new Uint8Array(16 * mebibyte).fill(7);
  const before = getHeapStatistics().external_memory;
  assert.is(freeBuffer(bytes), true);
  const after = getHeapStatistics().external_memory;
  assert.is(bytes.length, 0);
  assert.is(bytes.buffer.detached, true);
  assert.ok(before - after >= 16 * mebibyte, `external memory fell by ${before - after} bytes, not 16 MiB`);
});

test('freeBuffer leaves a slice, a part of a buffer, a pooled small Buffer and shared memory alone', () => {
  const whole = new Uint8Array(1024).fill(1);
  const offset = whole.subarray(1);
  const shorter = whole.subarray(0, 1000);
  assert.is(freeBuffer(offset), false);
  assert.is(freeBuffer(shorter), false);
  assert.is(whole.length, 1024);
  assert.is(shorter[999], 1);
  const pooled = Buffer.from('a small string lands in the shared pool');
  assert.is(freeBuffer(pooled), false);
  assert.is(pooled.toString(), 'a small string lands in the shared pool');
  const shared = new Uint8Array(new SharedArrayBuffer(64));
  assert.is(freeBuffer(shared), false);
  assert.is(shared.length, 64);
  assert.is(freeBuffer(new Uint8Array(0)), false);
});

test('freedAfterUse hands each buffer over intact and frees it only when the next is asked for', async () => {
  const pieces = [new Uint8Array(4096).fill(1), new Uint8Array(4096).fill(2), new Uint8Array(4096).fill(3)];
  async function* source(): AsyncGenerator<Uint8Array> {
    yield* pieces;
  }
  const seen: number[] = [];
  let index = 0;
  for await (const piece of freedAfterUse(source())) {
    // The one in hand is whole; every earlier one is freed.
    assert.is(piece.length, 4096);
    seen.push(piece[4095]);
    for (let earlier = 0; earlier < index; earlier++) assert.is(pieces[earlier].length, 0, `piece ${earlier} still held while piece ${index} is read`);
    assert.is(pieces[index + 1]?.length ?? 4096, 4096);
    index++;
  }
  assert.equal(seen, [1, 2, 3]);
  assert.is(pieces[2].length, 0);
});

test.run();
