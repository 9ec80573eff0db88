/**
 * The .dcz container's fixed-layout records: file header, chunk header, index, trailer.
 * Pure encode/decode of bytes; docs/FORMAT.md is the specification these functions follow.
 * All integers are little-endian.
 */
import { crc32c } from '@node-rs/crc32';
import { choiceOf, codedBytesMax, xzDictionaryMebibytes, xzPresetOf, type CodecChoice } from './codecs.ts';
import { CodecError } from './errors.ts';

export const formatVersion = 1;
export const codecHuffman = 1;

/** PNG-style magic: a high byte, the name, and line endings that text-mode transfers would mangle. */
export const fileMagic = Uint8Array.of(0x89, 0x44, 0x43, 0x5a, 0x0d, 0x0a, 0x1a, 0x0a);
export const headerBytes = 16;
export const chunkHeaderBytes = 20;
export const indexEntryBytes = 20;
export const indexHeaderBytes = 8;
export const trailerBytes = 72;

export const tagChunk = 0x4b4e4843; // "CHNK"
export const tagIndex = 0x58444e49; // "INDX"
export const tagTrailer = 0x4c525454; // "TTRL"
const trailerMagic = Uint8Array.of(0x44, 0x43, 0x5a, 0x21, 0x45, 0x4e, 0x44, 0x0a); // "DCZ!END\n"

export const chunkBytesDefault = 4 * 1024 * 1024;
export const chunkBytesMin = 64 * 1024;
export const chunkBytesMax = 64 * 1024 * 1024;

/**
 * zstd's window for inputs over 256 KiB, as log2 bytes, at levels 1-19 (zstd's clevels.h). `zstd -T`
 * cuts its input into jobs of 4 windows (at least 1 MiB); chunks as large keep the same context.
 */
const zstdWindowLogs = [19, 20, 21, 21, 21, 21, 21, 21, 22, 22, 22, 22, 22, 22, 22, 22, 23, 23, 23];

/**
 * The chunk size a codec codes best at by default: what the codec's own multi-threaded tool cuts its
 * input into (zstd -T: 4 windows; xz -T: 3 dictionaries), within the container's bounds and never under
 * the 4 MiB default; 4 MiB for the others, whose windows (gzip 32 KiB, bzip2 900 kB blocks, brotli 4 MiB)
 * fit in a 4 MiB chunk already. A chunk is coded on its own, so a chunk smaller than the tool's block
 * loses the context the tool keeps (measured: xz -6 on 4 MiB chunks gave a file 2.4% larger than `xz -6`).
 */
export function chunkBytesFor(choice: CodecChoice): number {
  const mebibyte = 1024 * 1024;
  let bytes = chunkBytesDefault;
  if (choice.codec.name === 'zstd') bytes = 4 * 2 ** (zstdWindowLogs[choice.level - 1] ?? 21);
  // `xz -T` codes blocks of 3 dictionaries, of the preset actually coded with (at most 6's 8 MiB).
  if (choice.codec.name === 'xz') bytes = 3 * (xzDictionaryMebibytes[xzPresetOf(choice.level)] ?? 8) * mebibyte;
  return Math.min(chunkBytesMax, Math.max(chunkBytesDefault, bytes));
}
/**
 * A coded chunk is never larger than its input plus the codec's overhead; these bounds (codecs.ts) are
 * generous on purpose. The Huffman kernel's is the one version 1 always had.
 */
export function frameBytesMax(originalBytes: number, codec: number = codecHuffman): number {
  return codedBytesMax(codec, originalBytes);
}

export interface FileHeader {
  version: number;
  /** The codec's id (codecs.ts); 1 is the Huffman kernel. */
  codec: number;
  /** The codec's level; 0 for codecs without levels (huffman, store), and in every file written before levels. */
  level?: number;
  chunkBytes: number;
}

export interface ChunkEntry {
  /** Byte offset of the chunk's header from the start of the file. */
  offset: number;
  originalBytes: number;
  compressedBytes: number;
  /** CRC32C of the chunk's original bytes. */
  checksum: number;
}

export interface Trailer {
  indexOffset: number;
  chunkCount: number;
  originalBytes: number;
  sha256: Uint8Array;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function writeU64(dv: DataView, at: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`u64 field out of range: ${value}`);
  dv.setBigUint64(at, BigInt(value), true);
}

function readU64(dv: DataView, at: number, what: string): number {
  const value = dv.getBigUint64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CodecError('CORRUPT_CONTAINER', `${what}: value ${value} is too large`);
  }
  return Number(value);
}

export function encodeHeader(header: FileHeader): Uint8Array {
  const out = new Uint8Array(headerBytes);
  out.set(fileMagic, 0);
  const dv = view(out);
  dv.setUint16(8, header.version, true);
  dv.setUint8(10, header.codec);
  // Byte 11 was "flags, always zero"; it now holds the level, which is zero for the Huffman kernel, so a
  // Huffman .dcz is byte for byte what it was, and an older reader refuses any other codec by its id.
  dv.setUint8(11, header.level ?? 0);
  dv.setUint32(12, header.chunkBytes, true);
  return out;
}

/**
 * Decodes and checks a file header. Unless `anyCodec`, only the Huffman kernel is accepted: rooms that
 * hand chunks to the kernel (the cluster's jobs) must not take a file another codec wrote.
 */
export function decodeHeader(bytes: Uint8Array, options: { anyCodec?: boolean } = {}): FileHeader {
  if (bytes.length < headerBytes) throw new CodecError('NOT_DCZ', 'not a .dcz file: shorter than its header');
  for (let i = 0; i < fileMagic.length; i++) {
    if (bytes[i] !== fileMagic[i]) throw new CodecError('NOT_DCZ', 'not a .dcz file: wrong magic bytes');
  }
  const dv = view(bytes);
  const version = dv.getUint16(8, true);
  const codec = dv.getUint8(10);
  const level = dv.getUint8(11);
  const chunkBytes = dv.getUint32(12, true);
  if (version !== formatVersion) throw new CodecError('UNSUPPORTED', `header: format version ${version} is not supported (this build reads ${formatVersion})`);
  if (codec !== codecHuffman && options.anyCodec !== true) throw new CodecError('UNSUPPORTED', `header: codec id ${codec} is not supported here (only the Huffman kernel, id ${codecHuffman})`);
  try {
    choiceOf(codec, level);
  } catch (error) {
    if (error instanceof CodecError) throw new CodecError('UNSUPPORTED', `header: ${error.message}`);
    throw error;
  }
  if (chunkBytes < chunkBytesMin || chunkBytes > chunkBytesMax) {
    throw new CodecError('CORRUPT_CONTAINER', `header: chunk size ${chunkBytes} is outside ${chunkBytesMin}..${chunkBytesMax}`);
  }
  return { version, codec, level, chunkBytes };
}

export function encodeChunkHeader(entry: Omit<ChunkEntry, 'offset'>): Uint8Array {
  const out = new Uint8Array(chunkHeaderBytes);
  const dv = view(out);
  dv.setUint32(0, tagChunk, true);
  dv.setUint32(4, entry.originalBytes, true);
  dv.setUint32(8, entry.compressedBytes, true);
  dv.setUint32(12, entry.checksum, true);
  dv.setUint32(16, crc32c(out.subarray(0, 16)), true);
  return out;
}

/** Decodes a chunk header whose tag was already read as `tagChunk`; `chunk` names it in errors. */
export function decodeChunkHeader(bytes: Uint8Array, chunk: number, chunkBytes: number, codec: number = codecHuffman): Omit<ChunkEntry, 'offset'> {
  const dv = view(bytes);
  if (dv.getUint32(16, true) !== crc32c(bytes.subarray(0, 16))) {
    throw new CodecError('CORRUPT_CONTAINER', `chunk ${chunk}: header checksum mismatch`);
  }
  const originalBytes = dv.getUint32(4, true);
  const compressedBytes = dv.getUint32(8, true);
  const checksum = dv.getUint32(12, true);
  if (originalBytes === 0 || originalBytes > chunkBytes) {
    throw new CodecError('CORRUPT_CONTAINER', `chunk ${chunk}: original length ${originalBytes} is outside 1..${chunkBytes}`);
  }
  if (compressedBytes === 0 || compressedBytes > frameBytesMax(originalBytes, codec)) {
    throw new CodecError('CORRUPT_CONTAINER', `chunk ${chunk}: compressed length ${compressedBytes} is impossible for ${originalBytes} original bytes`);
  }
  return { originalBytes, compressedBytes, checksum };
}

/**
 * Checks the chunk header a file pipeline read at `offset` for chunk `chunk` against what the index says
 * of it (`expected`): its tag, its own checksum and its fields.
 */
export function checkChunkHeader(header: Uint8Array, chunk: number, offset: number, expected: Omit<ChunkEntry, 'offset'>, chunkBytes: number, codec: number): void {
  const label = `chunk ${chunk}`;
  if (header.length !== chunkHeaderBytes) throw new CodecError('TRUNCATED', `${label} header: truncated`);
  if (view(header).getUint32(0, true) !== tagChunk) throw new CodecError('CORRUPT_CONTAINER', `${label} (offset ${offset}): expected a chunk, found something else`);
  const fields = decodeChunkHeader(header, chunk, chunkBytes, codec);
  if (fields.compressedBytes !== expected.compressedBytes || fields.originalBytes !== expected.originalBytes || fields.checksum !== expected.checksum) {
    throw new CodecError('CORRUPT_CONTAINER', `${label}: header does not match the index`);
  }
}

export function encodeIndex(entries: readonly ChunkEntry[]): Uint8Array {
  const out = new Uint8Array(indexHeaderBytes + entries.length * indexEntryBytes + 4);
  const dv = view(out);
  dv.setUint32(0, tagIndex, true);
  dv.setUint32(4, entries.length, true);
  let at = indexHeaderBytes;
  for (const entry of entries) {
    writeU64(dv, at, entry.offset);
    dv.setUint32(at + 8, entry.originalBytes, true);
    dv.setUint32(at + 12, entry.compressedBytes, true);
    dv.setUint32(at + 16, entry.checksum, true);
    at += indexEntryBytes;
  }
  dv.setUint32(at, crc32c(out.subarray(0, at)), true);
  return out;
}

/** The index's total length for `count` chunks: header, entries, CRC. */
export function indexBytes(count: number): number {
  return indexHeaderBytes + count * indexEntryBytes + 4;
}

export function decodeIndex(bytes: Uint8Array): ChunkEntry[] {
  const dv = view(bytes);
  if (bytes.length < indexHeaderBytes + 4 || dv.getUint32(0, true) !== tagIndex) {
    throw new CodecError('CORRUPT_CONTAINER', 'index: missing INDX tag');
  }
  const count = dv.getUint32(4, true);
  if (bytes.length !== indexBytes(count)) throw new CodecError('CORRUPT_CONTAINER', `index: length does not match its ${count} entries`);
  const end = bytes.length - 4;
  if (dv.getUint32(end, true) !== crc32c(bytes.subarray(0, end))) throw new CodecError('CORRUPT_CONTAINER', 'index: checksum mismatch');
  const entries: ChunkEntry[] = [];
  for (let at = indexHeaderBytes; at < end; at += indexEntryBytes) {
    entries.push({
      offset: readU64(dv, at, `index entry ${entries.length}`),
      originalBytes: dv.getUint32(at + 8, true),
      compressedBytes: dv.getUint32(at + 12, true),
      checksum: dv.getUint32(at + 16, true),
    });
  }
  return entries;
}

export function encodeTrailer(trailer: Trailer): Uint8Array {
  const out = new Uint8Array(trailerBytes);
  const dv = view(out);
  dv.setUint32(0, tagTrailer, true);
  dv.setUint32(4, trailer.chunkCount, true);
  writeU64(dv, 8, trailer.indexOffset);
  writeU64(dv, 16, trailer.originalBytes);
  out.set(trailer.sha256, 24);
  dv.setUint32(56, crc32c(out.subarray(0, 56)), true);
  // Bytes 60..63 are reserved and zero.
  out.set(trailerMagic, 64);
  return out;
}

export function decodeTrailer(bytes: Uint8Array): Trailer {
  if (bytes.length !== trailerBytes) throw new CodecError('TRUNCATED', `trailer: file ends before its ${trailerBytes}-byte trailer`);
  const dv = view(bytes);
  for (let i = 0; i < trailerMagic.length; i++) {
    if (bytes[64 + i] !== trailerMagic[i]) throw new CodecError('TRUNCATED', 'trailer: end magic missing (file truncated or never finished)');
  }
  if (dv.getUint32(0, true) !== tagTrailer) throw new CodecError('CORRUPT_CONTAINER', 'trailer: missing TTRL tag');
  if (dv.getUint32(56, true) !== crc32c(bytes.subarray(0, 56))) throw new CodecError('CORRUPT_CONTAINER', 'trailer: checksum mismatch');
  return {
    chunkCount: dv.getUint32(4, true),
    indexOffset: readU64(dv, 8, 'trailer index offset'),
    originalBytes: readU64(dv, 16, 'trailer original size'),
    sha256: bytes.slice(24, 56),
  };
}
