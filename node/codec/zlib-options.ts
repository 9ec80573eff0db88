/**
 * How node:zlib codes one chunk of zstd, gzip or brotli: the same options whether a codec thread calls
 * zlib's one-shot functions (coders.ts) or the file pipeline its asynchronous ones on libuv's thread pool
 * (file-zlib.ts), so both write the same bytes.
 */
import { constants, type BrotliOptions, type ZlibOptions, type ZstdOptions } from 'node:zlib';
import { codedBytesMax, type CodecChoice } from './codecs.ts';

/** The codecs node:zlib codes. */
export type ZlibCodecName = 'zstd' | 'gzip' | 'brotli';

export function isZlibCodec(name: string): name is ZlibCodecName {
  return name === 'zstd' || name === 'gzip' || name === 'brotli';
}

/**
 * One output buffer for all of a chunk's frame: zlib's one-shot calls otherwise write 16 KiB pieces and
 * join them, and zstd, seeing too little room to finish in one call, copies the input into its own
 * window buffer and codes it in the slower path for windows that wrap (perf on 150 MB at zstd:3:
 * ZSTD_compressBlock_doubleFast_extDict 21% of the process's samples; about 10% less CPU for the codec
 * with room for the whole frame, and the same frames zstd(1) writes for the chunk).
 */
function wholeFrame(inputBytes: number): { chunkSize: number } {
  return { chunkSize: Math.max(64 * 1024, codedBytesMax(0, inputBytes)) };
}

/** Options to code `inputBytes` bytes with `choice` (a zlib codec) into one frame, member or stream. */
export function zlibCompressOptions(choice: CodecChoice, inputBytes: number): ZstdOptions & ZlibOptions & BrotliOptions {
  const { level } = choice;
  switch (choice.codec.name) {
    case 'zstd':
      // The frame carries its content size and checksum, so `zstd -d` checks every chunk on its own.
      return { ...wholeFrame(inputBytes), params: { [constants.ZSTD_c_compressionLevel]: level, [constants.ZSTD_c_checksumFlag]: 1 } };
    case 'gzip':
      return { ...wholeFrame(inputBytes), level };
    case 'brotli':
      return { ...wholeFrame(inputBytes), params: { [constants.BROTLI_PARAM_QUALITY]: level, [constants.BROTLI_PARAM_SIZE_HINT]: inputBytes } };
    default:
      throw new Error(`zlibCompressOptions: ${choice.codec.name} is not a zlib codec`);
  }
}

/** The most one piece of a standard file may decode to when its length is not recorded: memory per thread stays bounded. */
export const pieceBytesMax = 1024 * 1024 * 1024;

/**
 * Options to decode one frame. One byte more than expected is room enough to notice a frame that decodes
 * too long. A known length decodes into one buffer of exactly that size: no 16 KiB pieces joined after,
 * and nothing to copy (a longer frame spills into a second buffer and fails the length check).
 */
export function zlibDecompressOptions(originalBytes: number | undefined): { maxOutputLength: number; chunkSize?: number } {
  const maxOutputLength = (originalBytes ?? pieceBytesMax) + 1;
  return originalBytes === undefined ? { maxOutputLength } : { maxOutputLength, chunkSize: Math.max(64, originalBytes) };
}
