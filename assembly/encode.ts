// The encoder: splits a chunk into blocks, picks each block's kind and codes it (docs/KERNEL.md).

import {
  BLOCK_BYTES_MAX, BLOCK_HEADER_BYTES, BLOCK_HISTOGRAM, BLOCK_HUFFMAN, BLOCK_RAW, BLOCK_REPEAT, BLOCK_RLE,
  CODES, FRAME_HEADER_BYTES, FRAME_VERSION, LENGTHS, STREAM_COUNT, STREAM_SIZES_BYTES, SUB_BLOCK_BYTES,
  SUB_HISTOGRAM, SYMBOL_COUNT, TABLE_LENGTHS,
} from './layout';
import {
  buildEncoderCodes, buildLengths, entropyBits, histogram, lengthChangeCode, maxSymbol, sumCountLogCount,
  sumCountLogCountMerged, tableDescriptionBytes,
} from './huffman';

const SPLIT_TABLE_BYTES: u32 = 96;

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
  const bytes = BLOCK_HEADER_BYTES + STREAM_SIZES_BYTES + SPLIT_TABLE_BYTES;
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
  const tableBytes = tableDescriptionBytes(LENGTHS, TABLE_LENGTHS, top);
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

/**
 * Writes the description of LENGTHS as changes from the frame's current table (docs/KERNEL.md), then
 * adopts LENGTHS as the current table.
 */
function writeTable(out: usize, top: u32): usize {
  store<u8>(out, <u8>top);
  let cursor = out + 1;
  let bits: u64 = 0;
  let bitCount: u64 = 0;
  for (let symbol: u32 = 0; symbol <= top; symbol++) {
    const change = lengthChangeCode(load<u8>(TABLE_LENGTHS + symbol), load<u8>(LENGTHS + symbol));
    bits |= <u64>(change & 0xffff) << bitCount;
    bitCount += change >> 16;
    if (bitCount >= 32) {
      store<u32>(cursor, <u32>bits);
      cursor += 4;
      bits >>= 32;
      bitCount -= 32;
    }
  }
  store<u64>(cursor, bits);
  cursor += <usize>((bitCount + 7) >> 3);
  memory.copy(TABLE_LENGTHS, LENGTHS, SYMBOL_COUNT);
  buildEncoderCodes(TABLE_LENGTHS, CODES);
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

/** Appends the code of `symbol` above the `bitCount` bits pending in `bits`. */
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
