// The encoder: splits a chunk into blocks, picks each block's kind and codes it (docs/KERNEL.md).

import {
  BLOCK_BYTES_MAX, BLOCK_HEADER_BYTES, BLOCK_HISTOGRAM, BLOCK_HUFFMAN, BLOCK_RAW, BLOCK_REPEAT, BLOCK_RLE,
  CODES, FRAME_HEADER_BYTES, FRAME_VERSION, LENGTHS, STREAM_COUNT, STREAM_SIZES_BYTES, SUB_BLOCK_BYTES,
  CODES_WIDE, LENGTH_POWERS, PAIR_CODES, PAIR_LENGTHS, SUB_HISTOGRAM, SYMBOL_COUNT, TABLE_DESCRIPTION,
  TABLE_LENGTHS,
} from './layout';
import {
  buildEncoderCodes, buildLengths, entropyBits, histogram, lengthChangeCode, presentSymbols, sumCountLogCount,
  sumCountLogCountMerged,
} from './huffman';

/**
 * The splitter's charge for a new table beyond its header and stream sizes: a fixed part and a part per
 * symbol present. Set by measurement on the benchmark data: lower values split more often, which gains
 * a little ratio (well under 1%) and costs speed on both sides, since every table is built by both.
 */
const SPLIT_FIXED_BITS: u64 = 384;
const SPLIT_SYMBOL_BITS: u64 = 6;

/** Whether TABLE_LENGTHS/CODES hold a table written earlier in the frame being coded. */
let tableValid = false;
/** Whether PAIR_CODES/PAIR_LENGTHS hold the codes of byte pairs under the current table. */
let pairsValid = false;
/** Symbols with a code in the current table. */
let tableSymbols: u32 = 0;
/**
 * Blocks of at least this many bytes per symbol of their table are coded two bytes per lookup: building
 * the pair table takes about as long as coding that many bytes one by one (measured).
 */
const PAIR_BYTES_PER_SYMBOL: u32 = 128;

/** Largest frame for a chunk of `length` bytes: every sub-block a raw block. */
export function frameBytesMax(length: u32): u32 {
  const blocks = (length + SUB_BLOCK_BYTES - 1) / SUB_BLOCK_BYTES;
  return FRAME_HEADER_BYTES + length + blocks * BLOCK_HEADER_BYTES;
}

/** Codes [source, source + length) as a frame at destination; returns the frame's length. */
export function compressChunk(source: usize, length: u32, destination: usize): u32 {
  store<u8>(destination, FRAME_VERSION);
  store<u32>(destination, length, 1);
  let out = destination + FRAME_HEADER_BYTES;
  tableValid = false;
  pairsValid = false;
  // The first table of a frame is described as changes from all-absent.
  memory.fill(TABLE_LENGTHS, 0, SYMBOL_COUNT);
  let blockStart: u32 = 0;
  let blockLength: u32 = 0;
  let blockCountLog: u64 = 0;
  for (let subStart: u32 = 0; subStart < length; subStart += SUB_BLOCK_BYTES) {
    const subLength = min(SUB_BLOCK_BYTES, length - subStart);
    histogram(source + subStart, subLength, SUB_HISTOGRAM);
    const subCountLog = sumCountLogCount(SUB_HISTOGRAM);
    if (blockLength != 0) {
      if (blockLength + subLength <= BLOCK_BYTES_MAX) {
        const mergedCountLog = sumCountLogCountMerged(BLOCK_HISTOGRAM, SUB_HISTOGRAM);
        const separateBits = entropyBits(blockLength, blockCountLog) + entropyBits(subLength, subCountLog)
          + newBlockBits(presentSymbols);
        if (entropyBits(blockLength + subLength, mergedCountLog) <= separateBits) {
          addHistogram(BLOCK_HISTOGRAM, SUB_HISTOGRAM);
          blockLength += subLength;
          blockCountLog = mergedCountLog;
          continue;
        }
      }
      out = emitBlock(source + blockStart, blockLength, out);
    }
    memory.copy(BLOCK_HISTOGRAM, SUB_HISTOGRAM, SYMBOL_COUNT * 4);
    blockStart = subStart;
    blockLength = subLength;
    blockCountLog = subCountLog;
  }
  if (blockLength != 0) out = emitBlock(source + blockStart, blockLength, out);
  return <u32>(out - destination);
}

/**
 * Estimated cost in bits of starting a new block for a histogram of `present` symbols: header, stream
 * sizes and table description, plus a charge for the time a table costs both sides, which also grows
 * with the symbols.
 */
// @ts-ignore: decorator
@inline function newBlockBits(present: u32): u64 {
  return 8 * (BLOCK_HEADER_BYTES + STREAM_SIZES_BYTES) + SPLIT_FIXED_BITS + SPLIT_SYMBOL_BITS * <u64>present;
}

function addHistogram(into: usize, from: usize): void {
  for (let offset: usize = 0; offset < SYMBOL_COUNT * 4; offset += 4) {
    store<u32>(into + offset, load<u32>(into + offset) + load<u32>(from + offset));
  }
}

// What weighBlock found: four results of one pass over the histogram. Module globals rather than a return
// value because an AssemblyScript function returns one value (no tuples), and a result object would be a
// heap allocation per block on the hot path. emitBlock, the only caller, reads them right after the call.
let newBits: u64 = 0;
let repeatBits: u64 = 0;
let repeatPossible = false;
let topSymbol: u32 = 0;

/**
 * One pass over BLOCK_HISTOGRAM: its bits coded with LENGTHS (a new table) and with TABLE_LENGTHS (a
 * repeat, possible only if every symbol present has a code there), and its highest symbol.
 */
function weighBlock(): void {
  let bitsNew: u64 = 0;
  let bitsRepeat: u64 = 0;
  let missing: u32 = 0;
  let top: u32 = 0;
  for (let symbol: u32 = 0; symbol < SYMBOL_COUNT; symbol++) {
    const count = <u64>load<u32>(<usize>symbol << 2, BLOCK_HISTOGRAM);
    const current: u32 = load<u8>(symbol, TABLE_LENGTHS);
    bitsNew += count * load<u8>(symbol, LENGTHS);
    bitsRepeat += count * current;
    missing |= <u32>(count != 0) & <u32>(current == 0);
    top = count != 0 ? symbol : top;
  }
  newBits = bitsNew;
  repeatBits = bitsRepeat;
  repeatPossible = tableValid && missing == 0;
  topSymbol = top;
}

/** Bytes of four streams holding `bits` in total, at most: each stream rounds up to a whole byte. */
// @ts-ignore: decorator
@inline function streamBytesMax(bits: u64): u64 {
  return (bits + 4 * 7) >> 3;
}

// @ts-ignore: decorator
@inline function writeBlockHeader(out: usize, kind: u32, length: u32): void {
  const header = kind | ((length - 1) << 2);
  store<u16>(out, <u16>header);
  store<u8>(out, <u8>(header >> 16), 2);
}

/** Codes one block of 1..BLOCK_BYTES_MAX bytes whose histogram is BLOCK_HISTOGRAM; returns the new end. */
function emitBlock(source: usize, length: u32, out: usize): usize {
  const present = buildLengths(BLOCK_HISTOGRAM, LENGTHS);
  if (present == 1) {
    writeBlockHeader(out, BLOCK_RLE, length);
    store<u8>(out, load<u8>(source), BLOCK_HEADER_BYTES);
    return out + BLOCK_HEADER_BYTES + 1;
  }
  weighBlock();
  const tableBytes = describeTable(topSymbol);
  const fixedBytes = BLOCK_HEADER_BYTES + STREAM_SIZES_BYTES;
  const newBytes = fixedBytes + tableBytes + streamBytesMax(newBits);
  const repeatBytes = repeatPossible ? fixedBytes + streamBytesMax(repeatBits) : u64.MAX_VALUE;
  const rawBytes = <u64>(BLOCK_HEADER_BYTES + length);
  if (rawBytes <= newBytes && rawBytes <= repeatBytes) {
    writeBlockHeader(out, BLOCK_RAW, length);
    memory.copy(out + BLOCK_HEADER_BYTES, source, length);
    return out + BLOCK_HEADER_BYTES + length;
  }
  let cursor = out + BLOCK_HEADER_BYTES;
  if (repeatBytes <= newBytes) {
    writeBlockHeader(out, BLOCK_REPEAT, length);
  } else {
    writeBlockHeader(out, BLOCK_HUFFMAN, length);
    memory.copy(cursor, TABLE_DESCRIPTION, tableBytes);
    cursor += tableBytes;
    memory.copy(TABLE_LENGTHS, LENGTHS, SYMBOL_COUNT);
    buildEncoderCodes(TABLE_LENGTHS, CODES);
    tableValid = true;
    tableSymbols = present;
    pairsValid = false;
  }
  const byPairs = pairsValid || length >= PAIR_BYTES_PER_SYMBOL * tableSymbols;
  if (!pairsValid && byPairs) buildPairCodes();
  return encodeStreams(source, length, cursor, byPairs);
}

/**
 * Writes the description of LENGTHS as changes from the frame's current table (docs/KERNEL.md) to
 * TABLE_DESCRIPTION; returns its bytes.
 */
function describeTable(top: u32): u32 {
  store<u8>(TABLE_DESCRIPTION, <u8>top);
  let cursor = TABLE_DESCRIPTION + 1;
  let bits: u64 = 0;
  let bitCount: u64 = 0;
  for (let symbol: u32 = 0; symbol <= top; symbol++) {
    const code = lengthChangeCode(load<u8>(symbol, TABLE_LENGTHS), load<u8>(symbol, LENGTHS));
    bits |= <u64>(code & 0xffff) << bitCount;
    bitCount += code >> 16;
    // At most 7 bits per symbol, so at most 38 pending: move 4 bytes out whenever 32 are pending.
    const flush = bitCount & 32;
    store<u32>(cursor, <u32>bits);
    cursor += <usize>(flush >> 3);
    bits >>= flush;
    bitCount -= flush;
  }
  store<u64>(cursor, bits);
  cursor += <usize>((bitCount + 7) >> 3);
  return <u32>(cursor - TABLE_DESCRIPTION);
}

/** Writes the stream sizes and the four streams of a block with CODES; returns the new end. */
function encodeStreams(source: usize, length: u32, out: usize, byPairs: bool): usize {
  const quarter = length >> 2;
  let cursor = out + STREAM_SIZES_BYTES;
  for (let stream: u32 = 0; stream < STREAM_COUNT; stream++) {
    const count = stream < STREAM_COUNT - 1 ? quarter : length - 3 * quarter;
    const from = source + stream * quarter;
    const bytes = byPairs ? encodeStreamByPairs(from, count, cursor) : encodeStream(from, count, cursor);
    store<u16>(out + (<usize>stream << 1), <u16>bytes);
    cursor += bytes;
  }
  return cursor;
}

/** The code of `symbol` in the current table, bit-reversed. */
// @ts-ignore: decorator
@inline function code(symbol: usize): u64 {
  return <u64>load<u16>(symbol << 1, CODES);
}

// @ts-ignore: decorator
@inline function codeLength(symbol: usize): u64 {
  return <u64>load<u8>(symbol, TABLE_LENGTHS);
}

/**
 * Codes `count` symbols as one bit stream at destination: bits fill each byte from its least significant
 * bit, each code goes in from its most significant bit (CODES holds it reversed). Returns the stream's
 * bytes; up to 8 bytes past them may be overwritten.
 */
function encodeStream(source: usize, count: u32, destination: usize): u32 {
  let bits: u64 = 0;
  let bitCount: u64 = 0;
  let out = destination;
  let cursor = source;
  const end5 = source + count - count % 5;
  // Five codes of at most 11 bits on top of at most 7 pending bits fit the 64-bit accumulator.
  while (cursor < end5) {
    let symbol = <usize>load<u8>(cursor);
    bits |= code(symbol) << bitCount;
    bitCount += codeLength(symbol);
    symbol = <usize>load<u8>(cursor, 1);
    bits |= code(symbol) << bitCount;
    bitCount += codeLength(symbol);
    symbol = <usize>load<u8>(cursor, 2);
    bits |= code(symbol) << bitCount;
    bitCount += codeLength(symbol);
    symbol = <usize>load<u8>(cursor, 3);
    bits |= code(symbol) << bitCount;
    bitCount += codeLength(symbol);
    symbol = <usize>load<u8>(cursor, 4);
    bits |= code(symbol) << bitCount;
    bitCount += codeLength(symbol);
    store<u64>(out, bits);
    out += <usize>(bitCount >> 3);
    bits >>= bitCount & 56;
    bitCount &= 7;
    cursor += 5;
  }
  const end = source + count;
  while (cursor < end) {
    const symbol = <usize>load<u8>(cursor);
    bits |= code(symbol) << bitCount;
    bitCount += codeLength(symbol);
    cursor++;
  }
  store<u64>(out, bits);
  out += <usize>((bitCount + 7) >> 3);
  return <u32>(out - destination);
}

/**
 * Codes of all byte pairs whose second byte has a code, from CODES and TABLE_LENGTHS: the pair read as a
 * little-endian u16 (first byte low) indexes PAIR_CODES (u32: the first code, then the second above it)
 * and PAIR_LENGTHS (u8: both lengths). A second byte's 256 entries are contiguous, so they are made four
 * (codes) or sixteen (lengths) at a time; multiplying by 2^length stands in for a per-lane shift.
 */
function buildPairCodes(): void {
  for (let symbol: usize = 0; symbol < SYMBOL_COUNT; symbol++) {
    const length: u32 = load<u8>(symbol, TABLE_LENGTHS);
    store<u32>(symbol << 2, load<u16>(symbol << 1, CODES), CODES_WIDE);
    store<u32>(symbol << 2, <u32>1 << length, LENGTH_POWERS);
  }
  for (let second: usize = 0; second < SYMBOL_COUNT; second++) {
    const secondLength: u32 = load<u8>(second, TABLE_LENGTHS);
    if (secondLength == 0) continue;
    const secondCode = i32x4.splat(load<u16>(second << 1, CODES));
    const codes = PAIR_CODES + (second << 10);
    for (let first: usize = 0; first < SYMBOL_COUNT * 4; first += 16) {
      const shifted = i32x4.mul(secondCode, v128.load(first, LENGTH_POWERS));
      v128.store(codes + first, v128.or(v128.load(first, CODES_WIDE), shifted));
    }
    const lengths = PAIR_LENGTHS + (second << 8);
    const addend = i8x16.splat(<i8>secondLength);
    for (let first: usize = 0; first < SYMBOL_COUNT; first += 16) {
      v128.store(lengths + first, i8x16.add(v128.load(first, TABLE_LENGTHS), addend));
    }
  }
  pairsValid = true;
}

/** Like encodeStream, two bytes per lookup in the pair tables. */
function encodeStreamByPairs(source: usize, count: u32, destination: usize): u32 {
  let bits: u64 = 0;
  let bitCount: u64 = 0;
  let out = destination;
  let cursor = source;
  const end4 = source + (count & ~3);
  // Two pair codes of at most 22 bits on top of at most 7 pending bits fit the 64-bit accumulator.
  while (cursor < end4) {
    let pair = <usize>load<u16>(cursor);
    bits |= <u64>load<u32>(pair << 2, PAIR_CODES) << bitCount;
    bitCount += <u64>load<u8>(pair, PAIR_LENGTHS);
    pair = <usize>load<u16>(cursor, 2);
    bits |= <u64>load<u32>(pair << 2, PAIR_CODES) << bitCount;
    bitCount += <u64>load<u8>(pair, PAIR_LENGTHS);
    store<u64>(out, bits);
    out += <usize>(bitCount >> 3);
    bits >>= bitCount & 56;
    bitCount &= 7;
    cursor += 4;
  }
  const end = source + count;
  while (cursor < end) {
    const symbol = <usize>load<u8>(cursor);
    bits |= code(symbol) << bitCount;
    bitCount += codeLength(symbol);
    cursor++;
  }
  store<u64>(out, bits);
  out += <usize>((bitCount + 7) >> 3);
  return <u32>(out - destination);
}
