/**
 * DCaS as a library: the codec on buffers, streams and files.
 */
export {
  CodecError,
  compress,
  compressFile,
  compressStream,
  createCodecPool,
  decompress,
  decompressFile,
  decompressStream,
  FileError,
  openDcz,
  type CodecOptions,
  type CodecPool,
  type FileOptions,
  type FileResult,
} from './codec/index.ts';
