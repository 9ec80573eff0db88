// The decoder. It is total: any input ends in a status code, every read stays inside the frame plus its
// zeroed slack, every write inside the output, and every loop is bounded by the output length.

import {
  BLOCK_BYTES_MAX, BLOCK_HEADER_BYTES, BLOCK_HUFFMAN, BLOCK_RAW, BLOCK_REPEAT, BLOCK_RLE, DECODE_LENGTHS,
  DECODE_X1, DECODE_X2, FRAME_HEADER_BYTES, FRAME_VERSION, LENGTH_COUNTS, NEXT_CODES, STREAM_SIZES_BYTES,
  SYMBOL_COUNT, TABLE_LOG, TABLE_MASK, TABLE_SIZE,
} from './layout';
import { countLengths, firstCodes, reverseBits } from './huffman';

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

/** Where the last failure happened: block index (-1 = frame header) and stream index (-1 = none). */
export let errorBlock: i32 = -1;
export let errorStream: i32 = -1;

/** Blocks at least this long are decoded two symbols per lookup; shorter ones do not repay the table. */
const X2_BLOCK_BYTES_MIN: u32 = 8 * 1024;
/** Bits per lookup at most, and lookups between refills of a 64-bit container (7 + 5 * 11 <= 64). */
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

/** Reads a table description at `cursor`, checks it and builds the one-symbol decode table. */
function readTable(): i32 {
  tableValid = false;
  x2Valid = false;
  if (frameEnd - cursor < 1) return ERROR_PAYLOAD_TRUNCATED;
  const top: u32 = load<u8>(cursor);
  const bytes = (top >> 1) + 1;
  if (frameEnd - cursor - 1 < bytes) return ERROR_PAYLOAD_TRUNCATED;
  memory.fill(DECODE_LENGTHS, 0, SYMBOL_COUNT);
  for (let i: u32 = 0; i < bytes; i++) {
    const pair: u32 = load<u8>(cursor + 1 + i);
    const low = pair & 15;
    const high = pair >> 4;
    if (low > TABLE_LOG || high > TABLE_LOG) return ERROR_TABLE_LENGTH;
    const symbol = i << 1;
    if (symbol + 1 > top && high != 0) return ERROR_TABLE_LENGTH;
    store<u8>(DECODE_LENGTHS + symbol, <u8>low);
    if (symbol + 1 <= top) store<u8>(DECODE_LENGTHS + symbol + 1, <u8>high);
  }
  cursor += 1 + bytes;
  // A complete code needs at least two symbols, so this also rejects a table of one symbol.
  if (countLengths(DECODE_LENGTHS) != TABLE_SIZE) return ERROR_TABLE_INCOMPLETE;
  firstCodes();
  for (let symbol: u32 = 0; symbol <= top; symbol++) {
    const length: u32 = load<u8>(DECODE_LENGTHS + symbol);
    if (length == 0) continue;
    const at = NEXT_CODES + (<usize>length << 2);
    const code = load<u32>(at);
    store<u32>(at, code + 1);
    const entry = <u16>(symbol | (length << 8));
    // LSB-first: every index whose low `length` bits are the reversed code decodes this symbol.
    for (let index = reverseBits(code, length); index < TABLE_SIZE; index += 1 << length) {
      store<u16>(DECODE_X1 + (<usize>index << 1), entry);
    }
  }
  tableValid = true;
  return OK;
}

/** Builds the two-symbols-per-lookup table from the one-symbol table. */
function buildX2(): void {
  for (let index: u32 = 0; index < TABLE_SIZE; index++) {
    const first: u32 = load<u16>(DECODE_X1 + (<usize>index << 1));
    const firstLength = first >> 8;
    const second: u32 = load<u16>(DECODE_X1 + (<usize>(index >> firstLength) << 1));
    const bothLength = firstLength + (second >> 8);
    const entry = bothLength <= TABLE_LOG
      ? (first & 255) | ((second & 255) << 8) | (bothLength << 16) | (2 << 24)
      : (first & 255) | (firstLength << 16) | (1 << 24);
    store<u32>(DECODE_X2 + (<usize>index << 2), entry);
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
  if (length >= X2_BLOCK_BYTES_MIN) {
    if (!x2Valid) buildX2();
    fastLoopX2();
  }
  let status = finishStream(state0, 0);
  if (status == OK) status = finishStream(state1, 1);
  if (status == OK) status = finishStream(state2, 2);
  if (status == OK) status = finishStream(state3, 3);
  return status;
}

/** Where one stream stands: its bytes, its bit position, and its output range. */
@final @unmanaged class Stream {
  base: usize = 0;
  bytes: u32 = 0;
  bitPosition: u32 = 0;
  out: usize = 0;
  outEnd: usize = 0;

  start(base: usize, bytes: u32, out: usize, count: u32): void {
    this.base = base;
    this.bytes = bytes;
    this.bitPosition = 0;
    this.out = out;
    this.outEnd = out + count;
  }

  /** Fast-loop rounds this stream can take with no check: every refill stays in its bytes, every write in its output. */
  @inline rounds(): u32 {
    const bytePosition = this.bitPosition >> 3;
    const inputRounds = this.bytes >= bytePosition + 8 ? (this.bytes - 8 - bytePosition) / ROUND_INPUT_BYTES_MAX + 1 : 0;
    const outputRounds = <u32>(this.outEnd - this.out) / (2 * LOOKUPS_PER_REFILL);
    return min(inputRounds, outputRounds);
  }
}

const state0 = changetype<Stream>(memory.data(offsetof<Stream>(), 16));
const state1 = changetype<Stream>(memory.data(offsetof<Stream>(), 16));
const state2 = changetype<Stream>(memory.data(offsetof<Stream>(), 16));
const state3 = changetype<Stream>(memory.data(offsetof<Stream>(), 16));

/** Four streams at once, two symbols per lookup, while every stream has room for a whole round. */
function fastLoopX2(): void {
  let base0 = state0.base, base1 = state1.base, base2 = state2.base, base3 = state3.base;
  let bit0 = state0.bitPosition, bit1 = state1.bitPosition, bit2 = state2.bitPosition, bit3 = state3.bitPosition;
  let out0 = state0.out, out1 = state1.out, out2 = state2.out, out3 = state3.out;
  while (true) {
    state0.bitPosition = bit0; state1.bitPosition = bit1; state2.bitPosition = bit2; state3.bitPosition = bit3;
    state0.out = out0; state1.out = out1; state2.out = out2; state3.out = out3;
    let rounds = min(min(state0.rounds(), state1.rounds()), min(state2.rounds(), state3.rounds()));
    if (rounds == 0) return;
    while (rounds != 0) {
      let bits0 = load<u64>(base0 + (bit0 >> 3)) >> (bit0 & 7);
      let bits1 = load<u64>(base1 + (bit1 >> 3)) >> (bit1 & 7);
      let bits2 = load<u64>(base2 + (bit2 >> 3)) >> (bit2 & 7);
      let bits3 = load<u64>(base3 + (bit3 >> 3)) >> (bit3 & 7);
      for (let lookup: u32 = 0; lookup < LOOKUPS_PER_REFILL; lookup++) {
        let entry = load<u32>(DECODE_X2 + ((<usize>bits0 & TABLE_MASK) << 2));
        store<u16>(out0, <u16>entry);
        out0 += entry >> 24;
        let used = (entry >> 16) & 255;
        bits0 >>= used;
        bit0 += used;
        entry = load<u32>(DECODE_X2 + ((<usize>bits1 & TABLE_MASK) << 2));
        store<u16>(out1, <u16>entry);
        out1 += entry >> 24;
        used = (entry >> 16) & 255;
        bits1 >>= used;
        bit1 += used;
        entry = load<u32>(DECODE_X2 + ((<usize>bits2 & TABLE_MASK) << 2));
        store<u16>(out2, <u16>entry);
        out2 += entry >> 24;
        used = (entry >> 16) & 255;
        bits2 >>= used;
        bit2 += used;
        entry = load<u32>(DECODE_X2 + ((<usize>bits3 & TABLE_MASK) << 2));
        store<u16>(out3, <u16>entry);
        out3 += entry >> 24;
        used = (entry >> 16) & 255;
        bits3 >>= used;
        bit3 += used;
      }
      rounds--;
    }
  }
}

/**
 * Decodes the rest of a stream one symbol per lookup with checked refills, then checks that the
 * stream ended exactly at its last byte with zero padding bits.
 */
function finishStream(stream: Stream, index: i32): i32 {
  errorStream = index;
  const base = stream.base;
  const bytes = stream.bytes;
  const bitsTotal = bytes << 3;
  let bit = stream.bitPosition;
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
