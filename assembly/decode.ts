// The decoder. It is total: any input ends in a status code, every read stays inside the frame plus its
// zeroed slack, every write inside the output, and every loop is bounded by the output length.

import {
  BLOCK_BYTES_MAX, BLOCK_HEADER_BYTES, BLOCK_HUFFMAN, BLOCK_RAW, BLOCK_RLE, DECODE_LENGTHS, DECODE_OFFSETS,
  DECODE_ORDER, DECODE_PAIRS, DECODE_REVERSED, DECODE_X1, DECODE_X2, FRAME_HEADER_BYTES, FRAME_VERSION,
  LENGTH_CHANGE_PARSE, LENGTH_COUNTS, STREAM_SIZES_BYTES, SYMBOL_COUNT, TABLE_LOG, TABLE_MASK, TABLE_SIZE,
} from './layout';
import { reverseBits } from './huffman';

export const OK: i32 = 0;
export const ERROR_FRAME_TRUNCATED: i32 = -1;
export const ERROR_FRAME_VERSION: i32 = -2;
export const ERROR_FRAME_LENGTH: i32 = -3;
export const ERROR_HEADER_TRUNCATED: i32 = -4;
export const ERROR_BLOCK_SIZE: i32 = -5;
export const ERROR_BLOCK_OVERRUNS_CHUNK: i32 = -6;
export const ERROR_PAYLOAD_TRUNCATED: i32 = -7;
export const ERROR_TABLE_LENGTH: i32 = -8;
export const ERROR_TABLE_INCOMPLETE: i32 = -9;
export const ERROR_NO_TABLE: i32 = -10;
export const ERROR_STREAM_OVERRUN: i32 = -11;
export const ERROR_STREAM_UNUSED: i32 = -12;
export const ERROR_STREAM_PADDING: i32 = -13;
export const ERROR_TRAILING_BYTES: i32 = -14;

/**
 * Where the last failure happened: block index (-1 = frame header) and stream index (-1 = none). Module
 * globals because a WASM export returns one number and decompressChunk's is already the status; the JS
 * side (node/codec/kernel.ts) asks failedBlock()/failedStream() only after a failure, on the same thread
 * right after the call, so a successful decode pays nothing for them.
 */
export let errorBlock: i32 = -1;
export let errorStream: i32 = -1;

/** Blocks at least this long are decoded two symbols per lookup; shorter ones do not repay the table. */
const X2_BLOCK_BYTES_MIN: u32 = 16 * 1024;
/** Lookups between refills: a refilled container holds at least 57 bits, enough for five codes of 11. */
const LOOKUPS_PER_REFILL: u32 = 5;
/** Bytes a stream's bit position advances per fast-loop round at most: (7 + 5 * 11) / 8. */
const ROUND_INPUT_BYTES_MAX: u32 = 7;

let cursor: usize = 0;
let frameEnd: usize = 0;
let tableValid = false;
let x2Valid = false;

/** Decodes the frame [frame, frame + frameLength) into exactly `length` bytes at destination. */
export function decompressChunk(frame: usize, frameLength: u32, destination: usize, length: u32): i32 {
  errorBlock = -1;
  errorStream = -1;
  tableValid = false;
  x2Valid = false;
  // The first table of a frame is described as changes from all-absent.
  memory.fill(DECODE_LENGTHS, 0, SYMBOL_COUNT);
  if (frameLength < FRAME_HEADER_BYTES) return ERROR_FRAME_TRUNCATED;
  if (load<u8>(frame) != FRAME_VERSION) return ERROR_FRAME_VERSION;
  if (load<u32>(frame, 1) != length) return ERROR_FRAME_LENGTH;
  cursor = frame + FRAME_HEADER_BYTES;
  frameEnd = frame + frameLength;
  let out = destination;
  const outEnd = destination + length;
  let block: i32 = 0;
  while (out < outEnd) {
    errorBlock = block;
    const status = decodeBlock(out, <u32>(outEnd - out));
    if (status < 0) return status;
    out += <usize>status;
    block++;
  }
  if (cursor != frameEnd) return ERROR_TRAILING_BYTES;
  errorBlock = -1;
  return OK;
}

/** Decodes the block at `cursor` into out (room for `room` bytes); returns its length or an error. */
function decodeBlock(out: usize, room: u32): i32 {
  if (frameEnd - cursor < BLOCK_HEADER_BYTES) return ERROR_HEADER_TRUNCATED;
  const header = <u32>load<u16>(cursor) | (<u32>load<u8>(cursor, 2) << 16);
  cursor += BLOCK_HEADER_BYTES;
  const kind = header & 3;
  const length = (header >> 2) + 1;
  if (length > BLOCK_BYTES_MAX) return ERROR_BLOCK_SIZE;
  if (length > room) return ERROR_BLOCK_OVERRUNS_CHUNK;
  if (kind == BLOCK_RAW) {
    if (frameEnd - cursor < length) return ERROR_PAYLOAD_TRUNCATED;
    memory.copy(out, cursor, length);
    cursor += length;
    return length;
  }
  if (kind == BLOCK_RLE) {
    if (frameEnd - cursor < 1) return ERROR_PAYLOAD_TRUNCATED;
    memory.fill(out, load<u8>(cursor), length);
    cursor += 1;
    return length;
  }
  if (kind == BLOCK_HUFFMAN) {
    const status = readTable();
    if (status < 0) return status;
  } else if (!tableValid) {
    return ERROR_NO_TABLE;
  }
  const status = decodeStreams(out, length);
  return status < 0 ? status : length;
}

/**
 * Reads a table description at `cursor` (changes from the frame's previous table, kept in
 * DECODE_LENGTHS), checks it and builds the one-symbol decode table.
 */
function readTable(): i32 {
  tableValid = false;
  x2Valid = false;
  if (frameEnd - cursor < 1) return ERROR_PAYLOAD_TRUNCATED;
  const top: u32 = load<u8>(cursor);
  const codes = cursor + 1;
  const available = <u32>(frameEnd - codes);
  let position: u32 = 0;
  let kraft: u32 = 0;
  memory.fill(LENGTH_COUNTS, 0, (TABLE_LOG + 1) * 4);
  for (let symbol: u32 = 0; symbol <= top; symbol++) {
    // A code starting inside the frame ends at most 7 bits later, inside the frame's zeroed slack.
    if ((position >> 3) >= available) return ERROR_PAYLOAD_TRUNCATED;
    const word = load<u32>(codes + (position >> 3)) >> (position & 7);
    // One lookup of the next 7 bits, no branches (see LENGTH_CHANGE_PARSE).
    const entry = load<u32>(<usize>(word & 127) << 2, LENGTH_CHANGE_PARSE);
    const previous = <i32>load<u8>(DECODE_LENGTHS + symbol);
    const changed = previous + (<i32>(entry << 16) >> 24);
    const length = (entry & 0x80) != 0 ? <i32>((word >> 3) & 15) : changed;
    position += entry & 7;
    if (<u32>length > TABLE_LOG) return ERROR_TABLE_LENGTH;
    store<u8>(DECODE_LENGTHS + symbol, <u8>length);
    const counter = LENGTH_COUNTS + (<usize>length << 2);
    store<u32>(counter, load<u32>(counter) + 1);
    kraft += length != 0 ? TABLE_SIZE >> length : 0;
  }
  const bytes = (position + 7) >> 3;
  if (bytes > available) return ERROR_PAYLOAD_TRUNCATED;
  if ((position & 7) != 0 && (<u32>load<u8>(codes + bytes - 1) >> (position & 7)) != 0) return ERROR_TABLE_LENGTH;
  if (top < SYMBOL_COUNT - 1) memory.fill(DECODE_LENGTHS + top + 1, 0, SYMBOL_COUNT - 1 - top);
  cursor = codes + bytes;
  // A complete code needs at least two symbols, so this also rejects a table of one symbol.
  if (kraft != TABLE_SIZE) return ERROR_TABLE_INCOMPLETE;
  buildX1(top);
  tableValid = true;
  return OK;
}

/**
 * Builds the one-symbol table from DECODE_LENGTHS (complete, lengths counted in LENGTH_COUNTS) as
 * libdeflate does: going through the lengths in increasing order, the first 2^length entries are made
 * complete for the codes up to that length, then doubled, so each code is stored once and the rest is
 * bulk copies.
 */
function buildX1(top: u32): void {
  let offset: u32 = 0;
  for (let length: u32 = 1; length <= TABLE_LOG; length++) {
    store<u32>(DECODE_OFFSETS + (<usize>length << 2), offset);
    offset += load<u32>(LENGTH_COUNTS + (<usize>length << 2));
  }
  for (let symbol: u32 = 0; symbol <= top; symbol++) {
    const length: u32 = load<u8>(DECODE_LENGTHS + symbol);
    if (length == 0) continue;
    const at = DECODE_OFFSETS + (<usize>length << 2);
    const rank = load<u32>(at);
    store<u32>(at, rank + 1);
    store<u8>(DECODE_ORDER + rank, <u8>symbol);
  }
  let code: u32 = 0;
  let rank: u32 = 0;
  for (let length: u32 = 1; ; length++) {
    const count = load<u32>(LENGTH_COUNTS + (<usize>length << 2));
    for (let i: u32 = 0; i < count; i++) {
      const symbol: u32 = load<u8>(DECODE_ORDER + rank);
      // LSB-first: an index whose low `length` bits are the reversed code decodes this symbol.
      const reversed = reverseBits(code, length);
      store<u16>(DECODE_REVERSED + (<usize>rank << 1), <u16>reversed);
      store<u16>(DECODE_X1 + (<usize>reversed << 1), <u16>(symbol | (length << 8)));
      code++;
      rank++;
    }
    if (length == TABLE_LOG) break;
    memory.copy(DECODE_X1 + (<usize>2 << length), DECODE_X1, <usize>2 << length);
    code <<= 1;
  }
}

/**
 * Builds the two-symbols-per-lookup table from the one-symbol table. The entries of a first symbol of
 * length L are its reversed code plus every j << L; what j decodes to depends only on L, so it is worked
 * out once per length (DECODE_PAIRS) and then combined with each symbol of that length.
 */
function buildX2(): void {
  const pairs = DECODE_PAIRS;
  let rank: u32 = 0;
  for (let length: u32 = 1; length <= TABLE_LOG; length++) {
    const count = load<u32>(LENGTH_COUNTS + (<usize>length << 2));
    if (count == 0) continue;
    const room = TABLE_LOG - length;
    const pairCount: u32 = 1 << room;
    for (let rest: u32 = 0; rest < pairCount; rest++) {
      const second: u32 = load<u16>(DECODE_X1 + (<usize>rest << 1));
      const secondLength = second >> 8;
      const pair = secondLength <= room
        ? ((second & 255) << 8) | ((length + secondLength) << 16) | (2 << 24)
        : (length << 16) | (1 << 24);
      store<u32>(pairs + (<usize>rest << 2), pair);
    }
    const step = <usize>4 << length;
    const pairsEnd = pairs + (<usize>pairCount << 2);
    for (let i: u32 = 0; i < count; i++) {
      const symbol: u32 = load<u8>(DECODE_ORDER + rank);
      let at = DECODE_X2 + (<usize>load<u16>(DECODE_REVERSED + (<usize>rank << 1)) << 2);
      if (pairCount == 1) {
        store<u32>(at, load<u32>(pairs) | symbol);
      } else {
        // Two entries per turn: pairCount is a power of two.
        for (let pair = pairs; pair < pairsEnd; pair += 8) {
          store<u32>(at, load<u32>(pair) | symbol);
          store<u32>(at + step, load<u32>(pair, 4) | symbol);
          at += step << 1;
        }
      }
      rank++;
    }
  }
  x2Valid = true;
}

/** Decodes the four streams of a Huffman or repeat block at `cursor` into [out, out + length). */
function decodeStreams(out: usize, length: u32): i32 {
  if (frameEnd - cursor < STREAM_SIZES_BYTES) return ERROR_PAYLOAD_TRUNCATED;
  const size0: u32 = load<u16>(cursor);
  const size1: u32 = load<u16>(cursor, 2);
  const size2: u32 = load<u16>(cursor, 4);
  const size3: u32 = load<u16>(cursor, 6);
  const base0 = cursor + STREAM_SIZES_BYTES;
  const base1 = base0 + size0;
  const base2 = base1 + size1;
  const base3 = base2 + size2;
  const end = base3 + size3;
  if (end > frameEnd) return ERROR_PAYLOAD_TRUNCATED;
  cursor = end;
  const quarter = length >> 2;
  state0.start(base0, size0, out, quarter);
  state1.start(base1, size1, out + quarter, quarter);
  state2.start(base2, size2, out + 2 * quarter, quarter);
  state3.start(base3, size3, out + 3 * quarter, length - 3 * quarter);
  // The four-stream loop stops when the first stream nears an end; the others go on in pairs, then alone.
  if (length >= X2_BLOCK_BYTES_MIN) {
    if (!x2Valid) buildX2();
    fastLoopX2();
    twoStreamsX2(state0, state1);
    twoStreamsX2(state2, state3);
    oneStreamX2(state0);
    oneStreamX2(state1);
    oneStreamX2(state2);
    oneStreamX2(state3);
  } else {
    fastLoopX1();
    oneStreamX1(state0);
    oneStreamX1(state1);
    oneStreamX1(state2);
    oneStreamX1(state3);
  }
  let status = finishStream(state0, 0);
  if (status == OK) status = finishStream(state1, 1);
  if (status == OK) status = finishStream(state2, 2);
  if (status == OK) status = finishStream(state3, 3);
  return status;
}

/** Where one stream stands: its bytes, the next byte and bit to read, and its output range. */
@final @unmanaged class Stream {
  base: usize = 0;
  end: usize = 0;
  cursor: usize = 0;
  /** Bits of the byte at `cursor` already read (0..7). */
  shift: u32 = 0;
  out: usize = 0;
  outEnd: usize = 0;

  start(base: usize, bytes: u32, out: usize, count: u32): void {
    this.base = base;
    this.end = base + bytes;
    this.cursor = base;
    this.shift = 0;
    this.out = out;
    this.outEnd = out + count;
  }

  /**
   * Fast-loop rounds this stream can take with no check: every refill stays in its bytes, and every
   * write, `roundBytes` at most per round, inside its output.
   */
  @inline rounds(roundBytes: u32): u32 {
    const inputRounds = this.end >= this.cursor + 8 ? <u32>(this.end - 8 - this.cursor) / ROUND_INPUT_BYTES_MAX + 1 : 0;
    const outputRounds = <u32>(this.outEnd - this.out) / roundBytes;
    return min(inputRounds, outputRounds);
  }
}

const state0 = changetype<Stream>(memory.data(offsetof<Stream>(), 16));
const state1 = changetype<Stream>(memory.data(offsetof<Stream>(), 16));
const state2 = changetype<Stream>(memory.data(offsetof<Stream>(), 16));
const state3 = changetype<Stream>(memory.data(offsetof<Stream>(), 16));

const SENTINEL: u64 = 1 << 63;

/**
 * A container of the stream's bits from (cursor, shift) on, moved up by `scale` bits so that masking it
 * gives a table index already multiplied by the entry size, with a 1 (the sentinel) in its top bit. It
 * holds at least 57 of the stream's bits; after lookups have shifted it right, clz counts the bits used.
 */
// @ts-ignore: decorator
@inline function refill(cursor: usize, shift: u32, scale: u64): u64 {
  return ((load<u64>(cursor) >> <u64>shift) << scale) | SENTINEL;
}

/** Four streams at once, two symbols per lookup, while every stream has room for a whole round. */
function fastLoopX2(): void {
  let cursor0 = state0.cursor, cursor1 = state1.cursor, cursor2 = state2.cursor, cursor3 = state3.cursor;
  let shift0 = state0.shift, shift1 = state1.shift, shift2 = state2.shift, shift3 = state3.shift;
  let out0 = state0.out, out1 = state1.out, out2 = state2.out, out3 = state3.out;
  while (true) {
    state0.cursor = cursor0; state1.cursor = cursor1; state2.cursor = cursor2; state3.cursor = cursor3;
    state0.shift = shift0; state1.shift = shift1; state2.shift = shift2; state3.shift = shift3;
    state0.out = out0; state1.out = out1; state2.out = out2; state3.out = out3;
    const roundBytes = 2 * LOOKUPS_PER_REFILL;
    let rounds = min(min(state0.rounds(roundBytes), state1.rounds(roundBytes)), min(state2.rounds(roundBytes), state3.rounds(roundBytes)));
    if (rounds == 0) return;
    while (rounds != 0) {
      let bits0 = refill(cursor0, shift0, 2);
      let bits1 = refill(cursor1, shift1, 2);
      let bits2 = refill(cursor2, shift2, 2);
      let bits3 = refill(cursor3, shift3, 2);
      // Entries: first symbol, second symbol, bits used, symbols (1 or 2). Reading the fields with
      // separate narrow loads costs fewer instructions than extracting them from one word. Unrolled:
      // LOOKUPS_PER_REFILL (5) lookups per stream.
      let index: usize;
      index = <usize>bits0 & (TABLE_MASK << 2); store<u16>(out0, load<u16>(index, DECODE_X2));
      bits0 >>= <u64>load<u8>(index, DECODE_X2 + 2); out0 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits1 & (TABLE_MASK << 2); store<u16>(out1, load<u16>(index, DECODE_X2));
      bits1 >>= <u64>load<u8>(index, DECODE_X2 + 2); out1 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits2 & (TABLE_MASK << 2); store<u16>(out2, load<u16>(index, DECODE_X2));
      bits2 >>= <u64>load<u8>(index, DECODE_X2 + 2); out2 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits3 & (TABLE_MASK << 2); store<u16>(out3, load<u16>(index, DECODE_X2));
      bits3 >>= <u64>load<u8>(index, DECODE_X2 + 2); out3 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits0 & (TABLE_MASK << 2); store<u16>(out0, load<u16>(index, DECODE_X2));
      bits0 >>= <u64>load<u8>(index, DECODE_X2 + 2); out0 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits1 & (TABLE_MASK << 2); store<u16>(out1, load<u16>(index, DECODE_X2));
      bits1 >>= <u64>load<u8>(index, DECODE_X2 + 2); out1 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits2 & (TABLE_MASK << 2); store<u16>(out2, load<u16>(index, DECODE_X2));
      bits2 >>= <u64>load<u8>(index, DECODE_X2 + 2); out2 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits3 & (TABLE_MASK << 2); store<u16>(out3, load<u16>(index, DECODE_X2));
      bits3 >>= <u64>load<u8>(index, DECODE_X2 + 2); out3 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits0 & (TABLE_MASK << 2); store<u16>(out0, load<u16>(index, DECODE_X2));
      bits0 >>= <u64>load<u8>(index, DECODE_X2 + 2); out0 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits1 & (TABLE_MASK << 2); store<u16>(out1, load<u16>(index, DECODE_X2));
      bits1 >>= <u64>load<u8>(index, DECODE_X2 + 2); out1 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits2 & (TABLE_MASK << 2); store<u16>(out2, load<u16>(index, DECODE_X2));
      bits2 >>= <u64>load<u8>(index, DECODE_X2 + 2); out2 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits3 & (TABLE_MASK << 2); store<u16>(out3, load<u16>(index, DECODE_X2));
      bits3 >>= <u64>load<u8>(index, DECODE_X2 + 2); out3 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits0 & (TABLE_MASK << 2); store<u16>(out0, load<u16>(index, DECODE_X2));
      bits0 >>= <u64>load<u8>(index, DECODE_X2 + 2); out0 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits1 & (TABLE_MASK << 2); store<u16>(out1, load<u16>(index, DECODE_X2));
      bits1 >>= <u64>load<u8>(index, DECODE_X2 + 2); out1 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits2 & (TABLE_MASK << 2); store<u16>(out2, load<u16>(index, DECODE_X2));
      bits2 >>= <u64>load<u8>(index, DECODE_X2 + 2); out2 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits3 & (TABLE_MASK << 2); store<u16>(out3, load<u16>(index, DECODE_X2));
      bits3 >>= <u64>load<u8>(index, DECODE_X2 + 2); out3 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits0 & (TABLE_MASK << 2); store<u16>(out0, load<u16>(index, DECODE_X2));
      bits0 >>= <u64>load<u8>(index, DECODE_X2 + 2); out0 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits1 & (TABLE_MASK << 2); store<u16>(out1, load<u16>(index, DECODE_X2));
      bits1 >>= <u64>load<u8>(index, DECODE_X2 + 2); out1 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits2 & (TABLE_MASK << 2); store<u16>(out2, load<u16>(index, DECODE_X2));
      bits2 >>= <u64>load<u8>(index, DECODE_X2 + 2); out2 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits3 & (TABLE_MASK << 2); store<u16>(out3, load<u16>(index, DECODE_X2));
      bits3 >>= <u64>load<u8>(index, DECODE_X2 + 2); out3 += <usize>load<u8>(index, DECODE_X2 + 3);
      let read = shift0 + <u32>clz<u64>(bits0); cursor0 += read >> 3; shift0 = read & 7;
      read = shift1 + <u32>clz<u64>(bits1); cursor1 += read >> 3; shift1 = read & 7;
      read = shift2 + <u32>clz<u64>(bits2); cursor2 += read >> 3; shift2 = read & 7;
      read = shift3 + <u32>clz<u64>(bits3); cursor3 += read >> 3; shift3 = read & 7;
      rounds--;
    }
  }
}

/** Four streams at once, one symbol per lookup, while every stream has room for a whole round. */
function fastLoopX1(): void {
  let cursor0 = state0.cursor, cursor1 = state1.cursor, cursor2 = state2.cursor, cursor3 = state3.cursor;
  let shift0 = state0.shift, shift1 = state1.shift, shift2 = state2.shift, shift3 = state3.shift;
  let out0 = state0.out, out1 = state1.out, out2 = state2.out, out3 = state3.out;
  while (true) {
    state0.cursor = cursor0; state1.cursor = cursor1; state2.cursor = cursor2; state3.cursor = cursor3;
    state0.shift = shift0; state1.shift = shift1; state2.shift = shift2; state3.shift = shift3;
    state0.out = out0; state1.out = out1; state2.out = out2; state3.out = out3;
    const roundBytes = LOOKUPS_PER_REFILL;
    let rounds = min(min(state0.rounds(roundBytes), state1.rounds(roundBytes)), min(state2.rounds(roundBytes), state3.rounds(roundBytes)));
    if (rounds == 0) return;
    while (rounds != 0) {
      let bits0 = refill(cursor0, shift0, 1);
      let bits1 = refill(cursor1, shift1, 1);
      let bits2 = refill(cursor2, shift2, 1);
      let bits3 = refill(cursor3, shift3, 1);
      // Entries: symbol, code length. Unrolled: LOOKUPS_PER_REFILL (5) lookups per stream.
      let index: usize;
      index = <usize>bits0 & (TABLE_MASK << 1); store<u8>(out0, load<u8>(index, DECODE_X1), 0); bits0 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits1 & (TABLE_MASK << 1); store<u8>(out1, load<u8>(index, DECODE_X1), 0); bits1 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits2 & (TABLE_MASK << 1); store<u8>(out2, load<u8>(index, DECODE_X1), 0); bits2 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits3 & (TABLE_MASK << 1); store<u8>(out3, load<u8>(index, DECODE_X1), 0); bits3 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits0 & (TABLE_MASK << 1); store<u8>(out0, load<u8>(index, DECODE_X1), 1); bits0 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits1 & (TABLE_MASK << 1); store<u8>(out1, load<u8>(index, DECODE_X1), 1); bits1 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits2 & (TABLE_MASK << 1); store<u8>(out2, load<u8>(index, DECODE_X1), 1); bits2 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits3 & (TABLE_MASK << 1); store<u8>(out3, load<u8>(index, DECODE_X1), 1); bits3 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits0 & (TABLE_MASK << 1); store<u8>(out0, load<u8>(index, DECODE_X1), 2); bits0 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits1 & (TABLE_MASK << 1); store<u8>(out1, load<u8>(index, DECODE_X1), 2); bits1 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits2 & (TABLE_MASK << 1); store<u8>(out2, load<u8>(index, DECODE_X1), 2); bits2 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits3 & (TABLE_MASK << 1); store<u8>(out3, load<u8>(index, DECODE_X1), 2); bits3 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits0 & (TABLE_MASK << 1); store<u8>(out0, load<u8>(index, DECODE_X1), 3); bits0 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits1 & (TABLE_MASK << 1); store<u8>(out1, load<u8>(index, DECODE_X1), 3); bits1 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits2 & (TABLE_MASK << 1); store<u8>(out2, load<u8>(index, DECODE_X1), 3); bits2 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits3 & (TABLE_MASK << 1); store<u8>(out3, load<u8>(index, DECODE_X1), 3); bits3 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits0 & (TABLE_MASK << 1); store<u8>(out0, load<u8>(index, DECODE_X1), 4); bits0 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits1 & (TABLE_MASK << 1); store<u8>(out1, load<u8>(index, DECODE_X1), 4); bits1 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits2 & (TABLE_MASK << 1); store<u8>(out2, load<u8>(index, DECODE_X1), 4); bits2 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      index = <usize>bits3 & (TABLE_MASK << 1); store<u8>(out3, load<u8>(index, DECODE_X1), 4); bits3 >>= <u64>load<u8>(index, DECODE_X1 + 1);
      out0 += LOOKUPS_PER_REFILL; out1 += LOOKUPS_PER_REFILL; out2 += LOOKUPS_PER_REFILL; out3 += LOOKUPS_PER_REFILL;
      let read = shift0 + <u32>clz<u64>(bits0); cursor0 += read >> 3; shift0 = read & 7;
      read = shift1 + <u32>clz<u64>(bits1); cursor1 += read >> 3; shift1 = read & 7;
      read = shift2 + <u32>clz<u64>(bits2); cursor2 += read >> 3; shift2 = read & 7;
      read = shift3 + <u32>clz<u64>(bits3); cursor3 += read >> 3; shift3 = read & 7;
      rounds--;
    }
  }
}

/** Two streams at once, two symbols per lookup, while both have room for a whole round. */
function twoStreamsX2(first: Stream, second: Stream): void {
  let cursor0 = first.cursor, cursor1 = second.cursor;
  let shift0 = first.shift, shift1 = second.shift;
  let out0 = first.out, out1 = second.out;
  let rounds = min(first.rounds(2 * LOOKUPS_PER_REFILL), second.rounds(2 * LOOKUPS_PER_REFILL));
  while (rounds != 0) {
    let bits0 = refill(cursor0, shift0, 2);
    let bits1 = refill(cursor1, shift1, 2);
    for (let lookup: u32 = 0; lookup < LOOKUPS_PER_REFILL; lookup++) {
      let index = <usize>bits0 & (TABLE_MASK << 2);
      store<u16>(out0, load<u16>(index, DECODE_X2));
      bits0 >>= <u64>load<u8>(index, DECODE_X2 + 2);
      out0 += <usize>load<u8>(index, DECODE_X2 + 3);
      index = <usize>bits1 & (TABLE_MASK << 2);
      store<u16>(out1, load<u16>(index, DECODE_X2));
      bits1 >>= <u64>load<u8>(index, DECODE_X2 + 2);
      out1 += <usize>load<u8>(index, DECODE_X2 + 3);
    }
    let read = shift0 + <u32>clz<u64>(bits0);
    cursor0 += read >> 3;
    shift0 = read & 7;
    read = shift1 + <u32>clz<u64>(bits1);
    cursor1 += read >> 3;
    shift1 = read & 7;
    rounds--;
    if (rounds == 0) {
      first.cursor = cursor0; first.shift = shift0; first.out = out0;
      second.cursor = cursor1; second.shift = shift1; second.out = out1;
      rounds = min(first.rounds(2 * LOOKUPS_PER_REFILL), second.rounds(2 * LOOKUPS_PER_REFILL));
    }
  }
  first.cursor = cursor0; first.shift = shift0; first.out = out0;
  second.cursor = cursor1; second.shift = shift1; second.out = out1;
}

/** One stream alone, two symbols per lookup, while it has room for a whole round. */
function oneStreamX2(stream: Stream): void {
  let cursor = stream.cursor;
  let shift = stream.shift;
  let out = stream.out;
  let rounds = stream.rounds(2 * LOOKUPS_PER_REFILL);
  while (rounds != 0) {
    let bits = refill(cursor, shift, 2);
    for (let lookup: u32 = 0; lookup < LOOKUPS_PER_REFILL; lookup++) {
      const index = <usize>bits & (TABLE_MASK << 2);
      store<u16>(out, load<u16>(index, DECODE_X2));
      bits >>= <u64>load<u8>(index, DECODE_X2 + 2);
      out += <usize>load<u8>(index, DECODE_X2 + 3);
    }
    const read = shift + <u32>clz<u64>(bits);
    cursor += read >> 3;
    shift = read & 7;
    rounds--;
    if (rounds == 0) {
      stream.cursor = cursor;
      stream.shift = shift;
      stream.out = out;
      rounds = stream.rounds(2 * LOOKUPS_PER_REFILL);
    }
  }
  stream.cursor = cursor;
  stream.shift = shift;
  stream.out = out;
}

/** One stream alone, one symbol per lookup, while it has room for a whole round. */
function oneStreamX1(stream: Stream): void {
  let cursor = stream.cursor;
  let shift = stream.shift;
  let out = stream.out;
  let rounds = stream.rounds(LOOKUPS_PER_REFILL);
  while (rounds != 0) {
    let bits = refill(cursor, shift, 1);
    for (let lookup: usize = 0; lookup < LOOKUPS_PER_REFILL; lookup++) {
      const index = <usize>bits & (TABLE_MASK << 1);
      store<u8>(out + lookup, load<u8>(index, DECODE_X1));
      bits >>= <u64>load<u8>(index, DECODE_X1 + 1);
    }
    out += LOOKUPS_PER_REFILL;
    const read = shift + <u32>clz<u64>(bits);
    cursor += read >> 3;
    shift = read & 7;
    rounds--;
    if (rounds == 0) {
      stream.cursor = cursor;
      stream.shift = shift;
      stream.out = out;
      rounds = stream.rounds(LOOKUPS_PER_REFILL);
    }
  }
  stream.cursor = cursor;
  stream.shift = shift;
  stream.out = out;
}

/**
 * Decodes the rest of a stream one symbol per lookup with checked refills, then checks that the
 * stream ended exactly at its last byte with zero padding bits.
 */
function finishStream(stream: Stream, index: i32): i32 {
  errorStream = index;
  const base = stream.base;
  const bytes = <u32>(stream.end - base);
  const bitsTotal = bytes << 3;
  let bit = (<u32>(stream.cursor - base) << 3) + stream.shift;
  let out = stream.out;
  const outEnd = stream.outEnd;
  while (out < outEnd) {
    const bytePosition = bit >> 3;
    if (bytePosition > bytes) return ERROR_STREAM_OVERRUN;
    // Reads up to 8 bytes past the stream, inside the frame or its slack; bits past the stream are masked off.
    let bits = load<u64>(base + bytePosition);
    const bytesLeft = bytes - bytePosition;
    if (bytesLeft < 8) bits &= (<u64>1 << (<u64>bytesLeft << 3)) - 1;
    bits >>= bit & 7;
    const count = min(<u32>(outEnd - out), LOOKUPS_PER_REFILL);
    for (let i: u32 = 0; i < count; i++) {
      const entry: u32 = load<u16>(DECODE_X1 + ((<usize>bits & TABLE_MASK) << 1));
      store<u8>(out, <u8>entry);
      out++;
      bits >>= entry >> 8;
      bit += entry >> 8;
    }
  }
  if (bit > bitsTotal) return ERROR_STREAM_OVERRUN;
  if (bitsTotal - bit >= 8) return ERROR_STREAM_UNUSED;
  if ((bit & 7) != 0 && (<u32>load<u8>(base + bytes - 1) >> (bit & 7)) != 0) return ERROR_STREAM_PADDING;
  errorStream = -1;
  return OK;
}
