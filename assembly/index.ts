// The kernel's exports. The JS loader (node/codec/kernel.ts) calls `prepare` to size the two buffers,
// copies its input to the returned address, runs `compress` or `decompress`, and copies the result out of
// `output()`. Linear memory grows only when a larger chunk arrives and is reused across calls.

import { BUFFER_SLACK_BYTES, CHUNK_BYTES_MAX } from './layout';
import { initTables } from './huffman';
import { compressChunk, frameBytesMax as frameBytesMaxOf } from './encode';
import { decompressChunk, errorBlock, errorStream } from './decode';
import { countTextAt } from './text';

initTables();

const PAGE_BYTES: usize = 65536;
const heapStart: usize = (__heap_base + 63) & ~63;
let inputPointer: usize = 0;
let outputPointer: usize = 0;

// @ts-ignore: decorator
@inline function alignUp(value: usize): usize {
  return (value + 63) & ~63;
}

/**
 * Lays out an input buffer of `inputBytes` and an output buffer of `outputBytes`, each followed by zeroed
 * slack, growing memory if needed. Returns the input address, or 0 if memory cannot grow that far.
 */
export function prepare(inputBytes: u32, outputBytes: u32): usize {
  if (inputBytes > frameBytesMaxOf(CHUNK_BYTES_MAX) || outputBytes > frameBytesMaxOf(CHUNK_BYTES_MAX)) return 0;
  const input = heapStart;
  const output = alignUp(input + inputBytes + BUFFER_SLACK_BYTES);
  const end = alignUp(output + outputBytes + BUFFER_SLACK_BYTES);
  const pages = <usize>memory.size();
  if (end > pages * PAGE_BYTES) {
    const missing = (end - pages * PAGE_BYTES + PAGE_BYTES - 1) / PAGE_BYTES;
    if (memory.grow(<i32>missing) < 0) return 0;
  }
  memory.fill(input + inputBytes, 0, BUFFER_SLACK_BYTES);
  memory.fill(output + outputBytes, 0, BUFFER_SLACK_BYTES);
  inputPointer = input;
  outputPointer = output;
  return input;
}

/** Address of the output buffer laid out by the last `prepare`. */
export function output(): usize {
  return outputPointer;
}

/** Largest frame `compress` can produce for `length` input bytes; size the output buffer with it. */
export function frameBytesMax(length: u32): u32 {
  return frameBytesMaxOf(length);
}

/** Codes the `length` input bytes into a frame in the output buffer; returns the frame's length. */
export function compress(length: u32): u32 {
  return compressChunk(inputPointer, length, outputPointer);
}

/** Decodes the `frameLength`-byte frame in the input buffer into `length` output bytes; 0 or an error code (< 0). */
export function decompress(frameLength: u32, length: u32): i32 {
  return decompressChunk(inputPointer, frameLength, outputPointer, length);
}

/** Block index of the last decode failure (-1 = the frame header). */
export function failedBlock(): i32 {
  return errorBlock;
}

/** Stream index of the last decode failure (-1 = not in a stream). */
export function failedStream(): i32 {
  return errorStream;
}

/** Counts lines and words of the `length` input bytes (text.ts); read them with countedLines/Words/Edges. */
export function countText(length: u32): void {
  countTextAt(inputPointer, length);
}

export { countedLines, countedWords, countedEdges } from './text';
