import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { availableParallelism } from 'node:os';
import { codingBytesMax, createCodecPool, format, parseCodecChoice, threadsWithin } from '../node/codec/index.ts';
import { textLike } from './helpers.ts';

const chunkBytes = 1024 * 1024;
const xz = parseCodecChoice('xz:6');
const huffman = parseCodecChoice('huffman');
const xzCost = codingBytesMax(xz, 'compress', chunkBytes);

function chunks(count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, index) => new Uint8Array(textLike(chunkBytes, index + 1)));
}

test('an idle codec pool starts no thread; threads start when chunks come, at most its threads', async () => {
  const pool = createCodecPool({ threads: 2 });
  try {
    assert.is(pool.memory().threadsStarted, 0);
    await Promise.all(chunks(4).map((chunk) => pool.compress(chunk, huffman)));
    assert.ok(pool.memory().threadsStarted >= 1);
    assert.ok(pool.memory().threadsStarted <= 2);
  } finally {
    await pool.close();
  }
});

test('with mainThread, a pool codes a small stream of Huffman chunks on the calling thread and starts no thread; the same frames, decoded the same; past 32 MiB, and for xz, threads start', async () => {
  const here = createCodecPool({ threads: 2, mainThread: true });
  const threaded = createCodecPool({ threads: 2 });
  try {
    const originals = chunks(4);
    const frames = await Promise.all(originals.map((chunk) => here.compress(new Uint8Array(chunk), huffman)));
    const threadFrames = await Promise.all(originals.map((chunk) => threaded.compress(new Uint8Array(chunk), huffman)));
    frames.forEach((coded, index) => {
      assert.ok(Buffer.from(coded.frame).equals(threadFrames[index].frame), `chunk ${index}: another frame than a thread codes`);
      assert.is(coded.checksum, threadFrames[index].checksum);
    });
    const decoded = await Promise.all(frames.map((coded, index) => here.decompress(coded.frame, chunkBytes, coded.checksum, `chunk ${index}`, huffman)));
    decoded.forEach((bytes, index) => assert.ok(Buffer.from(bytes).equals(originals[index]), `chunk ${index}: decoded to other bytes`));
    assert.is(here.memory().threadsStarted, 0);
    // 4 chunks at a time, as a stream's reader hands them: past 32 MiB taken, what finds the calling thread busy goes to a thread.
    for (let batch = 0; batch < 10; batch++) await Promise.all(chunks(4).map((chunk) => here.compress(chunk, huffman)));
    assert.ok(here.memory().threadsStarted >= 1, 'no thread started past 32 MiB');
    const xzHere = createCodecPool({ threads: 1, mainThread: true });
    try {
      await xzHere.compress(chunks(1)[0], xz);
      assert.is(xzHere.memory().threadsStarted, 1, 'an xz chunk is coded on a thread');
    } finally {
      await xzHere.close();
    }
  } finally {
    await Promise.all([here.close(), threaded.close()]);
  }
});

test('a decode may take the whole record (header, then frame) instead of a copy of its frame, and decode a Huffman chunk into a spare buffer', async () => {
  const pool = createCodecPool({ threads: 1 });
  try {
    const original = new Uint8Array(textLike(chunkBytes, 7));
    const coded = await pool.compress(new Uint8Array(original), huffman, { record: true });
    const record = coded.frame;
    const spare = new ArrayBuffer(2 * chunkBytes);
    const frame = record.subarray(format.chunkHeaderBytes);
    const decoded = await pool.decompress(frame, original.length, coded.checksum, 'chunk 0', huffman, { giveBuffer: true, into: spare });
    assert.ok(Buffer.from(decoded).equals(original));
    assert.is(record.byteLength, 0, 'the record went to the codec thread whole (detached here), not copied');
    assert.is(spare.byteLength, 0, 'the spare went to the codec thread');
    assert.is(decoded.buffer.byteLength, 2 * chunkBytes, 'decoded into the spare: the answer views it from its start');
    assert.is(decoded.byteOffset, 0);
    // Without giveBuffer a view of part of a buffer is copied, and the caller keeps its buffer.
    const again = await pool.compress(new Uint8Array(original), huffman, { record: true });
    const kept = again.frame;
    assert.ok(Buffer.from(await pool.decompress(kept.subarray(format.chunkHeaderBytes), original.length, again.checksum, 'chunk 1', huffman)).equals(original));
    assert.ok(kept.byteLength > format.chunkHeaderBytes, 'the caller still has its record');
  } finally {
    await pool.close();
  }
});

test('codings past the memory budget wait: xz:6 chunks code one at a time when two do not fit', async () => {
  // The registry's cost of one xz:6 chunk of 1 MiB is about 96 MiB; a budget of 1.5 of them admits one.
  const pool = createCodecPool({ threads: 2, memoryBytesMax: Math.floor(xzCost * 1.5) });
  try {
    const frames = await Promise.all(chunks(3).map((chunk) => pool.compress(chunk, xz)));
    assert.is(frames.length, 3);
    assert.is(pool.memory().codingsPeak, 1);
    assert.is(pool.memory().bytesReservedPeak, xzCost);
    assert.is(pool.memory().bytesReserved, 0);
  } finally {
    await pool.close();
  }
});

test('codings within the budget run side by side on the threads there are', async () => {
  const pool = createCodecPool({ threads: 2, memoryBytesMax: xzCost * 2 });
  try {
    await Promise.all(chunks(4).map((chunk) => pool.compress(chunk, xz)));
    assert.is(pool.memory().codingsPeak, 2);
    assert.is(pool.memory().bytesReservedPeak, xzCost * 2);
  } finally {
    await pool.close();
  }
});

test('one chunk costlier than the whole budget still codes (alone) instead of waiting forever', async () => {
  const pool = createCodecPool({ threads: 2, memoryBytesMax: 16 * 1024 * 1024 });
  try {
    const [chunk] = chunks(1);
    const frame = await pool.compress(new Uint8Array(chunk), xz);
    const decoded = await pool.decompress(frame.frame, chunk.length, frame.checksum, 'chunk 0', xz);
    assert.equal(decoded, chunk);
    assert.is(pool.memory().codingsPeak, 1);
  } finally {
    await pool.close();
  }
});

test('starting a codec pool sets MIMALLOC_PURGE_DELAY=0 and MIMALLOC_ARENA_RESERVE=0, so the xz addon returns freed coder memory at once', async () => {
  const pool = createCodecPool({ threads: 1 });
  try {
    assert.is(process.env.MIMALLOC_PURGE_DELAY, '0');
    assert.is(process.env.MIMALLOC_ARENA_RESERVE, '0');
  } finally {
    await pool.close();
  }
});

test('the registry prices xz:3 below xz:6, xz:9 as xz:6 (it codes as 6), and a larger chunk above a smaller one', () => {
  assert.ok(codingBytesMax(parseCodecChoice('xz:3'), 'compress', chunkBytes) < xzCost);
  assert.is(codingBytesMax(parseCodecChoice('xz:9'), 'compress', chunkBytes), xzCost);
  assert.ok(codingBytesMax(parseCodecChoice('xz:9'), 'decompress', chunkBytes) > codingBytesMax(xz, 'decompress', chunkBytes));
  assert.ok(codingBytesMax(xz, 'compress', 4 * chunkBytes) > xzCost);
  assert.ok(codingBytesMax(huffman, 'compress', chunkBytes) < xzCost);
});

test('file commands choose their threads by memory: xz -6 on 24 MiB chunks gets one, Huffman every core, -T N is obeyed', () => {
  const cores = availableParallelism();
  const mebibyte = 1024 * 1024;
  assert.is(threadsWithin(undefined, { codec: xz, op: 'compress', chunkBytes: 24 * mebibyte }), 1);
  assert.ok(threadsWithin(undefined, { codec: huffman, op: 'compress', chunkBytes: 4 * mebibyte }) >= Math.min(cores, 8));
  assert.is(threadsWithin(2, { codec: xz, op: 'compress', chunkBytes: 24 * mebibyte }), Math.min(2, cores));
});

test.run();
