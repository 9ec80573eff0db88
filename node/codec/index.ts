export { CodecError, type CodecErrorCode } from './errors.ts';
export { freeBuffer, freedAfterUse, SpareBuffers } from './buffers.ts';
export { compress, decompress, compressStream, decompressStream, type CodecOptions } from './api.ts';
export { compressFile, decompressFile, inputSource, listDczFile, removePartialFilesSync, writeAtomically, FileError, type FileOptions, type FileResult } from './files.ts';
export { compressTo, decompressTo, discardSink, streamSink, threadsWithin, type ByteSink, type DczListing, type StreamResult } from './file-streams.ts';
export { codecMemoryBytesDefault, createCodecPool, type CodecPool, type CodecPoolMemory, type CodecPoolOptions, type CompressedChunk, type DecodeOptions } from './pool.ts';
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
export {
  checkedLevel,
  choiceName,
  codecByName,
  codecs,
  codecsDescribed,
  codingBytesMax,
  huffmanChoice,
  parseCodecChoice,
  type CodecChoice,
  type CodecInfo,
  type CodecName,
} from './codecs.ts';
export { framingOf, outputFormats, resolveOutput, suffixOf, type Framing, type OutputFormat } from './standard-formats.ts';
export { countText, joinTextCounts, type TextCounts } from './text-counts.ts';
export { choiceOf, codecHuffmanId } from './codecs.ts';
export {
  checkImage,
  imageInputBytesMaxDefault,
  imageModes,
  imagePixelsMaxDefault,
  imageQualityDefault,
  ImageError,
  jpegQualityDefault,
  optimizeImage,
  parseImageQuality,
  type ImageErrorCode,
  type ImageHeader,
  type ImageMode,
  type ImageOptions,
  type ImageQuality,
  type ImageResult,
} from './images.ts';
export { createImagePool, type ImagePool, type ImagePoolOptions } from './images-pool.ts';
