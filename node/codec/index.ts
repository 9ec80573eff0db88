export { CodecError, type CodecErrorCode } from './errors.ts';
export { compress, decompress, compressStream, decompressStream, type CodecOptions } from './api.ts';
export { compressFile, decompressFile, removePartialFilesSync, writeAtomically, FileError, type FileOptions, type FileResult } from './files.ts';
export { createCodecPool, type CodecPool, type CodecPoolOptions, type CompressedChunk } from './pool.ts';
export {
  checksumOf,
  decodeDcz,
  encodeDcz,
  fileChunks,
  fileSource,
  mapOrdered,
  openDcz,
  rechunk,
  streamSource,
  validateChunkBytes,
  type ByteSource,
  type DczReader,
  type Progress,
} from './container.ts';
export * as format from './format.ts';
