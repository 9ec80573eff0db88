// The encoder: splits a chunk into blocks, picks each block's kind and codes it (docs/KERNEL.md).

import {
  BLOCK_BYTES_MAX, BLOCK_HEADER_BYTES, BLOCK_HISTOGRAM, BLOCK_HUFFMAN, BLOCK_RAW, BLOCK_REPEAT, BLOCK_RLE,
  CODES, FRAME_HEADER_BYTES, FRAME_VERSION, LENGTHS, STREAM_COUNT, STREAM_SIZES_BYTES, SUB_BLOCK_BYTES,
  SUB_HISTOGRAM, SYMBOL_COUNT, TABLE_LENGTHS,
} from './layout';
import {
  buildEncoderCodes, buildLengths, entropyBits, histogram, maxSymbol, sumCountLogCount,
  sumCountLogCountMerged,
} from './huffman';

/** Whether TABLE_LENGTHS/CODES hold a table written earlier in the frame being coded. */
let tableValid = false;

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
          + tableBits(SUB_HISTOGRAM);
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

/** Estimated cost in bits of starting a new block with its own table for this histogram. */
function tableBits(histogram: usize): u64 {
  const bytes = BLOCK_HEADER_BYTES + 1 + ((<u32>maxSymbol(histogram) + 2) >> 1) + STREAM_SIZES_BYTES;
  return <u64>bytes * 8;
}

function addHistogram(into: usize, from: usize): void {
  for (let offset: usize = 0; offset < SYMBOL_COUNT * 4; offset += 4) {
    store<u32>(into + offset, load<u32>(into + offset) + load<u32>(from + offset));
  }
}

/** Total bits of a histogram coded with the given lengths, or u64.MAX_VALUE if a symbol lacks a code. */
function codedBits(histogram: usize, lengths: usize): u64 {
  let bits: u64 = 0;
  let missing = false;
  for (let symbol: usize = 0; symbol < SYMBOL_COUNT; symbol++) {
    const count = load<u32>(histogram + (symbol << 2));
    const length: u32 = load<u8>(lengths + symbol);
    missing = missing || (count != 0 && length == 0);
    bits += <u64>count * length;
  }
  return missing ? u64.MAX_VALUE : bits;
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
  const top = <u32>maxSymbol(BLOCK_HISTOGRAM);
  const tableBytes = 1 + ((top + 2) >> 1);
  const fixedBytes = BLOCK_HEADER_BYTES + STREAM_SIZES_BYTES;
  const newBytes = fixedBytes + tableBytes + streamBytesMax(codedBits(BLOCK_HISTOGRAM, LENGTHS));
  const repeatBits = tableValid ? codedBits(BLOCK_HISTOGRAM, TABLE_LENGTHS) : u64.MAX_VALUE;
  const repeatBytes = repeatBits == u64.MAX_VALUE ? u64.MAX_VALUE : fixedBytes + streamBytesMax(repeatBits);
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
    cursor = writeTable(cursor, top);
    tableValid = true;
  }
  return encodeStreams(source, length, cursor);
}

/** Adopts LENGTHS as the frame's table and writes its description: max symbol, then 4-bit lengths. */
function writeTable(out: usize, top: u32): usize {
  memory.copy(TABLE_LENGTHS, LENGTHS, SYMBOL_COUNT);
  buildEncoderCodes(TABLE_LENGTHS, CODES);
  store<u8>(out, <u8>top);
  let cursor = out + 1;
  for (let symbol: u32 = 0; symbol <= top; symbol += 2) {
    const low: u32 = load<u8>(TABLE_LENGTHS + symbol);
    const high: u32 = symbol + 1 <= top ? load<u8>(TABLE_LENGTHS + symbol + 1) : 0;
    store<u8>(cursor, <u8>(low | (high << 4)));
    cursor++;
  }
  return cursor;
}

/** Writes the stream sizes and the four streams of a block with CODES; returns the new end. */
function encodeStreams(source: usize, length: u32, out: usize): usize {
  const quarter = length >> 2;
  let cursor = out + STREAM_SIZES_BYTES;
  for (let stream: u32 = 0; stream < STREAM_COUNT; stream++) {
    const count = stream < STREAM_COUNT - 1 ? quarter : length - 3 * quarter;
    const bytes = encodeStream(source + stream * quarter, count, cursor);
    store<u16>(out + (<usize>stream << 1), <u16>bytes);
    cursor += bytes;
  }
  return cursor;
}

// @ts-ignore: decorator
@inline function codeOf(symbol: u32): u32 {
  return load<u32>(CODES + (<usize>symbol << 2));
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
  const end4 = source + (count & ~3);
  // Four codes of at most 11 bits on top of at most 7 pending bits fit the 64-bit accumulator.
  while (cursor < end4) {
    const word = load<u32>(cursor);
    let entry = codeOf(word & 255);
    bits |= <u64>(entry & 0xffff) << bitCount;
    bitCount += entry >> 16;
    entry = codeOf((word >> 8) & 255);
    bits |= <u64>(entry & 0xffff) << bitCount;
    bitCount += entry >> 16;
    entry = codeOf((word >> 16) & 255);
    bits |= <u64>(entry & 0xffff) << bitCount;
    bitCount += entry >> 16;
    entry = codeOf(word >> 24);
    bits |= <u64>(entry & 0xffff) << bitCount;
    bitCount += entry >> 16;
    store<u64>(out, bits);
    out += <usize>(bitCount >> 3);
    bits >>= bitCount & 56;
    bitCount &= 7;
    cursor += 4;
  }
  const end = source + count;
  while (cursor < end) {
    const entry = codeOf(load<u8>(cursor));
    bits |= <u64>(entry & 0xffff) << bitCount;
    bitCount += entry >> 16;
    cursor++;
  }
  store<u64>(out, bits);
  out += <usize>((bitCount + 7) >> 3);
  return <u32>(out - destination);
}
